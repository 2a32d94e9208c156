from __future__ import annotations

import random

import pytest
from rapidfuzz.distance import Levenshtein

from image_gen.qa import expected_texts
from image_gen.qa.ocr import OcrLine, parse_tesseract_tsv
from image_gen.qa.text import best_match, describe_failures, normalise, score_text
from tools.calibrate_qa import break_text


def lines(*texts: str) -> list[OcrLine]:
    return [OcrLine(t, (0, 10 * i, 100, 10 * i + 9), 0.99) for i, t in enumerate(texts)]


def boxed(*items: tuple[str, tuple[int, int, int, int]]) -> list[OcrLine]:
    return [OcrLine(t, box, 0.99) for t, box in items]


LABEL = (200, 300, 440, 340)  # a label line 40 px high in the middle of a 640x640 image


def test_expected_texts_reads_double_and_single_quotes_but_not_apostrophes():
    prompt = (
        """A bottle labelled "AQUA PURE" with 'Spring Water' below; don't crop, it's for the “Nordic” line"""
    )
    assert expected_texts(prompt) == ["AQUA PURE", "Spring Water", "Nordic"]


def test_expected_texts_explicit_list_wins_and_duplicates_drop():
    assert expected_texts('label "IGNORED"', ["Acme", "ACME ", "Bolt  Co"]) == ["Acme", "Bolt Co"]
    assert expected_texts("no quotes here") == []


@pytest.mark.parametrize("kind", ["swap", "drop", "substitute"])
def test_similarity_is_one_minus_levenshtein_over_longer_length(kind):
    rng = random.Random(kind)
    expected = "MORNING BREW"
    read = break_text([expected], kind, rng)[0]
    m = best_match(expected, read)
    a, b = normalise(expected), normalise(read)
    assert m.distance == Levenshtein.distance(a, b) > 0
    assert m.similarity == pytest.approx(1 - m.distance / max(len(a), len(b)))
    assert not m.exact


def test_match_ignores_case_spacing_and_surrounding_text():
    m = best_match("Aqua Pure", "500ml  AQUAPURE  spring water")
    assert m.exact and m.similarity == 1.0
    assert m.read == "AQUAPURE"


def test_match_reports_the_misread_stretch_in_original_spelling():
    m = best_match("AQUA PURE", "NEW AQUA PRUE 500ml")
    assert m.read == "AQUA PRUE"
    assert m.distance == 2


def test_scores_word_precision_recall_and_exact_match():
    ts = score_text(["AQUA PURE", "Spring Water"], lines("AQUA PURE", "Sprng Water", "EXTRA"))
    # expected words: aqua pure spring water; read: aqua pure sprng water extra
    assert ts.word_recall == pytest.approx(3 / 4)
    assert ts.word_precision == pytest.approx(3 / 5)
    assert ts.exact_match == pytest.approx(1 / 2)
    assert ts.min_similarity < 1.0 == ts.matches[0].similarity


def test_failure_reasons_name_the_string_and_what_was_read():
    ts = score_text(["AQUA PURE"], lines("AQUA PRUE"))
    (reason,) = describe_failures(ts, 0.9)
    sim = 1 - Levenshtein.distance("AQUAPURE", "AQUAPRUE") / 8
    assert reason == f'label "AQUA PURE" read as "AQUA PRUE" (similarity {sim:.2f} < 0.90; precision 0.88)'
    assert describe_failures(score_text(["AQUA PURE"], []), 0.9) == [
        'label "AQUA PURE" missing: no legible text found'
    ]
    missing = describe_failures(score_text(["AQUA PURE"], lines("Spring Water")), 0.9)
    assert "missing" in missing[0] and "Spring Water" in missing[0]


