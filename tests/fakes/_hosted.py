"""What the loopback hosting platforms (fal, Replicate) share: a typed input schema check, jobs that finish after a
number of polls, and an output file store whose links can expire."""

from __future__ import annotations

import base64
import io
import secrets
from typing import Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response

from tests.fakes._server import Received, render_png
from tests.fakes._vendor import FakeVendor

Schema = dict[str, tuple[type | tuple[type, ...], bool]]
"""field -> (accepted JSON types, required)."""


class Invalid(Exception):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def check_input(data: Any, schema: Schema) -> None:
    """Strict like a model's OpenAPI schema: an object, no unknown field, every required one, JSON types exact
    (an integer field refuses 1.5 and true; a number field takes integers)."""
    if not isinstance(data, dict):
        raise Invalid("input must be an object")
    for name, value in data.items():
        if name not in schema:
            raise Invalid(f"Additional property {name} is not allowed", name)
        kinds, _ = schema[name]
        if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
            raise Invalid(f"{name}: expected {kinds}, got boolean", name)
        if not isinstance(value, kinds):
            raise Invalid(f"{name}: invalid type {type(value).__name__}", name)
    for name, (_, required) in schema.items():
        if required and name not in data:
            raise Invalid(f"{name} is required", name)


def decode_data_uri(uri: str) -> bytes:
    head, _, payload = uri.partition(",")
    if not head.startswith("data:image/") or ";base64" not in head:
        raise Invalid("image must be a data:image/...;base64 URI or an https URL")
    data = base64.b64decode(payload, validate=True)
    Image.open(io.BytesIO(data)).verify()
    return data


class HostedFake(FakeVendor):
    """A fake host with jobs and an output file store (``/files/{token}``, no auth, like a CDN)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.files: dict[str, bytes] = {}
        self.expired: set[str] = set()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.polls_to_finish = 1
        """Status polls that see the job still running before it is done (-1: never: slow polling)."""
        self.poll_faults: list[int] = []
        """HTTP statuses the next polls answer (429 with Retry-After, 5xx), one per poll, before normal answers."""
        super().__init__(*args, **kw)

    def reset(self) -> None:
        super().reset()
        self.files.clear()
        self.expired.clear()
        self.jobs.clear()
        self.polls_to_finish = 1
        self.poll_faults = []

    async def file(self, request: Request) -> Response:
        token = request.path_params["token"].removesuffix(".png")
        rec = self.record(Received("GET", f"/files/{token}", True, header_names=tuple(request.headers.keys())))
        if token in self.expired or token not in self.files:
            rec.status = 404
            rec.fault = "expired_url" if token in self.expired else None
            return Response("Not Found: the file has expired", status_code=404, media_type="text/plain")
        return await self.deliver(rec, None, self.files[token], "image/png")

    def make_outputs(self, rec: Received, fault: str | None, prompt: str, size: tuple[int, int], n: int,
                     base: bytes | None) -> list[str]:
        urls = []
        for i in range(n):
            token = secrets.token_hex(8)
            png = render_png(prompt, size, base=base, tag=f"{self.vendor} {rec.path} {i}")
            if fault == "filter":
                png = render_png(" ", size, tag="black")
            self.files[token] = self.image_for(fault, png)
            if fault == "expired_url":
                self.expired.add(token)
            urls.append(f"{self.url}/files/{token}.png")
        return urls

    def next_poll_fault(self) -> int | None:
        with self._lock:
            return self.poll_faults.pop(0) if self.poll_faults else None

    def advance(self, job: dict[str, Any]) -> bool:
        """One poll of ``job``: True when it is done now."""
        job["polls"] += 1
        return self.polls_to_finish >= 0 and job["polls"] > self.polls_to_finish

    def unbill(self, rec: Received) -> None:
        rec.billed = False
        rec.usd = 0.0
