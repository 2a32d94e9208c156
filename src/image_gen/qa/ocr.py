"""OCR engines behind one small interface; RapidOCR (ONNX, models shipped in its package) by default.

Engines: ``rapidocr`` (always available: a package dependency) and ``tesseract`` (where the ``tesseract``
program is installed; run as a subprocess, no Python binding needed). ``auto`` picks RapidOCR, else Tesseract.
Each engine is loaded lazily, once per process.
"""

from __future__ import annotations

import shutil
import subprocess
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
        import os

        from rapidocr_onnxruntime import RapidOCR

        # IMAGE_GEN_OCR_THREADS caps ONNX Runtime's threads (default: one per core). Where several processes OCR at
        # once on few cores (parallel tests, a batch's workers), one thread each avoids its spinning thread pools
        # stealing each other's CPU (measured: two processes on 2 cores, 2.5x faster with one thread each).
        threads = int(os.environ.get("IMAGE_GEN_OCR_THREADS") or 0)
        caps = {"intra_op_num_threads": threads, "inter_op_num_threads": threads} if threads > 0 else {}
        self._engine = RapidOCR(**caps)
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
            lines.append(
                OcrLine(str(text), (int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys))), float(score))
            )
        return lines


class TesseractEngine:
    """The Tesseract command-line program, one line of output per text line it finds."""

    name = "tesseract"

    def __init__(self, executable: str | None = None, lang: str = "eng") -> None:
        exe = executable or shutil.which("tesseract")
        if exe is None:
            raise RuntimeError("the tesseract program is not installed (apt install tesseract-ocr)")
        self._exe = exe
        self._lang = lang

    def read(self, image: Image.Image) -> list[OcrLine]:
        import io

        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        proc = subprocess.run(
            [self._exe, "stdin", "stdout", "-l", self._lang, "tsv"],
            input=buf.getvalue(),
            capture_output=True,
            check=True,
            timeout=120,
        )
        return parse_tesseract_tsv(proc.stdout.decode("utf-8", "replace"))


def parse_tesseract_tsv(tsv: str) -> list[OcrLine]:
    """Group Tesseract's word rows (level 5) into lines: text joined by spaces, union box, mean confidence."""
    rows = [r.split("\t") for r in tsv.splitlines()]
    if not rows:
        return []
    header = rows[0]
    col = {name: i for i, name in enumerate(header)}
    groups: dict[tuple[str, str, str, str], list[list[str]]] = {}
    for r in rows[1:]:
        if len(r) < len(header) or r[col["level"]] != "5" or not r[col["text"]].strip():
            continue
        key = (r[col["page_num"]], r[col["block_num"]], r[col["par_num"]], r[col["line_num"]])
        groups.setdefault(key, []).append(r)
    lines = []
    for words in groups.values():
        x0 = min(int(w[col["left"]]) for w in words)
        y0 = min(int(w[col["top"]]) for w in words)
        x1 = max(int(w[col["left"]]) + int(w[col["width"]]) for w in words)
        y1 = max(int(w[col["top"]]) + int(w[col["height"]]) for w in words)
        conf = sum(max(0.0, float(w[col["conf"]])) for w in words) / len(words) / 100.0
        lines.append(OcrLine(" ".join(w[col["text"]].strip() for w in words), (x0, y0, x1, y1), conf))
    return lines


def available_engines() -> list[str]:
    """Engines usable in this process."""
    import importlib.util

    out = []
    if importlib.util.find_spec("rapidocr_onnxruntime") is not None:
        out.append("rapidocr")
    if shutil.which("tesseract"):
        out.append("tesseract")
    return out


_ENGINES: dict[str, OcrEngine] = {}
_LOCK = threading.Lock()


def get_engine(name: str = "rapidocr") -> OcrEngine:
    """The named engine (``rapidocr``, ``tesseract`` or ``auto``), created on first use."""
    if name == "auto":
        found = available_engines()
        if not found:
            raise RuntimeError("no OCR engine available: install rapidocr-onnxruntime or tesseract")
        name = found[0]
    with _LOCK:
        if name not in _ENGINES:
            if name == "rapidocr":
                _ENGINES[name] = RapidOcrEngine()
            elif name == "tesseract":
                _ENGINES[name] = TesseractEngine()
            else:
                raise ValueError(f"unknown OCR engine {name!r} (known: rapidocr, tesseract, auto)")
        return _ENGINES[name]


def read_text(image: Image.Image, engine: str = "rapidocr") -> list[OcrLine]:
    return get_engine(engine).read(image)
