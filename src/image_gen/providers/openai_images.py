"""OpenAI GPT Image models through the official ``openai`` SDK (pinned: openai==3.57.0).

- ``generate``: ``client.images.generate`` (``POST {base}/images/generations``, JSON). ``img2img``:
  ``client.images.edit`` (``POST {base}/images/edits``, multipart, the input image as ``image``; a mask as ``mask``).
  GPT Image models have no strength knob: the stage's strength is recorded, not sent (``input_fidelity`` from the
  options is). No ``upscale``.
- Fields: ``model``, ``prompt``, ``n``, ``size``, ``quality`` (``low|medium|high|auto``, from the options; the
  catalog's default is ``medium``), ``output_format`` (``png`` unless the options say ``jpeg``/``webp``),
  ``background``, ``moderation``, ``output_compression`` and ``input_fidelity`` when the options give them. The
  answer is ``{created, data: [{b64_json, revised_prompt?}], usage: {input_tokens, output_tokens,
  input_tokens_details: {text_tokens, image_tokens}, ...}, size, quality, output_format}``; images come base64.
- Sizes: the gpt-image-2 family takes any ``WxH`` with both sides multiples of 16, ratio within 1:3..3:1, at most
  3840 px a side and ``max_pixels`` (8,294,400) in all, at least ``min_pixels`` (655,360; unconfirmed, an option);
  the asked size is fitted into that. The older GPT Image models offer 1024x1024, 1536x1024 and 1024x1536: the
  nearest ratio is sent. ``options.size`` (``"1536x864"`` or ``"auto"``) sends a size as given. The sent and the
  returned size are recorded; the stage crops or scales to what it asked.
- Cost: ``usage`` times the catalog's ``options.token_prices`` (USD per 1M tokens: ``text_input``,
  ``image_input``, ``image_output``; ``text_output`` when given); without usage or prices ``cost_usd`` is None
  and the runner charges the catalog price. Token counts are recorded in the metadata.
- One attempt per call: the SDK's own retries are off (``max_retries=0``). Errors: ``RateLimitError`` ->
  ``RateLimited`` (``retry-after-ms`` / ``Retry-After``); 400 with code ``moderation_blocked`` or
  ``content_policy_violation`` -> ``ContentFiltered`` (refused, not billed); other 400/404/409/422 ->
  ``BadRequest`` (a 404 for a retired catalog model names its successor); 401/403 -> ``AuthenticationFailed``;
  402 -> ``BadRequest``; 408/5xx -> ``Transient``. Messages carry the HTTP status, OpenAI's error code and message,
  without the key.
- Deadline: ``settings.timeout_s`` bounds the whole call: the SDK's httpx client sends through
  ``_http.DeadlineTransport`` (a trickling or endless answer ends at the deadline, ``Transient(maybe_billed=True)``,
  as do cut-off bodies, unreadable JSON and unreadable or oversized images in a 200; connect failures are free).
- Key ``OPENAI_API_KEY``; base URL ``settings.base_url``, else ``OPENAI_BASE_URL``, else the SDK's default
  (``https://api.openai.com/v1``).
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import threading
import time
from typing import Any, cast

import httpx

from image_gen.providers import _http
from image_gen.providers.base import (
    AuthenticationFailed,
    BadRequest,
    ContentFiltered,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    ProviderError,
    ProviderSettings,
    RateLimited,
    Transient,
)

VENDOR = "openai"
SDK_VERSION = "3.57.0"
FIXED_SIZES = [(1024, 1024), (1536, 1024), (1024, 1536)]
FLEX_PREFIXES = ("gpt-image-2", "chatgpt-image")
"""Models that take any ``WxH`` within the limits (``fit_size``); the others take ``FIXED_SIZES``."""
MAX_EDGE = 3840
MAX_PIXELS = 8_294_400
MIN_PIXELS = 655_360
QUALITIES = {"low", "medium", "high", "auto", "xhigh", "max"}
FORMATS = {"png", "jpeg", "webp"}
FILTER_CODES = {"moderation_blocked", "content_policy_violation", "content_filter"}
SENT_OPTIONS = ("background", "moderation", "output_compression")
"""Options passed through to the API as they are (when given)."""


def fit_size(
    width: int, height: int, *, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS, max_edge: int = MAX_EDGE
) -> tuple[int, int]:
    """The size nearest ``width`` x ``height`` that the gpt-image-2 family takes: the ratio clamped to 1:3..3:1,
    scaled into ``min_pixels``..``max_pixels`` and ``max_edge``, both sides multiples of 16."""
    ratio = min(3.0, max(1 / 3, width / height))
    pixels = min(max(width * height, min_pixels), max_pixels)
    w = math.sqrt(pixels * ratio)
    h = w / ratio
    scale = min(1.0, max_edge / max(w, h))
    w, h = w * scale, h * scale

    def snap(v: float, up: bool) -> int:
        return max(16, int(math.ceil(v / 16) if up else math.floor(v / 16)) * 16)

    # round to 16 (up when under the minimum, down when over a maximum), keep the ratio limits
    up = width * height < min_pixels
    sw, sh = snap(w, up), snap(h, up)
    while sw * sh > max_pixels or max(sw, sh) > max_edge:
        sw, sh = (sw - 16, sh) if sw >= sh else (sw, sh - 16)
    while sw * sh < min_pixels:
        sw, sh = (sw + 16, sh) if sw <= sh else (sw, sh + 16)
    return sw, sh


class OpenAIImagesProvider(_http.KeyedProvider):
    """GPT Image models through the ``openai`` SDK."""

    name = "openai"
    key_env = ("OPENAI_API_KEY",)
    base_url_env = "OPENAI_BASE_URL"

    def __init__(self, settings: ProviderSettings | None = None) -> None:
        super().__init__(settings)
        self._client: Any = None
        self._client_key: str | None = None
        self._client_lock = threading.Lock()

    def _base_url(self) -> str | None:
        return (self.settings.base_url or os.environ.get(self.base_url_env) or "").rstrip("/") or None

    def _sdk(self, key: str) -> Any:
        with self._client_lock:
            tag = _http.key_fingerprint(key)
            if self._client is None or self._client_key != tag:
                from openai import OpenAI

                http: httpx.Client = self.settings.http_client or httpx.Client(
                    timeout=httpx.Timeout(self.settings.timeout_s, connect=self.settings.connect_timeout_s),
                    follow_redirects=False,
                )
                self._client = OpenAI(
                    api_key=key,
                    base_url=self._base_url(),
                    max_retries=0,  # one attempt per call: the runner owns retries
                    timeout=self.settings.timeout_s,
                    # the SDK takes an httpx2 client or, as here, a legacy httpx one (checked with 3.57.0)
                    http_client=cast(Any, _http.with_deadlines(http)),
                )
                self._client_key = tag
            return self._client

    # -- the contract --------------------------------------------------------------------------------
    def generate(self, request: ImageRequest) -> ImageResult:
        key = self._require_key()
        if request.operation == "upscale":
            raise BadRequest(f"openai: {request.model} does not upscale")
        if request.operation == "img2img" and not request.init_image:
            raise BadRequest("openai: image-to-image needs an input image")
        opts = self._options(request)
        kwargs, sent = self._build(request, opts)
        client = self._sdk(key)  # building the SDK client (imports) is no part of the call's time
        deadline = self._deadline()
        started = time.monotonic()
        endpoint = "images.edit" if request.operation == "img2img" else "images.generate"
        with self._slot(deadline), _http.deadline_scope(deadline, VENDOR), _ErrorMap(request, key):
            if request.operation == "img2img":
                raw = client.images.with_raw_response.edit(**kwargs)
            else:
                raw = client.images.with_raw_response.generate(**kwargs)
            request_id = raw.headers.get("x-request-id")
            answer = raw.parse()
        result = self._result(request, answer, sent, opts, endpoint, request_id)
        result.latency_s = time.monotonic() - started
        return result

    # -- request building ----------------------------------------------------------------------------
    def _build(self, request: ImageRequest, opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        model = request.vendor_model
        if not 1 <= request.num_images <= 10:
            raise BadRequest(f"openai: n must be 1..10, not {request.num_images}")
        quality = str(opts.get("quality", "auto")).lower()
        if quality not in QUALITIES:
            raise BadRequest(f"openai: quality must be one of low, medium, high, auto, not {quality!r}")
        fmt = str(opts.get("output_format", "png")).lower()
        if fmt not in FORMATS:
            raise BadRequest(f"openai: output_format must be png, jpeg or webp, not {fmt!r}")
        sent: dict[str, Any] = {"model": model, "n": request.num_images, "quality": quality, "output_format": fmt}
        size = self._size(request, opts)
        if size:
            sent["size"] = size
        for name in SENT_OPTIONS:
            if opts.get(name) is not None:
                sent[name] = opts[name]
        kwargs: dict[str, Any] = {"prompt": request.prompt, **sent}
        if request.operation == "img2img":
            if opts.get("input_fidelity") is not None:
                sent["input_fidelity"] = kwargs["input_fidelity"] = str(opts["input_fidelity"])
            kwargs["image"] = _file_part("image", request.init_image or b"")
            if request.mask:
                kwargs["mask"] = _file_part("mask", request.mask)
        return kwargs, sent

    @staticmethod
    def _size(request: ImageRequest, opts: dict[str, Any]) -> str | None:
        if opts.get("size"):
            return str(opts["size"])
        asked = _http.asked_ratio(request.width, request.height, request.aspect_ratio)
        if asked is None:
            return None
        model = request.vendor_model
        if model.startswith(FLEX_PREFIXES):
            if request.width and request.height:
                w, h = request.width, request.height
            else:  # a ratio alone: about one megapixel
                w, h = round(1024 * math.sqrt(asked[0] / asked[1])), round(1024 * math.sqrt(asked[1] / asked[0]))
            fw, fh = fit_size(
                w,
                h,
                min_pixels=int(opts.get("min_pixels", MIN_PIXELS)),
                max_pixels=int(opts.get("max_pixels", MAX_PIXELS)),
            )
            return f"{fw}x{fh}"
        w, h = _http.nearest_ratio(asked[0], asked[1], FIXED_SIZES)
        return f"{w}x{h}"

    # -- answers -------------------------------------------------------------------------------------
    def _result(
        self,
        request: ImageRequest,
        answer: Any,
        sent: dict[str, Any],
        opts: dict[str, Any],
        endpoint: str,
        request_id: str | None,
    ) -> ImageResult:
        if not hasattr(answer, "data"):  # the SDK hands back text for a 200 that is not JSON (a proxy's page)
            raise Transient(
                f"openai: the 200 answer was not JSON ({len(str(answer))} characters); the vendor may have billed it",
                maybe_billed=True,
                request_id=request_id,
            )
        images: list[GeneratedImage] = []
        revised: list[str] = []
        for item in answer.data or []:
            if not item.b64_json:
                continue
            try:
                data = base64.b64decode(item.b64_json, validate=True)
            except ValueError:
                raise Transient(
                    "openai: an image in the 200 answer was not valid base64; the vendor billed it",
                    maybe_billed=True,
                    request_id=request_id,
                ) from None
            w, h = _http.image_size(data, VENDOR)  # unreadable or oversized: Transient(maybe_billed=True)
            meta: dict[str, Any] = {"actual_size": f"{w}x{h}", "mime_type": _http.mime_of(data)}
            if item.revised_prompt:
                meta["revised_prompt"] = item.revised_prompt
                revised.append(item.revised_prompt)
            images.append(GeneratedImage(data=data, seed=None, width=w, height=h, metadata=meta))
        if not images:
            raise Transient(
                "openai: the 200 answer carried no image; the vendor may have billed it",
                maybe_billed=True,
                request_id=request_id,
            )
        usage = _usage(getattr(answer, "usage", None))
        cost = token_cost(usage, opts.get("token_prices"))
        meta_all: dict[str, Any] = {
            "endpoint": endpoint,
            "sdk": f"openai {SDK_VERSION}",
            "sent": sent,
            "created": getattr(answer, "created", None),
            "size": getattr(answer, "size", None),
            "quality": getattr(answer, "quality", None),
            "output_format": getattr(answer, "output_format", None),
            "actual_size": images[0].metadata["actual_size"],
        }
        if usage:
            meta_all["usage"] = usage
        if cost is not None:
            meta_all["cost_from"] = "usage x options.token_prices"
        if revised:
            meta_all["revised_prompt"] = revised[0]
        if request.operation == "img2img" and request.strength is not None:
            meta_all["strength_not_sent"] = request.strength
        if request.seed is not None:
            meta_all["seed_not_sent"] = request.seed  # GPT Image models take no seed
        if request.negative_prompt:
            meta_all["negative_prompt_dropped"] = f"{request.vendor_model} takes no negative_prompt"
        return ImageResult(images=images, seed=None, request_id=request_id, cost_usd=cost, metadata=meta_all)


def _file_part(name: str, data: bytes) -> tuple[str, bytes, str]:
    mime = _http.mime_of(data)
    ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(mime, "png")
    return (f"{name}.{ext}", data, mime if mime != "application/octet-stream" else "image/png")


def _usage(usage: Any) -> dict[str, int]:
    """The answer's token counts, flat: input/output totals and the text/image split where given."""
    if usage is None:
        return {}
    out: dict[str, int] = {}
    for name in ("input_tokens", "output_tokens", "total_tokens"):
        value = getattr(usage, name, None)
        if isinstance(value, int):
            out[name] = value
    for side in ("input", "output"):
        details = getattr(usage, f"{side}_tokens_details", None)
        for kind in ("text_tokens", "image_tokens"):
            value = getattr(details, kind, None) if details is not None else None
            if isinstance(value, int):
                out[f"{side}_{kind}"] = value
    return out


