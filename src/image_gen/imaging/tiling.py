"""Tile planning and blending for any 2-D canvas: pixel tiles of an image or latent tiles of a tensor.

Numpy only, so the same plan serves the pixel upscaler (arrays ``(H, W, C)``) and latent tiling in a local
engine (arrays ``(C, H, W)``, e.g. MultiDiffusion-style denoising).

- :func:`plan_tiles` covers a ``width x height`` canvas exactly with tiles of at most ``tile_size`` and at
  least ``overlap`` pixels of overlap. Tiles are spread evenly, the first starts at 0 and the last ends at the
  canvas edge, so no tile pads off the canvas; a side smaller than ``tile_size`` gives one tile of its size.
- :func:`blend_weights` gives one tile's feathering weights: ``linear`` or ``cosine`` ramps ``overlap`` wide
  on the sides that face another tile (flat on the sides that lie on the canvas border, so weights never fall
  to zero there), or a separable ``gaussian`` centred on the tile.
- :class:`TilePlan` holds a plan and hands out *normalised* weights: because a plan is a grid and the weights
  are separable, the weight sum is separable too, so each tile's weights are divided by it up front and the
  weights of all tiles add to exactly 1 at every pixel. Accumulating with them needs no weight-sum canvas and
  no final division: memory is the canvas alone.
- :class:`TileAccumulator` adds weighted tiles into one float32 canvas in place. With arbitrary weights it
  keeps a one-channel weight sum and divides by it (in place) in :meth:`TileAccumulator.result`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

BlendKind = Literal["linear", "cosine", "gaussian"]
BLEND_KINDS: tuple[str, ...] = ("linear", "cosine", "gaussian")
Layout = Literal["hwc", "chw", "hw"]

GAUSSIAN_SIGMA = 0.3
"""Standard deviation of the ``gaussian`` blend, as a fraction of the tile side."""


class Tile(NamedTuple):
    """A tile's box on the canvas: columns ``x0:x1``, rows ``y0:y1`` (end exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(left, upper, right, lower)``, as ``PIL.Image.crop`` takes it."""
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def rows(self) -> slice:
        return slice(self.y0, self.y1)

    @property
    def cols(self) -> slice:
        return slice(self.x0, self.x1)


class Edges(NamedTuple):
    """Which sides of a tile lie on the canvas border (those sides are not feathered)."""

    left: bool = False
    top: bool = False
    right: bool = False
    bottom: bool = False

    @classmethod
    def of(cls, tile: Tile, width: int, height: int) -> Edges:
        return cls(tile.x0 == 0, tile.y0 == 0, tile.x1 == width, tile.y1 == height)


NO_EDGES = Edges()
ALL_EDGES = Edges(True, True, True, True)


def _check_plan_args(tile_size: int, overlap: int) -> None:
    if tile_size < 1:
        raise ValueError(f"tile_size must be at least 1, got {tile_size}")
    if overlap < 0 or 2 * overlap >= tile_size:
        raise ValueError(
            f"overlap must be at least 0 and less than half of tile_size ({tile_size}), got {overlap}")


