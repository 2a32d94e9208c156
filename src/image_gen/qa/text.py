"""Text fidelity: does the label text the brief asks for appear, spelt right, in the image (read by OCR)?

Scores follow the text-rendering literature (TextDiffuser, GlyphControl, AnyText):

- normalised edit similarity per expected string: ``1 - Levenshtein / max(len(expected), len(read))``, where
  "read" is the substring of the OCR output that best matches the expected string (semi-global alignment,
  so other text in the image does not count against a label);
- word precision and recall of the OCR words against the expected words (multiset);
- exact-match accuracy: the share of expected strings read exactly.

Case and spacing are normalised before comparing (OCR often merges or splits words; a label's case is
a style choice): strings are NFKC-normalised, case-folded and compared without whitespace.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.qa.ocr import OcrLine

# "..." and “...” anywhere; '...' and ‘...’ only when the quote is not inside a word (so "don't" and
# "it's" are not read as quotes).
_DOUBLE = re.compile(r"\"([^\"]+)\"|“([^”]+)”")
_SINGLE = re.compile(r"(?<![\w])'([^']+?)'(?![\w])|‘([^’]+)’")
_WORD = re.compile(r"[^\W_]+(?:['’.-][^\W_]+)*")


def expected_texts(prompt: str, expect_text: Sequence[str] | None = None) -> list[str]:
    """The label strings a brief expects: ``expect_text`` when given, else the prompt's quoted strings.

    Order of first appearance is kept and duplicates (after normalisation) are dropped.
    """
    if expect_text is not None:
        found = [t for t in expect_text]
    else:
        spans: list[tuple[int, str]] = []
        for rx in (_DOUBLE, _SINGLE):
            for m in rx.finditer(prompt):
                spans.append((m.start(), next(g for g in m.groups() if g is not None)))
        found = [s for _, s in sorted(spans)]
    out: list[str] = []
    seen: set[str] = set()
    for s in found:
        s = " ".join(s.split())
        key = normalise(s)
        if key and key not in seen:
            seen.add(key)
            out.append(s)
    return out


def normalise(s: str) -> str:
    """Case- and spacing-insensitive form used for comparing: NFKC, case-folded, whitespace removed."""
    return "".join(unicodedata.normalize("NFKC", s).casefold().split())


def words(s: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(unicodedata.normalize("NFKC", s))]


@dataclass(frozen=True)
class StringMatch:
    """How one expected string was found in the OCR output."""

    expected: str
    read: str
    """The best-matching stretch of what OCR read (original spelling and spacing); '' when nothing was."""
    distance: int
    similarity: float

    @property
    def exact(self) -> bool:
        return self.distance == 0 and bool(self.expected)


@dataclass(frozen=True)
class TextScores:
    matches: list[StringMatch]
    read_text: str
    word_precision: float
    word_recall: float
    exact_match: float
    min_similarity: float
    mean_similarity: float
    ocr_lines: list[dict[str, Any]] = field(default_factory=list)

    def as_scores(self) -> dict[str, float]:
        return {
            "text_similarity_min": self.min_similarity,
            "text_similarity_mean": self.mean_similarity,
            "text_word_precision": self.word_precision,
            "text_word_recall": self.word_recall,
            "text_exact_match": self.exact_match,
        }


def best_match(expected: str, read: str) -> StringMatch:
    """Semi-global Levenshtein alignment of ``expected`` against the whole of ``read``.

    The expected string must be matched in full; the stretch of ``read`` it aligns to is free to start and
    end anywhere, so surrounding text costs nothing.
    """
    pat = normalise(expected)
    # Characters of `read` that take part in the comparison, with their position in the original string.
    norm_read = unicodedata.normalize("NFKC", read)
    chars: list[str] = []
    pos: list[int] = []
    for i, ch in enumerate(norm_read):
        if ch.isspace():
            continue
        for c in ch.casefold():
            chars.append(c)
            pos.append(i)
    m, n = len(pat), len(chars)
    if m == 0:
        return StringMatch(expected, "", 0, 1.0)
    if n == 0:
        return StringMatch(expected, "", m, 0.0)
    # prev[j]: distance of pat[:i] to a stretch ending at chars[j-1]; start[j]: where that stretch starts.
    prev = [0] * (n + 1)
    start = list(range(n + 1))
    for i in range(1, m + 1):
        cur = [i] * (n + 1)
        cur_start = [0] * (n + 1)
        pc = pat[i - 1]
        for j in range(1, n + 1):
            sub = prev[j - 1] + (pc != chars[j - 1])
            dele = prev[j] + 1  # expected char missing from the read text
            ins = cur[j - 1] + 1  # extra char in the read text
            if sub <= dele and sub <= ins:
                cur[j], cur_start[j] = sub, start[j - 1]
            elif dele <= ins:
                cur[j], cur_start[j] = dele, start[j]
            else:
                cur[j], cur_start[j] = ins, cur_start[j - 1]
        cur_start[0] = 0
        prev, start = cur, cur_start
    best_j = min(range(1, n + 1), key=lambda j: (prev[j], max(m, j - start[j]), abs(m - (j - start[j]))))
    dist = prev[best_j]
    s0 = start[best_j]
    length = best_j - s0
    read_stretch = norm_read[pos[s0] : pos[best_j - 1] + 1].strip() if length > 0 else ""
    similarity = 1.0 - dist / max(m, length)
    return StringMatch(expected, read_stretch, dist, max(0.0, similarity))


def score_text(expected: Sequence[str], lines: Sequence[OcrLine]) -> TextScores:
    """Score what OCR read against the expected label strings."""
    read = " ".join(line.text for line in lines)
    matches = [best_match(e, read) for e in expected]
    exp_words = Counter(w for e in expected for w in words(e))
    read_words = Counter(words(read))
    common = sum((exp_words & read_words).values())
    precision = common / sum(read_words.values()) if read_words else (1.0 if not exp_words else 0.0)
    recall = common / sum(exp_words.values()) if exp_words else 1.0
    sims = [mt.similarity for mt in matches]
    return TextScores(
        matches=matches,
        read_text=read,
        word_precision=precision,
        word_recall=recall,
        exact_match=(sum(mt.exact for mt in matches) / len(matches)) if matches else 1.0,
        min_similarity=min(sims) if sims else 1.0,
        mean_similarity=(sum(sims) / len(sims)) if sims else 1.0,
        ocr_lines=[{"text": ln.text, "box": list(ln.box), "score": round(ln.score, 4)} for ln in lines],
    )


def read_for_qa(image: Image.Image, engine: str = "rapidocr", max_side: int = 1024) -> list[OcrLine]:
    """OCR an image, downscaled first so its longer side is at most ``max_side`` (OCR time grows with area).

    Boxes are returned in the original image's pixels.
    """
    from PIL import Image as PILImage

    from image_gen.qa.ocr import OcrLine, read_text

    scale = max(image.size) / max_side
    if scale <= 1:
        return read_text(image, engine)
    small = image.convert("RGB").resize(
        (max(1, round(image.width / scale)), max(1, round(image.height / scale))), PILImage.Resampling.LANCZOS
    )
    return [
        OcrLine(ln.text, tuple(int(round(v * scale)) for v in ln.box), ln.score)  # type: ignore[arg-type]
        for ln in read_text(small, engine)
    ]


def describe_failures(scores: TextScores, min_similarity: float) -> list[str]:
    """One reason per expected string below ``min_similarity``: which string failed, what was read instead."""
    reasons = []
    for mt in scores.matches:
        if mt.similarity >= min_similarity:
            continue
        if not scores.read_text.strip():
            reasons.append(f'label "{mt.expected}" missing: no legible text found')
        elif mt.similarity < 0.5:
            reasons.append(
                f'label "{mt.expected}" missing: read "{_short(scores.read_text)}" instead '
                f"(similarity {mt.similarity:.2f} < {min_similarity:.2f})"
            )
        else:
            reasons.append(
                f'label "{mt.expected}" read as "{mt.read}" '
                f"(similarity {mt.similarity:.2f} < {min_similarity:.2f})"
            )
    return reasons


def _short(s: str, limit: int = 80) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"
