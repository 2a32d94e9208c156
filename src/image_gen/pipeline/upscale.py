"""Tiled upscale: resample, refine tile by tile through a model's image-to-image, blend, harmonise.

A model refines a large image one tile at a time, and each tile comes back with its own small tone drift
(brightness or colour cast). :func:`tiled_upscale` hides it in three steps:

1. each refined tile is re-anchored to the mean colour of its source crop (the drift is mostly a per-tile
   offset),
2. tiles are blended with feathered weights (:mod:`image_gen.imaging.tiling`) into one float32 canvas,
3. :func:`harmonise` gives the blended result the colour and lighting of the untiled, resampled source at
   low frequencies while keeping the model's detail at high frequencies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from image_gen.imaging.tiling import BLEND_KINDS, TileAccumulator, TilePlan, to_uint8

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
