"""A loopback Ideogram: /generate (JSON), /remix and /upscale (multipart), the V3 endpoints, result URLs.

Strict like the vendor: ``Api-Key`` checked (401, or 403 on remix/upscale), unknown or misplaced fields give
400 ``{"error": ...}``, an in-flight limit (images, not requests) gives 429 ``inflight_limit``.
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._server import Received, garbage_bytes, render_png, size_for_ratio
from tests.fakes._vendor import BODY_FAULTS, FakeVendor

MODELS = {"V_1", "V_1_TURBO", "V_2", "V_2_TURBO", "V_2A", "V_2A_TURBO", "V_3", "AUTO"}
RATIOS = {
    "ASPECT_1_1",
    "ASPECT_16_9",
    "ASPECT_9_16",
    "ASPECT_4_3",
    "ASPECT_3_4",
    "ASPECT_3_2",
    "ASPECT_2_3",
    "ASPECT_16_10",
    "ASPECT_10_16",
    "ASPECT_1_3",
    "ASPECT_3_1",
}
V3_RATIOS = {
    "1x3",
    "3x1",
    "1x2",
    "2x1",
    "9x16",
    "16x9",
    "10x16",
    "16x10",
    "2x3",
    "3x2",
    "3x4",
    "4x3",
    "4x5",
    "5x4",
    "1x1",
}
LEGACY_FIELDS = {
    "prompt",
    "model",
    "aspect_ratio",
    "resolution",
    "magic_prompt_option",
    "seed",
    "num_images",
    "style_type",
    "negative_prompt",
    "color_palette",
}
REMIX_FIELDS = LEGACY_FIELDS | {"image_weight"}
UPSCALE_FIELDS = {"prompt", "resemblance", "detail", "magic_prompt_option", "num_images", "seed"}
V3_FIELDS = {
    "prompt",
    "seed",
    "resolution",
    "aspect_ratio",
    "rendering_speed",
    "magic_prompt",
    "negative_prompt",
    "num_images",
    "style_type",
    "color_palette",
    "style_codes",
}
NEGATIVE_OK = {"V_1", "V_1_TURBO", "V_2", "V_2_TURBO"}
SPEEDS = {"FLASH", "TURBO", "BALANCED", "DEFAULT", "QUALITY"}
MAGIC = {"AUTO", "ON", "OFF"}
PRICES = {
    "V_1_TURBO": 0.02,
    "V_1": 0.06,
    "V_2_TURBO": 0.05,
    "V_2": 0.08,
    "V_2A_TURBO": 0.025,
    "V_2A": 0.04,
    "AUTO": 0.08,
    "UPSCALE": 0.06,
}
"""USD per output image (Ideogram's published prices, as in the catalog)."""
V3_PRICES = {"FLASH": 0.03, "TURBO": 0.03, "BALANCED": 0.06, "DEFAULT": 0.06, "QUALITY": 0.09}


class Invalid(Exception):
    pass


class FakeIdeogram(FakeVendor):
    vendor = "ideogram"

    def __init__(self, *args: Any, max_inflight: int = 10, **kw: Any) -> None:
        self.max_inflight = max_inflight
        self.inflight = 0
        self.peak_inflight = 0
        self._inflight_lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.expired: set[str] = set()
        self.failing_downloads: dict[str, int] = {}
        """Result tokens whose next N fetches are cut off (the ``download_fail`` fault)."""
        self.download_failures = 1
        self.prices = dict(PRICES)
        self.v3_prices = dict(V3_PRICES)
        super().__init__(*args, **kw)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.failing_downloads.clear()
        self.download_failures = 1

    def routes(self) -> list[Route]:
        return [
            Route("/generate", self.generate, methods=["POST"]),
            Route("/remix", self.remix, methods=["POST"]),
            Route("/upscale", self.upscale, methods=["POST"]),
            Route("/v1/ideogram-v3/generate", self.v3_generate, methods=["POST"]),
            Route("/v1/ideogram-v3/remix", self.v3_remix, methods=["POST"]),
            Route("/files/{token}", self.file, methods=["GET"]),
        ]

    # -- endpoints -----------------------------------------------------------------------------------
    async def generate(self, request: Request) -> Response:
        rec = Received("POST", "/generate", request.headers.get("api-key") == self.api_key)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._bad(rec, "expected a JSON body")
        try:
            body = await request.json()
        except ValueError:
            return self._bad(rec, "body is not JSON")
        rec.json = body
        if not rec.auth_ok:
            return self._reject(rec, 401)
        try:
            if not isinstance(body, dict) or set(body) != {"image_request"}:
                raise Invalid('body must be {"image_request": {...}}')
            req = self._legacy(body["image_request"], LEGACY_FIELDS)
        except Invalid as exc:
            return self._bad(rec, str(exc))
        return await self._answer(rec, req, request, v3=False)

    async def remix(self, request: Request) -> Response:
        return await self._multipart_legacy(request, "/remix", REMIX_FIELDS)

    async def upscale(self, request: Request) -> Response:
        return await self._multipart_legacy(request, "/upscale", UPSCALE_FIELDS)

    async def v3_generate(self, request: Request) -> Response:
        return await self._v3(request, "/v1/ideogram-v3/generate", image=False)

    async def v3_remix(self, request: Request) -> Response:
        return await self._v3(request, "/v1/ideogram-v3/remix", image=True)

    async def file(self, request: Request) -> Response:
        token = request.path_params["token"].removesuffix(".png")
        rec = self.record(
            Received("GET", f"/files/{token}", True, header_names=tuple(request.headers.keys()))
        )
        if token in self.expired or token not in self.files:
            rec.status = 403
            rec.fault = "expired_url" if token in self.expired else None
            return Response(
                "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                status_code=403,
                media_type="application/xml",
            )
        data = self.files[token]
        kind: str | None = None
        with self._lock:
            if self.failing_downloads.get(token, 0) > 0:
                self.failing_downloads[token] -= 1
                kind = "truncate"
        if kind is None and self.rate_download and self.faults.random() < self.rate_download:
            kind = ("503", "truncate", "garbage")[int(self.faults.random() * 3)]
        if kind is not None:
            rec.fault = f"download_{kind}"
        if kind == "503":
            rec.status = 503
            return Response("<Error><Code>SlowDown</Code></Error>", status_code=503, media_type="application/xml")
        if kind == "garbage":
            data = garbage_bytes(self.faults.rng)
        return await self.deliver(rec, "truncate" if kind == "truncate" else None, data, "image/png")

    # -- helpers -------------------------------------------------------------------------------------
    async def _multipart_legacy(self, request: Request, path: str, allowed: set[str]) -> Response:
        rec = Received("POST", path, request.headers.get("api-key") == self.api_key)
        parsed = await self.read_multipart(request)
        if parsed is None:
            return self._bad(rec, "expected multipart/form-data")
        rec.form, rec.files, rec.file_types = parsed
        if not rec.auth_ok:
            return self._reject(rec, 403)
        try:
            if set(rec.form) != {"image_request"} or set(rec.files) != {"image_file"}:
                raise Invalid(
                    f"expected parts image_request and image_file, got {sorted(rec.form) + sorted(rec.files)}"
                )
            self._check_image(rec.files["image_file"], rec.file_types["image_file"])
            try:
                req = json.loads(rec.form["image_request"])
            except ValueError as exc:
                raise Invalid("image_request is not JSON") from exc
            rec.json = req
            if path == "/upscale":
                req = self._upscale(req)
            else:
                req = self._legacy(req, allowed)
                weight = req.get("image_weight", 50)
                if not isinstance(weight, int) or not 1 <= weight <= 100:
                    raise Invalid("image_weight must be an integer 1..100")
        except Invalid as exc:
            return self._bad(rec, str(exc))
        return await self._answer(rec, req, request, v3=False, base=rec.files["image_file"])

    async def _v3(self, request: Request, path: str, image: bool) -> Response:
        rec = Received("POST", path, request.headers.get("api-key") == self.api_key)
        parsed = await self.read_multipart(request)
        if parsed is None:
            if image:
                return self._bad(rec, "expected multipart/form-data")
            try:
                rec.json = await request.json()
            except ValueError:
                return self._bad(rec, "body is not JSON")
            req = dict(rec.json) if isinstance(rec.json, dict) else {}
        else:
            rec.form, rec.files, rec.file_types = parsed
            req = dict(rec.form)
        if not rec.auth_ok:
            return self._reject(rec, 401)
        try:
            allowed = V3_FIELDS | ({"image_weight"} if image else set())
            unknown = set(req) - allowed
            if unknown:
                raise Invalid(f"unknown fields: {sorted(unknown)}")
            if set(rec.files) != ({"image"} if image else set()):
                raise Invalid(f"unexpected file parts {sorted(rec.files)}")
            if image:
                self._check_image(rec.files["image"], rec.file_types["image"])
            for k in ("seed", "num_images", "image_weight"):
                if k in req:
                    try:
                        req[k] = int(req[k])
                    except ValueError as exc:
                        raise Invalid(f"{k} must be an integer") from exc
            if "prompt" not in req or not req["prompt"]:
                raise Invalid("prompt is required")
            if req.get("rendering_speed", "DEFAULT") not in SPEEDS:
                raise Invalid("rendering_speed is not one of FLASH, TURBO, BALANCED, DEFAULT, QUALITY")
            if req.get("magic_prompt", "AUTO") not in MAGIC:
                raise Invalid("magic_prompt must be AUTO, ON or OFF")
            if "aspect_ratio" in req and req["aspect_ratio"] not in V3_RATIOS:
                raise Invalid(f"aspect_ratio {req['aspect_ratio']!r} is not supported")
            if "aspect_ratio" in req and "resolution" in req:
                raise Invalid("give aspect_ratio or resolution, not both")
            self._common(req)
        except Invalid as exc:
            return self._bad(rec, str(exc))
        req["magic_prompt_option"] = req.pop("magic_prompt", "AUTO")
        return await self._answer(rec, req, request, v3=True, base=rec.files.get("image"))

    def _legacy(self, req: Any, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(req, dict):
            raise Invalid("image_request must be an object")
        unknown = set(req) - allowed
        if unknown:
            raise Invalid(f"unknown fields in image_request: {sorted(unknown)}")
        if not req.get("prompt"):
            raise Invalid("image_request.prompt is required")
        model = req.get("model", "V_2")
        if model not in MODELS or model == "V_3":
            raise Invalid(f"image_request.model {model!r} is not a legacy model")
        if "aspect_ratio" in req and "resolution" in req:
            raise Invalid("give aspect_ratio or resolution, not both")
        if "aspect_ratio" in req and req["aspect_ratio"] not in RATIOS:
            raise Invalid(f"aspect_ratio {req['aspect_ratio']!r} is not supported")
        if "resolution" in req and not str(req["resolution"]).startswith("RESOLUTION_"):
            raise Invalid("resolution must look like RESOLUTION_1024_1024")
        if req.get("magic_prompt_option", "AUTO") not in MAGIC:
            raise Invalid("magic_prompt_option must be AUTO, ON or OFF")
        if "style_type" in req and model in ("V_1", "V_1_TURBO"):
            raise Invalid(f"style_type is not available for {model}")
        if "negative_prompt" in req and model not in NEGATIVE_OK:
            raise Invalid(f"negative_prompt is not available for {model}")
        self._common(req)
        return req

    def _upscale(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            raise Invalid("image_request must be an object")
        unknown = set(req) - UPSCALE_FIELDS
        if unknown:
            raise Invalid(f"unknown fields in image_request: {sorted(unknown)}")
        for k in ("resemblance", "detail"):
            if k in req and not (isinstance(req[k], int) and 1 <= req[k] <= 100):
                raise Invalid(f"{k} must be an integer 1..100")
        self._common(req)
        return req

    @staticmethod
    def _common(req: dict[str, Any]) -> None:
        seed = req.get("seed", 0)
        if not isinstance(seed, int) or not 0 <= seed <= 2147483647:
            raise Invalid("seed must be an integer 0..2147483647")
        n = req.get("num_images", 1)
        if not isinstance(n, int) or not 1 <= n <= 8:
            raise Invalid("num_images must be 1..8")

    @staticmethod
    def _check_image(data: bytes, content_type: str) -> None:
        if content_type not in ("image/png", "image/jpeg", "image/webp"):
            raise Invalid(f"image file type {content_type!r} is not supported")
        if len(data) > 10 * 1024 * 1024:
            raise Invalid("image file is larger than 10 MB")

    def _size(self, req: dict[str, Any], v3: bool, base: bytes | None, upscale: bool) -> tuple[int, int]:
        if upscale and base is not None:
            import io

            from PIL import Image

            with Image.open(io.BytesIO(base)) as img:
                return img.size[0] * 2, img.size[1] * 2
        res = req.get("resolution")
        if res:
            parts = str(res).replace("RESOLUTION_", "").replace("x", "_").split("_")
            return self.scaled((int(parts[0]), int(parts[1])))
        ratio = str(req.get("aspect_ratio", "ASPECT_1_1" if not v3 else "1x1")).replace("ASPECT_", "")
        w, h = (int(p) for p in ratio.replace("x", "_").split("_"))
        return self.scaled(size_for_ratio(w, h, 1.0))

    def price(self, req: dict[str, Any], v3: bool, upscale: bool) -> float:
        """USD per image of this request, by model (V3: by rendering speed)."""
        if upscale:
            return self.prices["UPSCALE"]
        if v3:
            return self.v3_prices.get(str(req.get("rendering_speed", "DEFAULT")), self.v3_prices["DEFAULT"])
        return self.prices.get(str(req.get("model", "V_2")), self.prices["V_2"])

    async def _answer(
        self, rec: Received, req: dict[str, Any], request: Request, *, v3: bool, base: bytes | None = None
    ) -> Response:
        n = int(req.get("num_images", 1))
        fault = self.next_fault()
        rec.fault = fault
        rec.model = "V_3" if v3 else ("UPSCALE" if rec.path == "/upscale" else str(req.get("model", "V_2")))
        self.record(rec)
        with self._inflight_lock:
            over = self.inflight + n > self.max_inflight
            if not over:
                self.inflight += n
                self.peak_inflight = max(self.peak_inflight, self.inflight)
        if over or fault == "429_inflight":
            rec.status = 429
            rec.fault = "429_inflight" if fault == "429_inflight" else None
            return JSONResponse(
                {"reject_reason": "inflight_limit", "max_inflight_requests": self.max_inflight},
                status_code=429,
            )
        try:
            if fault == "429":
                rec.status = 429
                return JSONResponse(
                    {"error": "Too many requests" + self.leak(request)},
                    status_code=429,
                    headers={"Retry-After": self.retry_after} if self.retry_after is not None else None,
                )
            if fault in ("500", "503"):
                rec.status = int(fault)
                return JSONResponse({"error": "internal error" + self.leak(request)}, status_code=int(fault))
            if fault == "hang":
                rec.status = 504
                return await self.hang()
            await self.pause(rec.at)
            # The generation runs: the vendor bills every image, filtered ones included.
            self.bill(rec, self.price(req, v3, rec.path == "/upscale") * n)
            prompt = req["prompt"]
            magic = req.get("magic_prompt_option", "AUTO")
            shown = prompt if magic == "OFF" else f"{prompt}, cinematic studio lighting, ultra detailed"
            size = self._size(req, v3, base, rec.path == "/upscale")
            seed = int(req.get("seed") or secrets.randbelow(2**31))
            data = []
            for i in range(n):
                token = secrets.token_hex(8)
                safe = fault != "filter"
                if safe:
                    png = render_png(prompt, size, base=base, tag=f"ideogram {rec.path} {i}")
                    self.files[token] = self.image_for("oversize" if fault == "oversize" else None, png)
                    if fault == "expired_url":
                        self.expired.add(token)
                    if fault == "download_fail":
                        with self._lock:
                            self.failing_downloads[token] = self.download_failures
                data.append(
                    {
                        "url": f"{self.url}/files/{token}.png" if safe else "",
                        "prompt": shown,
                        "resolution": f"{size[0]}x{size[1]}",
                        "is_image_safe": safe,
                        "seed": seed + i,
                        "style_type": req.get(
                            "style_type",
                            "GENERAL" if not str(req.get("model", "")).startswith("V_1") else None,
                        ),
                    }
                )
            body = json.dumps({"created": "2026-11-26T12:00:00Z", "data": data}).encode()
            if fault == "garbage":
                body = garbage_bytes(self.faults.rng)
            return await self.deliver(rec, fault if fault in BODY_FAULTS else None, body, "application/json")
        finally:
            with self._inflight_lock:
                self.inflight -= n

    def _bad(self, rec: Received, message: str) -> Response:
        rec.status = 400
        self.record(rec)
        return JSONResponse({"error": message}, status_code=400)

    def _reject(self, rec: Received, status: int) -> Response:
        rec.status = status
        self.record(rec)
        return JSONResponse({"error": "Invalid API key"}, status_code=status)