def plan_axis(size: int, tile_size: int, overlap: int) -> list[tuple[int, int]]:
    """Start and end of each tile along one axis of ``size`` pixels.

    The fewest tiles that keep at least ``overlap`` pixels between neighbours, spread evenly: consecutive
    starts differ by at most ``tile_size - overlap``; the first starts at 0, the last ends at ``size``.
    """
    if size < 1:
        raise ValueError(f"canvas side must be at least 1 pixel, got {size}")
    _check_plan_args(tile_size, overlap)
    if size <= tile_size:
        return [(0, size)]
    stride = tile_size - overlap
    n = math.ceil((size - overlap) / stride)
    span = size - tile_size
    # round(i * span / (n-1)) steps by at most ceil(span / (n-1)) <= stride, so overlaps never shrink.
    starts = [(i * span * 2 + (n - 1)) // (2 * (n - 1)) for i in range(n)]
    return [(s, s + tile_size) for s in starts]


def plan_tiles(width: int, height: int, tile_size: int, overlap: int) -> list[Tile]:
    """Tiles covering a ``width x height`` canvas exactly, row by row (top row first, left to right).

    Every tile is ``tile_size`` square except along a side shorter than ``tile_size``, where the tile takes
    the side's length. Neighbours overlap by at least ``overlap`` pixels; no tile reaches outside the canvas.
    """
    xs = plan_axis(width, tile_size, overlap)
    ys = plan_axis(height, tile_size, overlap)
    return [Tile(x0, y0, x1, y1) for (y0, y1) in ys for (x0, x1) in xs]


def _ramp(length: int, kind: str) -> npt.NDArray[np.float32]:
    """Rising feather of ``length`` pixels, sampled at pixel centres: ``r[i] + r[length-1-i] == 1``."""
    t = (np.arange(length, dtype=np.float64) + 0.5) / length
    r = t if kind == "linear" else 0.5 - 0.5 * np.cos(np.pi * t)
    return r.astype(np.float32)


def axis_profile(length: int, overlap: int, kind: str = "cosine", *, start_edge: bool = False,
                 end_edge: bool = False) -> npt.NDArray[np.float32]:
    """One-dimensional blend weights of a tile side: 1 in the middle, feathered towards non-edge ends.

    ``start_edge``/``end_edge`` say that end lies on the canvas border; it is then left flat (weight 1 for the
    ramps, the gaussian's peak value for ``gaussian``) so weights never fall towards zero at the border.
    Every value is strictly positive.
    """
    if kind not in BLEND_KINDS:
        raise ValueError(f"unknown blend kind {kind!r}; expected one of {', '.join(BLEND_KINDS)}")
    if length < 1:
        raise ValueError(f"tile side must be at least 1 pixel, got {length}")
    if kind == "gaussian":
        centre = (length - 1) / 2
        d = np.arange(length, dtype=np.float64) - centre
        if start_edge:
            d[d < 0] = 0.0
        if end_edge:
            d[d > 0] = 0.0
        sigma = max(GAUSSIAN_SIGMA * length, 1e-6)
        return np.exp(-0.5 * (d / sigma) ** 2).astype(np.float32)
    prof = np.ones(length, dtype=np.float32)
    ramp_len = min(overlap, length // 2)
    if ramp_len > 0:
        ramp = _ramp(ramp_len, kind)
        if not start_edge:
            prof[:ramp_len] = ramp
        if not end_edge:
            prof[length - ramp_len:] = ramp[::-1]
    return prof


def blend_weights(tile_w: int, tile_h: int, overlap: int, kind: str = "cosine",
                  edges: Edges = NO_EDGES) -> npt.NDArray[np.float32]:
    """Blend weights of one tile, float32 of shape ``(tile_h, tile_w)``, strictly positive.

    ``linear``/``cosine`` feather ``overlap`` pixels on each side not on the canvas border (``edges``); two
    tiles overlapping by exactly ``overlap`` then sum to 1 across their overlap before any normalisation.
    ``gaussian`` is a separable bell (sigma ``0.3`` of the side), flat towards the sides in ``edges``.
    """
    wx = axis_profile(tile_w, overlap, kind, start_edge=edges.left, end_edge=edges.right)
    wy = axis_profile(tile_h, overlap, kind, start_edge=edges.top, end_edge=edges.bottom)
    return np.outer(wy, wx).astype(np.float32, copy=False)


def _normalised_axis(spans: list[tuple[int, int]], size: int, overlap: int,
                     kind: str) -> list[npt.NDArray[np.float32]]:
    profiles = [axis_profile(b - a, overlap, kind, start_edge=a == 0, end_edge=b == size) for a, b in spans]
    total = np.zeros(size, dtype=np.float64)
    for (a, b), p in zip(spans, profiles, strict=True):
        total[a:b] += p
    return [(p / total[a:b]).astype(np.float32) for (a, b), p in zip(spans, profiles, strict=True)]


@dataclass(frozen=True)
class TilePlan:
    """A tile plan for one canvas, with normalised blend weights that partition unity.

    >>> plan = TilePlan(1000, 600, tile_size=512, overlap=32)
    >>> len(plan), plan.tiles[-1]
    (6, Tile(x0=488, y0=88, x1=1000, y1=600))
    """

    width: int
    height: int
    tile_size: int
    overlap: int

    @property
    def x_spans(self) -> list[tuple[int, int]]:
        return plan_axis(self.width, self.tile_size, self.overlap)

    @property
    def y_spans(self) -> list[tuple[int, int]]:
        return plan_axis(self.height, self.tile_size, self.overlap)

    @property
    def tiles(self) -> list[Tile]:
        return plan_tiles(self.width, self.height, self.tile_size, self.overlap)

    def __len__(self) -> int:
        return len(self.x_spans) * len(self.y_spans)

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)

    def edges(self, tile: Tile) -> Edges:
        return Edges.of(tile, self.width, self.height)

    def raw_weights(self, tile: Tile, kind: str = "cosine") -> npt.NDArray[np.float32]:
        """The tile's unnormalised weights (:func:`blend_weights` with its canvas edges)."""
        return blend_weights(tile.width, tile.height, self.overlap, kind, self.edges(tile))

    def normalised_weights(self, kind: str = "cosine") -> Iterator[tuple[Tile, npt.NDArray[np.float32]]]:
        """Each tile with weights divided by the plan's weight sum: over all tiles they add to 1 everywhere.

        The plan is a grid and the weights separable, so the sum is the product of the per-axis sums and is
        computed on two vectors, never on a full canvas. Tiles with the same row and column profiles (every
        interior tile of an evenly spread plan) share one read-only weights array.
        """
        xs, ys = self.x_spans, self.y_spans
        wx = _normalised_axis(xs, self.width, self.overlap, kind)
        wy = _normalised_axis(ys, self.height, self.overlap, kind)
        cache: dict[tuple[bytes, bytes], npt.NDArray[np.float32]] = {}
        for j, (y0, y1) in enumerate(ys):
            for i, (x0, x1) in enumerate(xs):
                key = (wy[j].tobytes(), wx[i].tobytes())
                w = cache.get(key)
                if w is None:
                    w = np.outer(wy[j], wx[i]).astype(np.float32, copy=False)
                    w.flags.writeable = False
                    cache[key] = w
                yield Tile(x0, y0, x1, y1), w

    def core(self, tile: Tile) -> Tile:
        """The part of ``tile`` that no other tile covers (empty where ``x0 >= x1`` or ``y0 >= y1``).

        Pass it to :meth:`TileAccumulator.add` so the accumulator copies it instead of weighting and adding.
        """
        return _core_tile(self.x_spans, self.y_spans, tile)


def _core_axis(spans: list[tuple[int, int]], a: int, b: int) -> tuple[int, int]:
    i = spans.index((a, b))
    lo = spans[i - 1][1] if i > 0 else a
    hi = spans[i + 1][0] if i + 1 < len(spans) else b
    return max(lo, a), min(hi, b)


def _core_tile(xs: list[tuple[int, int]], ys: list[tuple[int, int]], tile: Tile) -> Tile:
    cx0, cx1 = _core_axis(xs, tile.x0, tile.x1)
    cy0, cy1 = _core_axis(ys, tile.y0, tile.y1)
    return Tile(cx0, cy0, cx1, cy1)


class TileAccumulator:
    """Weighted sum of tiles in one float32 canvas, updated in place.

    ``layout`` names the axes of the canvas and of every added array: ``"hwc"`` (images, the default),
    ``"chw"`` (latents) or ``"hw"`` (one channel; ``channels`` is then ignored).

    With ``normalised=True`` the caller promises weights that already add to 1 at every pixel (from
    :meth:`TilePlan.normalised_weights`); no weight sum is kept and :meth:`result` returns the canvas as is.
    Otherwise a one-channel float32 weight sum is kept and :meth:`result` divides by it in place. Memory is
    the canvas (plus the weight sum) and one tile-sized scratch buffer; no full-size temporary is made.
    """

    def __init__(self, width: int, height: int, channels: int = 3, *, layout: Layout = "hwc",
                 normalised: bool = False) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"canvas must be at least 1x1, got {width}x{height}")
        if layout not in ("hwc", "chw", "hw"):
            raise ValueError(f"unknown layout {layout!r}; expected hwc, chw or hw")
        self.width, self.height, self.layout = width, height, layout
        self.channels = 1 if layout == "hw" else channels
        shape = {"hwc": (height, width, self.channels), "chw": (self.channels, height, width),
                 "hw": (height, width)}[layout]
        self.canvas: npt.NDArray[np.float32] = np.zeros(shape, dtype=np.float32)
        self.weight_sum: npt.NDArray[np.float32] | None = (
            None if normalised else np.zeros((height, width), dtype=np.float32))
        self._scratch: npt.NDArray[np.float32] | None = None
        self._done = False

    def _view(self, tile: Tile) -> npt.NDArray[np.float32]:
        if self.layout == "chw":
            return self.canvas[:, tile.rows, tile.cols]
        return self.canvas[tile.rows, tile.cols]

    def _scratch_for(self, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
        size = math.prod(shape)
        if self._scratch is None or self._scratch.size < size:
            self._scratch = np.empty(size, dtype=np.float32)
        return self._scratch[:size].reshape(shape)

    def add(self, tile: Tile, array: npt.ArrayLike, weights: npt.NDArray[np.floating], *,
            core: Tile | None = None) -> None:
        """Add ``array * weights`` into the canvas at ``tile``.

        ``array`` has the canvas layout and the tile's size (any numeric dtype; uint8 tiles are fine);
        ``weights`` has shape ``(tile.height, tile.width)``. ``core`` (canvas coordinates, inside ``tile``) is
        a box the caller guarantees no other tile covers (:meth:`TilePlan.core`): there the array is copied
        rather than weighted and added, which is most of a tile and most of the time.
        """
        if self._done:
            raise RuntimeError("result() was already taken; the canvas is normalised")
        if tile.x0 < 0 or tile.y0 < 0 or tile.x1 > self.width or tile.y1 > self.height:
            raise ValueError(f"{tile} reaches outside the {self.width}x{self.height} canvas")
        arr = np.asarray(array)
        view = self._view(tile)
        if arr.shape != view.shape:
            raise ValueError(f"tile array has shape {arr.shape}, expected {view.shape} for {tile}")
        w = np.asarray(weights, dtype=np.float32)
        if w.shape != (tile.height, tile.width):
            raise ValueError(f"weights have shape {w.shape}, expected {(tile.height, tile.width)}")
        ws = None if self.weight_sum is None else self.weight_sum[tile.rows, tile.cols]
        if core is None or core.x0 >= core.x1 or core.y0 >= core.y1:
            self._weighted_add(view, arr, w, ws, slice(None), slice(None))
            return
        if not (tile.x0 <= core.x0 and core.x1 <= tile.x1 and tile.y0 <= core.y0 and core.y1 <= tile.y1):
            raise ValueError(f"core {core} is not inside {tile}")
        r0, r1, c0, c1 = core.y0 - tile.y0, core.y1 - tile.y0, core.x0 - tile.x0, core.x1 - tile.x0
        inner = (slice(r0, r1), slice(c0, c1))
        self._sub(view, *inner)[...] = self._sub(arr, *inner)
        if ws is not None:
            ws[inner] = 1.0
        h, wd = tile.height, tile.width
        for rows, cols in ((slice(0, r0), slice(0, wd)), (slice(r1, h), slice(0, wd)),
                           (slice(r0, r1), slice(0, c0)), (slice(r0, r1), slice(c1, wd))):
            if rows.start < rows.stop and cols.start < cols.stop:
                self._weighted_add(view, arr, w, ws, rows, cols)

    def _sub(self, a: npt.NDArray[Any], rows: slice, cols: slice) -> npt.NDArray[Any]:
        return a[:, rows, cols] if self.layout == "chw" else a[rows, cols]

    def _weighted_add(self, view: npt.NDArray[np.float32], arr: npt.NDArray[Any], w: npt.NDArray[np.float32],
                      ws: npt.NDArray[np.float32] | None, rows: slice, cols: slice) -> None:
        dst, src, wsub = self._sub(view, rows, cols), self._sub(arr, rows, cols), w[rows, cols]
        wb = wsub[:, :, None] if self.layout == "hwc" else wsub
        scratch = self._scratch_for(dst.shape)
        np.multiply(src, wb, out=scratch, casting="unsafe")
        np.add(dst, scratch, out=dst)
        if ws is not None:
            wsv = ws[rows, cols]
            np.add(wsv, wsub, out=wsv)

    def result(self) -> npt.NDArray[np.float32]:
        """The blended canvas (float32; the canvas itself, normalised in place), after every add."""
        if not self._done and self.weight_sum is not None:
            if not np.all(self.weight_sum > 0):
                raise ValueError("some canvas pixels were covered by no tile (or only by zero weights)")
            # Divide row band by row band so the broadcast temporary stays small.
            step = max(1, (1 << 22) // max(1, self.width * self.channels))
            for y in range(0, self.height, step):
                ws = self.weight_sum[y:y + step]
                if self.layout == "hwc":
                    band = self.canvas[y:y + step]
                    np.divide(band, ws[:, :, None], out=band)
                elif self.layout == "chw":
                    band = self.canvas[:, y:y + step]
                    np.divide(band, ws[None], out=band)
                else:
                    band = self.canvas[y:y + step]
                    np.divide(band, ws, out=band)
            self.weight_sum = None
        self._scratch = None
        self._done = True
        return self.canvas


def to_uint8(canvas: npt.NDArray[np.floating], *, rows_per_chunk: int = 256) -> npt.NDArray[np.uint8]:
    """Round and clip a float canvas ``(H, W[, C])`` to uint8, band by band (no full-size float temporary)."""
    out = np.empty(canvas.shape, dtype=np.uint8)
    tmp: npt.NDArray[np.float32] | None = None
    for y in range(0, canvas.shape[0], rows_per_chunk):
        band = canvas[y:y + rows_per_chunk]
        if tmp is None or tmp.shape != band.shape:
            tmp = np.empty(band.shape, dtype=np.float32)
        np.rint(band, out=tmp)
        np.clip(tmp, 0, 255, out=tmp)
        out[y:y + rows_per_chunk] = tmp
    return out