def token_cost(usage: dict[str, int], prices: Any) -> float | None:
    """USD for ``usage`` at ``prices`` (USD per 1M tokens: ``text_input``, ``image_input``, ``image_output``,
    ``text_output``), or None when either is missing. Input without a text/image split counts as text; output
    without one counts as image."""
    if not usage or not isinstance(prices, dict) or "input_tokens" not in usage or "output_tokens" not in usage:
        return None
    p = {k: float(v) for k, v in prices.items()}
    text_in = usage.get("input_text_tokens", usage["input_tokens"] - usage.get("input_image_tokens", 0))
    image_in = usage.get("input_image_tokens", 0)
    image_out = usage.get("output_image_tokens", usage["output_tokens"] - usage.get("output_text_tokens", 0))
    text_out = usage.get("output_text_tokens", 0)
    usd = (
        text_in * p.get("text_input", 0.0)
        + image_in * p.get("image_input", p.get("text_input", 0.0))
        + image_out * p.get("image_output", 0.0)
        + text_out * p.get("text_output", p.get("image_output", 0.0))
    ) / 1e6
    return round(usd, 6)


class _ErrorMap(_http.SdkErrorMap):
    """The openai SDK's failures in the contract's error tree."""

    vendor = VENDOR

    def translate(self, exc: BaseException) -> ProviderError | None:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return _status_error(exc, self.request, self.key)
        if isinstance(exc, openai.APITimeoutError):
            return Transient("openai: the request timed out; it reached the vendor and may have been billed",
                             maybe_billed=True)
        if isinstance(exc, openai.APIConnectionError):
            inner = exc.__cause__
            if isinstance(inner, httpx.HTTPError):
                return _http.transport_error(inner, VENDOR, "the request")
            return Transient(f"openai: the request could not be completed ({type(inner).__name__})")
        if isinstance(exc, openai.APIResponseValidationError):
            return self.unreadable_answer(exc)
        return None


