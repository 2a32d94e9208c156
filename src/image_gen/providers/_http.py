"""Shared plumbing of the HTTP providers: the call's deadline, sending and reading under it, error mapping,
image checks, limiters.

Every vendor failure leaves this module as one of the contract's errors (``providers.base``), saying what it cost::

    connect refused / connect, pool or write timeout     -> Transient                      (free: never sent)
    read timeout, cut-off body, deadline passed          -> Transient(maybe_billed=True)   (sent; answer lost)
    400 413 422                                          -> BadRequest   (vendors refine some into ContentFiltered)
    401 403                                              -> AuthenticationFailed
    402                                                  -> BadRequest   ("no funds": retrying will not help)
    408 5xx                                              -> Transient                      (free: refused)
    429                                                  -> RateLimited(retry_after from ``Retry-After``)
    200 whose image is unreadable or over MAX_PIXELS     -> Transient(maybe_billed=True)

``ProviderSettings.timeout_s`` bounds a whole call (``Deadline``): waiting for a slot, connecting, sending, every
read, result downloads and polling. ``send`` streams the answer and stops at the deadline even when the vendor
keeps trickling bytes (each read waits at most the time left, and a timer shuts the socket at the deadline).

Nothing here retries a generation: the runner owns retries. Keys never leave the request headers they were put
in, and ``redact`` takes them out of any vendor text that reaches a message.
"""

from __future__ import annotations

import contextvars
import email.utils
import hashlib
import json
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, ClassVar

import httpx

from image_gen.providers.base import (
    AuthenticationFailed,
    BadRequest,
    NotConfigured,
    ProviderError,
    ProviderSettings,
    RateLimited,
    Transient,
)

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


