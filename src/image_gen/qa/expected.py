"""Where the expected label text of a QA check comes from: given strings, a prompt, or the prompt in the image.

image-gen writes its PNGs with the generation record embedded (``store/artifacts.py``): an ``image-gen`` text
chunk holding JSON with a ``"prompt"`` and a ``parameters`` chunk (AUTOMATIC1111's format) whose first line is
the prompt. Other tools write ``parameters`` too, so an image from them is checked against its own prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from image_gen.qa.text import expected_texts

if TYPE_CHECKING:
    from PIL import Image

JSON_CHUNK = "image-gen"
PARAMS_CHUNK = "parameters"
# The same names as image_gen.store.artifacts (QA does not import the store); a test holds them equal.

SOURCE_EXPECT_TEXT = "expect_text"
SOURCE_PROMPT = "prompt"
SOURCE_EMBEDDED = "embedded_prompt"
SOURCE_NONE = "none"


@dataclass(frozen=True)
class ExpectedText:
    """The label strings to check and where they came from."""

    texts: list[str]
    source: str
    """``expect_text`` (given strings), ``prompt`` (a given prompt's quoted strings), ``embedded_prompt`` (the
    quoted strings of the prompt embedded in the image) or ``none``."""
    prompt: str | None = None
    """The prompt the strings were read from (given or embedded), when they were read from one."""
    chunk: str | None = None
    """The image's metadata chunk the embedded prompt came from."""
    skipped: str | None = None
    """Why there is nothing to check, when ``texts`` is empty."""

    def describe(self) -> str:
        """One line for people: which text is expected and from where, or why the text check is skipped."""
        if not self.texts or self.skipped:
            return f"text check skipped: {self.skipped}"
        quoted = ", ".join(f'"{t}"' for t in self.texts)
        where = {
            SOURCE_EXPECT_TEXT: "given",
            SOURCE_PROMPT: "from the prompt's quoted text",
            SOURCE_EMBEDDED: f"from the prompt embedded in the image ({self.chunk} chunk)",
        }.get(self.source, self.source)
        return f"expected text {quoted} {where}"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"texts": list(self.texts), "source": self.source}
        for key in ("prompt", "chunk", "skipped"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def embedded_prompt(image: Image.Image | Mapping[str, Any]) -> tuple[str, str] | None:
    """The prompt embedded in an image's metadata and the chunk it came from; None when there is none.

    ``image`` is a PIL image (its ``info``) or such a mapping. The ``image-gen`` JSON record wins over the
    ``parameters`` line.
    """
    info = image if isinstance(image, Mapping) else getattr(image, "info", {}) or {}
    raw = info.get(JSON_CHUNK)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if isinstance(raw, str):
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("prompt"), str) and record["prompt"].strip():
            return record["prompt"], JSON_CHUNK
    params = info.get(PARAMS_CHUNK)
    if isinstance(params, bytes):
        params = params.decode("utf-8", "replace")
    if isinstance(params, str):
        first = params.split("\n", 1)[0]
        if first.strip():
            return first, PARAMS_CHUNK
    return None


def resolve_expected(
    *,
    expect_text: Sequence[str] | None = None,
    prompt: str | None = None,
    image: Image.Image | Mapping[str, Any] | None = None,
) -> ExpectedText:
    """The expected label text: ``expect_text`` if given, else ``prompt``'s quoted strings if a prompt is given,
    else the quoted strings of the prompt embedded in ``image``."""
    if expect_text:
        texts = expected_texts("", expect_text)
        return ExpectedText(texts, SOURCE_EXPECT_TEXT, skipped=None if texts else "the expected strings are empty")
    if prompt is not None:
        texts = expected_texts(prompt)
        return ExpectedText(
            texts, SOURCE_PROMPT, prompt=prompt, skipped=None if texts else "the prompt has no quoted label text"
        )
    found = embedded_prompt(image) if image is not None else None
    if found is None:
        return ExpectedText(
            [], SOURCE_NONE, skipped="no expected text or prompt was given and the image has no embedded prompt"
        )
    text, chunk = found
    texts = expected_texts(text)
    return ExpectedText(
        texts,
        SOURCE_EMBEDDED,
        prompt=text,
        chunk=chunk,
        skipped=None if texts else f"the prompt embedded in the image ({chunk} chunk) has no quoted label text",
    )