def _status_error(exc: Any, request: ImageRequest, key: str) -> ProviderError:
    response: httpx.Response | None = getattr(exc, "response", None)
    status = int(getattr(exc, "status_code", 0) or (response.status_code if response is not None else 0))
    body = getattr(exc, "body", None)
    err = body if isinstance(body, dict) else {}
    code = str(err.get("code") or "")
    message = str(err.get("message") or "")
    if not message and response is not None:
        message = _http.body_snippet(response, secrets=(key,))
    message = _http.redact(" ".join(message.split())[:300], (key,))
    request_id = response.headers.get("x-request-id") if response is not None else None
    text = f"openai: HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if status == 429:
        headers = response.headers if response is not None else httpx.Headers()
        retry_after = _http.parse_retry_after(headers.get("retry-after"))
        ms = headers.get("retry-after-ms")
        if ms:
            with contextlib.suppress(ValueError):
                retry_after = max(0.0, float(ms) / 1000)
        return RateLimited(text, retry_after=retry_after, request_id=request_id)
    if code in FILTER_CODES or err.get("type") == "image_generation_user_error" and "safety" in message.lower():
        return ContentFiltered(f"{text} (refused by the safety system; not billed)", request_id=request_id)
    if status in (401, 403):
        return AuthenticationFailed(
            f"openai: the API key was refused ({text.removeprefix('openai: ')}); check OPENAI_API_KEY",
            request_id=request_id,
        )
    if status == 404:
        successor = _successor(request.model)
        if successor:
            said = text.removeprefix("openai: ")
            return BadRequest(
                f"openai: {request.model} ({request.vendor_model}) is retired and no longer served ({said}); "
                f'use its successor {successor} (or set on_retired = "successor")',
                request_id=request_id,
            )
        return BadRequest(text, request_id=request_id)
    if status == 402:
        return BadRequest(f"openai: the account has no funds (HTTP 402): {message}", request_id=request_id)
    if status == 408 or status >= 500:
        return Transient(text, request_id=request_id)
    return BadRequest(text, request_id=request_id)


def _successor(model_id: str) -> str | None:
    from image_gen.catalog import Catalog, UnknownModel

    try:
        entry = Catalog.load().resolve(model_id)
    except UnknownModel:
        return None
    return entry.successor if entry.retired else None
