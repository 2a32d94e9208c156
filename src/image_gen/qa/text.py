"""Text fidelity: does the label text the brief asks for appear, spelt right and nothing more, in the image (OCR)?

Scores follow the text-rendering literature (TextDiffuser, GlyphControl, AnyText), with one addition:

- normalised edit similarity per expected string: ``1 - Levenshtein / max(len(expected), len(read))``, where
  "read" is the stretch of the OCR output that best matches the expected string (semi-global alignment);
- **precision at the label**: of the characters OCR read *near the label*, the share that the expected strings
  account for (aligned character matches). "Near" comes from the OCR boxes: the lines that hold the best match of
  an expected string (its anchors), and every line whose box comes within one text height (the anchor box's
  height) of an anchor's box and whose text is set at a comparable size (within a factor 2). Stray characters
  or words at the label (``STRIDE ONE E`` for ``STRIDE ONE``) lower it; a label read twice, or split over
  several lines or boxes, does not; text far from the label (small print elsewhere, a corner mark) is not counted;
- word precision and recall of the OCR words (near the label) against the expected words (multiset);
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

from image_gen.imaging.labels import label_texts, unique_labels

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.qa.ocr import OcrLine

_WORD = re.compile(r"[^\W_]+(?:['’.-][^\W_]+)*")


def expected_texts(prompt: str, expect_text: Sequence[str] | None = None) -> list[str]:
    """The label strings a brief expects: ``expect_text`` when given, else the prompt's quoted strings.

    The prompt is read by :func:`image_gen.imaging.labels.label_texts`, the one definition of label text shared
    with the simulator and the pipeline. Order of first appearance is kept and duplicates (ignoring case and
    spacing) are dropped.
    """
    if expect_text is not None:
        return unique_labels(expect_text)
    return label_texts(prompt)


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
    precision: float = 1.0
    """Share of the characters read near the label that the expected strings account for (see the module)."""
    near_text: str = ""
    """What OCR read near the label: the anchor lines and their neighbours, in reading order."""
    ocr_lines: list[dict[str, Any]] = field(default_factory=list)

    def as_scores(self) -> dict[str, float]:
        return {
            "text_similarity_min": self.min_similarity,
            "text_similarity_mean": self.mean_similarity,
            "text_precision": self.precision,
            "text_word_precision": self.word_precision,
            "text_word_recall": self.word_recall,
            "text_exact_match": self.exact_match,
        }


ANCHOR_MIN_SIMILARITY = 0.5
"""A stretch of OCR text counts as (a reading of) an expected string from this similarity up: it anchors the
label's place, and at the label it counts as label text rather than as extra text."""
NEAR_MARGIN = 1.0
"""A line is near the label when its box comes within this many text heights (of the anchor box) of an anchor..."""
SIZE_RATIO = 2.0
"""...and its text height is within this factor of the anchor's: text set at another size next to a label (a second,
smaller copy, small print under it) is another element of the design, not part of the label."""


@dataclass(frozen=True)
class _Chars:
    """Characters compared (NFKC, case-folded, no whitespace), with where each came from."""

    chars: list[str]
    line: list[int]
    """Index of the OCR line each character comes from."""
    pos: list[int]
    """Position of each character in ``text`` (the lines' NFKC text joined by spaces)."""
    text: str


def _chars(texts: Sequence[str]) -> _Chars:
    chars: list[str] = []
    line: list[int] = []
    pos: list[int] = []
    parts: list[str] = []
    offset = 0
    for k, t in enumerate(texts):
        norm = unicodedata.normalize("NFKC", t)
        for i, ch in enumerate(norm):
            if ch.isspace():
                continue
            for c in ch.casefold():
                chars.append(c)
                line.append(k)
                pos.append(offset + i)
        parts.append(norm)
        offset += len(norm) + 1
    return _Chars(chars, line, pos, " ".join(parts))


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    """``chars[start:end]`` is the stretch aligned with the pattern."""
    distance: int
    matches: int
    """Characters of the stretch aligned with an equal character of the pattern."""
    similarity: float


