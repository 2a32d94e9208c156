"""Visible marks on exported images: the "SIMULATED" corner badge of the offline simulator's renders.

The badge goes on exported copies only (``image-gen run --out``, ``GenerateResult.save``); the stored artifact that
QA reads stays as rendered. :func:`mark_simulated_png` re-encodes a PNG with the badge and keeps its text chunks
(the A1111 ``parameters`` line and the JSON record), adding ``"visible_mark": "SIMULATED"`` to a JSON chunk.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

MARK_TEXT = "SIMULATED"
MARK_FILL = (200, 20, 20)
"""The badge's background (white letters on red)."""


def mark_box(width: int, height: int) -> tuple[int, int, int, int]:
    """Where the badge goes on an image of this size: the bottom-right corner, about a quarter of the shorter
    side wide (at least 72 pixels)."""
    bw = max(72, round(min(width, height) * 0.24))
    bh = max(16, round(bw * 0.24))
    margin = max(2, round(min(width, height) * 0.015))
    bw, bh = min(bw, width - 2 * margin), min(bh, height - 2 * margin)
    return width - margin - bw, height - margin - bh, width - margin, height - margin


def mark_simulated(image: Image.Image) -> Image.Image:
    """A copy of ``image`` with a small "SIMULATED" badge (white on red) in its bottom-right corner."""
    from PIL import ImageDraw, ImageFont

    out = image.copy()
    mode = out.mode
    if mode not in ("RGB", "RGBA"):
        out = out.convert("RGBA" if "A" in mode or mode == "P" else "RGB")
    x0, y0, x1, y1 = mark_box(out.width, out.height)
    d = ImageDraw.Draw(out)
    fill = (*MARK_FILL, 255) if out.mode == "RGBA" else MARK_FILL
    white = (255, 255, 255, 255) if out.mode == "RGBA" else (255, 255, 255)
    d.rounded_rectangle((x0, y0, x1, y1), radius=max(1, (y1 - y0) // 5), fill=fill)
    size = max(6, int((y1 - y0) * 0.7))
    font = ImageFont.load_default(size=size)
    while size > 6 and d.textlength(MARK_TEXT, font=font) > (x1 - x0) * 0.9:
        size -= 1
        font = ImageFont.load_default(size=size)
    tw = d.textlength(MARK_TEXT, font=font)
    d.text(((x0 + x1) / 2 - tw / 2, (y0 + y1) / 2), MARK_TEXT, font=font, fill=white, anchor="lm")
    return out


def has_mark(image: Image.Image) -> bool:
    """Whether ``image`` carries the badge: its corner box is mostly the badge red with white letters in it."""
    import numpy as np

    x0, y0, x1, y1 = mark_box(image.width, image.height)
    box = np.asarray(image.convert("RGB").crop((x0, y0, x1, y1)), dtype=np.int32)
    red = (np.abs(box - np.array(MARK_FILL)).sum(axis=-1) < 40).mean()
    white = (box.min(axis=-1) > 200).mean()
    return bool(red > 0.4 and white > 0.04)


def mark_simulated_png(data: bytes) -> bytes:
    """Re-encode PNG ``data`` with the badge, keeping its text chunks; JSON chunks gain ``visible_mark``."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        texts = {str(k): v for k, v in img.info.items() if isinstance(v, str)}
        marked = mark_simulated(img)
    info = PngInfo()
    for key, value in texts.items():
        if value.lstrip().startswith("{"):
            try:
                record = json.loads(value)
            except ValueError:
                record = None
            if isinstance(record, dict):
                record["visible_mark"] = MARK_TEXT
                value = json.dumps(record, sort_keys=True)
        info.add_text(key, value)
    buf = io.BytesIO()
    marked.save(buf, format="PNG", pnginfo=info, compress_level=3)
    return buf.getvalue()
