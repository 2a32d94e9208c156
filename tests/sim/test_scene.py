"""The simulator draws the product, colours and surface a brief names (measured from pixels)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from image_gen.providers._sim_scene import parse_scene
from image_gen.providers.sim import quoted_texts

from ._measure import bbox, body_colour, example_briefs, foreground

EXPECTED_KINDS = ["bottle", "bag", "dropper", "can", "shoebox", "tin", "box", "can", "bar", "tube"]


def test_each_example_brief_names_its_own_product() -> None:
    briefs = example_briefs()
    assert len(briefs) == 10
    specs = [parse_scene(b, quoted_texts(b)) for b in briefs]
    assert [s.product for s in specs] == EXPECTED_KINDS
    assert [s.surface for s in specs] == ["studio", "wood", "studio", "ice", "concrete", "studio", "wood",
                                          "studio", "studio", "sand"]
    assert "citrus" in specs[7].props and "ice" in specs[3].props


@pytest.fixture(scope="module")
def silhouettes() -> list[np.ndarray]:
    return [foreground(b)[1] for b in example_briefs()]


def test_silhouettes_differ_between_product_kinds(silhouettes: list[np.ndarray]) -> None:
    for (i, a), (j, b) in itertools.combinations(enumerate(silhouettes), 2):
        if EXPECTED_KINDS[i] == EXPECTED_KINDS[j]:
            continue
        iou = (a & b).sum() / (a | b).sum()
        assert iou < 0.8, (EXPECTED_KINDS[i], EXPECTED_KINDS[j], iou)


def test_silhouette_proportions_fit_the_product(silhouettes: list[np.ndarray]) -> None:
    ratio = {}
    for kind, mask in zip(EXPECTED_KINDS, silhouettes, strict=True):
        x0, y0, x1, y1 = bbox(mask)
        ratio[kind] = (y1 - y0) / (x1 - x0)  # height over width
    assert ratio["bar"] < 0.6 and ratio["shoebox"] < 0.8  # lying flat, wide
    assert ratio["bottle"] > 2.0 and ratio["tube"] > 1.5 and ratio["can"] > 1.4
    assert ratio["box"] > ratio["shoebox"] + 0.5 and ratio["tin"] > 1.0
    assert ratio["bottle"] > ratio["can"] + 0.15


def test_two_cans_differ_by_colour_and_setting() -> None:
    briefs = example_briefs()
    beer, fizz = briefs[3], briefs[7]
    a, b = foreground(beer)[0], foreground(fizz)[0]
    assert np.linalg.norm(body_colour(beer, a) - body_colour(fizz, b)) > 60
    diff = np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean()
    assert diff > 20


@pytest.mark.parametrize(
    ("prompt", "check"),
    [
        ('Matte black coffee bag on a wooden counter, label reads "NIGHT OWL ROAST"',
         lambda c: c.max() < 60),
        ('Minimal white sneaker box on concrete, lid printed "STRIDE ONE"', lambda c: c.min() > 170),
        ('Amber glass serum bottle, soft window light, label "GLOW SERUM"',
         lambda c: c[0] > c[1] + 25 and c[1] > c[2] + 15),
        ('Stainless steel water bottle, label "AQUA PURE"', lambda c: c.max() - c.min() < 25 and c.mean() > 90),
        ('A red bottle on marble, label "RED ONE"', lambda c: c[0] > c[1] + 60 and c[0] > c[2] + 60),
        ('Blue can on a concrete floor, label "BLUE"', lambda c: c[2] > c[0] + 50),
        ('Gold tin of tea on a wooden table, label "TEA"', lambda c: c[0] > c[2] + 50 and c[1] > c[2] + 30),
        ('Green glass jar of pickles, label "PICKLES"', lambda c: c[1] > c[0] + 20 and c[1] > c[2] + 10),
        ('Dark chocolate bar wrapper, label "CACAO 72"', lambda c: c.max() < 90 and c[0] > c[2]),
    ],
)
def test_colour_words_are_honoured(prompt: str, check: object) -> None:
    img, _ = foreground(prompt)
    colour = body_colour(prompt, img)
    assert check(colour), (prompt, colour)  # type: ignore[operator]


def test_colour_of_the_surface_is_not_the_products() -> None:
    spec = parse_scene('Bottle on white marble, label "X"', ["X"])
    assert spec.surface == "marble" and "white" not in spec.colour_words


def test_unknown_product_falls_back_to_a_package() -> None:
    spec = parse_scene('Hero shot of the new gadget, label "ZAP"', ["ZAP"])
    assert spec.product == "package"
    img, mask = foreground('Hero shot of the new gadget, label "ZAP"')
    assert mask.mean() > 0.05
