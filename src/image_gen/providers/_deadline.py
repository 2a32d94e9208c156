"""The call's deadline (``Deadline``) and sending and reading an answer under it (``send``, ``DeadlineTransport``).

``ProviderSettings.timeout_s`` bounds a whole call (``Deadline``): waiting for a slot, connecting, sending, every
read, result downloads and polling. ``send`` streams the answer and stops at the deadline even when the vendor
keeps trickling bytes (each read waits at most the time left, and a timer shuts the socket at the deadline).

Transport failures leave this module as ``Transient``, saying what they cost::

    connect refused / connect, pool or write timeout     -> Transient                      (free: never sent)
    read timeout, cut-off body, deadline passed          -> Transient(maybe_billed=True)   (sent; answer lost)
"""

from __future__ import annotations

import contextvars
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpx

from image_gen.providers.base import ProviderSettings, Transient

MAX_ANSWER_BYTES = 256 * 1024 * 1024
"""The largest answer body read from a vendor; a larger one is ``Transient(maybe_billed=True)``."""

_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteTimeout,
    httpx.WriteError,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
    httpx.LocalProtocolError,
)
"""httpx failures that mean the request never reached the vendor whole: nothing can have been billed."""


class Deadline:
    """The time limit of one whole call: ``seconds`` from now. Every wait and read of the call fits inside it."""

    def __init__(self, seconds: float, *, connect_s: float | None = None) -> None:
        self.seconds = float(seconds)
        self.connect_s = connect_s
        self.started = time.monotonic()
        self.end = self.started + self.seconds

    @classmethod
    def of(cls, settings: ProviderSettings) -> Deadline:
        return cls(settings.timeout_s, connect_s=settings.connect_timeout_s)

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def timeout(self) -> httpx.Timeout:
        """Per-operation timeouts for the next request: each at most the time left (connect also at most
        ``connect_s``)."""
        left = max(0.001, self.remaining())
        connect = left if self.connect_s is None else min(self.connect_s, left)
        return httpx.Timeout(left, connect=connect)

    def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` when the deadline leaves that much time (and return True); else return False at once."""
        if seconds >= self.remaining():
            return False
        if seconds > 0:
            time.sleep(seconds)
        return True

    def describe(self) -> str:
        return f"timeout_s={self.seconds:g}"


def transport_error(exc: Exception, vendor: str, what: str, deadline: Deadline | None = None) -> Transient:
    """An httpx failure as ``Transient``: free when the request never went out whole, else ``maybe_billed``."""
    kind = type(exc).__name__
    limit = f" ({deadline.describe()})" if deadline is not None else ""
    if isinstance(exc, _NOT_SENT):
        return Transient(f"{vendor}: {what}: the request could not be sent ({kind}: {exc}); not billed")
    if isinstance(exc, httpx.TimeoutException):
        return Transient(
            f"{vendor}: {what} timed out: no answer within the call's deadline{limit}; the request reached the "
            "vendor and may have been billed",
            maybe_billed=True,
        )
    return Transient(
        f"{vendor}: {what} failed after the request was sent ({kind}: {exc}); may have been billed",
        maybe_billed=True,
    )


@contextmanager
def transport_errors(vendor: str, what: str, deadline: Deadline | None = None) -> Iterator[None]:
    """Map httpx's own failures raised inside the block (see ``transport_error``)."""
    try:
        yield
    except httpx.HTTPError as exc:
        raise transport_error(exc, vendor, what, deadline) from exc


class _Overrun(Exception):
    pass


class _TooLarge(Exception):
    pass


def _stream_socket(extensions: dict[str, Any]) -> socket.socket | None:
    stream = extensions.get("network_stream")
    if stream is None:
        return None
    try:
        sock = stream.get_extra_info("socket")
    except Exception:  # noqa: BLE001 - a transport without sockets: no timer, the per-chunk check remains
        return None
    return sock if isinstance(sock, socket.socket) else None


def _cut(sock: socket.socket, fired: threading.Event) -> None:
    fired.set()
    # The plain socket's shutdown (also for TLS sockets): a blocked read wakes up with end-of-file.
    with suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def read_body(
    chunks: Iterable[bytes],
    extensions: dict[str, Any],
    deadline: Deadline,
    vendor: str,
    what: str,
    *,
    error_status: bool = False,
    max_bytes: int = MAX_ANSWER_BYTES,
) -> bytes:
    """Read a whole answer body (raw chunks) before the deadline.

    A timer shuts the connection's socket at the deadline, so a vendor trickling bytes (or never ending) cannot
    hold the call past it. A body that stops short, overruns the deadline or passes ``max_bytes`` is
    ``Transient(maybe_billed=True)``; for an error status (``error_status``) what arrived is returned instead (the
    status already says the vendor refused, at no cost)."""
    fired = threading.Event()
    sock = _stream_socket(extensions)
    timer: threading.Timer | None = None
    if sock is not None:
        timer = threading.Timer(max(0.0, deadline.remaining()), _cut, (sock, fired))
        timer.daemon = True
        timer.start()
    buf = bytearray()
    try:
        for chunk in chunks:
            buf += chunk
            if len(buf) > max_bytes:
                raise _TooLarge
            if deadline.expired():
                raise _Overrun
    except Exception as exc:
        if error_status:
            return bytes(buf)
        if isinstance(exc, _TooLarge):
            raise Transient(
                f"{vendor}: {what}: the answer passed {max_bytes} bytes; may have been billed", maybe_billed=True
            ) from None
        if isinstance(exc, _Overrun) or fired.is_set() or deadline.expired():
            raise Transient(
                f"{vendor}: {what} timed out: the answer did not arrive within the call's deadline "
                f"({deadline.describe()}; {len(buf)} bytes came); the request reached the vendor and may have "
                "been billed",
                maybe_billed=True,
            ) from None
        if isinstance(exc, httpx.HTTPError):
            raise Transient(
                f"{vendor}: {what}: the answer was cut off after {len(buf)} bytes ({type(exc).__name__}: {exc}); "
                "may have been billed",
                maybe_billed=True,
            ) from exc
        raise
    finally:
        if timer is not None:
            timer.cancel()
    return bytes(buf)


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    vendor: str,
    what: str,
    max_bytes: int = MAX_ANSWER_BYTES,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request and read its whole answer inside ``deadline``; the answer comes back read (any status).

    Failures are the contract's ``Transient`` with the cost flags of ``transport_error`` and ``read_body``."""
    if deadline.expired():
        raise Transient(f"{vendor}: {what}: the call's deadline ({deadline.describe()}) passed before it was sent")
    request = client.build_request(method, url, timeout=deadline.timeout(), **kwargs)
    try:
        response = client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise transport_error(exc, vendor, what, deadline) from exc
    error_status = response.status_code >= 400
    try:
        raw = read_body(
            response.iter_raw(),
            response.extensions,
            deadline,
            vendor,
            what,
            error_status=error_status,
            max_bytes=max_bytes,
        )
    finally:
        response.close()
    extensions = {k: v for k, v in response.extensions.items() if k != "network_stream"}
    try:
        return httpx.Response(
            response.status_code, headers=response.headers, content=raw, request=request, extensions=extensions
        )
    except httpx.DecodingError as exc:
        if error_status:
            return httpx.Response(response.status_code, headers={}, content=b"", request=request)
        raise Transient(
            f"{vendor}: {what}: the answer's encoding did not decode ({exc}); may have been billed",
            maybe_billed=True,
        ) from exc


_CALL_DEADLINE: contextvars.ContextVar[tuple[Deadline, str] | None] = contextvars.ContextVar(
    "image_gen_call_deadline", default=None
)


@contextmanager
def deadline_scope(deadline: Deadline, vendor: str) -> Iterator[Deadline]:
    """Make ``deadline`` the one every ``DeadlineTransport`` request in this context runs under (SDK clients)."""
    token = _CALL_DEADLINE.set((deadline, vendor))
    try:
        yield deadline
    finally:
        _CALL_DEADLINE.reset(token)


class DeadlineTransport(httpx.BaseTransport):
    """An httpx transport that runs each request under the current ``deadline_scope`` and reads the whole answer
    inside it (as ``send`` does). For clients owned by an SDK (google-genai), which send on their own.

    Failures are raised as the contract's ``Transient`` (with its cost flags); outside a scope it only passes
    requests through."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        current = _CALL_DEADLINE.get()
        if current is None:
            return self.inner.handle_request(request)
        deadline, vendor = current
        what = f"{request.method} {request.url.path}"
        if deadline.expired():
            raise Transient(f"{vendor}: {what}: the call's deadline ({deadline.describe()}) passed before it was sent")
        left = max(0.001, deadline.remaining())
        connect = left if deadline.connect_s is None else min(deadline.connect_s, left)
        request.extensions = {
            **request.extensions,
            "timeout": {"connect": connect, "read": left, "write": left, "pool": left},
        }
        try:
            response = self.inner.handle_request(request)
        except httpx.HTTPError as exc:
            raise transport_error(exc, vendor, what, deadline) from exc
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)
        try:
            raw = read_body(
                stream, response.extensions, deadline, vendor, what, error_status=response.status_code >= 400
            )
        finally:
            stream.close()
        extensions = {k: v for k, v in response.extensions.items() if k != "network_stream"}
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(raw),
            extensions=extensions,
            request=request,
        )

    def close(self) -> None:
        self.inner.close()


def with_deadlines(client: httpx.Client) -> httpx.Client:
    """``client`` with every transport it may use (its own and any proxy mounts) wrapped in ``DeadlineTransport``
    (once). For clients handed to an SDK; httpx keeps these as private attributes (checked with httpx 0.28)."""
    if not isinstance(client._transport, DeadlineTransport):
        client._transport = DeadlineTransport(client._transport)
    client._mounts = {
        pattern: t if t is None or isinstance(t, DeadlineTransport) else DeadlineTransport(t)
        for pattern, t in client._mounts.items()
    }
    return client
