"""color-match and typography-preserve on real pixels: photographs, and labels a finisher garbled."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from skimage import data

from image_gen.pipeline.adapters import AdapterContext, get_adapter
from image_gen.pipeline.finishing import color_match, find_label_regions, typography_preserve
from image_gen.qa.ocr import OcrLine
from image_gen.qa.text import best_match, read_for_qa

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def _ctx(**kw: object) -> AdapterContext:
    base: dict[str, object] = {"prompt": "", "expected_texts": [], "stage_name": "final"}
    base.update(kw)
    return AdapterContext(**base)  # type: ignore[arg-type]


# -- color-match ---------------------------------------------------------------------------------------------
def _quantile_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over channels of the mean absolute difference between the two images' value quantiles."""
    qs = np.linspace(0, 100, 101)
    return float(np.mean([np.abs(np.percentile(a[..., c], qs) - np.percentile(b[..., c], qs)).mean()
                          for c in range(3)]))


def test_color_match_moves_the_colour_distribution_onto_the_reference_and_keeps_the_picture() -> None:
    ref = Image.fromarray(data.coffee())
    arr = np.asarray(ref, dtype=np.float32) / 255.0
    # A finisher's drift: a cast, lifted blacks, a gamma change (nothing clipped, so nothing is lost).
    cast = (arr ** 0.85) * np.array([0.95, 0.92, 0.82]) + 0.04
    finished = Image.fromarray((cast * 255).round().astype(np.uint8))

    res = color_match(finished, _ctx(previous_image=ref))
    out = np.asarray(res.image)
    before = _quantile_distance(np.asarray(finished), np.asarray(ref))
    after = _quantile_distance(out, np.asarray(ref))
    assert before > 10 and after < 1.5, (before, after)
    assert res.record["reference"] == "previous_image"
    assert np.allclose(res.record["mean_rgb_after"], res.record["mean_rgb_reference"], atol=1.5)
    # Per channel the mapping is monotone: the picture (its ordering of values) is kept.
    for c in range(3):
        src_c, out_c = np.asarray(finished)[..., c].ravel(), out[..., c].ravel()
        order = np.argsort(src_c, kind="stable")
        assert (np.diff(out_c[order].astype(int)) >= 0).all()


def test_color_match_against_another_picture_size_and_partial_strength() -> None:
    finished = Image.fromarray(data.chelsea())
    ref = Image.fromarray(data.astronaut()).resize((200, 200))
    full = np.asarray(color_match(finished, _ctx(options={"reference": ref})).image, dtype=np.float32)
    half = color_match(finished, _ctx(previous_image=finished, options={"reference": ref, "strength": 0.5}))
    assert half.record["reference"] == "options"
    expected = (np.asarray(finished, dtype=np.float32) + full) / 2
    assert np.abs(np.asarray(half.image, dtype=np.float32) - expected).max() <= 1.0
    with pytest.raises(ValueError, match="strength"):
        color_match(finished, _ctx(options={"reference": ref, "strength": 2}))


def test_color_match_without_a_reference_leaves_the_image_alone() -> None:
    img = Image.fromarray(data.rocket())
    res = color_match(img, _ctx())
    assert res.image is img and "skipped" in res.record


def test_adapters_are_found_by_their_registered_names() -> None:
    assert get_adapter("color-match") is color_match
    assert get_adapter("typography-preserve") is typography_preserve


# -- typography-preserve: label regions ----------------------------------------------------------------------
def test_label_regions_are_lines_that_read_as_an_expected_label_or_a_piece_of_one() -> None:
    lines = [OcrLine("AQUA PURE", (10, 10, 200, 40), 0.99), OcrLine("500ml", (10, 50, 80, 70), 0.95),
             OcrLine("NORDIC", (10, 80, 120, 100), 0.97), OcrLine("www.shop.example", (0, 0, 5, 5), 0.9),
             OcrLine("AQUA PUEE", (300, 10, 490, 40), 0.9)]
    regions = find_label_regions(lines, ["Aqua Pure", "NORDIC BREW 500 ml"])
    got = {(r.text, r.expected) for r in regions}
    assert ("AQUA PURE", "Aqua Pure") in got
    assert ("500ml", "NORDIC BREW 500 ml") in got and ("NORDIC", "NORDIC BREW 500 ml") in got
    assert all(r.text != "www.shop.example" for r in regions)
    # One wrong letter in nine still reads as the label (0.89 >= 0.8); the default keeps it.
    assert ("AQUA PUEE", "Aqua Pure") in got
    assert find_label_regions(lines, ["Aqua Pure"], min_match=0.95) != regions


