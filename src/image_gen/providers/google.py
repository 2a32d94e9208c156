"""Google image models through the official ``google-genai`` SDK (pinned: google-genai==3.6.1).

- Gemini image models (``gemini-2.5-flash-image``, ``gemini-3.1-flash-image``, ``gemini-3-pro-image``):
  ``client.models.generate_content`` with ``response_modalities=["IMAGE"]``; image bytes come back as inline
  data parts. ``img2img`` sends the input image as a part before the prompt (the model edits it; Gemini has no
  strength knob, so the stage's strength is recorded, not sent). Width/height map to the nearest offered
  ``imageConfig.aspectRatio``; ``imageConfig.imageSize`` ("1K"/"2K"/"4K": the smallest whose output covers the
  asked size, ``image_size_for``; ``options.image_size`` wins) is sent to the Gemini 3 models only, so a 4096x4096
  hires stage is rendered natively at 4K (priced by size in the catalog) instead of tiled up from 1K.
- Imagen 4 (``imagen-4.0-*``): ``client.models.generate_images``. In Gemini-API mode SDK 3.6.1 refuses that
  call client-side (Vertex only), so the provider then sends the documented ``:predict`` body through the
  SDK's own API client (same base URL, key header and error types). Imagen 4 is retired: a 404/NOT_FOUND for a
  retired catalog model raises ``BadRequest`` naming the catalog's successor.
- Errors: ``google.genai.errors.APIError`` by code (400 -> BadRequest, or AuthenticationFailed when the key is
  invalid; 401/403 -> AuthenticationFailed; 404 -> BadRequest; 429 -> RateLimited with ``Retry-After`` from the
  HTTP header, else the body's RetryInfo delay; 5xx -> Transient). Messages carry the HTTP status, Google's error
  status and message (or the start of any other body), trimmed and without the key. Safety finish reasons and
  blocked prompts -> ContentFiltered. The SDK's own retries stay off (``retry_options`` unset: one attempt).
- Deadline: ``settings.timeout_s`` bounds the whole call. The SDK's httpx client sends through
  ``_http.DeadlineTransport``, which gives each request the time left and reads the whole answer inside it, so a
  trickling or endless answer ends at the deadline (``Transient(maybe_billed=True)``, as do cut-off bodies,
  unreadable JSON and unreadable or oversized images in a 200); connect failures are free ``Transient``.
- Base URL: ``settings.base_url``, else the SDK's ``GOOGLE_GEMINI_BASE_URL``. Key: ``GEMINI_API_KEY`` or
  ``GOOGLE_API_KEY``. Cost: ``cost_usd=None`` (catalog price); token counts are recorded in the metadata.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import warnings
from typing import Any

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

VENDOR = "google"
SDK_VERSION = "3.6.1"
GEMINI_RATIOS = [(1, 1), (2, 3), (3, 2), (3, 4), (4, 3), (4, 5), (5, 4), (9, 16), (16, 9), (21, 9)]
IMAGEN_RATIOS = [(1, 1), (3, 4), (4, 3), (9, 16), (16, 9)]
GEMINI_SIZES = (("1K", 1.07), ("2K", 4.29), ("4K", 17.2))
"""Gemini 3's ``imageConfig.imageSize`` values and the largest output of each, in megapixels (1K: 1264x848 at
3:2; 2K and 4K double and quadruple the sides). The catalog's ``size_prices`` of the Gemini 3 models list the same
sizes, so the size asked is the size priced."""
SIZE_SLACK = 1.05
SAFETY_REASONS = {
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
}


def image_size_for(width: int, height: int) -> str:
    """The smallest Gemini 3 ``imageSize`` whose output covers ``width`` x ``height`` (within 5%), else 4K: a
    4096x4096 stage asks 4K and gets its size natively, with no tiled upscale."""
    mp = width * height / 1e6
    for name, largest in GEMINI_SIZES:
        if mp <= largest * SIZE_SLACK:
            return name
    return GEMINI_SIZES[-1][0]


class GoogleProvider(_http.KeyedProvider):
    """Imagen 4 and the Gemini image models through ``google-genai``."""

    name = "google"
    key_env = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    missing_key = "google: set GEMINI_API_KEY (or GOOGLE_API_KEY)"

    def __init__(self, settings: ProviderSettings | None = None) -> None:
        super().__init__(settings)
        self._client: Any = None
        self._client_key: str | None = None
        self._client_lock = threading.Lock()

    def _http_client(self) -> httpx.Client:
        """The SDK's httpx client, every request of which runs under the call's deadline (``DeadlineTransport``).

        An injected client (``settings.http_client``) keeps its settings; its transport is wrapped once."""
        return _http.with_deadlines(_http.build_client(self.settings, self.name))

    def _sdk(self, key: str) -> Any:
        with self._client_lock:
            tag = _http.key_fingerprint(key)
            if self._client is None or self._client_key != tag:
                from google import genai
                from google.genai import types

                http = types.HttpOptions(
                    base_url=self.settings.base_url or None,
                    timeout=max(1, int(self.settings.timeout_s * 1000)),
                    httpx_client=self._http_client(),
                )
                self._client = genai.Client(api_key=key, http_options=http)
                self._client_key = tag
            return self._client

    # -- the contract --------------------------------------------------------------------------------
    def generate(self, request: ImageRequest) -> ImageResult:
        key = self._require_key()
        if request.operation == "upscale":
            raise BadRequest(f"google: {request.model} does not upscale")
        client = self._sdk(key)  # building the SDK client (imports) is no part of the call's time
        deadline = self._deadline()
        opts = self._options(request)
        started = time.monotonic()
        with self._slot(deadline), _http.deadline_scope(deadline, VENDOR), _ErrorMap(request, key):
            if request.vendor_model.startswith("imagen"):
                result = self._imagen(client, request, opts)
            else:
                result = self._gemini(client, request, opts)
        result.latency_s = time.monotonic() - started
        return result

    # -- Gemini image models -------------------------------------------------------------------------
    def _gemini(self, client: Any, request: ImageRequest, opts: dict[str, Any]) -> ImageResult:
        from google.genai import types

        contents: list[Any] = []
        if request.operation == "img2img":
            if not request.init_image:
                raise BadRequest("google: image-to-image needs an input image")
            contents.append(
                types.Part.from_bytes(data=request.init_image, mime_type=_http.mime_of(request.init_image))
            )
        contents.append(request.prompt)
        image_cfg: dict[str, Any] = {}
        asked = _http.asked_ratio(
            request.width, request.height, opts.get("aspect_ratio") or request.aspect_ratio
        )
        if asked is not None:
            w, h = _http.nearest_ratio(asked[0], asked[1], GEMINI_RATIOS)
            image_cfg["aspect_ratio"] = f"{w}:{h}"
        if opts.get("image_size"):
            image_cfg["image_size"] = str(opts["image_size"]).upper()
        elif request.vendor_model.startswith("gemini-3") and request.width and request.height:
            image_cfg["image_size"] = image_size_for(request.width, request.height)
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            candidate_count=None if request.num_images == 1 else request.num_images,
            seed=None if request.seed is None else request.seed % 2147483648,
            image_config=types.ImageConfig(**image_cfg) if image_cfg else None,
        )
        response = client.models.generate_content(
            model=request.vendor_model, contents=contents, config=config
        )
        return self._gemini_result(request, response, image_cfg)

    @staticmethod
    def _gemini_result(request: ImageRequest, response: Any, image_cfg: dict[str, Any]) -> ImageResult:
        feedback = getattr(response, "prompt_feedback", None)
        if feedback is not None and getattr(feedback, "block_reason", None):
            raise ContentFiltered(f"google: the prompt was blocked ({_enum(feedback.block_reason)})")
        images: list[GeneratedImage] = []
        texts: list[str] = []
        reasons: list[str] = []
        for cand in response.candidates or []:
            reasons.append(_enum(cand.finish_reason))
            for part in cand.content.parts if cand.content and cand.content.parts else []:
                blob = part.inline_data
                if blob is not None and blob.data:
                    # A 200 whose image is unreadable or oversized: Transient(maybe_billed=True).
                    w, h = _http.image_size(blob.data, VENDOR)
                    images.append(
                        GeneratedImage(
                            data=blob.data,
                            seed=request.seed,
                            width=w,
                            height=h,
                            metadata={"mime_type": blob.mime_type, "actual_size": f"{w}x{h}"},
                        )
                    )
                elif part.text:
                    texts.append(part.text)
        if not images:
            filtered = [r for r in reasons if r in SAFETY_REASONS]
            if filtered:
                raise ContentFiltered(
                    f"google: the safety filter withheld the image (finish_reason {filtered[0]})", billed=True
                )
            raise Transient(
                f"google: the model returned no image (finish_reason {', '.join(reasons) or 'none'})",
                billed=True,
            )
        usage = getattr(response, "usage_metadata", None)
        meta: dict[str, Any] = {
            "endpoint": "generateContent",
            "sdk": f"google-genai {SDK_VERSION}",
            "finish_reason": reasons[0] if reasons else None,
            "actual_size": images[0].metadata["actual_size"],
            "image_config": image_cfg,
            "model_version": getattr(response, "model_version", None),
        }
        if texts:
            meta["model_text"] = "\n".join(texts)[:2000]
        if request.operation == "img2img" and request.strength is not None:
            meta["strength_not_sent"] = request.strength
        if usage is not None:
            meta["usage"] = {
                "prompt_tokens": usage.prompt_token_count,
                "output_tokens": usage.candidates_token_count,
            }
        return ImageResult(
            images=images,
            seed=request.seed,
            request_id=getattr(response, "response_id", None),
            cost_usd=None,
            metadata=meta,
        )

    # -- Imagen --------------------------------------------------------------------------------------
    def _imagen(self, client: Any, request: ImageRequest, opts: dict[str, Any]) -> ImageResult:
        from google.genai import types
        from google.genai._common import ExperimentalWarning

        if request.operation != "generate":
            raise BadRequest(f"google: {request.model} only renders from text")
        ratio = None
        asked = _http.asked_ratio(
            request.width, request.height, opts.get("aspect_ratio") or request.aspect_ratio
        )
        if asked is not None:
            w, h = _http.nearest_ratio(asked[0], asked[1], IMAGEN_RATIOS)
            ratio = f"{w}:{h}"
        size = (
            "2K" if request.width and request.height and max(request.width, request.height) > 1024 else None
        )
        endpoint = "generate_images"
        try:
            with warnings.catch_warnings():
                # 3.6.1 marks generate_images deprecated (Imagen is retired); it is still the call.
                warnings.simplefilter("ignore", ExperimentalWarning)
                response = client.models.generate_images(
                    model=request.vendor_model,
                    prompt=request.prompt,
                    config=types.GenerateImagesConfig(
                        number_of_images=request.num_images,
                        aspect_ratio=ratio,
                        image_size=size,
                        output_mime_type="image/png",
                    ),
                )
            predictions = [
                {
                    "bytesBase64Encoded": base64.b64encode(g.image.image_bytes).decode() if g.image else None,
                    "raiFilteredReason": g.rai_filtered_reason,
                }
                for g in response.generated_images or []
            ]
        except ValueError as exc:
            if "Agent Platform" not in str(exc) and "Vertex" not in str(exc):
                raise
            # SDK 3.6.1 refuses generate_images in Gemini-API mode: send the documented :predict body itself.
            endpoint = "predict"
            params: dict[str, Any] = {
                "sampleCount": request.num_images,
                "outputOptions": {"mimeType": "image/png"},
            }
            if ratio:
                params["aspectRatio"] = ratio
            if size:
                params["sampleImageSize"] = size
            body = {"instances": [{"prompt": request.prompt}], "parameters": params}
            raw = client._api_client.request("post", f"models/{request.vendor_model}:predict", body, None)
            predictions = (json.loads(raw.body) if raw.body else {}).get("predictions") or []
        images: list[GeneratedImage] = []
        filtered: list[str] = []
        for pred in predictions:
            if pred.get("bytesBase64Encoded"):
                data = base64.b64decode(pred["bytesBase64Encoded"])
                w, h = _http.image_size(data, VENDOR)
                images.append(
                    GeneratedImage(data=data, width=w, height=h, metadata={"actual_size": f"{w}x{h}"})
                )
            elif pred.get("raiFilteredReason"):
                filtered.append(str(pred["raiFilteredReason"]))
        if not images:
            if filtered:
                raise ContentFiltered(f"google: Imagen filtered the image: {filtered[0]}", billed=False)
            raise Transient("google: Imagen returned no image")
        meta = {
            "endpoint": endpoint,
            "sdk": f"google-genai {SDK_VERSION}",
            "aspect_ratio": ratio,
            "actual_size": images[0].metadata["actual_size"],
            "filtered": filtered,
        }
        return ImageResult(images=images, seed=None, cost_usd=None, metadata=meta)



class _ErrorMap(_http.SdkErrorMap):
    """google-genai's failures in the contract's error tree."""

    vendor = VENDOR

    def translate(self, exc: BaseException) -> ProviderError | None:
        from google.genai import errors

        if isinstance(exc, errors.APIError):
            return _api_error(exc, self.request, self.key)
        if type(exc) is ValueError and "mode" in str(exc):  # the SDK's own refusal (plain ValueError)
            return BadRequest(f"google: the SDK refused the call: {_http.redact(str(exc), (self.key,))}")
        return None


def _error_fields(exc: Any, response: httpx.Response | None, key: str) -> tuple[int, str, str]:
    """HTTP status code, Google's error status (``RESOURCE_EXHAUSTED``) and message, from the SDK's error and,
    where it found none (a body not in Google's shape), from the HTTP answer itself."""
    code = int(getattr(exc, "code", 0) or 0) or (response.status_code if response is not None else 0)
    status = str(getattr(exc, "status", "") or "")
    message = str(getattr(exc, "message", "") or "")
    if response is not None:
        if not message:
            message = _http.body_snippet(response, secrets=(key,))
        if not status and not message:
            status = response.reason_phrase or ""
    if status == message:
        message = ""
    return code, _http.redact(status, (key,)), _http.redact(" ".join(message.split())[:300], (key,))


def _api_error(exc: Any, request: ImageRequest, key: str) -> ProviderError:
    raw = getattr(exc, "response", None)
    response = raw if isinstance(raw, httpx.Response) else None
    code, status, message = _error_fields(exc, response, key)
    text = f"google: HTTP {code}" + (f" {status}" if status else "") + (f": {message}" if message else "")
    details = json.dumps(getattr(exc, "details", None), default=str)
    if code in (401, 403) or "API_KEY_INVALID" in details or "API key not valid" in message:
        return AuthenticationFailed(
            f"google: the API key was refused ({text.removeprefix('google: ')}); check GEMINI_API_KEY / "
            "GOOGLE_API_KEY"
        )
    if code == 404 or status == "NOT_FOUND":
        successor = _successor(request.model)
        if successor:
            return BadRequest(
                f"google: {request.model} ({request.vendor_model}) is retired and no longer served ({text}); "
                f'use its successor {successor} (or set on_retired = "successor")'
            )
        return BadRequest(text)
    if code == 429:
        retry_after = _http.parse_retry_after(response.headers.get("retry-after")) if response is not None else None
        if retry_after is None:
            retry_after = _retry_delay(details)
        return RateLimited(text, retry_after=retry_after)
    if code == 408 or code >= 500:
        return Transient(text)
    return BadRequest(text)


def _successor(model_id: str) -> str | None:
    from image_gen.catalog import Catalog, UnknownModel

    try:
        entry = Catalog.load().resolve(model_id)
    except UnknownModel:
        return None
    return entry.successor if entry.retired else None


def _retry_delay(details: str) -> float | None:
    match = re.search(r'"retryDelay":\s*"([\d.]+)s"', details)
    return float(match.group(1)) if match else None


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value) or "")
