"""Ideogram over HTTP (httpx): legacy generate/remix/upscale and the V3 endpoints.

Mapping from the contract to the wire (``https://api.ideogram.ai``, header ``Api-Key``):

- ``generate`` with ``V_1*``/``V_2*``: ``POST /generate`` JSON ``{"image_request": {...}}``; with ``V_3``:
  ``POST /v1/ideogram-v3/generate`` (multipart), ``rendering_speed`` from the model options (catalog/stage).
- ``img2img``: remix, ``POST /remix`` (or ``/v1/ideogram-v3/remix``), multipart request + image file.
  ``image_weight = round(100 * (1 - strength))`` clamped to 1..100 (strength 0 keeps the image: weight 100;
  strength 1 ignores it: weight 1); no strength means the vendor default 50; ``options.image_weight`` wins.
- ``upscale``: ``POST /upscale``; ``resemblance`` from strength the same way (default 50), ``detail``
  from options.
- Size: width/height (or ``aspect_ratio``) map to the nearest offered aspect ratio; ``options.resolution``
  (``"1024x768"``) asks for an exact resolution instead. The size actually returned is recorded.
- Magic Prompt is OFF unless ``options.magic_prompt`` says ``AUTO``/``ON`` (so label text stays as written);
  a rewritten prompt is recorded as ``metadata.rewritten_prompt`` beside ``metadata.prompt``.
- ``negative_prompt`` is sent only to models that take it (not V_2A*); dropping it is recorded.
- Result URLs are downloaded at once without the key, inside the call's deadline; a failed download is fetched
  again (``options.download_attempts``, default 3, short doubling backoff), never generated again; when every
  try fails it is ``Transient(billed=True)`` (the vendor charged for the image).
- The whole call (local places, POST, answer, downloads) runs under ``settings.timeout_s`` (``_http.Deadline``);
  an answer lost after sending (timeout, cut-off or non-JSON 200) is ``Transient(maybe_billed=True)``.
- ``is_image_safe: false`` -> ``ContentFiltered(billed=True)``. 429 ``inflight_limit`` -> ``RateLimited``.
- In-flight limit: one limiter per key in the process holds ``num_images`` places per request, capacity
  ``options.max_inflight`` (default 10), lowered to the vendor's ``max_inflight_requests`` when a 429 says so.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from image_gen.providers import _http
from image_gen.providers.base import (
    BadRequest,
    ContentFiltered,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    ProviderError,
    RateLimited,
    Transient,
)

VENDOR = "ideogram"
DEFAULT_BASE_URL = "https://api.ideogram.ai"

LEGACY_RATIOS = [(1, 1), (16, 9), (9, 16), (4, 3), (3, 4), (3, 2), (2, 3), (16, 10), (10, 16), (1, 3), (3, 1)]
V3_RATIOS = [
    (1, 3),
    (3, 1),
    (1, 2),
    (2, 1),
    (9, 16),
    (16, 9),
    (10, 16),
    (16, 10),
    (2, 3),
    (3, 2),
    (3, 4),
    (4, 3),
    (4, 5),
    (5, 4),
    (1, 1),
]
NEGATIVE_OK = {"V_1", "V_1_TURBO", "V_2", "V_2_TURBO", "V_3"}
NO_STYLE = {"V_1", "V_1_TURBO"}
MAGIC = {"AUTO", "ON", "OFF"}
SPEEDS = {"FLASH", "TURBO", "BALANCED", "DEFAULT", "QUALITY"}
MAX_SEED = 2147483647


def strength_to_weight(strength: float | None, default: int = 50) -> int:
    """Stage strength (0 keeps the image, 1 ignores it) -> Ideogram weight 1..100 (100 keeps the image)."""
    if strength is None:
        return default
    return max(1, min(100, round(100 * (1 - strength))))


class IdeogramProvider(_http.HttpProvider):
    """Ideogram's HTTP API. Constructed with ``ProviderSettings``; the key comes from ``IDEOGRAM_API_KEY``."""

    name = "ideogram"
    key_env = ("IDEOGRAM_API_KEY",)
    base_url_env = "IDEOGRAM_BASE_URL"
    default_base_url = DEFAULT_BASE_URL

    # -- the contract --------------------------------------------------------------------------------
    def generate(self, request: ImageRequest) -> ImageResult:
        key = self._require_key()
        deadline = self._deadline()
        opts = self._options(request)
        endpoint, kwargs, sent = self._build(request, opts)
        limiter = _http.shared_limiter(VENDOR, key, int(opts.get("max_inflight", 10)))
        started = time.monotonic()
        with self._slot(deadline, limiter, max(1, request.num_images)):
            resp = _http.send(
                self.client,
                "POST",
                self.base_url + endpoint,
                deadline=deadline,
                vendor=VENDOR,
                what=f"POST {endpoint}",
                headers={"Api-Key": key, "Accept": "application/json"},
                **kwargs,
            )
            if resp.status_code >= 400:
                raise self._error(resp, limiter, key)
        try:
            answer = resp.json()
        except ValueError:
            raise Transient(
                f"ideogram: the 200 answer to POST {endpoint} was not JSON ({len(resp.content)} bytes: "
                f"{_http.body_snippet(resp, 80, (key,))!r}); the vendor may have billed it",
                maybe_billed=True,
            ) from None
        result = self._result(request, answer, endpoint, sent, deadline, opts)
        result.latency_s = time.monotonic() - started
        return result

    # -- request building ----------------------------------------------------------------------------
    def _build(
        self, request: ImageRequest, opts: dict[str, Any]
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        model = request.vendor_model
        v3 = model.upper() in ("V_3", "V3")
        op = request.operation
        if op in ("img2img", "upscale") and not request.init_image:
            raise BadRequest(f"ideogram: {op} needs an input image")
        if op == "upscale" or model.upper() == "UPSCALE":
            body = self._upscale_fields(request, opts)
            files = {"image_request": (None, json.dumps(body)), "image_file": self._image_part(request)}
            return "/upscale", {"files": files}, body
        fields = self._v3_fields(request, opts) if v3 else self._legacy_fields(request, opts)
        if op == "img2img":
            fields["image_weight"] = int(opts.get("image_weight", strength_to_weight(request.strength)))
            if v3:
                files = {k: (None, _form_value(v)) for k, v in fields.items()}
                files["image"] = self._image_part(request)
                return "/v1/ideogram-v3/remix", {"files": files}, fields
            files = {"image_request": (None, json.dumps(fields)), "image_file": self._image_part(request)}
            return "/remix", {"files": files}, fields
        if v3:
            return (
                "/v1/ideogram-v3/generate",
                {"files": {k: (None, _form_value(v)) for k, v in fields.items()}},
                fields,
            )
        return "/generate", {"json": {"image_request": fields}}, fields

    @staticmethod
    def _image_part(request: ImageRequest) -> tuple[str, bytes, str]:
        data = request.init_image or b""
        if len(data) > 10 * 1024 * 1024:
            raise BadRequest(f"ideogram: the input image is {len(data)} bytes; the limit is 10 MB")
        mime = _http.mime_of(data)
        ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(mime, "png")
        return (f"image.{ext}", data, mime)

    @staticmethod
    def _magic(opts: dict[str, Any]) -> str:
        value = str(opts.get("magic_prompt", opts.get("magic_prompt_option", "OFF"))).upper()
        if value in ("TRUE", "1"):
            value = "ON"
        if value in ("FALSE", "0", "NONE"):
            value = "OFF"
        if value not in MAGIC:
            raise BadRequest(f"ideogram: magic_prompt must be one of AUTO, ON, OFF, not {value!r}")
        return value

    @staticmethod
    def _seed(request: ImageRequest) -> int | None:
        return None if request.seed is None else request.seed % (MAX_SEED + 1)

    def _size_fields(self, request: ImageRequest, opts: dict[str, Any], v3: bool) -> dict[str, str]:
        if opts.get("resolution"):
            w, h = _http.parse_ratio(str(opts["resolution"]))
            return {"resolution": f"{w}x{h}" if v3 else f"RESOLUTION_{w}_{h}"}
        asked: tuple[int, int] | None
        if opts.get("aspect_ratio"):
            asked = _http.parse_ratio(str(opts["aspect_ratio"]).replace("ASPECT_", "").replace("_", ":"))
        else:
            asked = _http.asked_ratio(request.width, request.height, request.aspect_ratio)
        if asked is None:
            return {}
        w, h = _http.nearest_ratio(asked[0], asked[1], V3_RATIOS if v3 else LEGACY_RATIOS)
        return {"aspect_ratio": f"{w}x{h}" if v3 else f"ASPECT_{w}_{h}"}

    def _legacy_fields(self, request: ImageRequest, opts: dict[str, Any]) -> dict[str, Any]:
        model = request.vendor_model.upper()
        fields: dict[str, Any] = {
            "prompt": request.prompt,
            "model": model,
            "magic_prompt_option": self._magic(opts),
            "num_images": request.num_images,
        }
        fields.update(self._size_fields(request, opts, v3=False))
        seed = self._seed(request)
        if seed is not None:
            fields["seed"] = seed
        if opts.get("style_type") and model not in NO_STYLE:
            fields["style_type"] = str(opts["style_type"]).upper()
        if request.negative_prompt and model in NEGATIVE_OK:
            fields["negative_prompt"] = request.negative_prompt
        return fields

    def _v3_fields(self, request: ImageRequest, opts: dict[str, Any]) -> dict[str, Any]:
        speed = str(opts.get("rendering_speed", "DEFAULT")).upper()
        if speed not in SPEEDS:
            raise BadRequest(
                f"ideogram: rendering_speed must be one of {', '.join(sorted(SPEEDS))}, not {speed!r}"
            )
        fields: dict[str, Any] = {
            "prompt": request.prompt,
            "rendering_speed": speed,
            "magic_prompt": self._magic(opts),
            "num_images": request.num_images,
        }
        fields.update(self._size_fields(request, opts, v3=True))
        seed = self._seed(request)
        if seed is not None:
            fields["seed"] = seed
        if opts.get("style_type"):
            fields["style_type"] = str(opts["style_type"]).upper()
        if request.negative_prompt:
            fields["negative_prompt"] = request.negative_prompt
        return fields

    def _upscale_fields(self, request: ImageRequest, opts: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "prompt": request.prompt,
            "resemblance": int(opts.get("resemblance", strength_to_weight(request.strength))),
            "detail": int(opts.get("detail", 50)),
            "magic_prompt_option": self._magic(opts),
            "num_images": request.num_images,
        }
        seed = self._seed(request)
        if seed is not None:
            fields["seed"] = seed
        return fields

    # -- answers -------------------------------------------------------------------------------------
    def _error(self, resp: httpx.Response, limiter: _http.WeightedLimiter, key: str) -> ProviderError:
        body: Any
        try:
            body = resp.json()
        except ValueError:
            body = None
        retry_after = _http.parse_retry_after(resp.headers.get("retry-after"))
        if (
            resp.status_code == 429
            and isinstance(body, dict)
            and body.get("reject_reason") == "inflight_limit"
        ):
            limit = body.get("max_inflight_requests")
            if isinstance(limit, int) and limit >= 1:
                limiter.set_capacity(limit)
            return RateLimited(
                f"ideogram: HTTP 429: in-flight limit reached (max {limit} images in flight); not billed",
                retry_after=retry_after,
            )
        if resp.status_code == 422:
            return ContentFiltered(
                "ideogram: HTTP 422: the prompt was rejected by the safety check: "
                + _http.body_snippet(resp, secrets=(key,)),
                billed=False,
            )
        return _http.error_from_status(resp, VENDOR, secrets=(key,))

    def _download(self, url: str, deadline: _http.Deadline, opts: dict[str, Any]) -> tuple[bytes, int, int, int]:
        """Download one result image, fetching the URL again (``options.download_attempts``, default 3, with
        ``options.download_backoff_s`` doubling, default 0.25 s) while the deadline allows. Never generates again:
        when every try failed the image was still paid for, so the error is ``Transient(billed=True)``."""
        got, tries, last = _http.download_retrying(self.client, url, VENDOR, deadline, opts)
        if got is not None:
            data, (w, h) = got
            return data, w, h, tries
        raise Transient(
            f"ideogram: the generated image could not be downloaded ({tries} tries within "
            f"{deadline.describe()}); last: {last}; the vendor billed the generation",
            billed=True,
            maybe_billed=False,
        )

    def _result(
        self,
        request: ImageRequest,
        answer: Any,
        endpoint: str,
        sent: dict[str, Any],
        deadline: _http.Deadline,
        opts: dict[str, Any],
    ) -> ImageResult:
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not data:
            raise Transient("ideogram: the answer had no images")
        images: list[GeneratedImage] = []
        unsafe = 0
        rewritten: list[str] = []
        for item in data:
            if item.get("is_image_safe") is False:
                unsafe += 1
                continue
            # The vendor answered 200 and charged for the image; only our copy can fail (then billed=True).
            payload, w, h, tries = self._download(item.get("url") or "", deadline, opts)
            vendor_prompt = item.get("prompt")
            meta: dict[str, Any] = {
                "is_image_safe": item.get("is_image_safe", True),
                "resolution": item.get("resolution"),
                "actual_size": f"{w}x{h}",
                "style_type": item.get("style_type"),
                "download_tries": tries,
            }
            if vendor_prompt and vendor_prompt != request.prompt:
                meta["rewritten_prompt"] = vendor_prompt
                rewritten.append(vendor_prompt)
            images.append(
                GeneratedImage(data=payload, seed=item.get("seed"), width=w, height=h, metadata=meta)
            )
        if not images:
            raise ContentFiltered(
                f"ideogram: the safety filter blanked {unsafe} of {len(data)} image(s) "
                "(is_image_safe=false; billed)",
                billed=True,
            )
        metadata: dict[str, Any] = {
            "endpoint": endpoint,
            "prompt": request.prompt,
            "magic_prompt": sent.get("magic_prompt_option", sent.get("magic_prompt")),
            "sent": {k: v for k, v in sent.items() if k != "prompt"},
            "created": answer.get("created"),
            "actual_size": images[0].metadata["actual_size"],
            "resolution": images[0].metadata["resolution"],
            "is_image_safe": unsafe == 0,
            "filtered_images": unsafe,
            "billed_images": len(data),
        }
        if rewritten:
            metadata["rewritten_prompt"] = rewritten[0]
        if request.negative_prompt and "negative_prompt" not in sent and request.operation != "upscale":
            metadata["negative_prompt_dropped"] = f"{request.vendor_model} takes no negative_prompt"
        return ImageResult(images=images, seed=images[0].seed, cost_usd=None, metadata=metadata)


def _form_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
