from __future__ import annotations

import random

import pytest
from rapidfuzz.distance import Levenshtein

from image_gen.qa import expected_texts
from tools.calibrate_qa import break_text
from image_gen.qa.ocr import OcrLine, parse_tesseract_tsv
from image_gen.qa.text import best_match, describe_failures, normalise, score_text


def lines(*texts: str) -> list[OcrLine]:
    return [OcrLine(t, (0, 10 * i, 100, 10 * i + 9), 0.99) for i, t in enumerate(texts)]


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
    assert reason == f'label "AQUA PURE" read as "AQUA PRUE" (similarity {sim:.2f} < 0.90)'
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