def _align(pat: str, chars: Sequence[str], line: Sequence[int] | None = None) -> _Span | None:
    """Semi-global Levenshtein alignment: ``pat`` in full against the best stretch of ``chars``.

    Of equally distant stretches the one with the widest similarity wins, then (given ``line``) the one that
    leaves least other text in the lines it touches (a label standing alone rather than inside a longer line),
    then the one closest in length to ``pat``.
    """
    m, n = len(pat), len(chars)
    if m == 0 or n == 0:
        return None
    # Per cell: distance, start of the stretch, aligned equal characters (more is better on a tie).
    prev = [0] * (n + 1)
    start = list(range(n + 1))
    same = [0] * (n + 1)
    for i in range(1, m + 1):
        cur = [i] * (n + 1)
        cur_start = [0] * (n + 1)
        cur_same = [0] * (n + 1)
        pc = pat[i - 1]
        for j in range(1, n + 1):
            eq = pc == chars[j - 1]
            sub = prev[j - 1] + (not eq)
            dele = prev[j] + 1  # pattern char missing from the read text
            ins = cur[j - 1] + 1  # extra char in the read text
            best, bs, bm = sub, start[j - 1], same[j - 1] + eq
            if dele < best or (dele == best and same[j] > bm):
                best, bs, bm = dele, start[j], same[j]
            if ins < best or (ins == best and cur_same[j - 1] > bm):
                best, bs, bm = ins, cur_start[j - 1], cur_same[j - 1]
            cur[j], cur_start[j], cur_same[j] = best, bs, bm
        prev, start, same = cur, cur_start, cur_same

    line_len: dict[int, int] = {}
    if line is not None:
        for k in line:
            line_len[k] = line_len.get(k, 0) + 1

    def key(j: int) -> tuple[int, int, int, int]:
        length = j - start[j]
        other = 0
        if line is not None and length > 0:
            touched = set(line[start[j] : j])
            other = sum(line_len[k] for k in touched) - length
        return (prev[j], max(m, length), other, abs(m - length))

    best_j = min(range(1, n + 1), key=key)
    s0, dist = start[best_j], prev[best_j]
    length = best_j - s0
    sim = max(0.0, 1.0 - dist / max(m, length))
    return _Span(s0, best_j, dist, same[best_j], sim)


def best_match(expected: str, read: str) -> StringMatch:
    """Semi-global Levenshtein alignment of ``expected`` against the whole of ``read``.

    The expected string must be matched in full; the stretch of ``read`` it aligns to is free to start and
    end anywhere, so surrounding text costs nothing here (:func:`score_text` counts it, near the label).
    """
    return _match(expected, _chars([read]), None)[0]


def _match(expected: str, cs: _Chars, line: Sequence[int] | None) -> tuple[StringMatch, _Span | None]:
    pat = normalise(expected)
    if not pat:
        return StringMatch(expected, "", 0, 1.0), None
    span = _align(pat, cs.chars, line)
    if span is None:
        return StringMatch(expected, "", len(pat), 0.0), None
    read = cs.text[cs.pos[span.start] : cs.pos[span.end - 1] + 1].strip() if span.end > span.start else ""
    return StringMatch(expected, read, span.distance, span.similarity), span


def _near(boxes: Sequence[tuple[int, int, int, int]], anchors: set[int], margin: float = NEAR_MARGIN) -> list[int]:
    """Indices of the boxes near an anchor box (anchors included), in order: within ``margin`` text heights of it
    and set at a comparable size (height within a factor :data:`SIZE_RATIO`), as the lines of one label are."""
    out = []
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        h = max(1, y1 - y0)
        for a in anchors:
            ax0, ay0, ax1, ay1 = boxes[a]
            ah = max(1, ay1 - ay0)
            pad = margin * ah
            close = x0 <= ax1 + pad and x1 >= ax0 - pad and y0 <= ay1 + pad and y1 >= ay0 - pad
            if k == a or (close and 1 / SIZE_RATIO <= h / ah <= SIZE_RATIO):
                out.append(k)
                break
    return out