def build_client(settings: ProviderSettings) -> httpx.Client:
    """The injected client, or a new one with the settings' connect/read timeouts (no redirects).

    Every request of a call passes the call's own per-request timeouts (``Deadline.timeout``)."""
    if settings.http_client is not None:
        client: httpx.Client = settings.http_client
        return client
    timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
    return httpx.Client(timeout=timeout, follow_redirects=False)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - time.time()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every given secret (of 4 characters or more) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def body_snippet(response: httpx.Response, limit: int = 300, secrets: Iterable[str | None] = ()) -> str:
    """The vendor's error text, shortened and with keys removed: JSON ``error``/``message``/``errors`` fields when
    present (``{"error": {"message", "status"}}`` too), else the start of the body."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError, httpx.ResponseNotRead):
        try:
            text = response.text
        except (UnicodeDecodeError, httpx.ResponseNotRead):
            text = ""
        return redact(" ".join(text[: limit * 2].split())[:limit], secrets)
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    out = ""
    if isinstance(data, dict):
        for key in ("error", "message", "detail", "errors", "name", "reject_reason"):
            val = data.get(key)
            if not val:
                continue
            if isinstance(val, dict):
                parts = [str(val[k]) for k in ("status", "message") if val.get(k)]
                out = ": ".join(parts) if parts else json.dumps(val, default=str)
            elif isinstance(val, list):
                out = ", ".join(map(str, val))
            else:
                out = str(val)
            break
    if not out:
        out = json.dumps(data, default=str)
    return redact(" ".join(out.split())[:limit], secrets)


def error_from_status(
    response: httpx.Response,
    vendor: str,
    *,
    request_id: str | None = None,
    secrets: Iterable[str | None] = (),
) -> ProviderError:
    """Translate a non-2xx answer into the contract's error tree (the generic part; vendors refine it).

    The message carries the HTTP status and the vendor's own error text (trimmed, keys removed); none of these
    answers is billed."""
    status = response.status_code
    detail = body_snippet(response, secrets=secrets)
    reason = response.reason_phrase or ""
    head = f"{vendor}: HTTP {status}" + (f" {reason}" if reason else "")
    msg = f"{head}: {detail}" if detail else head
    if status == 429:
        return RateLimited(
            msg, retry_after=parse_retry_after(response.headers.get("retry-after")), request_id=request_id
        )
    if status in (401, 403):
        return AuthenticationFailed(
            f"{vendor}: the API key was refused (HTTP {status}); check the key in the environment"
            + (f" ({detail})" if detail else ""),
            request_id=request_id,
        )
    if status == 402:
        return BadRequest(f"{vendor}: the account has no funds (HTTP 402): {detail}", request_id=request_id)
    if status == 408 or status >= 500:
        return Transient(msg, request_id=request_id)
    return BadRequest(msg, request_id=request_id)


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


OVERSIZE = "over the pixel limit"
"""What the message of an image refused for its size says (``is_oversize``)."""


def is_oversize(exc: ProviderError) -> bool:
    """Whether ``exc`` (from ``image_size``) refused an image for its size: fetching the same bytes again is futile."""
    return OVERSIZE in str(exc)


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


def image_size(data: bytes, vendor: str, what: str = "image") -> tuple[int, int]:
    """Open ``data`` under the pixel limit (``imaging.images.open_image``) and return its size.

    Bytes that are no readable image, or an image over ``MAX_PIXELS`` (a decompression bomb), in an answer the
    vendor sent with 200 are ``Transient(maybe_billed=True)``."""
    from image_gen.imaging.images import ImageRejected, open_image

    try:
        img = open_image(data)
    except ImageRejected as exc:
        kind = f"{OVERSIZE} (MAX_PIXELS, IMAGE_GEN_MAX_PIXELS)" if "limit" in str(exc) else "no readable image"
        raise Transient(
            f"{vendor}: the {what} in the answer was refused, {kind}: {exc} ({len(data)} bytes); the vendor "
            "answered and may have billed it",
            maybe_billed=True,
        ) from None
    with img:
        return img.size


def download_image(
    client: httpx.Client, url: str, vendor: str, deadline: Deadline
) -> tuple[bytes, tuple[int, int]]:
    """Fetch a result URL once, without any credential, inside the call's deadline.

    Failures (no URL, transport errors, expired links, bodies that are no image) are ``Transient``; the caller
    decides what they cost (the generation behind a result URL was billed)."""
    if not url:
        raise Transient(f"{vendor}: the answer had no image URL")
    resp = send(client, "GET", url, deadline=deadline, vendor=vendor, what="downloading the result image")
    if resp.status_code in (401, 403, 404, 410):
        raise Transient(f"{vendor}: the result URL has expired or is gone (HTTP {resp.status_code})")
    if resp.status_code >= 400:
        raise Transient(f"{vendor}: downloading the result image failed (HTTP {resp.status_code})")
    data = resp.content
    return data, image_size(data, vendor, "downloaded image")


def mime_of(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def key_fingerprint(key: str) -> str:
    """A short, one-way tag of a key: enough to share a limiter between clients, never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class WeightedLimiter:
    """At most ``capacity`` units in flight; a request for n units waits until n are free.

    A request larger than the capacity is let through alone (holding the whole capacity) rather than
    waiting for ever. ``capacity`` may be lowered or raised while in use (the vendor told us its limit).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._used = 0
        self._cond = threading.Condition()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def in_use(self) -> int:
        return self._used

    def set_capacity(self, capacity: int) -> None:
        with self._cond:
            self._capacity = max(1, capacity)
            self._cond.notify_all()

    def acquire(self, units: int, timeout: float | None = None) -> int:
        """Take ``units`` (capped at the capacity) and return them; ``RateLimited`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                take = min(units, self._capacity)
                if self._used + take <= self._capacity:
                    self._used += take
                    return take
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RateLimited("local in-flight limit: no free place in time", retry_after=1.0)
                self._cond.wait(remaining)

    def release(self, units: int) -> None:
        with self._cond:
            self._used = max(0, self._used - units)
            self._cond.notify_all()

    @contextmanager
    def hold(self, units: int, timeout: float | None = None) -> Iterator[int]:
        taken = self.acquire(units, timeout)
        try:
            yield taken
        finally:
            self.release(taken)


class RateWindow:
    """At most ``max_calls`` starts in any ``period_s`` seconds (sliding window); callers wait."""

    def __init__(self, max_calls: int, period_s: float) -> None:
        self.max_calls = max_calls
        self.period_s = period_s
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self, deadline: Deadline | None = None) -> float:
        """Block until a call may start; returns the seconds waited. With a ``deadline`` that leaves no time for
        the wait, ``RateLimited`` (nothing was sent) with the wait as ``retry_after``."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                while self._starts and now - self._starts[0] >= self.period_s:
                    self._starts.popleft()
                if len(self._starts) < self.max_calls:
                    self._starts.append(now)
                    return waited
                delay = self.period_s - (now - self._starts[0])
            if deadline is not None and delay >= deadline.remaining():
                raise RateLimited(
                    f"local rate limit: {self.max_calls} calls in {self.period_s:g} s; the next start is "
                    f"{delay:.2f} s away, past the call's deadline ({deadline.describe()}); not sent",
                    retry_after=delay,
                )
            time.sleep(delay)
            waited += delay


_SHARED: dict[tuple[str, ...], Any] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(vendor: str, key: str, capacity: int) -> WeightedLimiter:
    """The process-wide in-flight limiter of one vendor account (keyed by a fingerprint of its key)."""
    ident = ("inflight", vendor, key_fingerprint(key))
    with _SHARED_LOCK:
        lim = _SHARED.get(ident)
        if lim is None:
            lim = _SHARED[ident] = WeightedLimiter(capacity)
        return lim  # type: ignore[no-any-return]


def shared_rate_window(vendor: str, key: str, max_calls: int, period_s: float) -> RateWindow:
    ident = ("rate", vendor, key_fingerprint(key), str(max_calls), str(period_s))
    with _SHARED_LOCK:
        win = _SHARED.get(ident)
        if win is None:
            win = _SHARED[ident] = RateWindow(max_calls, period_s)
        return win  # type: ignore[no-any-return]


def nearest_ratio(width: int, height: int, ratios: list[tuple[int, int]]) -> tuple[int, int]:
    """The offered ratio closest to width:height on a log scale (so 2:1 and 1:2 are equally far from 1:1)."""
    target = math.log(width / height)
    return min(ratios, key=lambda r: abs(math.log(r[0] / r[1]) - target))


def parse_ratio(text: str) -> tuple[int, int]:
    sep = ":" if ":" in text else "x"
    w, _, h = text.partition(sep)
    return int(w), int(h)


def asked_ratio(width: int | None, height: int | None, aspect_ratio: str | None) -> tuple[int, int] | None:
    """What the request asks for, as a W:H pair: explicit width/height first, then ``aspect_ratio``."""
    if width and height:
        return width, height
    if aspect_ratio:
        return parse_ratio(aspect_ratio)
    return None


class KeyedProvider:
    """What the vendor providers share: settings, the concurrency slots and the API key from the environment.

    ``key_env`` names the variables tried in order (the first non-empty one wins); ``missing_key`` is the
    ``NotConfigured`` message when none is set (default ``"<name>: <first variable> is not set"``).
    """

    name: str
    key_env: ClassVar[tuple[str, ...]]
    missing_key: ClassVar[str | None] = None

    def __init__(self, settings: ProviderSettings | None = None) -> None:
        self.settings = settings or ProviderSettings()
        self._slots = threading.BoundedSemaphore(max(1, self.settings.max_concurrency))

    @classmethod
    def _key(cls) -> str | None:
        from image_gen.keys import lookup

        return lookup(cls.key_env)

    def is_configured(self) -> bool:
        return self._key() is not None

    def _require_key(self) -> str:
        key = self._key()
        if key is None:
            raise NotConfigured(self.missing_key or f"{self.name}: {self.key_env[0]} is not set")
        return key

    def _deadline(self) -> Deadline:
        """The deadline of a call starting now (``settings.timeout_s`` for the whole call)."""
        return Deadline.of(self.settings)

    @contextmanager
    def _slot(self, deadline: Deadline) -> Iterator[None]:
        """One of this provider's ``max_concurrency`` places, waited for at most until the deadline (then
        ``RateLimited``: nothing was sent)."""
        if not self._slots.acquire(timeout=max(0.0, deadline.remaining())):
            raise RateLimited(
                f"{self.name}: all {self.settings.max_concurrency} local places stayed busy past the call's "
                f"deadline ({deadline.describe()}); not sent",
                retry_after=1.0,
            )
        try:
            yield
        finally:
            self._slots.release()


class HttpProvider(KeyedProvider):
    """A ``KeyedProvider`` speaking HTTP itself: ``base_url`` (settings, else ``base_url_env``, else
    ``default_base_url``; no trailing slash) and a lazily built ``client`` (``build_client``)."""

    base_url_env: ClassVar[str]
    default_base_url: ClassVar[str]

    def __init__(self, settings: ProviderSettings | None = None) -> None:
        super().__init__(settings)
        self.base_url = (
            self.settings.base_url or os.environ.get(self.base_url_env) or self.default_base_url
        ).rstrip("/")
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = build_client(self.settings)
        return self._client
