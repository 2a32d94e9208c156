"""The part every fake vendor shares: start/stop, the request log and billing, fault injection and delivery,
reading JSON and multipart bodies.

Fault injection (per request, seeded)::

    server.set_faults(rate_5xx=0.2, rate_429=0.1, rate_hang=0.05, rate_trickle=0.05, rate_truncate=0.05,
                      rate_garbage=0.05, rate_oversize=0.02, seed=1)
    server.faults.force("truncate")          # the next request gets exactly this fault

Accounting (the vendor's own, honest truth): ``server.request_log`` (every request with its ``digest``, fields,
``outcome``, ``status``, ``billed``, ``usd``), ``server.billed_calls`` and ``server.billed_usd`` (requests that reached
a generation the real vendor charges for: 200s including trickled, truncated, garbage, oversized and late answers,
content-filtered images where the vendor bills them; never 4xx, 429 or 5xx refusals, hangs or downloads).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fakes._server import FAULTS, FaultPlan, LoopbackServer, Received, garbage_bytes, oversize_png

BODY_FAULTS = frozenset({"slow", "trickle", "endless", "truncate"})
"""Faults on the wire delivery of a 200 body (the generation ran and is billed)."""


class CutOff(Exception):
    """Raised inside the server after a partial body: uvicorn then closes the connection mid-body."""


class TruncatedResponse(Response):
    """A 200 that declares the whole body's ``Content-Length``, sends part of it and drops the connection."""

    def __init__(self, body: bytes, media_type: str, headers: dict[str, str] | None = None, keep: float = 0.6):
        super().__init__(body, media_type=media_type, headers=headers)
        self._keep = keep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        part = self.body[: max(1, int(len(self.body) * self._keep))]
        await send({"type": "http.response.body", "body": part, "more_body": True})
        await asyncio.sleep(0.05)
        raise CutOff("body cut off on purpose")


