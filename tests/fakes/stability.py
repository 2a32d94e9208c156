"""A loopback Stability AI: SD3.5 generate (multipart), the three upscalers and the results poll.

Strict like the vendor: ``authorization: Bearer`` checked (401), a body that is not multipart/form-data or
carries unknown or misplaced fields gives 400 ``{id, name, errors}``; ``accept: image/*`` answers raw bytes
with ``finish-reason``/``seed``/``x-request-id`` headers, ``application/json`` answers base64.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
from typing import Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._server import Received, render_png, size_for_ratio
from tests.fakes._vendor import BODY_FAULTS, FakeVendor

MODELS = {"sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium"}
RATIOS = {"16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21"}
SD3_FIELDS = {
    "prompt",
    "mode",
    "model",
    "aspect_ratio",
    "seed",
    "output_format",
    "negative_prompt",
    "cfg_scale",
    "strength",
}
UPSCALE_FIELDS = {
    "fast": {"output_format"},
    "conservative": {"prompt", "negative_prompt", "seed", "output_format", "creativity"},
    "creative": {"prompt", "negative_prompt", "seed", "output_format", "creativity", "style_preset"},
}


PRICES = {
    "sd3.5-large": 0.065,
    "sd3.5-large-turbo": 0.04,
    "sd3.5-medium": 0.035,
    "upscale/fast": 0.02,
    "upscale/conservative": 0.25,
    "upscale/creative": 0.25,
}
"""USD per success (credits at $0.01, as in the catalog)."""
SERVED_FAULTS = frozenset(
    {"429", "500", "503", "hang", "slow", "trickle", "endless", "truncate", "garbage", "oversize", "filter"}
)


class Invalid(Exception):
    pass


class FakeStability(FakeVendor):
    vendor = "stability"

    def __init__(self, *args: Any, creative_polls: int = 2, **kw: Any) -> None:
        self.creative_polls = creative_polls
        """How many polls answer 202 before the creative upscale is done (-1: never)."""
        self.jobs: dict[str, dict[str, Any]] = {}
        self.prices = dict(PRICES)
        super().__init__(*args, **kw)

    allowed_faults = SERVED_FAULTS

    def routes(self) -> list[Route]:
        return [
            Route("/v2beta/stable-image/generate/sd3", self.sd3, methods=["POST"]),
            Route("/v2beta/stable-image/upscale/{kind}", self.upscale, methods=["POST"]),
            Route("/v2beta/results/{job}", self.result, methods=["GET"]),
        ]

    def _auth(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def _read(self, request: Request, path: str) -> tuple[Received, Response | None]:
        rec = Received("POST", path, self._auth(request))
        parsed = await self.read_multipart(request)
        if parsed is None:
            return rec, self._error(rec, 400, "bad_request", "content-type must be multipart/form-data")
        rec.form, rec.files, rec.file_types = parsed
        if not rec.auth_ok:
            return rec, self._error(rec, 401, "unauthorized", "authorization: missing or invalid API key")
        accept = request.headers.get("accept", "")
        if accept not in ("image/*", "application/json"):
            return rec, self._error(rec, 400, "bad_request", "accept must be image/* or application/json")
        return rec, None

    async def sd3(self, request: Request) -> Response:
        rec, bad = await self._read(request, "/v2beta/stable-image/generate/sd3")
        if bad:
            return bad
        f = rec.form
        try:
            unknown = set(f) - SD3_FIELDS
            if unknown:
                raise Invalid(f"unknown parameters: {sorted(unknown)}")
            if not 1 <= len(f.get("prompt", "")) <= 10000:
                raise Invalid("prompt: required, 1..10000 characters")
            mode = f.get("mode", "text-to-image")
            if f.get("model", "sd3.5-large") not in MODELS:
                raise Invalid(f"model: {f.get('model')!r} is not one of {sorted(MODELS)}")
            if mode == "image-to-image":
                if set(rec.files) != {"image"} or "strength" not in f:
                    raise Invalid("image-to-image needs image and strength")
                if "aspect_ratio" in f:
                    raise Invalid("aspect_ratio: not valid in image-to-image mode")
                if not 0 <= float(f["strength"]) <= 1:
                    raise Invalid("strength: 0..1")
            elif mode == "text-to-image":
                if rec.files or "strength" in f:
                    raise Invalid("image and strength are only valid in image-to-image mode")
                if f.get("aspect_ratio", "1:1") not in RATIOS:
                    raise Invalid(f"aspect_ratio: {f.get('aspect_ratio')!r} is not supported")
            else:
                raise Invalid(f"mode: {mode!r}")
            if "seed" in f and not 0 <= int(f["seed"]) <= 4294967294:
                raise Invalid("seed: 0..4294967294")
            if "cfg_scale" in f and not 1 <= float(f["cfg_scale"]) <= 10:
                raise Invalid("cfg_scale: 1..10")
            if f.get("output_format", "png") not in ("png", "jpeg"):
                raise Invalid("output_format: png or jpeg")
        except (Invalid, ValueError) as exc:
            return self._error(rec, 400, "bad_request", str(exc))
        if mode == "image-to-image":
            with Image.open(io.BytesIO(rec.files["image"])) as img:
                iw, ih = img.size
            size = self.scaled(size_for_ratio(iw, ih, 1.0))
            base: bytes | None = rec.files["image"]
        else:
            w, h = (int(p) for p in f.get("aspect_ratio", "1:1").split(":"))
            size = self.scaled(size_for_ratio(w, h, 1.0))
            base = None
        rec.model = f.get("model", "sd3.5-large")
        return await self._image(rec, request, f["prompt"], size, base, int(f.get("seed", "0") or 0))

    async def upscale(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        rec, bad = await self._read(request, f"/v2beta/stable-image/upscale/{kind}")
        if bad:
            return bad
        try:
            if kind not in UPSCALE_FIELDS:
                return self._error(rec, 404, "not_found", f"no upscaler {kind!r}")
            unknown = set(rec.form) - UPSCALE_FIELDS[kind]
            if unknown:
                raise Invalid(f"unknown parameters: {sorted(unknown)}")
            if set(rec.files) != {"image"}:
                raise Invalid("image: required")
            if kind != "fast" and not rec.form.get("prompt"):
                raise Invalid("prompt: required")
        except Invalid as exc:
            return self._error(rec, 400, "bad_request", str(exc))
        with Image.open(io.BytesIO(rec.files["image"])) as img:
            iw, ih = img.size
        factor = 4 if kind == "fast" else 2
        size = (iw * factor, ih * factor)
        prompt = rec.form.get("prompt", "upscaled")
        rec.model = f"upscale/{kind}"
        if kind == "creative":
            fault = self.faults.next(("429", "500", "503", "hang"))
            rec.fault = fault
            self.record(rec)
            if fault:
                return await self._fault(rec, fault, request)
            self.bill(rec, self.prices[rec.model])  # the job is accepted: billed, whatever the polls see
            job = secrets.token_hex(16)
            self.jobs[job] = {
                "polls": 0,
                "prompt": prompt,
                "size": size,
                "base": rec.files["image"],
                "seed": int(rec.form.get("seed", "0") or 0),
            }
            rec.status = 200
            return JSONResponse({"id": job})
        return await self._image(
            rec, request, prompt, size, rec.files["image"], int(rec.form.get("seed", "0") or 0)
        )

    async def result(self, request: Request) -> Response:
        job_id = request.path_params["job"]
        rec = self.record(Received("GET", f"/v2beta/results/{job_id}", self._auth(request)))
        if not rec.auth_ok:
            return self._error(
                rec, 401, "unauthorized", "authorization: missing or invalid API key", record=False
            )
        job = self.jobs.get(job_id)
        if job is None:
            return self._error(rec, 404, "not_found", f"no generation {job_id}", record=False)
        job["polls"] += 1
        if self.creative_polls < 0 or job["polls"] <= self.creative_polls:
            rec.status = 202
            return JSONResponse({"id": job_id, "status": "in-progress"}, status_code=202)
        return await self._image(
            rec, request, job["prompt"], job["size"], job["base"], job["seed"], record=False
        )

    async def _fault(self, rec: Received, fault: str, request: Request) -> Response:
        if fault == "429":
            rec.status = 429
            return JSONResponse(
                {
                    "id": secrets.token_hex(8),
                    "name": "rate_limit_exceeded",
                    "errors": [
                        "You have exceeded the rate limit of 150 requests within 10 seconds" + self.leak(request)
                    ],
                },
                status_code=429,
                headers={"Retry-After": self.retry_after} if self.retry_after is not None else None,
            )
        if fault in ("500", "503"):
            rec.status = int(fault)
            return JSONResponse(
                {
                    "id": secrets.token_hex(8),
                    "name": "internal_error",
                    "errors": ["An unexpected server error occurred" + self.leak(request)],
                },
                status_code=int(fault),
            )
        rec.status = 504
        return await self.hang()

    async def _image(
        self,
        rec: Received,
        request: Request,
        prompt: str,
        size: tuple[int, int],
        base: bytes | None,
        seed: int,
        record: bool = True,
    ) -> Response:
        fault = self.next_fault() if record else None
        rec.fault = fault
        if record:
            self.record(rec)
        if fault in ("429", "500", "503", "hang"):
            return await self._fault(rec, fault, request)
        await self.pause(rec.at)
        if record:  # a synchronous generation ran: billed (content-filtered ones too)
            self.bill(rec, self.prices.get(rec.model or "", 0.0))
        seed = seed or secrets.randbelow(4294967294) + 1
        data = self.image_for(fault, render_png(prompt, size, base=base, tag=f"stability {rec.path}"))
        finish = "CONTENT_FILTERED" if fault == "filter" else "SUCCESS"
        rid = secrets.token_hex(16)
        wire = fault if fault in BODY_FAULTS else None
        if request.headers.get("accept") == "application/json":
            body = json.dumps({"image": base64.b64encode(data).decode(), "finish_reason": finish, "seed": seed})
            return await self.deliver(rec, wire, body.encode(), "application/json", {"x-request-id": rid})
        return await self.deliver(
            rec, wire, data, "image/png", {"finish-reason": finish, "seed": str(seed), "x-request-id": rid}
        )

    def _error(self, rec: Received, status: int, name: str, message: str, record: bool = True) -> Response:
        rec.status = status
        if record:
            self.record(rec)
        return JSONResponse(
            {"id": secrets.token_hex(16), "name": name, "errors": [message]}, status_code=status
        )
