"""Loopback plumbing shared by the fake vendors: a uvicorn server on 127.0.0.1 in a thread, a fault plan,
a record of what each request carried, and real PNGs drawn with Pillow."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import random
import socket
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFont

FAULTS = (
    "429",
    "429_inflight",
    "500",
    "503",
    "hang",
    "slow",
    "trickle",
    "endless",
    "truncate",
    "garbage",
    "oversize",
    "expired_url",
    "download_fail",
    "filter",
)
"""Faults a fake vendor can inject (each vendor serves the subset that fits its API):

- refusals, never billed: ``429`` (with ``Retry-After``), ``429_inflight`` (Ideogram), ``500``, ``503``, ``hang``
  (no answer for ``hang_s``, then 504);
- answers the vendor billed (the generation ran): ``slow`` (a whole 200 after ``hang_s``), ``trickle`` (the 200 body
  drips over ``trickle_s``), ``endless`` (a 200 body that never ends), ``truncate`` (``Content-Length`` larger than
  what is sent, then the connection closes), ``garbage`` (non-image bytes where the image belongs; Ideogram: a body
  that is not JSON), ``oversize`` (a tiny PNG whose header claims ``oversize_size``), ``filter`` (content-filtered
  image, billed where the vendor bills it), ``expired_url`` (Ideogram: the result link is gone, 403 on every fetch),
  ``download_fail`` (Ideogram: the result link fails its first fetch, then serves).
"""
REFUSALS = frozenset({"429", "429_inflight", "500", "503", "hang"})


@dataclass
class Received:
    """One request as the fake vendor saw it and the outcome it got (the key itself is never kept: only whether
    it matched).

    ``billed``/``usd`` are the vendor's own accounting: True when the request reached a generation the real vendor
    would charge for, whatever then happened to the answer on the wire."""

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
    billed: bool = False
    usd: float = 0.0
    model: str | None = None
    at: float = field(default_factory=time.monotonic)

    def file_sha(self, name: str) -> str | None:
        data = self.files.get(name)
        return hashlib.sha256(data).hexdigest() if data is not None else None

    @property
    def digest(self) -> str:
        """sha256 of what the request asked for (method, path, JSON body, form fields, file hashes)."""
        payload = {
            "method": self.method,
            "path": self.path,
            "json": self.json,
            "form": self.form,
            "files": {k: self.file_sha(k) for k in sorted(self.files)},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def outcome(self) -> str:
        """The fault it got, else ``ok`` (2xx) or ``http_<status>``."""
        if self.fault:
            return self.fault
        return "ok" if 200 <= self.status < 300 else f"http_{self.status}"


class FaultPlan:
    """Faults to inject: forced ones first (``force``), then random ones at ``rates`` (a seeded RNG)."""

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

    def set(self, rates: dict[str, float], seed: int | None = None) -> None:
        """Replace the random rates (fault name -> probability per request; at most 1 in all) and reseed."""
        for name, rate in rates.items():
            if name not in FAULTS:
                raise ValueError(f"unknown fault {name!r}")
            if not 0 <= rate <= 1:
                raise ValueError(f"rate of {name} must be within 0..1, not {rate}")
        if sum(rates.values()) > 1 + 1e-9:
            raise ValueError(f"fault rates add up to {sum(rates.values()):.3f}, more than 1")
        with self.lock:
            self.rates = {k: v for k, v in rates.items() if v > 0}
            if seed is not None:
                self.rng = random.Random(seed)

    def next(self, allowed: tuple[str, ...] | frozenset[str] = FAULTS) -> str | None:
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

    def random(self) -> float:
        with self.lock:
            return self.rng.random()

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


def oversize_png(size: tuple[int, int] = (40000, 40000)) -> bytes:
    """A tiny PNG (a few hundred bytes) whose header claims ``size``: a decompression bomb's calling card."""
    data = bytearray(render_png("x", (16, 16)))
    assert data[12:16] == b"IHDR"
    data[16:20] = size[0].to_bytes(4, "big")
    data[20:24] = size[1].to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def garbage_bytes(rng: random.Random, n: int = 600) -> bytes:
    """Bytes that are no image (an error page followed by noise), as a broken gateway might send with a 200."""
    head = b"<html><head><title>502 Bad Gateway</title></head><body>upstream reset</body></html>\n"
    return head + bytes(rng.getrandbits(8) for _ in range(n))


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
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