# -- typography-preserve on rendered and garbled labels ------------------------------------------------------
@dataclass
class Case:
    labels: list[str]
    layout: Image.Image
    finished: Image.Image


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(n))


def _label_text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        return _word(rng, rng.randint(4, 8))
    if kind < 0.8:
        return f"{_word(rng, rng.randint(3, 5))} {_word(rng, rng.randint(3, 6))}"
    return f"{_word(rng, rng.randint(3, 6))} {rng.randint(10, 999)}"


@dataclass
class Drawn:
    image: Image.Image
    ys: list[int]
    size: int
    ink: tuple[int, int, int]
    paper: tuple[int, int, int]


def _layout(rng: random.Random, labels: list[str], w: int = 640, h: int = 480) -> Drawn:
    """A product shot as the simulator draws it: backdrop, box, label, text in Pillow's default font."""
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    c0 = np.array([rng.randint(20, 120) for _ in range(3)])
    c1 = np.array([rng.randint(80, 200) for _ in range(3)])
    img = Image.fromarray((c0 + (c1 - c0) * (0.6 * x + 0.4 * y)).astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((90, 40, w - 90, h - 30), 24, fill=tuple(rng.randint(60, 160) for _ in range(3)))
    paper = (rng.randint(215, 250), rng.randint(215, 250), rng.randint(215, 250))
    ink = rng.choice([(20, 25, 40), (130, 20, 30), (20, 50, 130), (15, 80, 35)])
    d.rectangle((115, 80, w - 115, h - 70), fill=paper)
    size = rng.randint(30, 38)
    font = ImageFont.load_default(size=size)
    ys = []
    y0 = 110
    for t in labels:
        tw = d.textlength(t, font=font)
        d.text((w / 2 - tw / 2, y0), t, font=font, fill=ink)
        ys.append(y0)
        y0 += int(size * 2.6)
    return Drawn(img, ys, size, ink, paper)


def _garble(rng: random.Random, drawn: Drawn, labels: list[str], factor: int = 2) -> Image.Image:
    """What a photoreal finisher does to a label: re-renders it with wrong letters, smudges it, adds grain,
    and shifts the whole picture's tone, at the upscaled size."""
    layout = drawn.image
    w, h = layout.width * factor, layout.height * factor
    big = layout.resize((w, h), Image.Resampling.LANCZOS)
    d = ImageDraw.Draw(big)
    size = drawn.size * factor
    font = ImageFont.load_default(size=size)
    for t, y in zip(labels, drawn.ys, strict=True):
        bad = list(t)
        letters = [i for i, c in enumerate(bad) if c.isalpha()]
        for i in rng.sample(letters, k=min(len(letters), rng.randint(1, 3))):
            bad[i] = rng.choice([c for c in LETTERS if c != bad[i]])
        text = "".join(bad)
        tw = d.textlength(text, font=font)
        d.rectangle((w / 2 - tw / 2 - 12, y * factor - 6, w / 2 + tw / 2 + 12, y * factor + size * 1.25),
                    fill=drawn.paper)
        d.text((w / 2 - tw / 2 + rng.randint(-6, 6), y * factor + rng.randint(-4, 4)), text, font=font,
               fill=drawn.ink)
    big = big.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 3.0)))
    out = np.asarray(big, dtype=np.float32)
    out += np.random.default_rng(rng.randrange(2**32)).normal(0, rng.uniform(2, 6), out.shape)
    out = out * np.array([rng.uniform(0.95, 1.08) for _ in range(3)]) + rng.uniform(-8, 8)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def garbled_cases() -> list[Case]:
    rng = random.Random(20261126)
    cases = []
    for _ in range(11):
        labels = [_label_text(rng) for _ in range(3)]
        drawn = _layout(rng, labels)
        cases.append(Case(labels, drawn.image, _garble(rng, drawn, labels)))
    return cases


def _label_similarity(image: Image.Image, labels: list[str]) -> list[float]:
    read = " ".join(line.text for line in read_for_qa(image))
    return [best_match(label, read).similarity for label in labels]


