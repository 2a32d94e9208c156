"""A loopback Replicate: ``POST /v1/models/{owner}/{name}/predictions``, ``POST /v1/predictions`` (by version),
``GET /v1/predictions/{id}``, ``POST /v1/predictions/{id}/cancel``, and output files ``GET /files/{token}``.

Written from Replicate's HTTP reference and the ``replicate`` client. Strict like the vendor: ``Authorization:
Bearer <token>`` (401 problem details), a body other than ``{"input": {...}}`` (plus ``version`` on
``/v1/predictions``) or an input that does not fit the model's schema gives 422 ``{title, detail, status,
invalid_fields}``; unknown models 404. ``Prefer: wait=N`` (1..60) is parsed (400 when malformed): a prediction
that finishes within ``polls_to_finish`` = 0 comes back ``succeeded`` in the 201, else ``starting`` and later polls
answer ``processing`` until done. A prediction is billed when created and refunded when cancelled before it ends.
Faults on create: 429 (``Retry-After``), 500/503, hang, and the wire faults of the 201 answer; on the output:
garbage, oversize, expired_url (404); filter: the prediction fails with an NSFW error (billed: it ran).
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._hosted import HostedFake, Invalid, Schema, check_input, decode_data_uri
from tests.fakes._server import Received, size_for_ratio
from tests.fakes._vendor import BODY_FAULTS

NUM = (int, float)
RATIOS = {"1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"}
MODELS: dict[str, Schema] = {
    "stability-ai/stable-diffusion-3.5-medium": {
        "prompt": (str, True), "aspect_ratio": (str, False), "cfg": (NUM, False), "image": (str, False),
        "prompt_strength": (NUM, False), "seed": (int, False), "output_format": (str, False), "steps": (int, False),
        "negative_prompt": (str, False),
    },
    "black-forest-labs/flux-schnell": {
        "prompt": (str, True), "aspect_ratio": (str, False), "num_outputs": (int, False), "seed": (int, False),
        "output_format": (str, False), "go_fast": (bool, False), "megapixels": (str, False),
    },
}
VERSIONS = {"5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa": "acme/label-refiner"}
VERSION_SCHEMA: Schema = {
    "prompt": (str, True), "image": (str, False), "prompt_strength": (NUM, False), "seed": (int, False),
    "aspect_ratio": (str, False), "num_outputs": (int, False),
}
PRICES = {"stability-ai/stable-diffusion-3.5-medium": 0.035, "black-forest-labs/flux-schnell": 0.003,
          "acme/label-refiner": 0.01}
"""USD per output image (as in the catalog; the custom model's is what the tests configure)."""
SERVED_FAULTS = frozenset({"429", "500", "503", "hang", "slow", "trickle", "endless", "truncate", "garbage",
                           "oversize", "filter", "expired_url"})
PREFER = re.compile(r"^wait(=(\d+))?$")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeReplicate(HostedFake):
    vendor = "replicate"
    allowed_faults = SERVED_FAULTS

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.polls_to_finish = 0

    def reset(self) -> None:
        super().reset()
        self.polls_to_finish = 0

    def routes(self) -> list[Route]:
        return [
            Route("/files/{token}", self.file, methods=["GET"]),
            Route("/v1/models/{owner}/{name}/predictions", self.create_for_model, methods=["POST"]),
            Route("/v1/predictions", self.create_for_version, methods=["POST"]),
            Route("/v1/predictions/{pid}", self.get, methods=["GET"]),
            Route("/v1/predictions/{pid}/cancel", self.cancel, methods=["POST"]),
        ]

    def _auth(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def create_for_model(self, request: Request) -> Response:
        model = f"{request.path_params['owner']}/{request.path_params['name']}"
        return await self._create(request, f"/v1/models/{model}/predictions", model, None)

    async def create_for_version(self, request: Request) -> Response:
        return await self._create(request, "/v1/predictions", None, None)

    async def _create(self, request: Request, path: str, model: str | None, _: Any) -> Response:
        rec = Received("POST", path, self._auth(request), header_names=tuple(request.headers))
        if not rec.auth_ok:
            return self._problem(rec, 401, "Unauthenticated", "You did not pass a valid authentication token",
                                 request)
        prefer = request.headers.get("prefer")
        if prefer is not None:
            m = PREFER.match(prefer.strip())
            if not m or (m.group(2) and not 1 <= int(m.group(2)) <= 60):
                return self._problem(rec, 400, "Invalid Prefer header", "Prefer: wait or wait=N with N in 1..60",
                                     request)
        try:
            rec.json = await request.json()
        except ValueError:
            return self._problem(rec, 400, "Invalid JSON", "The request body is not valid JSON", request)
        body = rec.json
        try:
            if not isinstance(body, dict):
                raise Invalid("the body must be an object")
            allowed = {"input", "webhook", "webhook_events_filter", "stream"}
            if model is None:
                allowed.add("version")
            extra = set(body) - allowed
            if extra:
                raise Invalid(f"Additional property {sorted(extra)[0]} is not allowed", sorted(extra)[0])
            if model is None:
                version = body.get("version")
                if not isinstance(version, str) or version not in VERSIONS:
                    raise Invalid("version: Invalid version or not permitted", "version")
                model, schema = VERSIONS[version], VERSION_SCHEMA
            else:
                if model not in MODELS:
                    return self._problem(rec, 404, "Not found", f"The model {model} does not exist", request)
                schema = MODELS[model]
            if "input" not in body:
                raise Invalid("input is required", "input")
            check_input(body["input"], schema)
            inp = body["input"]
            base = decode_data_uri(inp["image"]) if "image" in inp else None
            ratio = inp.get("aspect_ratio", "1:1")
            if ratio not in RATIOS:
                raise Invalid(f"aspect_ratio must be one of {sorted(RATIOS)}", "aspect_ratio")
        except (Invalid, ValueError, OSError) as exc:
            field = exc.field if isinstance(exc, Invalid) else None
            rec.status = 422
            self.record(rec)
            return JSONResponse({"title": "Input validation failed", "detail": f"- input: {exc}", "status": 422,
                                 "invalid_fields": [{"type": "invalid", "field": field or "input",
                                                     "description": str(exc)}]},
                                status_code=422, media_type="application/problem+json")
        fault = self.next_fault()
        rec.fault = fault
        rec.model = model
        self.record(rec)
        if fault == "429":
            rec.status = 429
            return JSONResponse(
                {"title": "Request was throttled.", "status": 429,
                 "detail": "Request was throttled: too many requests. Expected available in 1 second." + self.leak(
                     request)},
                status_code=429, headers={"Retry-After": self.retry_after} if self.retry_after is not None else None,
            )
        if fault in ("500", "503"):
            rec.status = int(fault)
            return JSONResponse({"title": "Internal server error", "status": int(fault),
                                 "detail": "An unexpected error occurred" + self.leak(request)}, status_code=int(fault))
        if fault == "hang":
            rec.status = 504
            return await self.hang()
        n = int(inp.get("num_outputs", 1))
        self.bill(rec, PRICES[model] * n)
        if base is not None:
            import io

            from PIL import Image

            with Image.open(io.BytesIO(base)) as img:
                size = img.size
        else:
            w, h = (int(p) for p in ratio.split(":"))
            size = self.scaled(size_for_ratio(w, h, 1.0))
        pid = secrets.token_hex(13)
        job = {"rec": rec, "polls": 0, "id": pid, "model": model, "version": body.get("version") or "latest",
               "input": inp, "created_at": _now(), "canceled": False,
               "urls": [] if fault == "filter" else self.make_outputs(rec, fault, inp["prompt"], size, n, base),
               "filter": fault == "filter"}
        self.jobs[pid] = job
        done = self.polls_to_finish == 0
        answer = json.dumps(self._prediction(job, done)).encode()
        return await self.deliver(rec, fault if fault in BODY_FAULTS else None, answer, "application/json")

    def _prediction(self, job: dict[str, Any], done: bool) -> dict[str, Any]:
        if job["canceled"]:
            status = "canceled"
        elif done:
            status = "failed" if job["filter"] else "succeeded"
        else:
            status = "processing" if job["polls"] else "starting"
        out = {
            "id": job["id"], "model": job["model"], "version": job["version"], "input": job["input"], "logs": "",
            "status": status, "created_at": job["created_at"], "data_removed": False,
            "output": job["urls"] if status == "succeeded" else None,
            "error": "NSFW content detected. Try running it again, or try a different prompt."
            if status == "failed" else None,
            "metrics": {"predict_time": 0.05} if done else {},
            "urls": {"get": f"{self.url}/v1/predictions/{job['id']}",
                     "cancel": f"{self.url}/v1/predictions/{job['id']}/cancel",
                     "web": f"https://replicate.com/p/{job['id']}"},
        }
        return out

    async def get(self, request: Request) -> Response:
        pid = request.path_params["pid"]
        rec = self.record(Received("GET", f"/v1/predictions/{pid}", self._auth(request)))
        if not rec.auth_ok:
            return self._problem(rec, 401, "Unauthenticated", "You did not pass a valid authentication token",
                                 request, record=False)
        job = self.jobs.get(pid)
        if job is None:
            return self._problem(rec, 404, "Not found", "The prediction does not exist", request, record=False)
        status = self.next_poll_fault()
        if status is not None:
            rec.status = status
            headers = {"Retry-After": self.retry_after or "0"} if status == 429 else None
            return JSONResponse({"title": "error", "status": status, "detail": "Request was throttled"},
                                status_code=status, headers=headers)
        done = job.get("done") or self.advance(job)
        job["done"] = done
        rec.status = 200
        return JSONResponse(self._prediction(job, bool(done)))

    async def cancel(self, request: Request) -> Response:
        pid = request.path_params["pid"]
        rec = self.record(Received("POST", f"/v1/predictions/{pid}/cancel", self._auth(request)))
        job = self.jobs.get(pid)
        if not rec.auth_ok or job is None:
            return self._problem(rec, 401 if not rec.auth_ok else 404, "error", "cannot cancel", request,
                                 record=False)
        if not job.get("done"):
            job["canceled"] = True
            self.unbill(job["rec"])
            job["rec"].fault = job["rec"].fault or "cancelled"
        rec.status = 200
        return JSONResponse(self._prediction(job, bool(job.get("done"))))

    def _problem(self, rec: Received, status: int, title: str, detail: str, request: Request,
                 record: bool = True) -> Response:
        rec.status = status
        if record:
            self.record(rec)
        return JSONResponse({"title": title, "detail": detail + self.leak(request), "status": status},
                            status_code=status, media_type="application/problem+json")
