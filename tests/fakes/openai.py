"""A loopback OpenAI Images API: ``POST /v1/images/generations`` (JSON) and ``POST /v1/images/edits`` (multipart).

Written from OpenAI's API reference and the ``openai`` SDK's types (3.57.0). Strict like the vendor:
``Authorization: Bearer <key>`` (401 ``invalid_api_key``); unknown parameters, wrong types and values out of range
give 400 ``invalid_request_error`` naming the parameter; a size the model does not take gives 400; shut-down models
give 404 ``model_not_found``. Answers ``{created, data: [{b64_json}], usage, size, quality, output_format,
background}`` with token usage computed from size and quality, billed at the catalog's token prices (the fake's
bill and the provider's cost must agree). ``filter`` answers 400 ``moderation_blocked`` (refused, not billed).
"""

from __future__ import annotations

import base64
import io
import json
import math
import secrets
import time
from typing import Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._server import Received, render_png
from tests.fakes._vendor import BODY_FAULTS, FakeVendor

FLEX = {"gpt-image-2", "gpt-image-2-2026-04-21", "gpt-image-2.5-sunburst", "gpt-image-2.5-flare"}
FIXED = {"gpt-image-1.5", "gpt-image-1-mini"}
SHUT_DOWN = {"gpt-image-1", "dall-e-2", "dall-e-3"}
TOKEN_PRICES = {  # USD per 1M tokens: text in, image in, image out (as in the catalog)
    "gpt-image-2": (5.0, 8.0, 30.0),
    "gpt-image-2-2026-04-21": (5.0, 8.0, 30.0),
    "gpt-image-2.5-sunburst": (5.0, 8.0, 30.0),
    "gpt-image-2.5-flare": (5.0, 8.0, 30.0),
    "gpt-image-1.5": (5.0, 8.0, 32.0),
    "gpt-image-1-mini": (2.0, 2.5, 8.0),
}
SQUARE_TOKENS = {"low": 272, "medium": 1056, "high": 4160, "auto": 1056}
"""Output image tokens of a 1024x1024 image by quality (scaled by pixel count for other sizes)."""
GENERATE_FIELDS = {
    "prompt": str,
    "model": str,
    "n": int,
    "size": str,
    "quality": str,
    "output_format": str,
    "background": str,
    "moderation": str,
    "output_compression": int,
    "user": str,
    "safety_identifier": str,
}
EDIT_FIELDS = {*GENERATE_FIELDS, "input_fidelity"} - {"moderation"}
SERVED_FAULTS = frozenset(
    {"429", "500", "503", "hang", "slow", "trickle", "endless", "truncate", "garbage", "oversize", "filter"}
)


