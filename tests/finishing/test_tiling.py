"""Tile plans cover any canvas exactly; blend weights partition unity; accumulation reconstructs in place."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from image_gen.imaging import tiling
from image_gen.imaging.tiling import (
    ALL_EDGES,
    Edges,
    Tile,
    TileAccumulator,
    TilePlan,
    blend_weights,
    plan_axis,
    plan_tiles,
    to_uint8,
)

SIZES = [1, 7, 63, 64, 65, 100, 127, 128, 129, 200, 255, 256, 257, 300, 480, 511, 512, 513, 777, 1000, 1023,
         1024, 1025, 1500, 2048, 3001]
PLANS = [(64, 8), (128, 16), (100, 0), (512, 32), (96, 47)]


def _coverage(width: int, height: int, tiles: list[Tile]) -> np.ndarray:
    cover = np.zeros((height, width), dtype=np.int32)
    for t in tiles:
        cover[t.rows, t.cols] += 1
    return cover


@pytest.mark.parametrize(("tile_size", "overlap"), PLANS)
def test_axis_plan_covers_exactly_with_minimal_tiles(tile_size: int, overlap: int) -> None:
    for size in SIZES:
        spans = plan_axis(size, tile_size, overlap)
        assert spans[0][0] == 0 and spans[-1][1] == size, (size, spans)
        for a, b in spans:
            assert 0 <= a < b <= size
            assert b - a == min(tile_size, size)
        for (a0, b0), (a1, _b1) in zip(spans, spans[1:], strict=False):
            assert a0 < a1, "tiles advance"
            assert b0 - a1 >= overlap, f"overlap shrank below {overlap} at size {size}: {spans}"
        if len(spans) > 1:
            # One tile fewer could not reach the edge while keeping the overlap: the plan is minimal.
            assert (len(spans) - 2) * (tile_size - overlap) + tile_size < size
        # Evenly spread: strides differ by at most one pixel.
        strides = {a1 - a0 for (a0, _), (a1, _) in zip(spans, spans[1:], strict=False)}
        assert not strides or max(strides) - min(strides) <= 1


@pytest.mark.parametrize(("tile_size", "overlap"), PLANS)
def test_plan_covers_every_pixel_and_stays_inside(tile_size: int, overlap: int) -> None:
    for width, height in [(1, 1), (65, 300), (513, 129), (1000, 777), (257, 1025), (tile_size, tile_size)]:
        tiles = plan_tiles(width, height, tile_size, overlap)
        assert _coverage(width, height, tiles).min() >= 1
        assert all(0 <= t.x0 < t.x1 <= width and 0 <= t.y0 < t.y1 <= height for t in tiles)
        assert len(set(tiles)) == len(tiles)


def test_canvas_smaller_than_tile_gives_one_tile_of_canvas_size() -> None:
    assert plan_tiles(300, 200, 512, 32) == [Tile(0, 0, 300, 200)]
    assert plan_tiles(700, 200, 512, 32) == [Tile(0, 0, 512, 200), Tile(188, 0, 700, 200)]


def test_bad_plan_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        plan_tiles(100, 100, 64, 32)
    with pytest.raises(ValueError, match="overlap"):
        plan_tiles(100, 100, 64, -1)
    with pytest.raises(ValueError, match="canvas side"):
        plan_tiles(0, 100, 64, 8)


@pytest.mark.parametrize("kind", ["linear", "cosine", "gaussian"])
def test_weights_are_positive_and_flat_on_canvas_borders(kind: str) -> None:
    w = blend_weights(96, 64, 16, kind, Edges(left=True, top=False, right=False, bottom=True))
    assert w.shape == (64, 96) and w.dtype == np.float32
    assert (w > 0).all()
    # Interior sides fall off, border sides do not.
    assert w[32, 0] == pytest.approx(w[32, 30], rel=1e-6) if kind != "gaussian" else w[32, 0] >= w[32, 30]
    assert w[32, -1] < w[32, 48]
    assert w[0, 48] < w[32, 48]
    assert w[-1, 48] == pytest.approx(w.max(axis=0)[48], rel=1e-6)
    full = blend_weights(40, 40, 8, kind, ALL_EDGES)
    if kind != "gaussian":
        assert np.all(full == 1.0)
    else:
        assert full.min() > 0.9 * full.max()


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ramps_sum_to_one_across_an_exact_overlap_before_normalising(kind: str) -> None:
    # 9 tiles of 512 stepping 480: every overlap is exactly 32, so raw weights already partition unity.
    width = 8 * 480 + 32
    plan = TilePlan(width, 100, 512, 32)
    total = np.zeros((100, width), dtype=np.float64)
    for t in plan:
        total[t.rows, t.cols] += plan.raw_weights(t, kind)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "cosine", "gaussian"])
@pytest.mark.parametrize(("width", "height", "tile_size", "overlap"),
                         [(1000, 777, 256, 32), (513, 129, 128, 16), (300, 300, 512, 32), (2000, 65, 64, 8)])
def test_normalised_weights_partition_unity(kind: str, width: int, height: int, tile_size: int,
                                            overlap: int) -> None:
    plan = TilePlan(width, height, tile_size, overlap)
    total = np.zeros((height, width), dtype=np.float64)
    seen = []
    for t, w in plan.normalised_weights(kind):
        assert w.shape == (t.height, t.width) and (w > 0).all()
        total[t.rows, t.cols] += w
        seen.append(t)
    assert seen == plan.tiles and len(plan) == len(seen)
    np.testing.assert_allclose(total, 1.0, atol=2e-6)


@pytest.mark.parametrize("layout", ["hwc", "chw", "hw"])
@pytest.mark.parametrize("normalised", [False, True])
def test_accumulating_crops_reconstructs_the_canvas(layout: str, normalised: bool) -> None:
    rng = np.random.default_rng(1)
    height, width = 301, 457
    img = rng.uniform(0, 255, size=(height, width, 3)).astype(np.float32)
    data = {"hwc": img, "chw": np.ascontiguousarray(img.transpose(2, 0, 1)), "hw": img[..., 0].copy()}[layout]
    plan = TilePlan(width, height, 128, 24)
    acc = TileAccumulator(width, height, 3, layout=layout, normalised=normalised)  # type: ignore[arg-type]
    pairs = plan.normalised_weights("cosine") if normalised else ((t, plan.raw_weights(t)) for t in plan)
    for t, w in pairs:
        crop = data[:, t.rows, t.cols] if layout == "chw" else data[t.rows, t.cols]
        acc.add(t, crop, w)
    out = acc.result()
    assert out.dtype == np.float32 and out.shape == data.shape
    assert out is acc.canvas, "the result is the canvas itself, normalised in place"
    np.testing.assert_allclose(out, data, atol=1e-3)


def test_overlapping_tiles_with_different_values_blend_smoothly() -> None:
    plan = TilePlan(200, 10, 128, 32)
    acc = TileAccumulator(200, 10, layout="hw")
    values = [0.0, 100.0]
    for t, v in zip(plan, values, strict=True):
        acc.add(t, np.full((t.height, t.width), v, dtype=np.uint8), plan.raw_weights(t, "cosine"))
    row = acc.result()[5]
    assert row[0] == 0 and row[-1] == 100
    assert np.all(np.diff(row) >= -1e-4), "a monotone transition, no overshoot"
    assert np.max(np.diff(row)) < 100 / 10, "spread over the overlap, not a step"


def test_accumulator_rejects_mismatched_input() -> None:
    acc = TileAccumulator(64, 64)
    t = Tile(0, 0, 32, 32)
    with pytest.raises(ValueError, match="shape"):
        acc.add(t, np.zeros((32, 31, 3)), np.ones((32, 32)))
    with pytest.raises(ValueError, match="weights"):
        acc.add(t, np.zeros((32, 32, 3)), np.ones((32, 31)))
    with pytest.raises(ValueError, match="outside"):
        acc.add(Tile(40, 40, 72, 72), np.zeros((32, 32, 3)), np.ones((32, 32)))
    with pytest.raises(ValueError, match="covered"):
        acc.result()


def test_to_uint8_rounds_and_clips_band_by_band() -> None:
    arr = np.array([[-3.0, 0.4, 0.6, 254.5, 300.0]] * 5, dtype=np.float32)
    out = to_uint8(arr, rows_per_chunk=2)
    assert out.dtype == np.uint8
    assert out[0].tolist() == [0, 0, 1, 254, 255] and (out == out[0]).all()


def test_module_docstring_examples() -> None:
    assert doctest.testmod(tiling).failed == 0


@pytest.mark.parametrize(("width", "height", "tile_size", "overlap"),
                         [(1000, 777, 256, 32), (600, 300, 512, 32), (130, 500, 64, 8), (100, 100, 128, 0)])
def test_core_is_exactly_the_part_no_other_tile_covers(width: int, height: int, tile_size: int,
                                                        overlap: int) -> None:
    plan = TilePlan(width, height, tile_size, overlap)
    cover = _coverage(width, height, plan.tiles)
    for t in plan:
        c = plan.core(t)
        assert t.x0 <= c.x0 and c.x1 <= t.x1 and t.y0 <= c.y0 and c.y1 <= t.y1
        inside = np.zeros_like(cover, dtype=bool)
        inside[c.rows, c.cols] = True
        tile_mask = np.zeros_like(inside)
        tile_mask[t.rows, t.cols] = True
        assert (cover[inside] == 1).all()
        assert (cover[tile_mask & ~inside] > 1).all()


@pytest.mark.parametrize("kind", ["cosine", "gaussian"])
@pytest.mark.parametrize("normalised", [False, True])
def test_copying_the_core_gives_the_same_canvas_as_weighting_it(kind: str, normalised: bool) -> None:
    height, width = 333, 517
    plan = TilePlan(width, height, 128, 16)
    results = []
    for use_core in (False, True):
        acc = TileAccumulator(width, height, 2, normalised=normalised)
        pairs = (plan.normalised_weights(kind) if normalised
                 else ((t, plan.raw_weights(t, kind)) for t in plan))
        for i, (t, w) in enumerate(pairs):
            # Every tile differs (as model tiles do), so a wrong copy region would show.
            tile_rng = np.random.default_rng(i)
            arr = tile_rng.integers(0, 256, size=(t.height, t.width, 2)).astype(np.uint8)
            acc.add(t, arr, w, core=plan.core(t) if use_core else None)
        results.append(acc.result().copy())
    np.testing.assert_allclose(results[1], results[0], atol=1e-3)


def test_interior_tiles_share_one_read_only_weights_array() -> None:
    plan = TilePlan(8 * 480 + 32, 8 * 480 + 32, 512, 32)
    weights = [w for _, w in plan.normalised_weights()]
    assert len({id(w) for w in weights}) == 9, "corner, edge and interior profiles: 3 x 3 distinct arrays"
    assert not weights[0].flags.writeable
