"""Reading briefs from a prompt file, checked whole before anything runs.

A text file holds one prompt per non-empty line (``#`` starts a comment line). A ``.json`` file holds a list of
briefs or one brief; a ``.jsonl`` file one brief per line. A brief is a prompt string or an object with
``prompt`` and optionally ``negative_prompt`` and ``expect_text`` (a string or a list of strings: the label text
QA checks instead of the prompt's quoted text). Anything else is an :class:`~image_gen.errors.InputError`
naming the file and the brief's field (``[2].expect_text``), raised before a run is started or a call is paid.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image_gen.errors import InputError

if TYPE_CHECKING:
    from image_gen.pipeline.runner import Brief

BRIEF_FIELDS = ("prompt", "negative_prompt", "expect_text")
MAX_PROMPT_CHARS = 10_000


def read_prompt_file(path: str | os.PathLike[str]) -> list[Brief]:
    """The briefs of a prompt file (text, ``.json`` or ``.jsonl``); raises ``InputError`` naming file and field."""
    p = Path(path)
    where = str(path)
    if not p.exists():
        raise InputError("prompt file not found", file=where)
    if not p.is_file():
        raise InputError("expected a prompt file, found a folder", file=where)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=where) from None
    if b"\x00" in raw:
        raise InputError("expected text, found NUL bytes (a binary file?)", file=where)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"expected UTF-8 text (byte {exc.start} is not)", file=where) from None
    suffix = p.suffix.lower()
    if suffix == ".json":
        briefs = _json_briefs(text, where)
    elif suffix == ".jsonl":
        briefs = _jsonl_briefs(text, where)
    else:
        briefs = _text_briefs(text, where)
    if not briefs:
        raise InputError("no prompts in the file (expected one per line; # starts a comment)", file=where)
    return briefs


def _text_briefs(text: str, where: str) -> list[Brief]:
    from image_gen.pipeline.runner import Brief

    briefs: list[Brief] = []
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if s and not s.startswith("#"):
            if len(s) > MAX_PROMPT_CHARS:
                raise InputError(f"expected a prompt of at most {MAX_PROMPT_CHARS} characters, got {len(s)}",
                                 file=where, field=f"line {n}")
            briefs.append(Brief(s, index=len(briefs)))
    return briefs


def _json_briefs(text: str, where: str) -> list[Brief]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"cannot parse JSON: {exc}", file=where) from None
    if isinstance(data, dict):
        # One brief written as one object (its keys are fields, never prompts).
        return [_brief(data, where, "", 0)]
    if not isinstance(data, list):
        raise InputError(f"expected a list of briefs or one brief object, got {_kind(data)}", file=where)
    return [_brief(item, where, f"[{i}]", i) for i, item in enumerate(data)]


def _jsonl_briefs(text: str, where: str) -> list[Brief]:
    briefs: list[Brief] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"cannot parse JSON: {exc.msg}", file=where, field=f"line {n}") from None
        briefs.append(_brief(item, where, f"[{len(briefs)}]", len(briefs)))
    return briefs


def _brief(item: Any, where: str, at: str, index: int) -> Brief:
    from image_gen.pipeline.runner import Brief

    def field(name: str) -> str:
        return f"{at}.{name}" if at else name

    if isinstance(item, str):
        item = {"prompt": item}
    if not isinstance(item, dict):
        raise InputError(f"expected a prompt string or an object with 'prompt', got {_kind(item)}", file=where,
                         field=at or None)
    unknown = sorted(str(k) for k in item if k not in BRIEF_FIELDS)
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(BRIEF_FIELDS)}", file=where,
                         field=field(unknown[0]))
    prompt = item.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        got = "nothing" if prompt is None else repr(prompt)[:60]
        raise InputError(f"expected a non-empty prompt string, got {got}", file=where, field=field("prompt"))
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"expected a prompt of at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}",
                         file=where, field=field("prompt"))
    negative = item.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise InputError(f"expected a string, got {_kind(negative)}", file=where, field=field("negative_prompt"))
    expect = item.get("expect_text")
    texts: list[str] | None
    if expect is None:
        texts = None
    elif isinstance(expect, str):
        texts = [expect] if expect.strip() else None
        if texts is None:
            raise InputError("expected non-empty label text", file=where, field=field("expect_text"))
    elif isinstance(expect, list) and all(isinstance(t, str) and t.strip() for t in expect):
        texts = list(expect) or None
    else:
        raise InputError(f"expected a string or a list of non-empty strings, got {repr(expect)[:60]}",
                         file=where, field=field("expect_text"))
    return Brief(prompt.strip(), negative, texts, index=index)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)
