"""A loopback Gemini API: ``models/{model}:generateContent`` and ``models/{model}:predict`` under any version.

Strict like the vendor: ``x-goog-api-key`` checked (400 API_KEY_INVALID, as Google answers), unknown fields in
the body or ``generationConfig`` give 400 INVALID_ARGUMENT, retired models give 404 NOT_FOUND. The route
matches the part after the API version (google-genai 3.6 sends ``/v1/``, older builds ``/v1beta/``).
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._server import Received, render_png, size_for_ratio
from tests.fakes._vendor import BODY_FAULTS, FakeVendor

IMAGE_MODELS = {"gemini-2.5-flash-image", "gemini-3.1-flash-image", "gemini-3-pro-image"}
RETIRED = {"imagen-4.0-generate-001", "imagen-4.0-ultra-generate-001", "imagen-4.0-fast-generate-001"}
BODY_FIELDS = {"contents", "generationConfig", "safetySettings", "systemInstruction"}
GEN_FIELDS = {"responseModalities", "seed", "imageConfig", "candidateCount", "temperature"}
IMAGE_CONFIG = {"aspectRatio", "imageSize"}
RATIOS = {"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"}
SIZES = {"1K": 1, "2K": 2, "4K": 4}
"""``imageSize`` -> how many times the 1K sides the output is."""
SIZES_1K = {
    "1:1": (1024, 1024),
    "2:3": (848, 1264),
    "3:2": (1264, 848),
    "3:4": (896, 1200),
    "4:3": (1200, 896),
    "4:5": (928, 1152),
    "5:4": (1152, 928),
    "9:16": (768, 1376),
    "16:9": (1376, 768),
    "21:9": (1584, 672),
}
"""Gemini 3 image output sizes at 1K by aspect ratio (Google's table); 2K and 4K double and quadruple them."""
PRICES = {
    "gemini-2.5-flash-image": 0.039,
    "gemini-3.1-flash-image": 0.067,
    "gemini-3-pro-image": 0.134,
    "imagen-4.0-generate-001": 0.04,
    "imagen-4.0-fast-generate-001": 0.02,
    "imagen-4.0-ultra-generate-001": 0.06,
}
"""USD per output image at 1K (as in the catalog)."""
SIZE_PRICES = {
    "gemini-3-pro-image": {"1K": 0.134, "2K": 0.134, "4K": 0.24},
    "gemini-3.1-flash-image": {"1K": 0.067, "2K": 0.101, "4K": 0.151},
}
"""USD per output image by ``imageSize`` (as in the catalog's ``size_prices``)."""
SERVED_FAULTS = frozenset(
    {"429", "500", "503", "hang", "slow", "trickle", "endless", "truncate", "garbage", "oversize", "filter"}
)


class Invalid(Exception):
    pass


def _check_types(gen: dict[str, Any]) -> None:
    """``generationConfig`` field types as the API checks them (an int where a string belongs is a 400)."""
    kinds: dict[str, type | tuple[type, ...]] = {
        "responseModalities": list,
        "seed": int,
        "candidateCount": int,
        "temperature": (int, float),
    }
    for name, kind in kinds.items():
        if name in gen and (not isinstance(gen[name], kind) or isinstance(gen[name], bool)):
            raise Invalid(f"Invalid value at 'generation_config.{name}', {gen[name]!r}")
    if not all(isinstance(m, str) for m in gen.get("responseModalities", [])):
        raise Invalid("Invalid value at 'generation_config.response_modalities'")


def _b64(text: str) -> bytes:
    """Google accepts standard and URL-safe base64, padded or not (the SDK sends URL-safe)."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


class FakeGoogle(FakeVendor):
    vendor = "google"

    def __init__(self, *args: Any, serve_imagen: bool = False, **kw: Any) -> None:
        self.serve_imagen = serve_imagen
        """Answer Imagen :predict calls instead of 404 (the wire format before the retirement)."""
        self.prices = dict(PRICES)
        self.size_prices = {m: dict(p) for m, p in SIZE_PRICES.items()}
        self.plain_errors = False
        """When True, error answers carry a body that is not in Google's ``{"error": {...}}`` shape (a proxy's)."""
        super().__init__(*args, **kw)

    allowed_faults = SERVED_FAULTS

    def reset(self) -> None:
        super().reset()
        self.plain_errors = False

    def routes(self) -> list[Route]:
        return [Route("/{version}/models/{target}", self.model_call, methods=["POST"])]

    async def model_call(self, request: Request) -> Response:
        target = request.path_params["target"]
        model, _, method = target.partition(":")
        rec = Received("POST", f"/models/{target}", request.headers.get("x-goog-api-key") == self.api_key)
        try:
            rec.json = await request.json()
        except ValueError:
            return self._error(rec, 400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not rec.auth_ok:
            return self._error(
                rec,
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            )
        if model in RETIRED and not self.serve_imagen:
            return self._error(
                rec,
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version "
                f"{request.path_params['version']}, or is not supported for {method}.",
            )
        if method == "generateContent" and model in IMAGE_MODELS:
            return await self._generate_content(rec, model, request)
        if method == "predict" and model in RETIRED:
            return await self._predict(rec, request, model)
        return self._error(
            rec, 404, "NOT_FOUND", f"models/{model} is not found or not supported for {method}."
        )

    async def _fault(self, rec: Received, request: Request) -> Response | None:
        fault = self.next_fault()
        rec.fault = fault
        if fault == "429":
            return self._error(
                rec,
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota)." + self.leak(request),
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}],
                headers={"Retry-After": self.retry_after} if self.retry_after is not None else None,
            )
        if fault in ("500", "503"):
            status = "INTERNAL" if fault == "500" else "UNAVAILABLE"
            return self._error(
                rec, int(fault), status, "The service is currently unavailable." + self.leak(request)
            )
        if fault == "hang":
            self.record(rec)
            rec.status = 504
            return await self.hang()
        return None

    async def _generate_content(self, rec: Received, model: str, request: Request) -> Response:
        body = rec.json
        try:
            if not isinstance(body, dict):
                raise Invalid("body must be an object")
            unknown = set(body) - BODY_FIELDS
            if unknown:
                raise Invalid(f"Unknown name {sorted(unknown)[0]!r}: Cannot find field.")
            gen = body.get("generationConfig", {})
            unknown = set(gen) - GEN_FIELDS
            if unknown:
                raise Invalid(
                    f"Unknown name {sorted(unknown)[0]!r} at 'generation_config': Cannot find field."
                )
            _check_types(gen)
            img_cfg = gen.get("imageConfig", {})
            if not isinstance(img_cfg, dict):
                raise Invalid("Invalid value at 'generation_config.image_config': expected an object")
            unknown = set(img_cfg) - IMAGE_CONFIG
            if unknown:
                raise Invalid(f"Unknown name {sorted(unknown)[0]!r} at 'generation_config.image_config'.")
            for name, value in img_cfg.items():
                if not isinstance(value, str):
                    raise Invalid(
                        f"Invalid value at 'generation_config.image_config.{name}' (TYPE_STRING), {value!r}"
                    )
            if "aspectRatio" in img_cfg and img_cfg["aspectRatio"] not in RATIOS:
                raise Invalid(f"aspect ratio {img_cfg['aspectRatio']} is not supported")
            if "imageSize" in img_cfg and (
                img_cfg["imageSize"] not in SIZES or model.startswith("gemini-2.5")
            ):
                raise Invalid(f"image size {img_cfg['imageSize']} is not supported by {model}")
            if "IMAGE" not in gen.get("responseModalities", ["TEXT"]):
                raise Invalid(f"{model} needs responseModalities to include IMAGE")
            parts = [p for c in body.get("contents", []) for p in c.get("parts", [])]
            texts = [p["text"] for p in parts if "text" in p]
            blobs = [_b64(p["inlineData"]["data"]) for p in parts if "inlineData" in p]
            if not texts:
                raise Invalid("contents must hold a text part")
        except (Invalid, KeyError, TypeError, ValueError) as exc:
            return self._error(rec, 400, "INVALID_ARGUMENT", str(exc))
        if blobs:
            rec.files["inline_image"] = blobs[0]
        rec.model = model
        bad = await self._fault(rec, request)
        if bad is not None:
            return bad
        self.record(rec)
        await self.pause()
        # The model ran: billed per candidate (a safety-withheld image too, as the provider assumes).
        each = self.size_prices.get(model, {}).get(img_cfg.get("imageSize", "1K"), self.prices.get(model, 0.0))
        self.bill(rec, each * int(gen.get("candidateCount", 1) or 1))
        if rec.fault == "filter":
            rec.status = 200
            return JSONResponse(
                {
                    "candidates": [{"finishReason": "IMAGE_SAFETY", "index": 0}],
                    "modelVersion": model,
                    "responseId": secrets.token_hex(8),
                }
            )
        ratio = img_cfg.get("aspectRatio", "1:1")
        base_w, base_h = SIZES_1K[ratio]
        times = SIZES[img_cfg.get("imageSize", "1K")]
        size = self.scaled((base_w * times, base_h * times))
        data = render_png(texts[-1], size, base=blobs[0] if blobs else None, tag=f"google {model}")
        data = self.image_for(rec.fault, data)
        answer = json.dumps(
            {
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [
                                {"text": "Here is the image."},
                                {
                                    "inlineData": {
                                        "mimeType": "image/png",
                                        "data": base64.b64encode(data).decode(),
                                    }
                                },
                            ],
                        },
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 12,
                    "candidatesTokenCount": 1290,
                    "totalTokenCount": 1302,
                },
                "modelVersion": model,
                "responseId": secrets.token_hex(8),
            }
        ).encode()
        wire = rec.fault if rec.fault in BODY_FAULTS else None
        return await self.deliver(rec, wire, answer, "application/json")

    async def _predict(self, rec: Received, request: Request, model: str) -> Response:
        body = rec.json
        try:
            if set(body) - {"instances", "parameters"}:
                raise Invalid("unknown fields")
            prompt = body["instances"][0]["prompt"]
            params = body.get("parameters", {})
            allowed = {
                "sampleCount",
                "aspectRatio",
                "sampleImageSize",
                "personGeneration",
                "seed",
                "addWatermark",
                "enhancePrompt",
                "negativePrompt",
                "outputOptions",
            }
            if set(params) - allowed:
                raise Invalid(f"unknown parameters {sorted(set(params) - allowed)}")
        except (Invalid, KeyError, TypeError, IndexError) as exc:
            return self._error(rec, 400, "INVALID_ARGUMENT", str(exc))
        rec.model = model
        bad = await self._fault(rec, request)
        if bad is not None:
            return bad
        self.record(rec)
        if rec.fault == "filter":  # Imagen does not charge for filtered images
            rec.status = 200
            return JSONResponse({"predictions": [{"raiFilteredReason": "filtered by the safety filter"}]})
        count = int(params.get("sampleCount", 1))
        self.bill(rec, self.prices.get(model, 0.0) * count)
        w, h = (int(p) for p in params.get("aspectRatio", "1:1").split(":"))
        preds = []
        for i in range(count):
            data = render_png(prompt, self.scaled(size_for_ratio(w, h, 1.0)), tag=f"imagen {i}")
            data = self.image_for(rec.fault, data)
            preds.append({"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": "image/png"})
        wire = rec.fault if rec.fault in BODY_FAULTS else None
        return await self.deliver(rec, wire, json.dumps({"predictions": preds}).encode(), "application/json")

    def _error(
        self,
        rec: Received,
        code: int,
        status: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        rec.status = code
        self.record(rec)
        if self.plain_errors:
            return JSONResponse({"error": message, "code": code}, status_code=code, headers=headers)
        err: dict[str, Any] = {"code": code, "message": message, "status": status}
        if details:
            err["details"] = details
        return JSONResponse({"error": err}, status_code=code, headers=headers)
