"""Shared plumbing of the HTTP providers: the provider bases, error mapping and image/ratio helpers.

Every vendor failure leaves the HTTP providers as one of the contract's errors (``providers.base``), saying what it
cost::

    connect refused / connect, pool or write timeout     -> Transient                      (free: never sent)
    read timeout, cut-off body, deadline passed          -> Transient(maybe_billed=True)   (sent; answer lost)
    400 413 422                                          -> BadRequest   (vendors refine some into ContentFiltered)
    401 403                                              -> AuthenticationFailed
    402                                                  -> BadRequest   ("no funds": retrying will not help)
    408 5xx                                              -> Transient                      (free: refused)
    429                                                  -> RateLimited(retry_after from ``Retry-After``)
    200 whose image is unreadable or over MAX_PIXELS     -> Transient(maybe_billed=True)

The call's deadline and sending under it live in ``_deadline`` (transport failures are mapped there); the
limiters in ``_limits``. Both are re-exported here, so ``_http.Deadline``, ``_http.send`` and the like keep working.

Nothing here retries a generation: the runner owns retries. Keys never leave the request headers they were put
in, and ``redact`` takes them out of any vendor text that reaches a message.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import httpx

from image_gen.providers import _limits
from image_gen.providers._deadline import MAX_ANSWER_BYTES as MAX_ANSWER_BYTES
from image_gen.providers._deadline import Deadline as Deadline
from image_gen.providers._deadline import DeadlineTransport as DeadlineTransport
from image_gen.providers._deadline import deadline_scope as deadline_scope
from image_gen.providers._deadline import read_body as read_body
from image_gen.providers._deadline import send as send
from image_gen.providers._deadline import transport_error as transport_error
from image_gen.providers._deadline import transport_errors as transport_errors
from image_gen.providers._deadline import with_deadlines as with_deadlines
from image_gen.providers._limits import RateWindow as RateWindow
from image_gen.providers._limits import WeightedLimiter as WeightedLimiter
from image_gen.providers._limits import key_fingerprint as key_fingerprint
from image_gen.providers._limits import shared_limiter as shared_limiter
from image_gen.providers._limits import shared_rate_window as shared_rate_window
from image_gen.providers.base import (
    AuthenticationFailed,
    BadRequest,
    ImageRequest,
    NotConfigured,
    ProviderError,
    ProviderSettings,
    RateLimited,
    Transient,
)

_POOL: dict[tuple[str, float, float], httpx.Client] = {}
_POOL_LOCK = threading.Lock()


def build_client(settings: ProviderSettings, vendor: str = "http") -> httpx.Client:
    """The injected client, or this process's one client for ``vendor`` with the settings' connect/read timeouts
    (no redirects).

    The client, its connection pool and its SSL context are shared by every provider object of that vendor in the
    process (a run, a batch's briefs, ``api.generate`` called in a loop): building a client costs an SSL context
    (~50 ms) and a pool of its own. httpx clients are safe to share between threads. Every request of a call passes
    the call's own per-request timeouts (``Deadline.timeout``)."""
    if settings.http_client is not None:
        client: httpx.Client = settings.http_client
        return client
    key = (vendor, float(settings.timeout_s), float(settings.connect_timeout_s))
    with _POOL_LOCK:
        pooled = _POOL.get(key)
        if pooled is None or pooled.is_closed:
            timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
            pooled = _POOL[key] = httpx.Client(timeout=timeout, follow_redirects=False, limits=limits)
        return pooled


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


OVERSIZE = "over the pixel limit"
"""What the message of an image refused for its size says (``is_oversize``)."""


def is_oversize(exc: ProviderError) -> bool:
    """Whether ``exc`` (from ``image_size``) refused an image for its size: fetching the same bytes again is futile."""
    return OVERSIZE in str(exc)


def image_size(data: bytes, vendor: str, what: str = "image") -> tuple[int, int]:
    """Open ``data`` under the pixel limit (``imaging.images.open_image``) and return its size.

    Bytes that are no readable image, or an image over ``MAX_PIXELS`` (a decompression bomb), in an answer the
    vendor sent with 200 are ``Transient(maybe_billed=True)``."""
    from image_gen.imaging.images import ImageRejected, check_image

    try:
        return check_image(data)
    except ImageRejected as exc:
        kind = f"{OVERSIZE} (MAX_PIXELS, IMAGE_GEN_MAX_PIXELS)" if "limit" in str(exc) else "no readable image"
        raise Transient(
            f"{vendor}: the {what} in the answer was refused, {kind}: {exc} ({len(data)} bytes); the vendor "
            "answered and may have billed it",
            maybe_billed=True,
        ) from None


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


def download_retrying(
    client: httpx.Client,
    url: str,
    vendor: str,
    deadline: Deadline,
    opts: dict[str, Any],
    refresh: Callable[[], str | None] | None = None,
) -> tuple[tuple[bytes, tuple[int, int]] | None, int, Transient | None]:
    """``download_image``, fetched again on a ``Transient`` failure (``options.download_attempts``, default 3, with
    ``options.download_backoff_s`` doubling, default 0.25 s) while the deadline allows: ((bytes, size) or None,
    tries, the last failure). An oversize image is not fetched again; an expired link (or none) is replaced by
    ``refresh()`` where given, else ends the tries. Never generates again: the caller says what a failure cost."""
    attempts = max(1, int(opts.get("download_attempts", 3)))
    backoff = float(opts.get("download_backoff_s", 0.25))
    last: Transient | None = None
    tries = 0
    for attempt in range(attempts):
        if attempt and not deadline.sleep(backoff * 2 ** (attempt - 1)):
            break
        tries += 1
        try:
            return download_image(client, url, vendor, deadline), tries, None
        except Transient as exc:
            last = exc
            if is_oversize(exc) or (not url and refresh is None):
                break  # the same bytes would be refused again, or there is nothing to fetch
            if refresh is not None and ("expired" in str(exc) or not url):
                url = refresh() or url
    return None, tries, last


def mime_of(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


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
        self._slots = _limits.Places(self.settings.max_concurrency)

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

    def _options(self, request: ImageRequest) -> dict[str, Any]:
        """The provider's options (settings) with the request's own on top."""
        return {**self.settings.options, **dict(request.options)}

    def _deadline(self) -> Deadline:
        """The deadline of a call starting now (``settings.timeout_s`` for the whole call)."""
        return Deadline.of(self.settings)

    @contextmanager
    def _slot(self, deadline: Deadline, limiter: _limits.WeightedLimiter | None = None,
              units: int = 1) -> Iterator[None]:
        """One of this provider's ``max_concurrency`` places, waited for at most until the deadline (then
        ``RateLimited``: nothing was sent); with ``limiter`` (the vendor account's in-flight limit), ``units`` of
        it too, taken after the place."""
        if not self._slots.acquire(timeout=max(0.0, deadline.remaining())):
            raise RateLimited(
                f"{self.name}: all {self.settings.max_concurrency} local places stayed busy past the call's "
                f"deadline ({deadline.describe()}); not sent",
                retry_after=1.0,
            )
        try:
            taken = limiter.acquire(units, timeout=max(0.0, deadline.remaining())) if limiter is not None else 0
            try:  # and, where a limiter backend is installed (a Ray worker), the same places cluster-wide
                holds = [(f"slots:{self.name}", 1, self.settings.max_concurrency)]
                if limiter is not None and limiter.name is not None:
                    holds.append((limiter.name, taken, limiter.capacity))
                with _limits.backend_holds(holds, deadline.remaining()):
                    yield
            finally:
                if limiter is not None:
                    limiter.release(taken)
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
            self._client = build_client(self.settings, self.name)
        return self._client


class SdkErrorMap:
    """Context manager around a vendor SDK's call: every failure leaves it as one of the contract's errors.

    A ``ProviderError`` passes (also one the SDK wrapped: our deadline transport's); ``translate`` (the vendor's
    own exceptions) comes first; then transport failures (``transport_error``) and a 200 whose answer could not be
    read (``Transient``, maybe billed). Anything else propagates unchanged."""

    vendor: ClassVar[str]

    def __init__(self, request: ImageRequest, key: str) -> None:
        self.request = request
        self.key = key

    def translate(self, exc: BaseException) -> ProviderError | None:
        """The contract's error for one of the SDK's own exceptions, or None."""
        return None

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, ProviderError):
            return False
        from pydantic import ValidationError

        if isinstance(exc.__cause__, ProviderError):  # our deadline transport's error, wrapped by the SDK
            raise exc.__cause__ from exc
        mapped = self.translate(exc)
        if mapped is not None:
            raise mapped from exc
        if isinstance(exc, httpx.HTTPError):
            raise transport_error(exc, self.vendor, "the request") from exc
        if isinstance(exc, json.JSONDecodeError | ValidationError | UnicodeDecodeError):
            raise self.unreadable_answer(exc) from exc
        return False

    def unreadable_answer(self, exc: BaseException) -> Transient:
        return Transient(
            f"{self.vendor}: the 200 answer could not be read ({type(exc).__name__}: "
            f"{redact(str(exc)[:200], (self.key,))}); the vendor may have billed it",
            maybe_billed=True,
        )
