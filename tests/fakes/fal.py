"""A loopback fal.ai queue: submit ``POST /{endpoint id}``, ``GET /{owner}/{alias}/requests/{id}/status``,
``GET /{owner}/{alias}/requests/{id}``, ``PUT .../cancel``, and the output CDN ``GET /files/{token}``.

Written from fal's queue reference and ``fal-client``. Strict like the vendor: ``Authorization: Key <key>`` (401),
a body that is not a JSON object or does not fit the endpoint's input schema (unknown field, wrong type, missing
``prompt``/``image_url``) gives 422 ``{"detail": [{"loc", "msg", "type"}]}``; an unknown endpoint 404. Status and
result URLs use only the app's first two path segments, as fal's do. A job is billed when the submission is accepted
and refunded when cancelled before it is done. Faults on submit: 429 (``Retry-After``), 500/503, hang, and the
wire faults of the submit answer (slow, trickle, endless, truncate); on the output: garbage, oversize, expired_url
(404 on the CDN), filter (``has_nsfw_concepts``: true and a blank image). ``polls_to_finish`` (-1: never) and
``poll_faults`` shape the polling.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._hosted import HostedFake, Invalid, Schema, check_input, decode_data_uri
from tests.fakes._server import Received
from tests.fakes._vendor import BODY_FAULTS

NUM = (int, float)
COMMON: Schema = {
    "prompt": (str, True),
    "seed": (int, False),
    "num_images": (int, False),
    "num_inference_steps": (int, False),
    "guidance_scale": (NUM, False),
    "enable_safety_checker": (bool, False),
    "output_format": (str, False),
    "sync_mode": (bool, False),
}
ENDPOINTS: dict[str, Schema] = {
    "fal-ai/flux/dev": {**COMMON, "image_size": ((dict, str), False), "acceleration": (str, False)},
    "fal-ai/flux/dev/image-to-image": {**COMMON, "image_url": (str, True), "strength": (NUM, False),
                                       "acceleration": (str, False)},
    "fal-ai/stable-diffusion-v35-medium": {**COMMON, "negative_prompt": (str, False),
                                           "image_size": ((dict, str), False)},
    "fal-ai/flux-pro/v1.1-ultra": {"prompt": (str, True), "seed": (int, False), "num_images": (int, False),
                                   "aspect_ratio": (str, False), "output_format": (str, False),
                                   "sync_mode": (bool, False), "raw": (bool, False)},
}
PRICES = {  # (USD per image, USD per megapixel), as in the catalog
    "fal-ai/flux/dev": (None, 0.025),
    "fal-ai/flux/dev/image-to-image": (None, 0.03),
    "fal-ai/stable-diffusion-v35-medium": (None, 0.02),
    "fal-ai/flux-pro/v1.1-ultra": (0.06, None),
}
ENUM_SIZES = {"square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
              "landscape_4_3": (1024, 768), "portrait_16_9": (576, 1024), "landscape_16_9": (1024, 576)}
ULTRA_RATIOS = {"21:9": (3136, 1344), "16:9": (2752, 1536), "4:3": (2368, 1792), "3:2": (2496, 1664),
                "1:1": (2048, 2048), "2:3": (1664, 2496), "3:4": (1792, 2368), "9:16": (1536, 2752),
                "9:21": (1344, 3136)}
SERVED_FAULTS = frozenset({"429", "500", "503", "hang", "slow", "trickle", "endless", "truncate", "garbage",
                           "oversize", "filter", "expired_url"})


def app_of(endpoint: str) -> str:
    return "/".join(endpoint.split("/")[:2])


class FakeFal(HostedFake):
    vendor = "fal"
    allowed_faults = SERVED_FAULTS

    def routes(self) -> list[Route]:
        return [
            Route("/files/{token}", self.file, methods=["GET"]),
            Route("/{owner}/{alias}/requests/{rid}/status", self.status, methods=["GET"]),
            Route("/{owner}/{alias}/requests/{rid}/cancel", self.cancel, methods=["PUT"]),
            Route("/{owner}/{alias}/requests/{rid}", self.result, methods=["GET"]),
            Route("/{endpoint:path}", self.submit, methods=["POST"]),
        ]

    def _auth(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Key {self.api_key}"

    async def submit(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"].strip("/")
        rec = Received("POST", f"/{endpoint}", self._auth(request), header_names=tuple(request.headers))
        if not rec.auth_ok:
            return self._error(rec, 401, "Invalid authentication credentials", request)
        schema = ENDPOINTS.get(endpoint)
        if schema is None:
            return self._error(rec, 404, f"Application '{endpoint}' not found", request)
        try:
            rec.json = await request.json()
        except ValueError:
            return self._invalid(rec, Invalid("body is not valid JSON"))
        try:
            check_input(rec.json, schema)
            base = decode_data_uri(rec.json["image_url"]) if "image_url" in rec.json else None
            size = self._size(endpoint, rec.json, base)
        except (Invalid, ValueError, OSError) as exc:
            return self._invalid(rec, exc if isinstance(exc, Invalid) else Invalid(str(exc)))
        fault = self.next_fault()
        rec.fault = fault
        rec.model = endpoint
        self.record(rec)
        if fault == "429":
            rec.status = 429
            return JSONResponse({"detail": "Too many requests: rate limit exceeded" + self.leak(request)},
                                status_code=429,
                                headers={"Retry-After": self.retry_after} if self.retry_after is not None else None)
        if fault in ("500", "503"):
            rec.status = int(fault)
            return JSONResponse({"detail": "Internal server error: service unavailable" + self.leak(request)},
                                status_code=int(fault))
        if fault == "hang":
            rec.status = 504
            return await self.hang()
        n = int(rec.json.get("num_images", 1))
        per_image, per_mp = PRICES[endpoint]
        self.bill(rec, (per_image or 0) * n + (per_mp or 0) * size[0] * size[1] / 1e6 * n)
        rid = secrets.token_hex(16)
        w, h = size if base is not None else self.scaled(size)  # image-to-image keeps the input's size
        self.jobs[rid] = {
            "rec": rec, "polls": 0, "done": False, "app": app_of(endpoint),
            "urls": self.make_outputs(rec, fault, rec.json["prompt"], (w, h), n, base),
            "size": (w, h), "seed": rec.json.get("seed", secrets.randbelow(2**31)), "filter": fault == "filter",
        }
        root = f"{self.url}/{app_of(endpoint)}/requests/{rid}"
        body = {"request_id": rid, "response_url": root, "status_url": root + "/status",
                "cancel_url": root + "/cancel", "queue_position": 0}
        import json

        return await self.deliver(rec, fault if fault in BODY_FAULTS else None, json.dumps(body).encode(),
                                  "application/json", {"x-fal-request-id": rid})

    def _job(self, request: Request, what: str) -> tuple[Received, dict[str, Any] | None, Response | None]:
        p = request.path_params
        rec = self.record(Received(request.method, f"/{p['owner']}/{p['alias']}/requests/{p['rid']}{what}",
                                   self._auth(request)))
        if not rec.auth_ok:
            rec.status = 401
            return rec, None, JSONResponse({"detail": "Invalid authentication credentials"}, status_code=401)
        job = self.jobs.get(p["rid"])
        if job is None or job["app"] != f"{p['owner']}/{p['alias']}":
            rec.status = 404
            return rec, None, JSONResponse({"detail": "Request not found"}, status_code=404)
        return rec, job, None

    async def status(self, request: Request) -> Response:
        rec, job, bad = self._job(request, "/status")
        if bad is not None or job is None:
            return bad or Response(status_code=500)
        status = self.next_poll_fault()
        if status is not None:
            rec.status = status
            headers = {"Retry-After": self.retry_after or "0"} if status == 429 else None
            return JSONResponse({"detail": "Too many requests" if status == 429 else "Service unavailable"},
                                status_code=status, headers=headers)
        rec.status = 200
        if job["done"] or self.advance(job):
            job["done"] = True
            return JSONResponse({"status": "COMPLETED", "request_id": request.path_params["rid"], "logs": None,
                                 "metrics": {"inference_time": 0.05}, "response_url": str(request.url)[:-7]})
        return JSONResponse({"status": "IN_PROGRESS" if job["polls"] > 1 else "IN_QUEUE", "queue_position": 0,
                             "logs": None})

    async def result(self, request: Request) -> Response:
        rec, job, bad = self._job(request, "")
        if bad is not None or job is None:
            return bad or Response(status_code=500)
        if not job["done"]:
            rec.status = 400
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
        rec.status = 200
        w, h = job["size"]
        return JSONResponse({
            "images": [{"url": u, "width": w, "height": h, "content_type": "image/png"} for u in job["urls"]],
            "seed": job["seed"], "has_nsfw_concepts": [job["filter"]] * len(job["urls"]),
            "timings": {"inference": 0.05}, "prompt": job["rec"].json["prompt"],
        })

    async def cancel(self, request: Request) -> Response:
        rec, job, bad = self._job(request, "/cancel")
        if bad is not None or job is None:
            return bad or Response(status_code=500)
        if job["done"]:
            rec.status = 400
            return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
        job["done"] = True
        self.unbill(job["rec"])  # cancelled before it ran: not charged
        job["rec"].fault = job["rec"].fault or "cancelled"
        rec.status = 202
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)

    @staticmethod
    def _size(endpoint: str, body: dict[str, Any], base: bytes | None) -> tuple[int, int]:
        if endpoint.endswith("ultra"):
            ratio = body.get("aspect_ratio", "16:9")
            if ratio not in ULTRA_RATIOS:
                raise Invalid(f"aspect_ratio: unexpected value {ratio!r}", "aspect_ratio")
            return ULTRA_RATIOS[ratio]
        if base is not None:
            import io

            from PIL import Image

            with Image.open(io.BytesIO(base)) as img:
                return img.size
        size = body.get("image_size", "landscape_4_3")
        if isinstance(size, str):
            if size not in ENUM_SIZES:
                raise Invalid(f"image_size: unexpected value {size!r}", "image_size")
            return ENUM_SIZES[size]
        if set(size) != {"width", "height"} or not all(isinstance(size[k], int) for k in size):
            raise Invalid("image_size: expected {width: int, height: int}", "image_size")
        if not (64 <= size["width"] <= 14142 and 64 <= size["height"] <= 14142):
            raise Invalid("image_size: width and height must be 64..14142", "image_size")
        return size["width"], size["height"]

    def _invalid(self, rec: Received, exc: Invalid) -> Response:
        rec.status = 422
        self.record(rec)
        loc = ["body"] + ([exc.field] if exc.field else [])
        return JSONResponse({"detail": [{"loc": loc, "msg": str(exc), "type": "value_error"}]}, status_code=422)

    def _error(self, rec: Received, status: int, message: str, request: Request) -> Response:
        rec.status = status
        self.record(rec)
        return JSONResponse({"detail": message + self.leak(request)}, status_code=status)
