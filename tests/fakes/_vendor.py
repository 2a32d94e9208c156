"""The part every fake vendor shares: start/stop, records, faults, reading JSON and multipart bodies."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes._server import FaultPlan, LoopbackServer, Received


class FakeVendor:
    """Base of the fake vendors. Subclasses list their ``routes()`` and answer in the vendor's wire format."""

    vendor = "fake"

    def __init__(
        self,
        api_key: str = "test-key-0000",
        *,
        hang_s: float = 2.0,
        latency_s: float = 0.0,
        size_scale: float = 0.25,
        seed: int = 0,
    ) -> None:
        self.api_key = api_key
        self.hang_s = hang_s
        self.latency_s = latency_s
        self.size_scale = size_scale
        """Output sizes are the vendor's times this (keeps tests fast); 1.0 gives the vendor's real sizes."""
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

    # -- records -------------------------------------------------------------------------------------
    def record(self, rec: Received) -> Received:
        with self._lock:
            self.records.append(rec)
        return rec

    def calls(self, path_part: str = "") -> list[Received]:
        with self._lock:
            return [r for r in self.records if path_part in r.path]

    def reset(self) -> None:
        with self._lock:
            self.records.clear()
        self.faults.clear()

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

    async def hang(self) -> Response:
        """Answer only after ``hang_s`` (past the client's read timeout in the tests)."""
        await asyncio.sleep(self.hang_s)
        return Response(status_code=504)

    async def pause(self) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

    def scaled(self, size: tuple[int, int]) -> tuple[int, int]:
        return (max(16, round(size[0] * self.size_scale)), max(16, round(size[1] * self.size_scale)))


def truncated(data: bytes) -> bytes:
    """A complete HTTP body holding only the first 60% of the image: it will not decode."""
    return data[: max(8, len(data) * 6 // 10)]
