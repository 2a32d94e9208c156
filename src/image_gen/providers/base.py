"""The provider contract: one request type, one result type, one method, one error tree.

Error tree (every provider translates its engine's failures into these at its boundary)::

    ProviderError
     +-- NotConfigured          no key / no weights / engine missing (exit 2 at the CLI)
     |    +-- AuthenticationFailed   the vendor refused the key
     +-- BadRequest             the vendor rejected the request as invalid (not retried)
     +-- ContentFiltered        the vendor's safety filter refused or blanked the image (may be billed)
     +-- RateLimited            429; ``retry_after`` seconds when the vendor says (retried)
     +-- Transient              5xx, timeouts, truncated bodies, expired links (retried)
     +-- OutOfMemory            a local engine ran out of accelerator memory

Every error says what it cost: ``billed`` (the vendor charged for it: a content-filtered image, a generated image
whose download failed), ``maybe_billed`` (the request reached the vendor and its answer was lost: a read timeout,
a cut-off or unreadable body, an oversized image; the runner charges the expected cost and marks the call "may have
been billed"), or neither (refused before any work: connect errors, 4xx refusals, 429).

Providers know nothing of pipelines, QA or the registry. Retries, re-rolls, escalation and gates live in the runner.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL import Image

Operation = Literal["generate", "img2img", "upscale"]


class ProviderError(Exception):
    """Base of every error a provider raises."""

    retryable: bool = False
    billed: bool = False
    maybe_billed: bool = False
    """The request reached the vendor and the answer was lost: the vendor may have charged for it."""

    def __init__(self, message: str, *, request_id: str | None = None, billed: bool | None = None,
                 maybe_billed: bool | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        if billed is not None:
            self.billed = billed
        if maybe_billed is not None:
            self.maybe_billed = maybe_billed


class NotConfigured(ProviderError):
    """The provider cannot be used here: missing key, weights or engine."""


class AuthenticationFailed(NotConfigured):
    """The vendor refused the API key."""


class BadRequest(ProviderError):
    """The vendor rejected the request as invalid."""


class ContentFiltered(ProviderError):
    """The vendor's safety system refused the prompt or blanked the image."""


class RateLimited(ProviderError):
    """Too many requests; retry after ``retry_after`` seconds when known."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Transient(ProviderError):
    """A failure that may succeed when tried again (5xx, timeout, truncated body)."""

    retryable = True


class OutOfMemory(ProviderError):
    """A local engine ran out of accelerator memory."""


@dataclass(frozen=True)
class ImageRequest:
    """One request to a provider. Images travel as encoded bytes (PNG/JPEG)."""

    model: str
    """The catalog id (``ideogram-v2a``); the provider maps it through ``vendor_model``."""
    vendor_model: str
    prompt: str
    operation: Operation = "generate"
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    aspect_ratio: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    init_image: bytes | None = None
    strength: float | None = None
    """0 keeps the init image, 1 ignores it (the diffusers/Stability convention)."""
    mask: bytes | None = None
    num_images: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """A JSON-safe summary for the registry (no image bytes, never a secret)."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if k in ("init_image", "mask"):
                out[k] = None if v is None else f"<{len(v)} bytes>"
            elif k == "options":
                out[k] = dict(v)
            else:
                out[k] = v
        return out


@dataclass
class GeneratedImage:
    data: bytes
    """Encoded image bytes as the engine returned them."""
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_pil(self, *, lazy: bool = False) -> Image.Image:
        """The image, opened under the pixel limit (``imaging.images.open_image``; ``ImageRejected`` when not);
        ``lazy``: a PNG checked whole but its pixels decoded only when first used."""
        return decode_image(self.data, lazy=lazy)


@dataclass
class ImageResult:
    images: list[GeneratedImage]
    seed: int | None = None
    """The seed actually used (the vendor's where it picked one)."""
    request_id: str | None = None
    cost_usd: float | None = None
    """Vendor-reported cost, or None: the runner then charges the catalog price."""
    latency_s: float = 0.0
    simulated: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    """Raw vendor metadata (rewritten prompt, actual resolution, safety flags, ...). Never secrets."""


@runtime_checkable
class Provider(Protocol):
    """One engine. ``name`` is the provider id used in the catalog (``ideogram``, ``google``, ``sim`` ...)."""

    name: str

    def is_configured(self) -> bool: ...

    def generate(self, request: ImageRequest) -> ImageResult: ...


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def decode_image(data: bytes, *, lazy: bool = False) -> Image.Image:
    """Open and load encoded image bytes under the pixel limit; ``ImageRejected`` (a ``ValueError``) for bytes that
    are no readable image or an image over ``MAX_PIXELS`` (``lazy``: see ``open_image``)."""
    from image_gen.imaging.images import open_image

    return open_image(data, lazy=lazy)


@dataclass
class ProviderSettings:
    """What the composition root hands a provider's constructor. HTTP providers take an injected client."""

    base_url: str | None = None
    timeout_s: float = 60.0
    """The deadline of one whole call: waiting for a place, connecting, sending, every read, downloads, polling."""
    connect_timeout_s: float = 10.0
    max_concurrency: int = 4
    options: dict[str, Any] = field(default_factory=dict)
    http_client: Any = None
    """An ``httpx.Client`` to use instead of building one (tests, gateways)."""
