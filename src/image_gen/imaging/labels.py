"""The label text a prompt asks for: its quoted strings. One definition for the simulator, QA and the pipeline.

``label_texts('a bottle labelled "AQUA PURE" and ‘Spring Water’, don't crop')`` is
``["AQUA PURE", "Spring Water"]``. The rules, in order of the text:

- Double quotes: straight ``"..."``, curly ``“...”``, low-high ``„...“``, guillemets ``«...»`` and ``‹...›``.
  A straight ``"`` right after a digit is an inch mark (``12" pizza``), not an opening quote.
- Single quotes: straight ``'...'`` and curly ``‘...’``. A single quote with a letter or digit on both sides is an
  apostrophe (``don't``, ``Bob’s``, ``2'x3'``); one right after a letter or digit never opens a quote
  (``kids'``, ``6'``), and one right before a letter or digit never closes one.
- A quote opens only before a non-space character and closes only after one; inside a quote other quote marks are
  text (``"Joe's Diner"``). An opening quote that is never closed is ignored, and where a second opening mark of
  the same kind comes before a close, the quote restarts there (``'Tis the season for 'JOY'`` gives ``JOY``).
- Empty quotes are ignored; whitespace inside a string is collapsed; a string repeated (ignoring case and
  spacing) is kept once, at its first place.

A leaf module: the standard library only.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

# opening mark -> the marks that close it
_DOUBLE_PAIRS: dict[str, str] = {
    '"': '"”',
    "“": "”\"“",  # “...“ closes too: German „...“ uses it as the closing mark, and typists mix
    "„": "“”\"",
    "«": "»",
    "‹": "›",
}
_SINGLE_PAIRS: dict[str, str] = {
    "'": "'’",
    "‘": "’'",
}
_PAIRS = {**_DOUBLE_PAIRS, **_SINGLE_PAIRS}
_SPACED = set("«»‹›")
"""Guillemets are often set with a space inside (French: « Bonjour »)."""


def label_texts(prompt: str) -> list[str]:
    """The label strings ``prompt`` asks for: its quoted parts, in order (see the module's rules)."""
    found: list[str] = []
    n = len(prompt)
    i = 0
    while i < n:
        ch = prompt[i]
        if ch in _PAIRS and _opens(prompt, i):
            span = _find_close(prompt, i)
            if span is None:
                i += 1
                continue
            start, end = span
            found.append(prompt[start + 1 : end])
            i = end + 1
            continue
        i += 1
    return unique_labels(found)


def unique_labels(strings: Iterable[str]) -> list[str]:
    """Whitespace-collapsed, non-empty strings, each kept once (ignoring case and spacing), in order."""
    out: list[str] = []
    seen: set[str] = set()
    for s in strings:
        text = " ".join(s.split())
        key = "".join(unicodedata.normalize("NFKC", text).casefold().split())
        if key and key not in seen:
            seen.add(key)
            out.append(text)
    return out


def _word(ch: str) -> bool:
    return ch.isalnum()


def _opens(s: str, i: int) -> bool:
    """Whether the mark at ``i`` may open a quote."""
    ch = s[i]
    before = s[i - 1] if i > 0 else ""
    after = s[i + 1] if i + 1 < len(s) else ""
    if not after:
        return False
    if after.isspace() and not (ch in _SPACED and s[i + 1 :].strip()):
        return False
    if ch in _SINGLE_PAIRS:
        return not (before and _word(before))  # kids' / 6' / don't: not an opening quote
    if ch == '"':
        return not (before and before.isdigit())  # 12" pizza: an inch mark
    return True


def _closes(s: str, j: int, opener: str) -> bool:
    """Whether the mark at ``j`` closes a quote opened by ``opener``."""
    ch = s[j]
    if ch not in _PAIRS.get(opener, ""):
        return False
    before = s[j - 1]
    after = s[j + 1] if j + 1 < len(s) else ""
    if before.isspace() and opener not in _SPACED:
        return False
    return not (opener in _SINGLE_PAIRS and after and _word(after))  # Bob's / don’t: an apostrophe


def _find_close(s: str, i: int) -> tuple[int, int] | None:
    """Where the quote opened at ``i`` (or restarted after it) opens and closes; None when it never closes."""
    opener = s[i]
    for j in range(i + 1, len(s)):
        if _closes(s, j, opener):
            return i, j
        if s[j] == opener and _opens(s, j):
            # A second opening mark of the same kind before any close: the first was not a quote ('Tis, '90s).
            return _find_close(s, j)
    return None
