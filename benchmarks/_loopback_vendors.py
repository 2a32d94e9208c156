"""Loopback Ideogram and Stability servers for the benchmarks, in a process of their own (so the fake vendors'
image work does not share the measured process's GIL). Prints one JSON line with their URLs, then serves until
stdin closes.

    python benchmarks/_loopback_vendors.py --latency 0.3 --ideogram-limit 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tests.fakes.ideogram as _ideogram  # noqa: E402
import tests.fakes.stability as _stability  # noqa: E402
from tests.fakes import FakeIdeogram, FakeStability  # noqa: E402
from tests.fakes._server import render_png  # noqa: E402

IDEOGRAM_KEY = "bench-ideogram-key"
STABILITY_KEY = "bench-stability-key"


_PNGS: dict[tuple[int, int], bytes] = {}


def fixed_cost_png(text: str, size: tuple[int, int], *, base: bytes | None = None, tag: str = "") -> bytes:
    """A real PNG of ``size``, rendered once per size and made unique per answer by a text chunk spliced in before
    ``IEND`` (so each answer is its own artifact): the vendor's answer costs the same few microseconds every time,
    and the fixed latency is the only vendor cost the benchmark measures."""
    import zlib

    png = _PNGS.get(size)
    if png is None:
        png = _PNGS[size] = render_png("AQUA", size)
    body = b"tEXt" + b"answer\x00" + f"{text}|{tag}|{len(_PNGS)}|{id(base)}".encode()[:200]
    chunk = len(body[4:]).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    return png[:-12] + chunk + png[-12:]


class Timed:
    """An ASGI wrapper that notes when each generation (a POST) arrived and when its answer was sent
    (``time.monotonic()``: the same clock in every process of this machine)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.spans: list[tuple[float, float]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            self.spans.append((start, time.monotonic()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.3, help="fixed seconds before each generation answers")
    ap.add_argument("--ideogram-limit", type=int, default=4, help="Ideogram's in-flight limit (429 above it)")
    ap.add_argument("--size-scale", type=float, default=1.0, help="output size as a fraction of the vendor's")
    args = ap.parse_args()
    _ideogram.render_png = fixed_cost_png  # type: ignore[assignment]
    _stability.render_png = fixed_cost_png  # type: ignore[assignment]
    ideogram = FakeIdeogram(IDEOGRAM_KEY, latency_s=args.latency, max_inflight=args.ideogram_limit,
                            size_scale=args.size_scale)
    stability = FakeStability(STABILITY_KEY, latency_s=args.latency, size_scale=args.size_scale)
    timed = {"ideogram": Timed(ideogram.app), "stability": Timed(stability.app)}
    ideogram.app, stability.app = timed["ideogram"], timed["stability"]  # type: ignore[assignment]
    ideogram.start()
    stability.start()
    print(json.dumps({"ideogram": ideogram.url, "stability": stability.url,
                      "IDEOGRAM_API_KEY": IDEOGRAM_KEY, "STABILITY_API_KEY": STABILITY_KEY}), flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin (or dies)
    print(json.dumps({"ideogram_peak_inflight": ideogram.peak_inflight,
                      "ideogram_billed": ideogram.billed_calls, "stability_billed": stability.billed_calls,
                      "spans": {v: t.spans for v, t in timed.items()}}),
          flush=True)
    ideogram.stop()
    stability.stop()


if __name__ == "__main__":
    main()
