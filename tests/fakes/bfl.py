"""A loopback Black Forest Labs API: ``POST /v1/{model}`` -> ``{id, polling_url, cost, ...}``, ``GET
/v1/get_result?id=`` until ``Ready``, and the signed result link (``/delivery/{token}.png``), written from
docs.bfl.ai (read 2026-11-27).

Strict like a careful vendor: ``x-key`` checked on submit and poll (403 ``{"detail": ...}``), JSON bodies only, the
documented field names and types per model (anything else is 422 with FastAPI's ``{"detail": [{loc, msg, type}]}``):
``flux-pro-1.1-ultra`` takes ``aspect_ratio`` (between 21:9 and 9:21), ``raw`` (a boolean), ``image_prompt`` (base64)
and ``image_prompt_strength`` (0..1), never width/height; FLUX.2 takes ``width``/``height`` (multiples of 16, at least
64, at most 4 MP) and ``input_image`` (base64), ``flex`` also ``steps`` (1..50) and ``guidance`` (1.5..10). The
result link needs no key (the test checks none is sent) and expires.

An account holds at most ``max_active`` tasks that are not finished (429 beyond). Tasks are ``Pending`` for
``pending_polls`` polls, then ``Ready``; the vendor bills a task when it is accepted (``cost`` in credits, $0.01 each)
and not when moderation refuses it.

Faults (``faults.force(...)`` / ``set_faults``): ``429`` (with ``Retry-After``), ``500``, ``503``, ``hang`` on
submit (never billed); ``trickle``, ``endless`` (the accepted task's answer drips or never ends); ``slow`` (the
task stays Pending for ``hang_s``: slow polling); ``filter`` (``Content Moderated``); ``expired_url`` (every result
link answers 403, as an expired signed URL does); ``download_fail`` (the first link has expired, polling again gives
a fresh one that works); ``truncate``, ``garbage``, ``oversize`` (what the result link delivers). Task outcomes
beyond those: ``force_task("Request Moderated" | "Error" | "Task not found")``; poll failures: ``poll_errors = n``
(the next n polls answer 503).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._server import Received, render_png, size_for_ratio
from tests.fakes._vendor import FakeVendor

ULTRA = "flux-pro-1.1-ultra"
FLUX2 = {"flux-2-pro", "flux-2-max", "flux-2-flex"}
COMMON_FIELDS = {"prompt", "seed", "safety_tolerance", "output_format", "prompt_upsampling", "webhook_url",
                 "webhook_secret"}
ULTRA_FIELDS = COMMON_FIELDS | {"aspect_ratio", "raw", "image_prompt", "image_prompt_strength"}
FLUX2_FIELDS = COMMON_FIELDS | {"width", "height", "input_image", *(f"input_image_{i}" for i in range(2, 9))}
FLEX_FIELDS = FLUX2_FIELDS | {"steps", "guidance"}
MAX_PIXELS = 2048 * 2048
ULTRA_MP = 4.194304
CREDITS = {
    # model: (first megapixel, each further megapixel, each input megapixel); Ultra is flat
    "flux-2-pro": (3.0, 1.5, 1.5),
    "flux-2-max": (7.0, 3.0, 3.0),
    "flux-2-flex": (5.0, 5.0, 5.0),
}
"""Credits ($0.01) as the catalog prices them (output megapixels counted up to the next whole one)."""
ULTRA_CREDITS = 6.0
SERVED_FAULTS = frozenset(
    {"429", "500", "503", "hang", "slow", "trickle", "endless", "filter", "expired_url", "download_fail", "truncate",
     "garbage", "oversize"}
)
TASK_OUTCOMES = {"Request Moderated", "Content Moderated", "Error", "Task not found"}


class Invalid(Exception):
    def __init__(self, loc: str, msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind


@dataclass
class Task:
    id: str
    model: str
    prompt: str
    size: tuple[int, int]
    seed: int
    rec: Received
    fault: str | None
    outcome: str = "Ready"
    base: bytes | None = None
    created: float = field(default_factory=time.monotonic)
    polls: int = 0
    done: bool = False
    links: list[str] = field(default_factory=list)


class FakeBFL(FakeVendor):
    vendor = "bfl"
    allowed_faults = SERVED_FAULTS

    def __init__(self, *args: Any, max_active: int = 24, pending_polls: int = 1, **kw: Any) -> None:
        self.max_active = max_active
        self.pending_polls = pending_polls
        """How many polls a task answers Pending before it is Ready."""
        self.poll_errors = 0
        """The next this many polls answer 503 (a hiccup of the polling endpoint)."""
        self.tasks: dict[str, Task] = {}
        self.files: dict[str, bytes] = {}
        self.expired: set[str] = set()
        self.link_faults: dict[str, str] = {}
        self.outcomes_forced: deque[str] = deque()
        self.peak_active = 0
        super().__init__(*args, **kw)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.tasks.clear()
            self.files.clear()
            self.expired.clear()
            self.link_faults.clear()
            self.outcomes_forced.clear()
        self.max_active = 24
        self.pending_polls = 1
        self.poll_errors = 0
        self.peak_active = 0

    def force_task(self, *outcomes: str) -> None:
        """The next accepted tasks end with these statuses instead of Ready."""
        for outcome in outcomes:
            if outcome not in TASK_OUTCOMES:
                raise ValueError(f"unknown task outcome {outcome!r}")
        self.outcomes_forced.extend(outcomes)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/get_result", self.get_result, methods=["GET"]),
            Route("/v1/{model}", self.submit, methods=["POST"]),
            Route("/delivery/{token}", self.delivery, methods=["GET"]),
        ]

    @property
    def active(self) -> int:
        with self._lock:
            return sum(1 for t in self.tasks.values() if not t.done)

    # -- submit --------------------------------------------------------------------------------------
    async def submit(self, request: Request) -> Response:
        model = request.path_params["model"]
        rec = Received("POST", f"/v1/{model}", request.headers.get("x-key") == self.api_key,
                       header_names=tuple(request.headers.keys()))
        rec.model = model
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._invalid(rec, Invalid("body", "Input should be a valid JSON object", "model_attributes_type"))
        try:
            rec.json = await request.json()
        except ValueError:
            return self._invalid(rec, Invalid("body", "JSON decode error", "json_invalid"))
        if not rec.auth_ok:
            rec.status = 403
            self.record(rec)
            return JSONResponse({"detail": "Not authenticated" + self.leak(request)}, status_code=403)
        if model != ULTRA and model not in FLUX2:
            rec.status = 404
            self.record(rec)
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        try:
            body = self._validate(model, rec)
        except Invalid as exc:
            return self._invalid(rec, exc)
        fault = self.next_fault()
        rec.fault = fault
        self.record(rec)
        if fault == "429":
            rec.status = 429
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
            return JSONResponse({"detail": "Rate limit exceeded" + self.leak(request)}, status_code=429,
                                headers=headers)
        if fault in ("500", "503"):
            rec.status = int(fault)
            return JSONResponse({"detail": "Internal Server Error" + self.leak(request)}, status_code=int(fault))
        if fault == "hang":
            rec.status = 504
            return await self.hang()
        with self._lock:
            active = sum(1 for t in self.tasks.values() if not t.done)
            if active >= self.max_active:
                rec.status = 429
                return JSONResponse(
                    {"detail": f"You have exceeded the number of active tasks ({self.max_active}); wait for one "
                               "to finish"},
                    status_code=429,
                    headers={"Retry-After": "1"},
                )
            outcome = self.outcomes_forced.popleft() if self.outcomes_forced else "Ready"
            if fault == "filter":
                outcome = "Content Moderated"
            size, base = self._size(model, body, rec)
            seed = body.get("seed")
            task = Task(secrets.token_hex(12), model, body.get("prompt") or "", size,
                        seed if isinstance(seed, int) else secrets.randbelow(2**31), rec, fault, outcome, base)
            self.tasks[task.id] = task
            self.peak_active = max(self.peak_active, active + 1)
        await self.pause()
        credits, input_mp, output_mp = self.credits(model, body, size, base)
        if outcome not in ("Request Moderated", "Content Moderated", "Error"):
            self.bill(rec, credits / 100)  # moderated and failed tasks are not charged
        answer = json.dumps({
            "id": task.id,
            "polling_url": f"{self.url}/v1/get_result?id={task.id}",
            "cost": credits,
            "input_mp": input_mp,
            "output_mp": output_mp,
        }).encode()
        # the task was accepted (and billed); only its answer may be delivered late, dripping or not at all
        wire = fault if fault in ("trickle", "endless") else None
        return await self.deliver(rec, wire, answer, "application/json")

    def _validate(self, model: str, rec: Received) -> dict[str, Any]:
        body = rec.json
        if not isinstance(body, dict):
            raise Invalid("body", "Input should be a valid dictionary", "dict_type")
        allowed = ULTRA_FIELDS if model == ULTRA else FLEX_FIELDS if model == "flux-2-flex" else FLUX2_FIELDS
        for name in body:
            if name not in allowed:
                raise Invalid(name, "Extra inputs are not permitted", "extra_forbidden")
        _typed(body, "prompt", str)
        if model in FLUX2 and not body.get("prompt"):
            raise Invalid("prompt", "Field required", "missing")
        if body.get("seed") is not None:
            _typed(body, "seed", int)
        _typed(body, "prompt_upsampling", bool)
        _typed(body, "safety_tolerance", int)
        top = 6 if model == ULTRA else 5
        if "safety_tolerance" in body and not 0 <= body["safety_tolerance"] <= top:
            raise Invalid("safety_tolerance", f"Input should be less than or equal to {top}")
        if body.get("output_format", "jpeg") not in ("jpeg", "png"):
            raise Invalid("output_format", "Input should be 'jpeg' or 'png'", "enum")
        if model == ULTRA:
            _typed(body, "raw", bool)
            _typed(body, "aspect_ratio", str)
            if "aspect_ratio" in body:
                try:
                    w, h = (int(p) for p in body["aspect_ratio"].split(":"))
                except ValueError:
                    raise Invalid("aspect_ratio", "aspect_ratio must look like '16:9'") from None
                if not 9 / 21 - 1e-9 <= w / h <= 21 / 9 + 1e-9:
                    raise Invalid("aspect_ratio", "aspect_ratio must be between 21:9 and 9:21")
            if body.get("image_prompt") is not None:
                _typed(body, "image_prompt", str)
                rec.files["image_prompt"] = _image(body["image_prompt"], "image_prompt")
            if "image_prompt_strength" in body:
                _typed(body, "image_prompt_strength", (int, float))
                if not 0 <= body["image_prompt_strength"] <= 1:
                    raise Invalid("image_prompt_strength", "Input should be between 0 and 1")
            return body
        for name in ("width", "height"):
            if name in body and body[name] is not None:
                _typed(body, name, int)
                if body[name] % 16 or body[name] < 64:
                    raise Invalid(name, f"{name} must be a multiple of 16 and at least 64")
        if (body.get("width") or 1024) * (body.get("height") or 1024) > MAX_PIXELS:
            raise Invalid("width", "width x height must be at most 4 megapixels")
        for name in sorted(n for n in body if n.startswith("input_image")):
            if body[name] is not None:
                _typed(body, name, str)
                rec.files[name] = _image(body[name], name)
        if model == "flux-2-flex":
            if "steps" in body:
                _typed(body, "steps", int)
                if not 1 <= body["steps"] <= 50:
                    raise Invalid("steps", "steps must be 1..50")
            if "guidance" in body:
                _typed(body, "guidance", (int, float))
                if not 1.5 <= body["guidance"] <= 10:
                    raise Invalid("guidance", "guidance must be 1.5..10")
        return body

    def _size(self, model: str, body: dict[str, Any], rec: Received) -> tuple[tuple[int, int], bytes | None]:
        if model == ULTRA:
            w, h = (int(p) for p in str(body.get("aspect_ratio", "16:9")).split(":"))
            return self.scaled(size_for_ratio(w, h, ULTRA_MP, multiple=32)), rec.files.get("image_prompt")
        return self.scaled((body.get("width") or 1024, body.get("height") or 1024)), rec.files.get("input_image")

    @staticmethod
    def credits(model: str, body: dict[str, Any], size: tuple[int, int], base: bytes | None) -> tuple[float, Any, Any]:
        """What the vendor charges (credits), and the input and output megapixels it reports."""
        if model == ULTRA:
            return ULTRA_CREDITS, None, round(ULTRA_MP, 2)
        first, more, per_input = CREDITS[model]
        out_mp = (body.get("width") or 1024) * (body.get("height") or 1024) / 1e6
        credits = first + more * max(0, math.ceil(out_mp / 1.05) - 1)
        in_mp = 0.0
        if base is not None:
            in_mp = _pixels(base) / 1e6
            credits += per_input * math.ceil(in_mp / 1.05)
        return round(credits, 3), round(in_mp, 3) if base is not None else None, round(out_mp, 3)

    # -- polling -------------------------------------------------------------------------------------
    async def get_result(self, request: Request) -> Response:
        task_id = request.query_params.get("id", "")
        rec = Received("GET", "/v1/get_result", request.headers.get("x-key") == self.api_key,
                       header_names=tuple(request.headers.keys()))
        rec.json = {"id": task_id}
        self.record(rec)
        if not rec.auth_ok:
            rec.status = 403
            return JSONResponse({"detail": "Not authenticated"}, status_code=403)
        with self._lock:
            if self.poll_errors > 0:
                self.poll_errors -= 1
                rec.status, rec.fault = 503, "poll_503"
                return JSONResponse({"detail": "Service Unavailable"}, status_code=503)
            task = self.tasks.get(task_id)
            if task is None or task.outcome == "Task not found":
                if task is not None:
                    task.done = True
                rec.status = 200
                return JSONResponse({"id": task_id, "status": "Task not found", "result": None, "progress": None,
                                     "details": None})
            task.polls += 1
            slow = task.fault == "slow" and time.monotonic() - task.created < self.hang_s
            if task.outcome != "Request Moderated" and (task.polls <= self.pending_polls or slow):
                rec.status = 200
                return JSONResponse({"id": task_id, "status": "Pending", "result": None,
                                     "progress": round(min(0.95, task.polls / (self.pending_polls + 1)), 2),
                                     "details": None})
            task.done = True
        rec.status = 200
        if task.outcome in ("Request Moderated", "Content Moderated"):
            return JSONResponse({"id": task_id, "status": task.outcome, "result": None, "progress": None,
                                 "details": {"Moderation Reasons": ["Derivative Works Filter"]}})
        if task.outcome == "Error":
            return JSONResponse({"id": task_id, "status": "Error", "result": None, "progress": None,
                                 "details": {"error": "internal error while generating"}})
        link = self._mint(task)
        return JSONResponse({
            "id": task_id,
            "status": "Ready",
            "result": {"sample": link, "prompt": task.prompt, "seed": task.seed, "start_time": task.created,
                       "end_time": time.time(), "duration": 0.1},
            "progress": None,
            "details": None,
        })

    def _mint(self, task: Task) -> str:
        """A new signed result link for the task's image (the first expires under ``download_fail``)."""
        token = secrets.token_hex(10)
        with self._lock:
            if not task.links:
                png = render_png(task.prompt, task.size, base=task.base, tag=f"bfl {task.model}")
                self.files[task.id] = png
            self.files[token] = self.files[task.id]
            first = not task.links
            task.links.append(token)
            if task.fault == "expired_url" or (task.fault == "download_fail" and first):
                self.expired.add(token)
            if task.fault in ("truncate", "garbage", "oversize"):
                self.link_faults[token] = task.fault
        return f"{self.url}/delivery/{token}.png?se=2026-11-27T12%3A10%3A00Z&sp=r&sig=fake"

    # -- the result link -----------------------------------------------------------------------------
    async def delivery(self, request: Request) -> Response:
        token = request.path_params["token"].removesuffix(".png")
        rec = self.record(Received("GET", f"/delivery/{token}", True, header_names=tuple(request.headers.keys())))
        with self._lock:
            data = self.files.get(token)
            expired = token in self.expired
            fault = self.link_faults.get(token)
        if expired or data is None:
            rec.status = 403 if expired else 404
            rec.fault = "expired_url" if expired else None
            return Response(
                "<Error><Code>AuthenticationFailed</Code><Message>Signed expiry time has passed</Message></Error>",
                status_code=rec.status,
                media_type="application/xml",
            )
        rec.fault = fault
        if fault in ("garbage", "oversize"):
            data = self.image_for(fault, data)
        return await self.deliver(rec, "truncate" if fault == "truncate" else None, data, "image/png")

    def leak(self, request: Request) -> str:
        """``leaky_errors``: the ``x-key`` the request carried, echoed in an error body."""
        if not self.leaky_errors:
            return ""
        return f" (request credentials: {request.headers.get('x-key', '')})"

    def _invalid(self, rec: Received, exc: Invalid) -> Response:
        rec.status = 422
        self.record(rec)
        detail = [{"loc": ["body", exc.loc] if exc.loc != "body" else ["body"], "msg": exc.msg, "type": exc.kind}]
        return JSONResponse({"detail": detail}, status_code=422)


def _typed(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> None:
    if name not in body:
        return
    value = body[name]
    wrong_bool = isinstance(value, bool) and kind is not bool
    if wrong_bool or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise Invalid(name, f"Input should be a valid {names}", f"{names}_type")


def _image(value: str, name: str) -> bytes:
    """A base64 image as BFL takes it (URLs are fetched by the real API; the fake takes base64 only)."""
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(name, "input image must be base64 (or a URL)") from None
    if not (data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff" or data[8:12] == b"WEBP"):
        raise Invalid(name, "input image is not a PNG, JPEG or WebP image")
    return data


def _pixels(data: bytes) -> int:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return int(img.size[0] * img.size[1])
