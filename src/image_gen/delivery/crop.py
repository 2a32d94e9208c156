"""The frame of a rendition: a text-aware smart crop, or a widened frame (letterbox/outpaint) around the image.

:func:`saliency_map` is the spectral residual of Hou & Zhang (CVPR 2007) on a small grey copy, smoothed and
scaled to 0..1, plus a colour-contrast term (distance from the image's mean Lab colour) so a plain product on a
plain background lights up even where its edges are soft. numpy and OpenCV core only (no opencv-contrib).

:func:`plan_frame` picks the window, in source pixels, that becomes the rendition:

- ``crop``: the largest window of the channel's aspect ratio inside the image slides along its free axis; of the
  offsets whose window holds every label box (grown by the margin), the one with the most saliency wins (summed
  with an integral image, so every offset is scored). When the margin does not fit but the bare boxes do, the
  margin shrinks. When even the bare boxes do not fit, the frame is the smallest window of the aspect ratio that
  holds them (it reaches outside the image along one axis) and the outside is filled as the channel's ``extend``
  says.
- ``letterbox``/``outpaint``: the smallest window of the aspect ratio that holds the whole image, centred.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

Box = tuple[int, int, int, int]
SALIENCY_SIDE = 128
"""The longer side of the grey copy the saliency is computed on (Hou & Zhang use 64)."""


@dataclass(frozen=True)
class Frame:
    """Where a rendition comes from: ``window`` (x0, y0, x1, y1) in source pixels, possibly reaching outside it."""

    window: Box
    mode: str
    """``crop`` (the window lies inside the image), ``letterbox`` or ``outpaint`` (it reaches outside)."""
    asked: str
    """The channel's fit mode."""
    labels: list[Box] = field(default_factory=list)
    margin_px: int = 0
    saliency_kept: float | None = None
    """Share of the image's saliency inside the window (crop only)."""
    reason: str | None = None

    @property
    def width(self) -> int:
        return self.window[2] - self.window[0]

    @property
    def height(self) -> int:
        return self.window[3] - self.window[1]

    def inside(self, size: tuple[int, int]) -> bool:
        x0, y0, x1, y1 = self.window
        return x0 >= 0 and y0 >= 0 and x1 <= size[0] and y1 <= size[1]

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "asked": self.asked, "window": list(self.window),
                "labels": [list(b) for b in self.labels], "margin_px": self.margin_px,
                "saliency_kept": None if self.saliency_kept is None else round(self.saliency_kept, 4),
                "reason": self.reason}


def saliency_map(image: Image.Image, side: int = SALIENCY_SIDE) -> np.ndarray:
    """Saliency in 0..1 (float32) on a grid whose longer side is ``side``, the image's aspect ratio kept:
    :func:`plan_frame` scales windows onto it, so the map never needs the image's full size."""
    import cv2
    import numpy as np

    rgb = np.asarray(image.convert("RGB"))
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    spectrum = np.fft.fft2(grey)
    log_amp = np.log(np.abs(spectrum) + 1e-8)
    phase = np.angle(spectrum)
    residual = log_amp - cv2.blur(log_amp, (3, 3))
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), sigmaX=max(1.0, 0.03 * side))
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    contrast = np.linalg.norm(lab - lab.reshape(-1, 3).mean(axis=0), axis=2)
    contrast = cv2.GaussianBlur(contrast, (0, 0), sigmaX=max(1.0, 0.02 * side))
    return _unit(_unit(sal) + _unit(contrast)).astype(np.float32)


def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else a * 0.0


def union(boxes: Sequence[Box]) -> Box | None:
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def aspect_window(width: int, height: int, ratio: float) -> tuple[int, int]:
    """The largest window of aspect ``ratio`` (w/h) inside ``width x height``."""
    if width / height > ratio:
        return max(1, min(width, round(height * ratio))), height
    return width, max(1, min(height, round(width / ratio)))


