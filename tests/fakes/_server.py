"""Loopback plumbing shared by the fake vendors: a uvicorn server on 127.0.0.1 in a thread, a fault plan,
a record of what each request carried, and real PNGs drawn with Pillow."""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFont

FAULTS = ("429", "429_inflight", "500", "503", "hang", "truncate", "expired_url", "filter")


@dataclass
class Received:
    """One request as the fake vendor saw it (the key itself is never kept: only whether it matched)."""

    method: str
    path: str
    auth_ok: bool
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    file_types: dict[str, str] = field(default_factory=dict)
    status: int = 0
    fault: str | None = None
    header_names: tuple[str, ...] = ()
    """Names (lower case) of the request's headers, to check that no credential went where it should not."""

    def file_sha(self, name: str) -> str | None:
        data = self.files.get(name)
        return hashlib.sha256(data).hexdigest() if data is not None else None


class FaultPlan:
    """Faults to inject: forced ones first (``force``), then random ones at ``rates`` (seeded)."""

    def __init__(self, seed: int = 0) -> None:
        self.forced: deque[str] = deque()
        self.rates: dict[str, float] = {}
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def force(self, *faults: str) -> None:
        for f in faults:
            if f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}")
        with self.lock:
            self.forced.extend(faults)

    def next(self, allowed: tuple[str, ...] = FAULTS) -> str | None:
        with self.lock:
            if self.forced and self.forced[0] in allowed:
                return self.forced.popleft()
            roll = self.rng.random()
            acc = 0.0
            for name, rate in self.rates.items():
                acc += rate
                if roll < acc:
                    return name if name in allowed else None
            return None

    def clear(self) -> None:
        with self.lock:
            self.forced.clear()
            self.rates = {}


def render_png(text: str, size: tuple[int, int], *, base: bytes | None = None, tag: str = "") -> bytes:
    """A real PNG of ``size`` with ``text`` on it (quoted label text large); ``base`` shows through."""
    w, h = size
    seed = int(hashlib.sha256((text + tag).encode()).hexdigest()[:6], 16)
    bg = (200 + seed % 50, 190 + (seed >> 8) % 60, 180 + (seed >> 16) % 70)
    img = Image.new("RGB", (w, h), bg)
    if base is not None:
        with Image.open(io.BytesIO(base)) as src:
            img.paste(src.convert("RGB").resize((w, h)))
    draw = ImageDraw.Draw(img)
    label = text.split('"')[1] if text.count('"') >= 2 else text[:24]
    font = ImageFont.load_default(size=max(10, min(w // max(4, len(label)), h // 5)))
    box = draw.textbbox((0, 0), label, font=font)
    x, y = (w - (box[2] - box[0])) // 2, (h - (box[3] - box[1])) // 2
    draw.rectangle((x - 8, y - 8, x + box[2] - box[0] + 8, y + box[3] + 8), fill=(255, 255, 255))
    draw.text((x - box[0], y), label, fill=(10, 10, 10), font=font)
    small = ImageFont.load_default(size=max(8, h // 40))
    draw.text((6, 6), f"{tag} {text[:60]}", fill=(40, 40, 40), font=small)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def size_for_ratio(w: int, h: int, megapixels: float, multiple: int = 64) -> tuple[int, int]:
    """The size of about ``megapixels`` with ratio w:h, rounded to ``multiple``."""
    px = megapixels * 1_000_000
    width = (px * w / h) ** 0.5
    height = width * h / w
    return (
        max(multiple, round(width / multiple) * multiple),
        max(multiple, round(height / multiple) * multiple),
    )


class LoopbackServer:
    """Runs an ASGI app with uvicorn on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="critical",
            lifespan="off",
            timeout_graceful_shutdown=1,
            access_log=False,
            limit_concurrency=200,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self) -> LoopbackServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("loopback server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()
