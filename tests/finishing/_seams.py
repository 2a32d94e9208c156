"""Seam measurement for tiled upscales (test and benchmark scaffolding, not shipped).

:func:`seam_visibility` measures what tiling leaves: the mean gradient across the seam lines divided by the mean
gradient elsewhere (1.0: seams cannot be told from the rest of the image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from image_gen.imaging.tiling import Tile

if TYPE_CHECKING:
    from PIL import Image


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
