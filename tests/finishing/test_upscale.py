"""Tiled upscale on real photographs: drifting tiles blend and harmonise without visible seams."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image
from skimage import data

from image_gen.imaging.tiling import Tile, plan_tiles
from image_gen.pipeline.upscale import harmonise, parse_factor, tiled_upscale
from tests.finishing._seams import seam_lines, seam_visibility

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera"]
FACTOR = 2
# A plan whose lines do not all fall on the photos' 8-pixel JPEG block grid (which, on an untiled image,
# already reads as a faint "seam" and would mask what is measured here).
TILE, OVERLAP = 200, 24


def _photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).convert("RGB")


RenderTile = Callable[[Image.Image, int], Image.Image]


def _drifting_model(n_tiles: int, seed: int, offset: float = 12.0) -> RenderTile:
    """A tile-by-tile "model" whose every tile comes back with its own tone offset and contrast."""
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-offset, offset, size=(n_tiles, 3))
    gains = rng.uniform(0.94, 1.06, size=n_tiles)

    def render(tile: Image.Image, index: int) -> Image.Image:
        arr = np.asarray(tile, dtype=np.float32)
        mean = arr.mean(axis=(0, 1))
        out = (arr - mean) * gains[index] + mean + offsets[index]
        return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))

    return render


def _hard_paste(big: Image.Image, tiles: list[Tile], render: RenderTile) -> Image.Image:
    src = np.asarray(big)
    out = src.copy()
    for i, t in enumerate(tiles):
        out[t.rows, t.cols] = np.asarray(render(Image.fromarray(src[t.rows, t.cols]), i))
    return Image.fromarray(out)


def _low_freq_error(a: Image.Image, b: Image.Image, sigma: float = 24.0) -> float:
    import cv2

    fa = cv2.GaussianBlur(np.asarray(a, dtype=np.float32), (0, 0), sigma)
    fb = cv2.GaussianBlur(np.asarray(b, dtype=np.float32), (0, 0), sigma)
    return float(np.abs(fa - fb).mean())


@pytest.mark.parametrize("name", PHOTOS)
def test_blended_and_harmonised_seams_are_invisible_on_photos(name: str) -> None:
    img = _photo(name)
    width, height = img.width * FACTOR, img.height * FACTOR
    tiles = plan_tiles(width, height, TILE, OVERLAP)
    assert len(tiles) >= 6
    render = _drifting_model(len(tiles), seed=sum(map(ord, name)))
    untiled = img.resize((width, height), Image.Resampling.LANCZOS)

    hard = _hard_paste(untiled, tiles, render)
    blended = tiled_upscale(img, FACTOR, tile_size=TILE, overlap=OVERLAP, render_tile=render, harmonise=False)
    result = tiled_upscale(img, FACTOR, tile_size=TILE, overlap=OVERLAP, render_tile=render)

    vis = {k: seam_visibility(v, tiles, period=FACTOR)
           for k, v in {"untiled": untiled, "hard": hard, "blended": blended, "result": result}.items()}
    print(f"{name}: seam visibility " + ", ".join(f"{k} {v:.3f}" for k, v in vis.items()))
    assert vis["result"] <= 1.05
    assert vis["hard"] >= 1.4, "the drift is visible when tiles are pasted hard"
    assert abs(vis["result"] - vis["untiled"]) <= 0.02, "as seamless as an image that was never tiled"
    assert vis["result"] <= vis["blended"] + 0.005

    # Harmonisation gives the result the untiled image's colour and lighting at low frequencies.
    assert _low_freq_error(result, untiled) < 0.25 * _low_freq_error(blended, untiled)
    assert _low_freq_error(result, untiled) < 1.0
    assert result.size == (width, height)


def test_seam_metric_scores_a_hard_step_and_not_a_smooth_image() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(128, 10, size=(240, 240, 3))
    tiles = plan_tiles(240, 240, 128, 16)
    assert seam_lines(tiles) == ([112, 120, 128], [112, 120, 128])
    flat = np.clip(base, 0, 255).astype(np.uint8)
    stepped = base.copy()
    stepped[:, 120:] += 30  # a tone step down the middle of the overlap, both ways
    stepped[120:, :] += 30
    stepped = np.clip(stepped, 0, 255).astype(np.uint8)
    assert seam_visibility(flat, tiles) == pytest.approx(1.0, abs=0.05)
    assert seam_visibility(stepped, tiles) > 1.4
    assert seam_visibility(flat, plan_tiles(240, 240, 512, 32)) == 1.0


def test_without_a_model_the_upscale_is_a_plain_resample() -> None:
    img = _photo("coffee").resize((150, 100))
    out = tiled_upscale(img, 4, tile_size=128, overlap=16, render_tile=None)
    assert out.size == (600, 400)
    assert np.array_equal(np.asarray(out), np.asarray(img.resize((600, 400), Image.Resampling.LANCZOS)))


def test_identity_model_reproduces_the_resample_exactly_through_tiles_and_blend() -> None:
    img = _photo("chelsea").resize((226, 150))
    seen: list[tuple[int, tuple[int, int]]] = []

    def identity(tile: Image.Image, index: int) -> Image.Image:
        seen.append((index, tile.size))
        return tile.copy()

    out = tiled_upscale(img, 2, tile_size=128, overlap=16, render_tile=identity, blend="linear")
    ref = np.asarray(img.resize((452, 300), Image.Resampling.LANCZOS), dtype=np.int16)
    assert np.abs(np.asarray(out, dtype=np.int16) - ref).max() <= 1
    tiles = plan_tiles(452, 300, 128, 16)
    assert seen == [(i, (t.width, t.height)) for i, t in enumerate(tiles)]


def test_alpha_is_resampled_and_kept() -> None:
    img = _photo("astronaut").resize((96, 64)).convert("RGBA")
    img.putalpha(Image.linear_gradient("L").resize((96, 64)))
    out = tiled_upscale(img, 2, tile_size=64, overlap=8, render_tile=lambda t, i: t)
    assert out.mode == "RGBA" and out.size == (192, 128)
    assert np.asarray(out.getchannel("A"))[0].max() < 10 and np.asarray(out.getchannel("A"))[-1].min() > 240


def test_a_tile_of_the_wrong_size_is_refused() -> None:
    img = _photo("rocket").resize((100, 100))
    with pytest.raises(ValueError, match="tile 0"):
        tiled_upscale(img, 2, tile_size=128, overlap=16, render_tile=lambda t, i: t.resize((64, 64)))
    with pytest.raises(ValueError, match="blend"):
        tiled_upscale(img, 2, render_tile=None, blend="box")


def test_harmonise_takes_low_frequencies_from_source_and_detail_from_result() -> None:
    src = _photo("coffee")
    arr = np.asarray(src, dtype=np.float32)
    # The "result": sharper detail and a warm colour cast that fades across the image.
    import cv2

    detail = arr - cv2.GaussianBlur(arr, (0, 0), 2.0)
    cast = np.linspace(0, 30, src.width, dtype=np.float32)[None, :, None] * np.array([1.0, 0.3, -0.6])
    result = Image.fromarray(np.clip(arr + 0.8 * detail + cast, 0, 255).astype(np.uint8))
    out = harmonise(result, src, sigma=8)
    assert _low_freq_error(out, src) < 0.15 * _low_freq_error(result, src)
    # The added detail survives: high frequencies still follow the result, not the source.
    hp = {k: np.asarray(v, dtype=np.float32) - cv2.GaussianBlur(np.asarray(v, dtype=np.float32), (0, 0), 1.0)
          for k, v in {"out": out, "result": result, "src": src}.items()}
    assert np.abs(hp["out"] - hp["result"]).mean() < 0.5 * np.abs(hp["out"] - hp["src"]).mean()
    # A small source is resized to the result first.
    small = harmonise(result, src.resize((300, 200)))
    assert small.size == result.size


def test_parse_factor() -> None:
    assert parse_factor("2x") == 2 and parse_factor("4X") == 4 and parse_factor(3) == 3
    for bad in ("x", "0x", 0, -2, "two"):
        with pytest.raises(ValueError, match="factor"):
            parse_factor(bad)  # type: ignore[arg-type]