def test_typography_preserve_restores_garbled_labels(garbled_cases: list[Case]) -> None:
    n_labels = sum(len(c.labels) for c in garbled_cases)
    assert n_labels >= 30
    garbled_sims: list[float] = []
    restored_sims: list[float] = []
    restored_regions = 0
    for case in garbled_cases:
        ctx = _ctx(expected_texts=case.labels, layout_image=case.layout, previous_image=case.layout,
                   options={"verify": False})
        res = typography_preserve(case.finished, ctx)
        assert res.image.size == case.finished.size
        restored_regions += len(res.record["restored"])
        for region in res.record["regions"]:
            assert region["action"] in ("restored", "kept")
            assert region["expected"] in case.labels
        # The layout stage got every label right: each one is found in its image.
        assert {r["expected"] for r in res.record["regions"]} == set(case.labels)
        garbled_sims += _label_similarity(case.finished, case.labels)
        restored_sims += _label_similarity(res.image, case.labels)
    mean = {k: float(np.mean(v)) for k, v in
            {"garbled": garbled_sims, "restored": restored_sims}.items()}
    exact = sum(s == 1.0 for s in restored_sims)
    print(f"typography-preserve on {n_labels} labels: mean OCR similarity "
          f"garbled {mean['garbled']:.3f}, restored {mean['restored']:.3f} (min {min(restored_sims):.3f}, "
          f"{exact}/{n_labels} exact); {restored_regions} regions restored")
    assert mean["garbled"] <= 0.85, "the finisher really garbled them"
    assert mean["restored"] >= 0.95
    assert restored_regions >= n_labels * 0.8


def test_restored_region_is_recorded_and_blends_into_the_finished_tone(garbled_cases: list[Case]) -> None:
    case = garbled_cases[0]
    res = typography_preserve(case.finished, _ctx(expected_texts=case.labels, layout_image=case.layout))
    regions = res.record["regions"]
    assert res.record["restored"] and all(r["action"] == "restored" for r in regions)
    for r in regions:
        assert r["similarity_after"] > r["similarity_before"]
        x0, y0, x1, y1 = r["box"]
        lx0, ly0, lx1, ly1 = r["layout_box"]
        assert x0 <= 2 * lx0 and x1 >= 2 * lx1 and y0 <= 2 * ly0 and y1 >= 2 * ly1, "scaled and padded"
    fin = np.asarray(case.finished, dtype=np.float32)
    out = np.asarray(res.image, dtype=np.float32)
    # Outside the restored boxes nothing changed.
    mask = np.zeros(fin.shape[:2], dtype=bool)
    for r in regions:
        x0, y0, x1, y1 = r["box"]
        mask[y0:y1, x0:x1] = True
    assert np.array_equal(out[~mask], fin[~mask])
    # The patch takes the finished image's tone (the finisher's colour shift is kept), and its border is
    # feathered into the surroundings: no step along the box edge.
    x0, y0, x1, y1 = regions[0]["box"]
    assert np.abs(out[y0:y1, x0:x1].mean(axis=(0, 1)) - fin[y0:y1, x0:x1].mean(axis=(0, 1))).max() < 4
    edge_step = np.abs(out[y0 + 5:y1 - 5, x0] - out[y0 + 5:y1 - 5, x0 - 1]).mean()
    natural = np.abs(fin[y0 + 5:y1 - 5, x0] - fin[y0 + 5:y1 - 5, x0 - 1]).mean()
    assert edge_step < natural + 3


def test_regions_that_already_read_correctly_are_kept() -> None:
    rng = random.Random(5)
    labels = ["NORDIC BREW", "KAFFE 500"]
    layout = _layout(rng, labels).image
    finished = layout.resize((1280, 960), Image.Resampling.LANCZOS)
    res = typography_preserve(finished, _ctx(expected_texts=labels, layout_image=layout))
    assert res.record["regions"] and not res.record["restored"]
    assert {r["action"] for r in res.record["regions"]} == {"kept"}
    assert np.array_equal(np.asarray(res.image), np.asarray(finished))


def test_without_a_layout_image_or_labels_nothing_happens() -> None:
    img = Image.new("RGB", (64, 64), "white")
    res = typography_preserve(img, _ctx(expected_texts=["X"]))
    assert res.image is img and res.record["restored"] == [] and "skipped" in res.record
    res = typography_preserve(img, _ctx(expected_texts=["HELLO"], layout_image=img))
    assert res.image is img and res.record["regions"] == []
