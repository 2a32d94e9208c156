"""Tiled upscale: resample, refine tile by tile through a model's image-to-image, blend, harmonise.

A model refines a large image one tile at a time, and each tile comes back with its own small tone drift
(brightness or colour cast). :func:`tiled_upscale` hides it in three steps:

1. each refined tile is re-anchored to the mean colour of its source crop (the drift is mostly a per-tile
   offset),
2. tiles are blended with feathered weights (:mod:`image_gen.pipeline.tiling`) into one float32 canvas,
3. :func:`harmonise` gives the blended result the colour and lighting of the untiled, resampled source at
   low frequencies while keeping the model's detail at high frequencies.

:func:`seam_visibility` measures what is left: the mean gradient across the seam lines divided by the mean
gradient elsewhere (1.0: seams cannot be told from the rest of the image).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from image_gen.pipeline.tiling import BLEND_KINDS, Tile, TileAccumulator, TilePlan, to_uint8

if TYPE_CHECKING:
    from PIL import Image

RenderTile = Callable[["Image.Image", int], "Image.Image"]
"""``render_tile(tile_image, tile_index) -> same-size image``: a model's image-to-image on one tile."""

FACTORS = {"2x": 2, "4x": 4}


def parse_factor(value: str | int) -> int:
    """``"2x"``/``"4x"`` (a stage's ``upscale``) or an int to an integer factor of at least 1."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in FACTORS:
            return FACTORS[text]
        try:
            value = int(text.removesuffix("x"))
        except ValueError:
            raise ValueError(f"upscale factor must be like '2x' or '4x', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"upscale factor must be an integer of at least 1, got {value!r}")
    return value


def default_sigma(overlap: int, factor: int = 1) -> float:
    """The harmonisation scale: half the tile overlap (tone drift changes across an overlap), at least 2 px
    per unit of upscale factor (finer than that is the model's detail, not lighting)."""
    return float(max(overlap / 2, 2 * factor, 2))


def _low_pass(channel: npt.NDArray[np.float32], sigma: float) -> npt.NDArray[np.float32]:
    import cv2

    out = cv2.GaussianBlur(channel, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return np.asarray(out, dtype=np.float32)


def _rgb_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def harmonise_array(result: npt.NDArray[np.uint8], source: npt.NDArray[np.uint8], *,
                    sigma: float) -> npt.NDArray[np.uint8]:
    """Array form of :func:`harmonise`, one channel at a time so at most two float32 planes are alive."""
    if result.shape != source.shape:
        raise ValueError(f"result {result.shape} and source {source.shape} differ in shape")
    out = np.empty_like(result)
    for c in range(result.shape[2]):
        res_c = result[..., c].astype(np.float32)
        diff = source[..., c].astype(np.float32)
        np.subtract(diff, res_c, out=diff)
        diff = _low_pass(diff, sigma)
        np.add(res_c, diff, out=res_c)
        out[..., c] = to_uint8(res_c)
    return out


def harmonise(result: Image.Image, source: Image.Image, *, sigma: float | None = None) -> Image.Image:
    """Give ``result`` the colour and lighting of ``source`` at low frequencies, keeping its own detail.

    ``out = result + G_sigma * (source - result)``: below the scale ``sigma`` (pixels, a Gaussian's standard
    deviation; default 16) the output follows the source, above it the result. ``source`` is resized to the
    result's size first (Lanczos) if the two differ, so it may be the small untiled image.
    """
    from PIL import Image as PILImage

    if source.size != result.size:
        source = source.convert("RGB").resize(result.size, PILImage.Resampling.LANCZOS)
    arr = harmonise_array(_rgb_array(result), _rgb_array(source), sigma=16.0 if sigma is None else sigma)
    return PILImage.fromarray(arr, "RGB")


def tiled_upscale(image: Image.Image, factor: int, *, tile_size: int = 512, overlap: int = 32,
                  render_tile: RenderTile | None, blend: str = "cosine", harmonise: bool = True,
                  sigma: float | None = None) -> Image.Image:
    """Upscale ``image`` by ``factor``: resample (Lanczos), refine tile by tile, blend, harmonise.

    ``render_tile(tile_image, tile_index)`` sends one tile of the resampled image through the model's
    image-to-image and returns an image of the same size; tiles come in :func:`plan_tiles` order (row by row).
    ``None`` only resamples. ``blend`` is ``cosine``, ``linear`` or ``gaussian``. With ``harmonise`` (the
    default) each refined tile is re-anchored to its source crop's mean colour, and the blended result gets
    the resampled source's low frequencies (:func:`harmonise`, scale ``sigma``, default
    :func:`default_sigma`). An alpha channel is resampled, never refined. Memory: the float32 canvas and
    one tile at a time.
    """
    from PIL import Image as PILImage

    factor = parse_factor(factor)
    if blend not in BLEND_KINDS:
        raise ValueError(f"unknown blend {blend!r}; expected one of {', '.join(BLEND_KINDS)}")
    width, height = image.size[0] * factor, image.size[1] * factor
    alpha = image.getchannel("A") if "A" in image.getbands() else None
    big = image.convert("RGB").resize((width, height), PILImage.Resampling.LANCZOS)
    out: Image.Image
    if render_tile is None:
        out = big
    else:
        source = _rgb_array(big)
        del big  # the array is the copy that is used from here on
        plan = TilePlan(width, height, tile_size, overlap)
        acc = TileAccumulator(width, height, 3, normalised=True)
        for index, (tile, weights) in enumerate(plan.normalised_weights(blend)):
            crop = source[tile.rows, tile.cols]
            refined = render_tile(PILImage.fromarray(crop, "RGB"), index)
            if refined.size != (tile.width, tile.height):
                raise ValueError(f"render_tile returned {refined.size[0]}x{refined.size[1]} for tile {index} "
                                 f"of {tile.width}x{tile.height}; it must return the tile's size")
            arr = _rgb_array(refined)
            if harmonise:
                # Re-anchor the tile's tone to its source crop: a tile's drift is mostly a uniform offset.
                shift = crop.mean(axis=(0, 1), dtype=np.float64) - arr.mean(axis=(0, 1), dtype=np.float64)
                acc.add(tile, arr + shift.astype(np.float32), weights, core=plan.core(tile))
            else:
                acc.add(tile, arr, weights, core=plan.core(tile))
        blended = to_uint8(acc.result())
        del acc
        if harmonise:
            blended = harmonise_array(blended, source,
                                      sigma=default_sigma(overlap, factor) if sigma is None else sigma)
        out = PILImage.fromarray(blended, "RGB")
    if alpha is not None:
        out.putalpha(alpha.resize((width, height), PILImage.Resampling.LANCZOS))
    return out


def _overlap_zones(spans: set[tuple[int, int]]) -> list[tuple[int, int]]:
    ordered = sorted(spans)
    return [(a1, b0) for (_, b0), (a1, _) in zip(ordered, ordered[1:], strict=False) if a1 < b0]


def seam_lines(tiles: Sequence[Tile]) -> tuple[list[int], list[int]]:
    """Columns and rows where seams can show: every tile edge inside the canvas and every overlap's middle.

    A hard paste shows its step at a tile edge, a cut down the overlap at its middle, a blend across it.
    """
    width = max(t.x1 for t in tiles)
    height = max(t.y1 for t in tiles)

    def lines(spans: set[tuple[int, int]], size: int) -> list[int]:
        found = {a for a, _ in spans if a > 0} | {b for _, b in spans if b < size}
        found |= {(a + b) // 2 for a, b in _overlap_zones(spans)}
        return sorted(found)

    return (lines({(t.x0, t.x1) for t in tiles}, width), lines({(t.y0, t.y1) for t in tiles}, height))


def seam_visibility(image: Image.Image | npt.NDArray[np.generic], tiles: Sequence[Tile], *,
                    band: int | None = 32, period: int = 1) -> float:
    """Mean gradient across the seam lines divided by the mean gradient elsewhere.

    The gradient across column ``x`` is ``|I[:, x] - I[:, x-1]|`` (averaged over channels), across row ``y``
    likewise; seam lines are :func:`seam_lines`. "Elsewhere" is every line parallel to the seams outside the
    tiles' overlaps (where a blend spreads a tone step), and with ``band`` at most that many pixels from an
    overlap: a seam is compared with the content around it, since a photo's texture is uneven and a handful
    of seam lines crossing a busy region would otherwise read as a seam (``None``: the whole image).
    ``period`` compares each line with reference lines of the same phase modulo ``period``: an image
    resampled by an integer factor has pixel pairs that differ by phase, so pass the factor for upscales.
    1.0 means the seams are as busy as their surroundings; a tone step between tiles scores well above 1.
    Returns 1.0 when there is no seam.
    """
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    height, width = arr.shape[:2]
    if max(t.x1 for t in tiles) != width or max(t.y1 for t in tiles) != height:
        raise ValueError(f"tiles do not match the {width}x{height} image")
    cols, rows = seam_lines(tiles)
    if not cols and not rows:
        return 1.0
    # grad[k] is the mean gradient across line k+1 (between pixels k and k+1), times the line's length.
    gx = np.abs(np.diff(arr, axis=1)).mean(axis=(0, 2)) * height
    gy = np.abs(np.diff(arr, axis=0)).mean(axis=(1, 2)) * width

    def masks(lines: list[int], spans: set[tuple[int, int]], n: int) -> tuple[npt.NDArray[np.bool_], ...]:
        seam = np.zeros(n, dtype=bool)
        seam[[p - 1 for p in lines]] = True
        in_zone = np.zeros(n, dtype=bool)
        near = np.zeros(n, dtype=bool) if band is not None else np.ones(n, dtype=bool)
        for a, b in _overlap_zones(spans):
            in_zone[max(0, a - 1):b] = True  # lines a..b, i.e. diff indices a-1..b-1
            if band is not None:
                near[max(0, a - 1 - band):b + band] = True
        return seam, near & ~in_zone & ~seam

    col_seam, col_ref = masks(cols, {(t.x0, t.x1) for t in tiles}, width - 1)
    row_seam, row_ref = masks(rows, {(t.y0, t.y1) for t in tiles}, height - 1)
    seam_total = seam_count = expected = 0.0
    for grad, seam, ref, length in ((gx, col_seam, col_ref, height), (gy, row_seam, row_ref, width)):
        phase = np.arange(grad.size) % period
        for r in range(period):
            s_mask, r_mask = seam & (phase == r), ref & (phase == r)
            if not s_mask.any():
                continue
            if not r_mask.any():
                r_mask = ref
            if not r_mask.any():
                continue
            seam_total += float(grad[s_mask].sum())
            seam_count += float(s_mask.sum()) * length
            expected += float(grad[r_mask].sum()) / float(r_mask.sum()) * float(s_mask.sum())
    if seam_count == 0:
        return 1.0
    if expected == 0:
        return 1.0 if seam_total == 0 else float("inf")
    return float(seam_total / expected)