class Invalid(Exception):
    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class FakeOpenAI(FakeVendor):
    vendor = "openai"
    allowed_faults = SERVED_FAULTS

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.token_prices = dict(TOKEN_PRICES)
        super().__init__(*args, **kw)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/images/generations", self.generations, methods=["POST"]),
            Route("/v1/images/edits", self.edits, methods=["POST"]),
        ]

    def _auth(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    # -- endpoints -----------------------------------------------------------------------------------
    async def generations(self, request: Request) -> Response:
        rec = Received("POST", "/v1/images/generations", self._auth(request), header_names=tuple(request.headers))
        if not rec.auth_ok:
            return self._unauthorized(rec, request)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._error(rec, 400, "Content-Type must be application/json", None, "invalid_request")
        try:
            rec.json = await request.json()
        except ValueError:
            return self._error(rec, 400, "We could not parse the JSON body of your request.", None, "invalid_json")
        try:
            params = self._check(rec.json, GENERATE_FIELDS)
        except Invalid as exc:
            return self._error(rec, 404 if exc.code == "model_not_found" else 400, str(exc), exc.param, exc.code)
        return await self._answer(rec, request, params, None)

    async def edits(self, request: Request) -> Response:
        rec = Received("POST", "/v1/images/edits", self._auth(request), header_names=tuple(request.headers))
        if not rec.auth_ok:
            return self._unauthorized(rec, request)
        parsed = await self.read_multipart(request)
        if parsed is None:
            return self._error(rec, 400, "images.edit expects multipart/form-data", None, "invalid_request")
        rec.form, rec.files, rec.file_types = parsed
        try:
            images = [k for k in rec.files if k in ("image", "image[]")]
            if not images:
                raise Invalid("Missing required parameter: 'image'.", "image", "missing_required_parameter")
            unknown = set(rec.files) - {"image", "image[]", "mask"}
            if unknown:
                raise Invalid(f"Unknown parameter: '{sorted(unknown)[0]}'.", sorted(unknown)[0], "unknown_parameter")
            for name in rec.files:
                if rec.file_types[name] not in ("image/png", "image/jpeg", "image/webp"):
                    raise Invalid(f"Invalid file '{name}': unsupported mimetype ('{rec.file_types[name]}').", name)
                Image.open(io.BytesIO(rec.files[name])).verify()
            fields: dict[str, Any] = {}
            for k, v in rec.form.items():  # multipart values are strings: the API coerces the numeric ones
                kind = GENERATE_FIELDS.get(k, str)
                try:
                    fields[k] = kind(v)
                except ValueError:
                    raise Invalid(f"Invalid type for '{k}': expected an integer.", k, "invalid_type") from None
            params = self._check(fields, EDIT_FIELDS)
            base = rec.files[images[0]]
        except Invalid as exc:
            return self._error(rec, 404 if exc.code == "model_not_found" else 400, str(exc), exc.param, exc.code)
        except OSError:
            return self._error(rec, 400, "Invalid image file.", "image", "invalid_image")
        return await self._answer(rec, request, params, base)

    # -- validation ----------------------------------------------------------------------------------
    def _check(self, body: Any, allowed: set[str] | dict[str, type]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise Invalid("The body must be a JSON object.")
        for key, value in body.items():
            if key not in allowed:
                raise Invalid(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
            kind = GENERATE_FIELDS.get(key, str)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise Invalid(f"Invalid type for '{key}': expected {kind.__name__}.", key, "invalid_type")
        if not body.get("prompt"):
            raise Invalid("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        if len(body["prompt"]) > 32000:
            raise Invalid("'prompt' is too long: at most 32000 characters.", "prompt")
        model = body.get("model")
        if model is None:
            raise Invalid("Missing required parameter: 'model'.", "model", "missing_required_parameter")
        if model in SHUT_DOWN:
            raise Invalid(f"The model '{model}' has been shut down.", "model", "model_not_found")
        if model not in FLEX | FIXED:
            raise Invalid(f"The model '{model}' does not exist or you do not have access to it.", "model",
                          "model_not_found")
        n = body.get("n", 1)
        if not 1 <= n <= 10:
            raise Invalid("Invalid 'n': integer between 1 and 10.", "n")
        quality = body.get("quality", "auto")
        if quality not in ("low", "medium", "high", "auto"):
            raise Invalid(f"Invalid value: '{quality}'. Supported values are: 'low', 'medium', 'high' and 'auto'.",
                          "quality")
        fmt = body.get("output_format", "png")
        if fmt not in ("png", "jpeg", "webp"):
            raise Invalid(f"Invalid value: '{fmt}'. Supported values are: 'png', 'jpeg' and 'webp'.",
                          "output_format")
        if body.get("background", "auto") not in ("transparent", "opaque", "auto"):
            raise Invalid("Invalid 'background'.", "background")
        if body.get("input_fidelity", "low") not in ("low", "high"):
            raise Invalid("Invalid 'input_fidelity'.", "input_fidelity")
        size = self._size(model, body.get("size", "auto"))
        return {"model": model, "n": n, "quality": quality, "output_format": fmt, "size": size,
                "prompt": body["prompt"], "background": body.get("background", "auto")}

    @staticmethod
    def _size(model: str, size: str) -> tuple[int, int]:
        if size == "auto":
            return (1024, 1024)
        try:
            w, h = (int(p) for p in size.split("x"))
        except ValueError:
            raise Invalid(f"Invalid size '{size}': expected WIDTHxHEIGHT.", "size") from None
        if model in FIXED:
            if (w, h) not in ((1024, 1024), (1536, 1024), (1024, 1536)):
                raise Invalid(f"Invalid size '{size}'. Supported sizes are 1024x1024, 1024x1536, 1536x1024, and auto.",
                              "size")
            return (w, h)
        if w % 16 or h % 16:
            raise Invalid(f"Invalid size '{size}': width and height must be multiples of 16.", "size")
        if not 1 / 3 <= w / h <= 3:
            raise Invalid(f"Invalid size '{size}': the aspect ratio must be between 1:3 and 3:1.", "size")
        if max(w, h) > 3840 or w * h > 8_294_400 or w * h < 655_360:
            raise Invalid(f"Invalid size '{size}': between 655360 and 8294400 pixels, at most 3840 a side.", "size")
        return (w, h)

    # -- answers -------------------------------------------------------------------------------------
    def usage(self, params: dict[str, Any], base: bytes | None) -> dict[str, Any]:
        w, h = params["size"]
        out = math.ceil(SQUARE_TOKENS[params["quality"]] * w * h / (1024 * 1024)) * params["n"]
        text_in = max(1, len(params["prompt"]) // 4)
        image_in = 0 if base is None else 1548  # high-fidelity input image tokens of one image (an estimate)
        return {
            "input_tokens": text_in + image_in,
            "input_tokens_details": {"text_tokens": text_in, "image_tokens": image_in},
            "output_tokens": out,
            "output_tokens_details": {"image_tokens": out, "text_tokens": 0},
            "total_tokens": text_in + image_in + out,
        }

    def cost(self, model: str, usage: dict[str, Any]) -> float:
        text, image_in, image_out = self.token_prices[model]
        d = usage["input_tokens_details"]
        return (d["text_tokens"] * text + d["image_tokens"] * image_in + usage["output_tokens"] * image_out) / 1e6

    async def _answer(self, rec: Received, request: Request, params: dict[str, Any], base: bytes | None) -> Response:
        fault = self.next_fault()
        rec.fault = fault
        rec.model = params["model"]
        self.record(rec)
        if fault == "429":
            rec.status = 429
            headers = {"x-ratelimit-limit-images": "5", "x-ratelimit-remaining-images": "0"}
            if self.retry_after is not None:
                headers["Retry-After"] = self.retry_after
            return JSONResponse(
                {"error": {"message": "Rate limit reached for images per minute: Limit 5, Used 5, Requested 1. "
                           "Too many requests." + self.leak(request),
                           "type": "requests", "param": None, "code": "rate_limit_exceeded"}},
                status_code=429,
                headers=headers,
            )
        if fault in ("500", "503"):
            rec.status = int(fault)
            return JSONResponse(
                {"error": {"message": "The server had an error while processing your request. Sorry about that! "
                           "(internal error)" + self.leak(request), "type": "server_error", "param": None,
                           "code": None}},
                status_code=int(fault),
            )
        if fault == "hang":
            rec.status = 504
            return await self.hang()
        if fault == "filter":
            rec.status = 400
            return JSONResponse(
                {"error": {"message": "Your request was rejected as a result of our safety system.",
                           "type": "image_generation_user_error", "param": None, "code": "moderation_blocked"}},
                status_code=400,
            )
        await self.pause()
        usage = self.usage(params, base)
        self.bill(rec, self.cost(params["model"], usage))
        w, h = self.scaled(params["size"])
        data = []
        for i in range(params["n"]):
            png = render_png(params["prompt"], (w, h), base=base, tag=f"openai {rec.path} {i}")
            if params["output_format"] != "png":
                img = Image.open(io.BytesIO(png)).convert("RGB")
                buf = io.BytesIO()
                img.save(buf, format="JPEG" if params["output_format"] == "jpeg" else "WEBP")
                png = buf.getvalue()
            data.append({"b64_json": base64.b64encode(self.image_for(fault, png)).decode()})
        body = json.dumps({
            "created": int(time.time()),
            "background": "opaque" if params["background"] == "auto" else params["background"],
            "data": data,
            "output_format": params["output_format"],
            "quality": "medium" if params["quality"] == "auto" else params["quality"],
            "size": f"{params['size'][0]}x{params['size'][1]}",
            "usage": usage,
        }).encode()
        headers = {"x-request-id": "req_" + secrets.token_hex(12)}
        return await self.deliver(rec, fault if fault in BODY_FAULTS else None, body, "application/json", headers)

    def _unauthorized(self, rec: Received, request: Request) -> Response:
        got = request.headers.get("authorization", "")
        shown = got.removeprefix("Bearer ")
        shown = f"{shown[:3]}***{shown[-4:]}" if len(shown) > 8 else "***"
        return self._error(rec, 401, f"Incorrect API key provided: {shown}.", None, "invalid_api_key",
                           kind="invalid_request_error")

    def _error(self, rec: Received, status: int, message: str, param: str | None, code: str | None,
               kind: str = "invalid_request_error") -> Response:
        rec.status = status
        self.record(rec)
        return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                            status_code=status)
