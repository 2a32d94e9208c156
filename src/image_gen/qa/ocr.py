"""OCR engines behind one small interface; RapidOCR (ONNX, models shipped in its package) by default.

The engine is loaded lazily, once per process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class OcrLine:
    text: str
    box: tuple[int, int, int, int]
    """Axis-aligned bounding box (x0, y0, x1, y1) in image pixels."""
    score: float


class OcrEngine(Protocol):
    name: str

    def read(self, image: Image.Image) -> list[OcrLine]: ...


class RapidOcrEngine:
    name = "rapidocr"

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR()
        self._lock = threading.Lock()

    def read(self, image: Image.Image) -> list[OcrLine]:
        import numpy as np

        arr = np.asarray(image.convert("RGB"))
        with self._lock:
            result, _ = self._engine(arr)
        lines = []
        for quad, text, score in result or []:
            xs = [p[0] for p in quad]
            ys = [p[1] for p in quad]
            lines.append(OcrLine(str(text), (int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys))), float(score)))
        return lines


_ENGINES: dict[str, OcrEngine] = {}
_LOCK = threading.Lock()


def get_engine(name: str = "rapidocr") -> OcrEngine:
    with _LOCK:
        if name not in _ENGINES:
            if name == "rapidocr":
                _ENGINES[name] = RapidOcrEngine()
            else:
                raise ValueError(f"unknown OCR engine {name!r}")
        return _ENGINES[name]


def read_text(image: Image.Image, engine: str = "rapidocr") -> list[OcrLine]:
    return get_engine(engine).read(image)