def plan_frame(size: tuple[int, int], target: tuple[int, int], fit: str, *, labels: Sequence[Box] = (),
               saliency: np.ndarray | None = None, margin: float = 0.04, extend: str = "letterbox") -> Frame:
    """The window of the source that becomes a ``target``-sized rendition (see the module)."""
    iw, ih = size
    ratio = target[0] / target[1]
    boxes = [_clip(b, iw, ih) for b in labels]
    boxes = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
    if fit in ("letterbox", "outpaint"):
        return Frame(_around((0, 0, iw, ih), ratio, iw, ih), fit, fit, boxes, reason="the whole image is kept")
    margin_px = round(margin * min(iw, ih))
    ww, wh = aspect_window(iw, ih, ratio)
    label_box = union(boxes)
    for m in dict.fromkeys((margin_px, margin_px // 2, 0)):
        offsets = _feasible(label_box, m, iw, ih, ww, wh)
        if offsets is not None:
            x0, y0, kept = _best_offset(offsets, ww, wh, saliency, iw, ih)
            why = None if m == margin_px else f"label margin reduced from {margin_px} to {m} px to fit the frame"
            return Frame((x0, y0, x0 + ww, y0 + wh), "crop", fit, boxes, m, kept, why)
    assert label_box is not None  # no labels always fits
    grown = _grow(label_box, margin_px, iw, ih)
    window = _around(grown, ratio, iw, ih, inside_first=True)
    return Frame(window, extend, fit, boxes, margin_px,
                 reason=f"the labels ({grown[2] - grown[0]}x{grown[3] - grown[1]} px with margin) do not fit a "
                        f"{ww}x{wh} crop; frame widened and {extend}ed")


def _clip(b: Sequence[int], iw: int, ih: int) -> Box:
    return (max(0, int(b[0])), max(0, int(b[1])), min(iw, int(b[2])), min(ih, int(b[3])))


def _grow(b: Box, m: int, iw: int, ih: int) -> Box:
    return (max(0, b[0] - m), max(0, b[1] - m), min(iw, b[2] + m), min(ih, b[3] + m))


def _feasible(label_box: Box | None, m: int, iw: int, ih: int, ww: int,
              wh: int) -> tuple[range, range] | None:
    """The window offsets (x range, y range) whose ``ww x wh`` window holds the label box grown by ``m``."""
    if label_box is None:
        return range(0, iw - ww + 1), range(0, ih - wh + 1)
    gx0, gy0, gx1, gy1 = _grow(label_box, m, iw, ih)
    xlo, xhi = max(0, gx1 - ww), min(iw - ww, gx0)
    ylo, yhi = max(0, gy1 - wh), min(ih - wh, gy0)
    if xlo > xhi or ylo > yhi:
        return None
    return range(xlo, xhi + 1), range(ylo, yhi + 1)


def _best_offset(offsets: tuple[range, range], ww: int, wh: int, saliency: np.ndarray | None, iw: int,
                 ih: int) -> tuple[int, int, float | None]:
    """The offset with the most saliency in its window (ties: the one nearest the feasible range's centre)."""
    import numpy as np

    xs, ys = offsets
    if saliency is None:
        return xs[len(xs) // 2], ys[len(ys) // 2], None
    sh, sw = saliency.shape
    integral = np.zeros((sh + 1, sw + 1), dtype=np.float64)
    integral[1:, 1:] = saliency.astype(np.float64).cumsum(0).cumsum(1)
    total = float(integral[-1, -1]) or 1.0
    # window edges in saliency-grid cells (the map may be smaller than the image)
    x = np.asarray(xs)[None, :]
    y = np.asarray(ys)[:, None]
    gx0, gx1 = np.rint(x * sw / iw).astype(int), np.rint((x + ww) * sw / iw).astype(int)
    gy0, gy1 = np.rint(y * sh / ih).astype(int), np.rint((y + wh) * sh / ih).astype(int)
    sums = integral[gy1, gx1] - integral[gy0, gx1] - integral[gy1, gx0] + integral[gy0, gx0]
    cy, cx = (len(ys) - 1) / 2, (len(xs) - 1) / 2
    dist = (np.arange(len(ys))[:, None] - cy) ** 2 + (np.arange(len(xs))[None, :] - cx) ** 2
    best = sums.max()
    candidates = np.argwhere(sums >= best - 1e-6 * max(1.0, abs(best)))
    j, i = min(candidates, key=lambda c: dist[c[0], c[1]])
    return int(xs[i]), int(ys[j]), float(sums[j, i] / total)


def _around(box: Box, ratio: float, iw: int, ih: int, *, inside_first: bool = False) -> Box:
    """The smallest window of aspect ``ratio`` holding ``box``. Along an axis where it is shorter than the image
    (``inside_first``) it stays inside the image, centred on the box as far as it can; where it is longer, it is
    centred on the image."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    if bw / bh > ratio:
        w, h = bw, max(1, round(bw / ratio))
    else:
        w, h = max(1, round(bh * ratio)), bh
    x0, x1 = _place(box[0], box[2], w, iw, inside_first)
    y0, y1 = _place(box[1], box[3], h, ih, inside_first)
    return x0, y0, x1, y1


def _place(lo: int, hi: int, length: int, extent: int, inside_first: bool) -> tuple[int, int]:
    if inside_first and length <= extent:
        start = (lo + hi) // 2 - length // 2
        start = min(max(0, start), extent - length)
        start = min(max(start, hi - length), lo)
        return start, start + length
    start = (extent - length) // 2 if length >= extent else (lo + hi) // 2 - length // 2
    return start, start + length


def extract(image: Image.Image, window: Box, fill: tuple[int, int, int]) -> tuple[Image.Image, Box]:
    """The window's pixels (RGB); parts outside the image are ``fill``. Also where the image lies in it."""
    from PIL import Image as PILImage

    x0, y0, x1, y1 = window
    canvas = PILImage.new("RGB", (x1 - x0, y1 - y0), fill)
    canvas.paste(image.convert("RGB"), (-x0, -y0))
    inner = (max(0, -x0), max(0, -y0), min(x1 - x0, image.width - x0), min(y1 - y0, image.height - y0))
    return canvas, inner


def border_colour(image: Image.Image) -> tuple[int, int, int]:
    """The median colour of the image's outer border (2% of the shorter side): a letterbox that reads as backdrop."""
    import numpy as np

    arr = np.asarray(image.convert("RGB"))
    k = max(1, round(0.02 * min(arr.shape[:2])))
    edge = np.concatenate([arr[:k].reshape(-1, 3), arr[-k:].reshape(-1, 3), arr[:, :k].reshape(-1, 3),
                           arr[:, -k:].reshape(-1, 3)])
    med = np.median(edge, axis=0)
    return int(med[0]), int(med[1]), int(med[2])