def test_tesseract_tsv_groups_words_into_lines():
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        "5\t1\t1\t1\t1\t1\t10\t20\t40\t12\t96\tAQUA",
        "5\t1\t1\t1\t1\t2\t55\t21\t40\t12\t90\tPURE",
        "4\t1\t1\t1\t2\t0\t10\t40\t80\t12\t-1\t",
        "5\t1\t1\t1\t2\t1\t10\t40\t80\t12\t80\t500ml",
    ]
    out = parse_tesseract_tsv("\n".join([header, *rows]))
    assert [ln.text for ln in out] == ["AQUA PURE", "500ml"]
    assert out[0].box == (10, 20, 95, 33)
    assert out[0].score == pytest.approx(0.93)


@pytest.mark.parametrize(
    "read",
    [
        boxed(("STRIDE ONE E", LABEL)),  # the case: one OCR line
        boxed(("STRIDE ONE", LABEL), ("E", (450, 302, 470, 338))),  # the stray glyph in a box of its own
        boxed(("STRIDE ONEE", LABEL)),
        boxed(("STRIDE ONE", LABEL), ("FRESH", (250, 350, 390, 390))),  # an extra word on the next line
        boxed(("MINT STRIDE ONE", LABEL)),
    ],
)
def test_extra_characters_or_words_at_the_label_lower_precision_and_fail(read):
    ts = score_text(["STRIDE ONE"], read)
    assert ts.min_similarity == 1.0
    assert ts.precision <= 9 / 10
    (reason,) = describe_failures(ts, 0.97, 0.95)
    near = " ".join(ln.text for ln in read)
    assert reason == (
        f'extra text at label "STRIDE ONE": read "{near}" there (precision {ts.precision:.2f} < 0.95; '
        "similarity 1.00)"
    )


@pytest.mark.parametrize(
    "read",
    [
        boxed(("STRIDE ONE", LABEL)),
        boxed(("STRIDE", (200, 300, 330, 340)), ("ONE", (345, 300, 440, 340))),  # split over two boxes
        boxed(("STRIDE", LABEL), ("ONE", (260, 350, 380, 390))),  # split over two lines
        boxed(("STRIDE ONE", LABEL), ("STRIDE ONE", (200, 350, 440, 390))),  # read twice
        boxed(("SIMULATED", (8, 8, 90, 22)), ("STRIDE ONE", LABEL)),  # a corner mark
        boxed(("STRIDE ONE", LABEL), ("Since 1921 - www.example.com", (400, 610, 630, 628))),  # small print
        boxed(("STRIDE ONE", LABEL), ("500ml - recycle me", (260, 345, 380, 357))),  # small print under it
        boxed(("STRIDE ONE", LABEL), ("STRLDE 0NF", (280, 280, 360, 294))),  # a small, garbled second copy
    ],
)
def test_label_read_twice_split_or_with_far_text_keeps_full_precision(read):
    ts = score_text(["STRIDE ONE"], read)
    assert ts.min_similarity == 1.0 and ts.precision == 1.0
    assert describe_failures(ts, 0.97, 0.95) == []
    far = {ln.text for ln in read if ln.box[3] - ln.box[1] < 20 or ln.box[1] > 600}
    assert not far & {ln["text"] for ln in ts.ocr_lines if ln["near_label"]}


def test_precision_counts_only_aligned_characters():
    # A letter missing costs similarity, not precision; a wrong letter costs both.
    assert score_text(["MAPLE CRESTS"], boxed(("MAPLE CREST", LABEL))).precision == 1.0
    assert score_text(["STRIDE ONE"], boxed(("STRIDE 0NE", LABEL))).precision == pytest.approx(8 / 9)
    # Two labels, each in its place.
    two = boxed(("AQUA PURE", LABEL), ("Spring Water", (220, 350, 420, 390)))
    assert score_text(["AQUA PURE", "Spring Water"], two).precision == 1.0


def test_nothing_read_near_a_label_has_zero_precision():
    ts = score_text(["STRIDE ONE"], [])
    assert ts.precision == 0.0 and ts.min_similarity == 0.0
