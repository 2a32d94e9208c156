"""Reading briefs from a prompt file, checked whole before anything runs.

A text file holds one prompt per non-empty line (``#`` starts a comment line). A ``.json`` file holds a list of
briefs or one brief; a ``.jsonl`` file one brief per line; a ``.csv`` file one brief per row under a header naming
its columns (``prompt`` required; ``negative_prompt``, ``expect_text``, ``size``, ``seed``, ``channel`` optional;
several label texts in one ``expect_text`` cell are separated by ``|``). A brief is a prompt string or an object
with ``prompt`` and optionally ``negative_prompt``, ``expect_text`` (a string or a list of strings: the label text
QA checks instead of the prompt's quoted text), ``size`` (``"WxH"``: every stage renders at that size instead of
its own), ``seed`` (an integer: every stage's seed) and ``channel`` (the delivery channel, a name). Anything else is
an :class:`~image_gen.errors.InputError` naming the file and the brief's field (``[2].expect_text`` in a JSON list,
``line 3: seed`` in a JSONL or CSV file), raised before a run is started or a call is paid.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image_gen.errors import InputError

if TYPE_CHECKING:
    from image_gen.pipeline.runner import Brief

BRIEF_FIELDS = ("prompt", "negative_prompt", "expect_text", "size", "seed", "channel")
MAX_PROMPT_CHARS = 10_000
MAX_SIDE = 16_384


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
    elif suffix == ".csv":
        briefs = _csv_briefs(text, where)
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
        briefs.append(_brief(item, where, f"line {n}", len(briefs)))
    return briefs


def _csv_briefs(text: str, where: str) -> list[Brief]:
    import csv
    import io

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InputError(f"cannot parse CSV: {exc}", file=where, field="line 1") from None
    if not header:
        return []
    names = [h.strip().lower() for h in header]
    unknown = [h for h in names if h not in BRIEF_FIELDS]
    if unknown or "prompt" not in names or len(set(names)) != len(names):
        raise InputError(f"expected a header row naming the columns ({', '.join(BRIEF_FIELDS)}; prompt required, "
                         f"each once), got {', '.join(header)[:200]}", file=where, field="line 1")
    briefs: list[Brief] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InputError(f"cannot parse CSV: {exc}", file=where, field=f"line {reader.line_num}") from None
        n = reader.line_num
        if not any(c.strip() for c in row):
            continue
        if len(row) > len(names):
            raise InputError(f"expected {len(names)} columns, got {len(row)}", file=where, field=f"line {n}")
        item: dict[str, Any] = {}
        for name, cell in zip(names, row, strict=False):
            cell = cell.strip()
            if not cell:
                continue
            if name == "expect_text":
                item[name] = [t.strip() for t in cell.split("|")]
            elif name == "seed":
                try:
                    item[name] = int(cell)
                except ValueError:
                    raise InputError(f"expected an integer seed, got {cell[:60]!r}", file=where,
                                     field=f"line {n}: seed") from None
            else:
                item[name] = cell
        briefs.append(_brief(item, where, f"line {n}", len(briefs)))
    return briefs


def _brief(item: Any, where: str, at: str, index: int) -> Brief:
    from image_gen.pipeline.runner import Brief

    def field(name: str) -> str:
        if at.startswith("line "):
            return f"{at}: {name}"
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
    width = height = None
    size = item.get("size")
    if size is not None:
        width, height = _size(size, where, field("size"))
    seed = item.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise InputError(f"expected a non-negative integer seed, got {repr(seed)[:60]}", file=where,
                         field=field("seed"))
    channel = item.get("channel")
    if channel is not None and (not isinstance(channel, str) or not channel.strip() or len(channel) > 100):
        raise InputError(f"expected a channel name (a non-empty string), got {repr(channel)[:60]}", file=where,
                         field=field("channel"))
    return Brief(prompt.strip(), negative, texts, index=index, width=width, height=height, seed=seed,
                 channel=channel.strip() if channel else None)


def _size(value: Any, where: str, at: str) -> tuple[int, int]:
    """``"WxH"`` (or ``[W, H]``) as two positive multiples of 8 up to ``MAX_SIDE``."""
    parts: list[Any] | None = None
    if isinstance(value, str):
        bits = value.lower().replace(" ", "").split("x")
        if len(bits) == 2 and all(b.isdigit() for b in bits):
            parts = [int(b) for b in bits]
    elif isinstance(value, list) and len(value) == 2:
        parts = list(value)
    if parts is None or not all(isinstance(v, int) and not isinstance(v, bool) for v in parts):
        raise InputError(f"expected a size WxH (e.g. 1024x768), got {repr(value)[:60]}", file=where, field=at)
    w, h = parts
    if not (8 <= w <= MAX_SIDE and 8 <= h <= MAX_SIDE) or w % 8 or h % 8:
        raise InputError(f"expected a width and height between 8 and {MAX_SIDE}, multiples of 8, got {w}x{h}",
                         file=where, field=at)
    return w, h


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)