def label_precision(expected: Sequence[str], texts: Sequence[str]) -> float:
    """Of the characters in ``texts`` (what OCR read near a label), the share the expected strings account for.

    Expected strings are found greedily, best first, as often as they occur (a label read twice counts twice);
    a stretch counts from :data:`ANCHOR_MIN_SIMILARITY` up, and only its characters aligned with an equal
    expected character count. A match never spans a stretch already taken.
    """
    cs = _chars(texts)
    total = len(cs.chars)
    if total == 0:
        return 1.0 if not any(normalise(e) for e in expected) else 0.0
    pats = [p for p in (normalise(e) for e in expected) if p]
    segments = [cs.chars]
    counted = 0
    for _ in range(4 * len(pats) + 8):
        best: tuple[float, int, int, _Span] | None = None
        for si, seg in enumerate(segments):
            for p in pats:
                span = _align(p, seg)
                if span is None or span.similarity < ANCHOR_MIN_SIMILARITY:
                    continue
                cand = (span.similarity, span.matches, si, span)
                if best is None or cand[:2] > best[:2]:
                    best = cand
        if best is None:
            break
        _, _, si, span = best
        counted += span.matches
        seg = segments.pop(si)
        segments[si:si] = [part for part in (seg[: span.start], seg[span.end :]) if part]
        if not segments:
            break
    return counted / total


def score_text(expected: Sequence[str], lines: Sequence[OcrLine]) -> TextScores:
    """Score what OCR read against the expected label strings."""
    read = " ".join(line.text for line in lines)
    cs = _chars([line.text for line in lines])
    matches: list[StringMatch] = []
    anchors: set[int] = set()
    for e in expected:
        mt, span = _match(e, cs, cs.line)
        matches.append(mt)
        if span is not None and span.similarity >= ANCHOR_MIN_SIMILARITY and span.end > span.start:
            anchors.update(cs.line[span.start : span.end])
    near = _near([line.box for line in lines], anchors) if anchors else []
    near_texts = [lines[k].text for k in near]
    precision = label_precision(expected, near_texts) if expected else 1.0
    near_text = " ".join(near_texts)
    exp_words = Counter(w for e in expected for w in words(e))
    read_words = Counter(words(near_text if near else read))
    common = sum((exp_words & read_words).values())
    word_precision = common / sum(read_words.values()) if read_words else (1.0 if not exp_words else 0.0)
    recall = common / sum(exp_words.values()) if exp_words else 1.0
    sims = [mt.similarity for mt in matches]
    return TextScores(
        matches=matches,
        read_text=read,
        word_precision=word_precision,
        word_recall=recall,
        exact_match=(sum(mt.exact for mt in matches) / len(matches)) if matches else 1.0,
        min_similarity=min(sims) if sims else 1.0,
        mean_similarity=(sum(sims) / len(sims)) if sims else 1.0,
        precision=precision,
        near_text=near_text,
        ocr_lines=[
            {"text": ln.text, "box": list(ln.box), "score": round(ln.score, 4), "near_label": k in near}
            for k, ln in enumerate(lines)
        ],
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


def describe_failures(scores: TextScores, min_similarity: float, min_precision: float | None = None) -> list[str]:
    """Why the label text fails, one reason per failing expected string, then one for extra text at the label.

    Each reason says what was read, the similarity and the precision, so a person can see why.
    """
    reasons = []
    prec = f"precision {scores.precision:.2f}"
    for mt in scores.matches:
        if mt.similarity >= min_similarity:
            continue
        if not scores.read_text.strip():
            reasons.append(f'label "{mt.expected}" missing: no legible text found')
        elif mt.similarity < ANCHOR_MIN_SIMILARITY:
            reasons.append(
                f'label "{mt.expected}" missing: read "{_short(scores.read_text)}" instead '
                f"(similarity {mt.similarity:.2f} < {min_similarity:.2f})"
            )
        else:
            reasons.append(
                f'label "{mt.expected}" read as "{mt.read}" '
                f"(similarity {mt.similarity:.2f} < {min_similarity:.2f}; {prec})"
            )
    if not reasons and min_precision is not None and scores.precision < min_precision:
        labels = ", ".join(f'"{mt.expected}"' for mt in scores.matches)
        sim = min((mt.similarity for mt in scores.matches), default=1.0)
        reasons.append(
            f'extra text at label {labels}: read "{_short(scores.near_text)}" there '
            f"(precision {scores.precision:.2f} < {min_precision:.2f}; similarity {sim:.2f})"
        )
    return reasons


def _short(s: str, limit: int = 80) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"
