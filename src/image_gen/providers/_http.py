"""Shared plumbing of the HTTP providers: client building, error mapping, image checks, limiters.

Every vendor failure leaves this module as one of the contract's errors (``providers.base``)::

    httpx.TimeoutException, httpx.TransportError  -> Transient
    400 413 422                                    -> BadRequest   (vendors refine some into ContentFiltered)
    401 403                                        -> AuthenticationFailed
    402                                            -> BadRequest   ("no funds": retrying will not help)
    408 5xx                                        -> Transient
    429                                            -> RateLimited(retry_after from ``Retry-After``)

Nothing here retries: the runner owns retries. Keys never leave the request headers they were put in.
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
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


def build_client(settings: ProviderSettings) -> httpx.Client:
    """The injected client, or a new one with the settings' connect/read timeouts (no redirects)."""
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
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def body_snippet(response: httpx.Response, limit: int = 300) -> str:
    """The vendor's error text, shortened; JSON ``error``/``message``/``errors`` fields when present."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:limit].strip()
    if isinstance(data, dict):
        for key in ("error", "message", "detail", "errors", "name"):
            if key in data and data[key]:
                val = data[key]
                return (", ".join(map(str, val)) if isinstance(val, list) else str(val))[:limit]
    return str(data)[:limit]


def error_from_status(
    response: httpx.Response, vendor: str, *, request_id: str | None = None
) -> ProviderError:
    """Translate a non-2xx answer into the contract's error tree (the generic part; vendors refine it)."""
    status = response.status_code
    detail = body_snippet(response)
    msg = f"{vendor}: HTTP {status}: {detail}" if detail else f"{vendor}: HTTP {status}"
    if status == 429:
        return RateLimited(
            msg, retry_after=parse_retry_after(response.headers.get("retry-after")), request_id=request_id
        )
    if status in (401, 403):
        return AuthenticationFailed(
            f"{vendor}: the API key was refused (HTTP {status}); check the key in the environment",
            request_id=request_id,
        )
    if status == 402:
        return BadRequest(f"{vendor}: the account has no funds (HTTP 402): {detail}", request_id=request_id)
    if status == 408 or status >= 500:
        return Transient(msg, request_id=request_id)
    return BadRequest(msg, request_id=request_id)


@contextmanager
def transport_errors(vendor: str, what: str) -> Iterator[None]:
    """Map httpx's own failures (timeouts, dropped connections, truncated bodies) to ``Transient``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise Transient(f"{vendor}: {what} timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise Transient(f"{vendor}: {what} failed: {type(exc).__name__}: {exc}") from exc


def image_size(data: bytes, vendor: str, what: str = "image") -> tuple[int, int]:
    """Decode ``data`` fully; a body that does not decode (truncated, not an image) is ``Transient``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise Transient(f"{vendor}: the {what} did not decode ({len(data)} bytes): {exc}") from exc


def download_image(client: httpx.Client, url: str, vendor: str) -> tuple[bytes, tuple[int, int]]:
    """Fetch a result URL at once, without any credential; failures and expired links are ``Transient``."""
    if not url:
        raise Transient(f"{vendor}: the answer had no image URL")
    with transport_errors(vendor, "downloading the result image"):
        resp = client.get(url)
        data = resp.content
    if resp.status_code in (401, 403, 404, 410):
        raise Transient(f"{vendor}: the result URL has expired or is gone (HTTP {resp.status_code})")
    if resp.status_code >= 400:
        raise Transient(f"{vendor}: downloading the result image failed (HTTP {resp.status_code})")
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

    def wait(self) -> float:
        """Block until a call may start; returns the seconds waited."""
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