class FakeVendor:
    """Base of the fake vendors. Subclasses list their ``routes()`` and answer in the vendor's wire format."""

    vendor = "fake"
    allowed_faults: frozenset[str] = frozenset(FAULTS)

    def __init__(
        self,
        api_key: str = "test-key-0000",
        *,
        hang_s: float = 2.0,
        latency_s: float = 0.0,
        size_scale: float = 0.25,
        seed: int = 0,
        trickle_s: float = 3.0,
        trickle_interval_s: float = 0.05,
        retry_after: str | None = "0",
        oversize_size: tuple[int, int] = (40000, 40000),
        leaky_errors: bool = False,
    ) -> None:
        self.api_key = api_key
        self.hang_s = hang_s
        """How long ``hang`` waits before its 504 and ``slow`` before its 200 (past the client's deadline)."""
        self.latency_s = latency_s
        self.size_scale = size_scale
        """Output sizes are the vendor's times this (keeps tests fast); 1.0 gives the vendor's real sizes."""
        self.trickle_s = trickle_s
        """How long a ``trickle`` body takes to arrive in full (drips every ``trickle_interval_s``)."""
        self.trickle_interval_s = trickle_interval_s
        self.retry_after = retry_after
        """The ``Retry-After`` header value of the ``429`` fault (None: no header)."""
        self.oversize_size = oversize_size
        self.leaky_errors = leaky_errors
        """When True, error bodies echo the key the request carried (to prove clients keep keys out of messages)."""
        self._defaults = {
            "hang_s": hang_s,
            "latency_s": latency_s,
            "trickle_s": trickle_s,
            "trickle_interval_s": trickle_interval_s,
            "retry_after": retry_after,
            "leaky_errors": leaky_errors,
        }
        self.rate_download = 0.0
        """(Ideogram) probability that one fetch of a result URL fails (503, cut-off or garbage); later fetches
        draw again."""
        self.faults = FaultPlan(seed)
        self.records: list[Received] = []
        self._lock = threading.Lock()
        self._server: LoopbackServer | None = None
        self.app = Starlette(routes=self.routes())

    def routes(self) -> list[Route]:
        raise NotImplementedError

    # -- life cycle ----------------------------------------------------------------------------------
    def start(self) -> Self:
        self._server = LoopbackServer(self.app).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return self._server.url

    # -- faults --------------------------------------------------------------------------------------
    def set_faults(
        self,
        *,
        rate_5xx: float = 0.0,
        rate_429: float = 0.0,
        rate_hang: float = 0.0,
        rate_slow: float = 0.0,
        rate_trickle: float = 0.0,
        rate_endless: float = 0.0,
        rate_truncate: float = 0.0,
        rate_garbage: float = 0.0,
        rate_oversize: float = 0.0,
        rate_filter: float = 0.0,
        rate_429_inflight: float = 0.0,
        rate_expired_url: float = 0.0,
        rate_download_fail: float = 0.0,
        rate_download: float = 0.0,
        seed: int | None = None,
    ) -> None:
        """Random faults per request at these rates (a 5xx is half 500, half 503), from an RNG seeded with
        ``seed``; replaces earlier rates. Faults a vendor has no use for are drawn but not injected (that request
        is served normally), so each rate stays a probability per request. ``rate_download`` (Ideogram) is per
        fetch of a result URL."""
        rates = {
            "500": rate_5xx / 2,
            "503": rate_5xx / 2,
            "429": rate_429,
            "hang": rate_hang,
            "slow": rate_slow,
            "trickle": rate_trickle,
            "endless": rate_endless,
            "truncate": rate_truncate,
            "garbage": rate_garbage,
            "oversize": rate_oversize,
            "filter": rate_filter,
            "429_inflight": rate_429_inflight,
            "expired_url": rate_expired_url,
            "download_fail": rate_download_fail,
        }
        self.faults.set(rates, seed)
        self.rate_download = rate_download

    def next_fault(self) -> str | None:
        return self.faults.next(self.allowed_faults)

    # -- records and accounting ----------------------------------------------------------------------
    def record(self, rec: Received) -> Received:
        with self._lock:
            self.records.append(rec)
        return rec

    def bill(self, rec: Received, usd: float) -> None:
        """The request reached a generation the real vendor charges ``usd`` for."""
        rec.billed = True
        rec.usd = round(usd, 6)

    def calls(self, path_part: str = "") -> list[Received]:
        with self._lock:
            return [r for r in self.records if path_part in r.path]

    @property
    def request_log(self) -> list[Received]:
        """Every request so far, in arrival order, with its ``digest``, fields, ``fault``, ``outcome``, ``status``,
        ``billed`` and ``usd``."""
        with self._lock:
            return list(self.records)

    @property
    def billed_calls(self) -> int:
        """Requests the real vendor would bill (generation reached)."""
        return sum(1 for r in self.request_log if r.billed)

    @property
    def billed_usd(self) -> float:
        """What the real vendor would charge for them, in USD."""
        return round(sum(r.usd for r in self.request_log if r.billed), 6)

    def outcomes(self) -> Counter[str]:
        """How many requests got each outcome (``ok``, a fault name, ``http_<status>``)."""
        return Counter(r.outcome for r in self.request_log)

    def reset(self) -> None:
        """Clear the log and the faults, and put the fault settings back to what the constructor set."""
        with self._lock:
            self.records.clear()
        self.faults.clear()
        self.rate_download = 0.0
        for name, value in self._defaults.items():
            setattr(self, name, value)

    # -- reading requests ----------------------------------------------------------------------------
    @staticmethod
    async def read_multipart(
        request: Request,
    ) -> tuple[dict[str, str], dict[str, bytes], dict[str, str]] | None:
        """Parse a multipart body as a vendor would; None when the body is not multipart/form-data."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return None
        form = await request.form(max_files=10, max_fields=50)
        fields: dict[str, str] = {}
        files: dict[str, bytes] = {}
        types: dict[str, str] = {}
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields[name] = value
            else:
                files[name] = await value.read()
                types[name] = value.content_type or ""
        await form.close()
        return fields, files, types

    # -- answering -----------------------------------------------------------------------------------
    async def hang(self) -> Response:
        """Answer only after ``hang_s`` (past the client's deadline in the tests), and then with a 504."""
        await asyncio.sleep(self.hang_s)
        return Response(status_code=504)

    async def pause(self, since: float | None = None) -> None:
        """The vendor's fixed ``latency_s``, counted from ``since`` (the request's arrival, ``time.monotonic()``)
        where given: the answer then leaves ``latency_s`` after the request came, whatever reading it took."""
        if self.latency_s:
            left = self.latency_s - (time.monotonic() - since if since is not None else 0.0)
            if left > 0:
                await asyncio.sleep(left)

    def scaled(self, size: tuple[int, int]) -> tuple[int, int]:
        return (max(16, round(size[0] * self.size_scale)), max(16, round(size[1] * self.size_scale)))

    def image_for(self, fault: str | None, png: bytes) -> bytes:
        """The image bytes a billed answer carries: ``garbage`` and ``oversize`` replace the real PNG."""
        if fault == "garbage":
            return garbage_bytes(self.faults.rng)
        if fault == "oversize":
            return oversize_png(self.oversize_size)
        return png

    def leak(self, request: Request) -> str:
        """What ``leaky_errors`` adds to an error message: the credentials the request carried."""
        if not self.leaky_errors:
            return ""
        got = [request.headers.get(h) for h in ("api-key", "authorization", "x-goog-api-key")]
        return " (request credentials: " + ", ".join(g for g in got if g) + ")"

    async def deliver(
        self,
        rec: Received,
        fault: str | None,
        body: bytes,
        media_type: str,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A 200 carrying ``body``, delivered as ``fault`` says (late, dripping, endless, cut off) or whole."""
        rec.status = 200
        headers = dict(headers or {})
        if fault == "slow":
            await asyncio.sleep(self.hang_s)
        if fault == "trickle":
            headers["content-length"] = str(len(body))
            return StreamingResponse(self._drip(body), media_type=media_type, headers=headers)
        if fault == "endless":
            return StreamingResponse(self._endless(body), media_type=media_type, headers=headers)
        if fault == "truncate":
            return TruncatedResponse(body, media_type, headers)
        return Response(body, media_type=media_type, headers=headers)

    async def _drip(self, body: bytes) -> AsyncIterator[bytes]:
        pieces = max(1, int(self.trickle_s / self.trickle_interval_s))
        step = max(1, -(-len(body) // pieces))
        for i in range(0, len(body), step):
            await asyncio.sleep(self.trickle_interval_s)
            yield body[i : i + step]

    async def _endless(self, body: bytes) -> AsyncIterator[bytes]:
        yield body[: len(body) // 2]
        for _ in range(int(600 / self.trickle_interval_s)):  # ten minutes at most, should a client never leave
            await asyncio.sleep(self.trickle_interval_s)
            yield b" " * 64


def truncated(data: bytes) -> bytes:
    """A complete HTTP body holding only the first 60% of the image: it will not decode."""
    return data[: max(8, len(data) * 6 // 10)]
