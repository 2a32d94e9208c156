"""The one definition of a prompt's label text, and that the simulator and QA use it."""

from __future__ import annotations

import pytest

from image_gen.imaging.labels import label_texts, unique_labels


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ('a bottle labelled "AQUA PURE"', ["AQUA PURE"]),
        ("a bottle labelled “AQUA PURE” and ‘Spring Water’", ["AQUA PURE", "Spring Water"]),
        ("a bottle labelled 'AQUA PURE', don't crop it, it's for Bob's shop", ["AQUA PURE"]),
        ("a sign ‘Bob’s Diner’ over the kids’ ‘FUN’ corner", ["Bob’s Diner", "FUN"]),
        ("a 2'x3' rug reading 'WELCOME'", ["WELCOME"]),
        ('a 12" pizza box labelled "HOT"', ["HOT"]),
        ('a 12" x 18" poster that says "SALE" on a 5\'10" man', ["SALE"]),
        ('a sign reading "SIZE 12" in red', ["SIZE 12"]),
        ('a sign "Joe\'s Diner" with \'OPEN\' below', ["Joe's Diner", "OPEN"]),
        ('mixed marks “AQUA PURE" and „Guten Tag“', ["AQUA PURE", "Guten Tag"]),
        ("guillemets « Bonjour » and «Merci» and ‹Salut›", ["Bonjour", "Merci", "Salut"]),
        ('unbalanced "HOT label', []),
        ('say "hi and then "BYE"', ["BYE"]),
        ("'Tis the season for 'JOY'", ["JOY"]),
        ('empty "" and blank "   " quotes are ignored, "A  B" is collapsed', ["A B"]),
        ('"STRIDE ONE" twice: "stride  one"', ["STRIDE ONE"]),
        ("no quotes here", []),
        ("", []),
        ('a trailing quote"', []),
    ],
)
def test_label_texts(prompt, expected):
    assert label_texts(prompt) == expected


def test_unique_labels_collapses_spacing_and_drops_repeats_and_empties():
    assert unique_labels(["Acme", "ACME ", "Bolt  Co", "", "  "]) == ["Acme", "Bolt Co"]


def test_imaging_labels_is_a_leaf():
    import ast
    from pathlib import Path

    import image_gen.imaging.labels as mod

    tree = ast.parse(Path(mod.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m.startswith("image_gen")}


@pytest.mark.parametrize(
    "prompt",
    [
        "a bottle labelled “AQUA PURE” and ‘Spring Water’",
        "a 2'x3' rug reading 'WELCOME', don't fold it",
        'a 12" pizza box labelled "HOT" and “Fresh”',
    ],
)
def test_simulator_and_qa_expect_the_same_text(prompt):
    from image_gen.providers.sim import quoted_texts
    from image_gen.qa import expected_texts

    assert quoted_texts(prompt) == expected_texts(prompt) == label_texts(prompt) != []
