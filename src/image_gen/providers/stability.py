"""Stability AI over HTTP (httpx): SD3.5 text-to-image and image-to-image, and the three upscalers.

Mapping from the contract to the wire (``https://api.stability.ai``, header ``authorization: Bearer``):

- ``generate``/``img2img`` -> ``POST /v2beta/stable-image/generate/sd3`` (multipart, ``accept: image/*``):
  ``mode`` text-to-image | image-to-image; the stage's ``strength`` is sent as is (same convention, 0..1; no
  strength on img2img means ``options.strength`` or 0.5). ``aspect_ratio`` (text-to-image only) is the offered
  ratio nearest to width/height; the model renders about 1 megapixel and the returned size is recorded.
  ``guidance_scale`` -> ``cfg_scale`` clamped to 1..10; ``steps`` is no API parameter (recorded as ignored).
- ``upscale`` -> ``/v2beta/stable-image/upscale/{fast|conservative|creative}`` by ``vendor_model``
  (``upscale-fast`` ...). Creative is asynchronous: ``{id}``, then ``GET /v2beta/results/{id}`` every
  ``options.poll_interval_s`` (2 s) until it is done or ``options.poll_timeout_s`` (300 s) or the call's
  deadline passes (then ``Transient`` with ``billed=True`` and the generation id, since the job was accepted).
  Give creative upscales a ``timeout_s`` long enough for the job: it bounds the whole call, polls included.
- The whole call (local places, rate window, POST, answer, polls) runs under ``settings.timeout_s``; an answer lost
  after sending (timeout, cut-off body, unreadable or oversized image in a 200) is ``Transient(maybe_billed=True)``.
- ``finish-reason: CONTENT_FILTERED`` -> ``ContentFiltered(billed=True)`` (the vendor answered 200 with a
  blurred image; treated as billed so budgets stay conservative). 403 ``content_moderation`` ->
  ``ContentFiltered(billed=False)``.
- Cost: ``cost_usd=None`` and the runner charges the catalog price, which holds the credits converted at
  $0.01 per credit (sd3.5-medium 3.5 credits = $0.035). ``metadata.credits`` holds the credits.
- Rate limit: at most 150 requests in 10 s per key in this process (``options.max_requests_per_10s``).
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
    Transient,
)

VENDOR = "stability"
DEFAULT_BASE_URL = "https://api.stability.ai"
SD3_MODELS = {"sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium"}
RATIOS = [(16, 9), (1, 1), (21, 9), (2, 3), (3, 2), (4, 5), (5, 4), (9, 16), (9, 21)]
UPSCALERS = {"upscale-fast": "fast", "upscale-conservative": "conservative", "upscale-creative": "creative"}
CREDITS = {"sd3.5-large": 6.5, "sd3.5-large-turbo": 4.0, "sd3.5-medium": 3.5}
MAX_SEED = 4294967294
MAX_REQUEST_BYTES = 10 * 1024 * 1024


class StabilityProvider(_http.HttpProvider):
    """Stability AI's REST API v2beta. The key comes from ``STABILITY_API_KEY``."""

    name = "stability"
    key_env = ("STABILITY_API_KEY",)
    base_url_env = "STABILITY_BASE_URL"
    default_base_url = DEFAULT_BASE_URL

    # -- the contract --------------------------------------------------------------------------------
    def generate(self, request: ImageRequest) -> ImageResult:
        key = self._require_key()
        opts = self._options(request)
        if request.num_images != 1:
            raise BadRequest("stability: one image per call (num_images must be 1)")
        self._rate = _http.shared_rate_window(VENDOR, key, int(opts.get("max_requests_per_10s", 150)), 10.0)
        deadline = self._deadline()
        started = time.monotonic()
        vendor_model = request.vendor_model
        if request.operation == "upscale" or vendor_model in UPSCALERS:
            result = self._upscale(request, opts, key, deadline)
        else:
            result = self._sd3(request, opts, key, deadline)
        result.latency_s = time.monotonic() - started
        return result

    # -- SD3.5 ---------------------------------------------------------------------------------------
    def _sd3(self, request: ImageRequest, opts: dict[str, Any], key: str, deadline: _http.Deadline) -> ImageResult:
        model = request.vendor_model
        if model not in SD3_MODELS:
            raise BadRequest(
                f"stability: unknown SD3 model {model!r} (known: {', '.join(sorted(SD3_MODELS))})"
            )
        fields: dict[str, str] = {"prompt": request.prompt, "model": model, "output_format": "png"}
        ignored: list[str] = []
        if request.operation == "img2img":
            if not request.init_image:
                raise BadRequest("stability: image-to-image needs an input image")
            strength = request.strength if request.strength is not None else float(opts.get("strength", 0.5))
            fields["mode"] = "image-to-image"
            fields["strength"] = _num(min(1.0, max(0.0, strength)))
        else:
            fields["mode"] = "text-to-image"
            asked = _http.asked_ratio(
                request.width, request.height, opts.get("aspect_ratio") or request.aspect_ratio
            )
            if asked is not None:
                w, h = _http.nearest_ratio(asked[0], asked[1], RATIOS)
                fields["aspect_ratio"] = f"{w}:{h}"
        if request.seed is not None:
            fields["seed"] = str(request.seed % (MAX_SEED + 1))
        if request.negative_prompt:
            fields["negative_prompt"] = request.negative_prompt
        if request.guidance_scale is not None:
            fields["cfg_scale"] = _num(min(10.0, max(1.0, request.guidance_scale)))
            if fields["cfg_scale"] != _num(request.guidance_scale):
                ignored.append(f"guidance_scale {request.guidance_scale} clamped to {fields['cfg_scale']}")
        if request.steps is not None:
            ignored.append(f"steps {request.steps} (the API picks its own)")
        files: dict[str, Any] = {k: (None, v) for k, v in fields.items()}
        if request.operation == "img2img":
            files["image"] = self._image_part(request.init_image or b"")
        resp = self._post("/v2beta/stable-image/generate/sd3", files, key, deadline)
        result = self._image_answer(resp, "/v2beta/stable-image/generate/sd3")
        result.metadata["sent"] = {k: v for k, v in fields.items() if k != "prompt"}
        result.metadata["credits"] = CREDITS.get(model)
        if ignored:
            result.metadata["ignored"] = ignored
        return result

    # -- upscalers -----------------------------------------------------------------------------------
    def _upscale(
        self, request: ImageRequest, opts: dict[str, Any], key: str, deadline: _http.Deadline
    ) -> ImageResult:
        kind = UPSCALERS.get(request.vendor_model, str(opts.get("upscaler", "fast")))
        if kind not in UPSCALERS.values():
            raise BadRequest(f"stability: unknown upscaler {request.vendor_model!r}")
        if not request.init_image:
            raise BadRequest("stability: upscale needs an input image")
        fields: dict[str, str] = {"output_format": "png"}
        if kind in ("conservative", "creative"):
            fields["prompt"] = request.prompt
            if request.negative_prompt:
                fields["negative_prompt"] = request.negative_prompt
            if request.seed is not None:
                fields["seed"] = str(request.seed % (MAX_SEED + 1))
            if "creativity" in opts:
                fields["creativity"] = _num(float(opts["creativity"]))
        files: dict[str, Any] = {k: (None, v) for k, v in fields.items()}
        files["image"] = self._image_part(request.init_image)
        endpoint = f"/v2beta/stable-image/upscale/{kind}"
        if kind != "creative":
            result = self._image_answer(self._post(endpoint, files, key, deadline), endpoint)
        else:
            result = self._creative(endpoint, files, key, opts, deadline)
        result.metadata["sent"] = {k: v for k, v in fields.items() if k != "prompt"}
        return result

    def _creative(
        self, endpoint: str, files: dict[str, Any], key: str, opts: dict[str, Any], deadline: _http.Deadline
    ) -> ImageResult:
        resp = self._post(endpoint, files, key, deadline, accept="application/json")
        try:
            job_id = str(resp.json()["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise Transient(
                "stability: the creative upscale answer had no generation id; the vendor may have billed it",
                maybe_billed=True,
            ) from exc
        interval = float(opts.get("poll_interval_s", 2.0))
        poll_deadline = time.monotonic() + float(opts.get("poll_timeout_s", 300.0))
        polls = 0
        try:
            while True:
                self._rate.wait(deadline)
                poll = _http.send(
                    self.client,
                    "GET",
                    f"{self.base_url}/v2beta/results/{job_id}",
                    deadline=deadline,
                    vendor=VENDOR,
                    what="polling the creative upscale",
                    headers={"authorization": f"Bearer {key}", "accept": "image/*"},
                )
                polls += 1
                if poll.status_code == 200:
                    result = self._image_answer(poll, endpoint)
                    result.request_id = result.request_id or job_id
                    result.metadata.update(generation_id=job_id, polls=polls)
                    return result
                if poll.status_code != 202:
                    raise self._error(poll, key)
                if time.monotonic() + interval > poll_deadline or not deadline.sleep(interval):
                    raise Transient(
                        f"stability: creative upscale {job_id} not done after {polls} polls (poll_timeout_s "
                        f"or the call's deadline, {deadline.describe()})",
                    )
        except ProviderError as exc:
            # The job was accepted: the vendor bills it whatever happens to our polls.
            exc.request_id = exc.request_id or job_id
            exc.billed, exc.maybe_billed = True, False
            raise

    # -- wire helpers --------------------------------------------------------------------------------
    @staticmethod
    def _image_part(data: bytes) -> tuple[str, bytes, str]:
        if len(data) > MAX_REQUEST_BYTES:
            raise BadRequest(
                f"stability: the input image is {len(data)} bytes; requests are limited to 10 MiB"
            )
        mime = _http.mime_of(data)
        return ("image.png" if mime == "image/png" else "image.jpg", data, mime)

    def _post(
        self, endpoint: str, files: dict[str, Any], key: str, deadline: _http.Deadline, accept: str = "image/*"
    ) -> httpx.Response:
        with self._slot(deadline):
            self._rate.wait(deadline)
            resp = _http.send(
                self.client,
                "POST",
                self.base_url + endpoint,
                deadline=deadline,
                vendor=VENDOR,
                what=f"POST {endpoint}",
                headers={"authorization": f"Bearer {key}", "accept": accept},
                files=files,
            )
        if resp.status_code >= 400:
            raise self._error(resp, key)
        return resp

    @staticmethod
    def _error(resp: httpx.Response, key: str) -> ProviderError:
        try:
            body = resp.json()
        except ValueError:
            body = {}
        name = body.get("name") if isinstance(body, dict) else None
        rid = body.get("id") if isinstance(body, dict) else None
        if name == "content_moderation":
            return ContentFiltered(
                f"stability: HTTP {resp.status_code}: content moderation refused the request: "
                + _http.body_snippet(resp, secrets=(key,)),
                request_id=rid,
            )
        if resp.status_code == 413:
            return BadRequest(
                "stability: HTTP 413: request too large: " + _http.body_snippet(resp, secrets=(key,)), request_id=rid
            )
        return _http.error_from_status(resp, VENDOR, request_id=rid, secrets=(key,))

    @staticmethod
    def _image_answer(resp: httpx.Response, endpoint: str) -> ImageResult:
        content_type = resp.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            try:
                body = resp.json()
                import base64

                data = base64.b64decode(body.get("image") or body.get("result") or "")
            except (ValueError, TypeError, AttributeError) as exc:
                raise Transient(
                    "stability: the 200 JSON answer did not hold an image; the vendor may have billed it",
                    maybe_billed=True,
                ) from exc
            finish = str(body.get("finish_reason", "SUCCESS"))
            seed_text = body.get("seed")
        else:
            data = resp.content
            finish = resp.headers.get("finish-reason", "SUCCESS")
            seed_text = resp.headers.get("seed")
        rid = resp.headers.get("x-request-id")
        if finish == "CONTENT_FILTERED":
            raise ContentFiltered(
                "stability: the safety filter blanked the image (finish-reason CONTENT_FILTERED; billed)",
                request_id=rid,
                billed=True,
            )
        if finish not in ("SUCCESS", ""):
            raise Transient(f"stability: finish-reason {finish}", request_id=rid, billed=True)
        try:
            w, h = _http.image_size(data, VENDOR)
        except Transient as exc:
            exc.request_id = rid  # answered 200: maybe_billed (unreadable or oversized image)
            raise
        seed = int(seed_text) if seed_text not in (None, "") else None
        meta: dict[str, Any] = {
            "endpoint": endpoint,
            "finish_reason": finish,
            "actual_size": f"{w}x{h}",
            "seed": seed,
        }
        return ImageResult(
            images=[GeneratedImage(data=data, seed=seed, width=w, height=h, metadata=dict(meta))],
            seed=seed,
            request_id=rid,
            cost_usd=None,
            metadata=meta,
        )


def _num(value: float) -> str:
    return json.dumps(round(float(value), 4))
