"""Black Forest Labs (FLUX) over HTTP (httpx): submit a task, poll its ``polling_url`` until Ready, download at once.

Mapping from the contract to the wire (``https://api.bfl.ai``, header ``x-key``; docs.bfl.ai, read 2026-11-27):

- ``POST /v1/{vendor_model}`` with a JSON body answers ``{id, polling_url, cost, input_mp, output_mp}`` (``cost`` in
  credits, $0.01 each: reported as the call's cost). ``GET polling_url`` (with ``x-key``) answers ``{id, status,
  result, progress, details}``; ``status`` is ``Pending`` until ``Ready`` (``result.sample``: a signed URL that
  expires after minutes), or ``Request Moderated`` / ``Content Moderated`` / ``Error`` / ``Task not found``.
- ``flux-pro-1.1-ultra`` (about 4 MP, by aspect ratio): ``aspect_ratio`` (the offered ratio nearest the asked size),
  ``raw`` (``options.raw``), ``image_prompt`` (base64) + ``image_prompt_strength`` for image-to-image
  (``1 - strength``: strength 0 keeps the image; ``options.image_prompt_strength`` wins).
- FLUX.2 (``flux-2-pro``, ``flux-2-max``, ``flux-2-flex``; priced per output megapixel): ``width``/``height``
  rounded to multiples of 16, at least 64, scaled down to at most 4 MP (2048x2048); image-to-image sends
  ``input_image`` (base64); ``flex`` also takes ``steps`` (1..50) and ``guidance`` (1.5..10).
- Every model: ``prompt``, ``seed``, ``safety_tolerance`` (``options``, default 2), ``output_format`` (png unless
  ``options.output_format``), ``prompt_upsampling`` only when ``options.prompt_upsampling`` (label text stays as
  written).

One attempt per call, everything under the call's deadline (``settings.timeout_s``): the place, the POST, every poll
and the download. Nothing here submits twice; retries belong to the runner.

- Refusals of the POST (nothing ran, nothing billed): 400/422 -> ``BadRequest``, 401/403 -> ``AuthenticationFailed``,
  402 -> ``BadRequest`` (no credits), 429 -> ``RateLimited`` (``Retry-After``), 5xx -> ``Transient``.
- After the task was accepted it may be billed: a task still Pending at the deadline, a lost poll answer, ``Error``
  or ``Task not found`` are ``Transient(maybe_billed=True)`` (naming the task id); a poll's own 429/5xx is polled
  again while the deadline allows (``options.max_poll_errors``, default 5), never re-submitted. Polls start at once and
  then wait ``options.poll_interval_s`` (default 0.25 s), growing by half each time up to
  ``options.max_poll_interval_s`` (default 2 s).
- ``Request Moderated`` / ``Content Moderated`` -> ``ContentFiltered`` (not charged, says BFL).
- Ready: ``result.sample`` is downloaded at once without the key. A failed download (an expired link answers
  403/404) is fetched again (``options.download_attempts``, default 3; after an expired link the task is polled once
  more for a fresh link); when every try fails it is ``Transient(billed=True)``: the image was generated and paid
  for, and a retry by the runner is a new, recorded generation.
- Concurrency: BFL limits an account's active tasks (24 by default, documented); one limiter per key in the process
  holds a place from submit to Ready (capacity ``options.max_active_tasks``, default 24).
- The key goes only to the base URL's host and BFL's own hosts (``*.bfl.ai``, ``*.bfl.ml``); a polling URL elsewhere
  is refused (``options.trusted_hosts`` adds hosts).
"""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import urlsplit

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
    Transient,
)

VENDOR = "bfl"
DEFAULT_BASE_URL = "https://api.bfl.ai"
ULTRA_MODELS = {"flux-pro-1.1-ultra"}
FLUX2_MODELS = {"flux-2-pro", "flux-2-max", "flux-2-flex", "flux-2-klein-4b", "flux-2-klein-9b"}
ULTRA_RATIOS = [(21, 9), (16, 9), (3, 2), (4, 3), (5, 4), (1, 1), (4, 5), (3, 4), (2, 3), (9, 16), (9, 21)]
MAX_PIXELS = 2048 * 2048
"""FLUX.2's largest output (4 MP)."""
MULTIPLE = 16
PENDING = {"Pending", "Queued", "Processing"}
MODERATED = {"Request Moderated", "Content Moderated"}
TRUSTED_SUFFIXES = (".bfl.ai", ".bfl.ml")
MAX_SEED = 2**32 - 1


def flux2_size(width: int, height: int) -> tuple[int, int]:
    """The FLUX.2 size for an asked one: multiples of 16, at least 64 a side, at most 4 MP (ratio kept)."""
    scale = min(1.0, (MAX_PIXELS / (width * height)) ** 0.5)
    w = max(64, int(width * scale) // MULTIPLE * MULTIPLE)
    h = max(64, int(height * scale) // MULTIPLE * MULTIPLE)
    return w, h


def strength_to_image_prompt(strength: float | None) -> float:
    """Stage strength (0 keeps the image, 1 ignores it) -> Ultra's ``image_prompt_strength`` (1 follows it)."""
    if strength is None:
        return 0.5
    return round(min(1.0, max(0.0, 1.0 - strength)), 3)


class BflProvider(_http.HttpProvider):
    """Black Forest Labs' FLUX API. Key from ``BFL_API_KEY``, base URL from ``BFL_BASE_URL`` (or the settings)."""

    name = "bfl"
    key_env = ("BFL_API_KEY",)
    base_url_env = "BFL_BASE_URL"
    default_base_url = DEFAULT_BASE_URL

    # -- the contract --------------------------------------------------------------------------------
    def generate(self, request: ImageRequest) -> ImageResult:
        key = self._require_key()
        deadline = self._deadline()
        opts = self._options(request)
        model = request.vendor_model
        body = self._body(request, opts)
        endpoint = f"/v1/{model}"
        capacity = int(opts.get("max_active_tasks", 24))
        limiter = _http.shared_limiter(VENDOR, key, capacity)
        if "max_active_tasks" in opts and limiter.capacity != capacity:
            limiter.set_capacity(capacity)  # the account's limit as configured (the limiter is shared per key)
        started = time.monotonic()
        with self._slot(deadline, limiter, 1):
            resp = _http.send(
                self.client,
                "POST",
                self.base_url + endpoint,
                deadline=deadline,
                vendor=VENDOR,
                what=f"POST {endpoint}",
                headers={"x-key": key, "accept": "application/json"},
                json=body,
            )
            if resp.status_code >= 400:
                raise self._error(resp, key)
            task = self._json(resp, key, f"POST {endpoint}")
            task_id = str(task.get("id") or "")
            polling_url = str(task.get("polling_url") or "")
            if not task_id or not polling_url:
                raise Transient(
                    f"bfl: the answer to POST {endpoint} had no task id or polling_url; the task may have been "
                    "accepted and billed",
                    maybe_billed=True,
                )
            self._check_host(polling_url, opts, task_id)
            ready, polls = self._poll(polling_url, task_id, key, deadline, opts)
        image, tries = self._download(ready, polling_url, task_id, key, deadline, opts)
        data, w, h = image
        result = _result_of(ready)
        seed = result.get("seed") if isinstance(result.get("seed"), int) else request.seed
        cost = task.get("cost")
        sent = {k: (f"<{len(v)} base64 chars>" if k in _IMAGE_FIELDS else v) for k, v in body.items() if k != "prompt"}
        meta: dict[str, Any] = {
            "endpoint": endpoint,
            "task_id": task_id,
            "polling_host": urlsplit(polling_url).hostname,
            "polls": polls,
            "download_tries": tries,
            "sent": sent,
            "actual_size": f"{w}x{h}",
            "cost_credits": cost,
            "input_mp": task.get("input_mp"),
            "output_mp": task.get("output_mp"),
        }
        if model in ULTRA_MODELS:
            meta["raw"] = bool(body.get("raw"))
        if isinstance(result.get("prompt"), str) and result["prompt"] != request.prompt:
            meta["rewritten_prompt"] = result["prompt"]
        if request.negative_prompt:
            meta["negative_prompt_dropped"] = f"{model} takes no negative_prompt"
        if request.operation == "img2img" and model not in ULTRA_MODELS and request.strength is not None:
            meta["strength_not_sent"] = request.strength
        cost_usd = round(float(cost) / 100, 6) if isinstance(cost, int | float) and not isinstance(cost, bool) else None
        return ImageResult(
            images=[GeneratedImage(data=data, seed=seed, width=w, height=h, metadata={"actual_size": f"{w}x{h}"})],
            seed=seed,
            request_id=task_id,
            cost_usd=cost_usd,
            latency_s=time.monotonic() - started,
            metadata=meta,
        )

    # -- request building ----------------------------------------------------------------------------
    def _body(self, request: ImageRequest, opts: dict[str, Any]) -> dict[str, Any]:
        model = request.vendor_model
        if model not in ULTRA_MODELS and model not in FLUX2_MODELS:
            raise BadRequest(f"bfl: unknown model {model!r} (known: {', '.join(sorted(ULTRA_MODELS | FLUX2_MODELS))})")
        if request.operation == "upscale":
            raise BadRequest(f"bfl: {request.model} does not upscale")
        if request.num_images != 1:
            raise BadRequest(f"bfl: {model} renders one image per task, not {request.num_images}")
        if request.operation == "img2img" and not request.init_image:
            raise BadRequest("bfl: image-to-image needs an input image")
        body: dict[str, Any] = {"prompt": request.prompt}
        if request.seed is not None:
            body["seed"] = request.seed % (MAX_SEED + 1)
        body["safety_tolerance"] = int(opts.get("safety_tolerance", 2))
        body["output_format"] = str(opts.get("output_format", "png"))
        if opts.get("prompt_upsampling"):
            body["prompt_upsampling"] = True
        image = (
            base64.b64encode(request.init_image).decode()
            if request.operation == "img2img" and request.init_image
            else None
        )
        if model in ULTRA_MODELS:
            asked = _http.asked_ratio(request.width, request.height, opts.get("aspect_ratio") or request.aspect_ratio)
            if asked is not None:
                w, h = _http.nearest_ratio(asked[0], asked[1], ULTRA_RATIOS)
                body["aspect_ratio"] = f"{w}:{h}"
            body["raw"] = bool(opts.get("raw", False))
            if image is not None:
                body["image_prompt"] = image
                body["image_prompt_strength"] = float(
                    opts.get("image_prompt_strength", strength_to_image_prompt(request.strength))
                )
            return body
        if request.width and request.height:
            body["width"], body["height"] = flux2_size(request.width, request.height)
        if image is not None:
            body["input_image"] = image
        if model == "flux-2-flex":
            if request.steps is not None:
                body["steps"] = max(1, min(50, int(request.steps)))
            if request.guidance_scale is not None:
                body["guidance"] = max(1.5, min(10.0, float(request.guidance_scale)))
        return body

    # -- answers -------------------------------------------------------------------------------------
    @staticmethod
    def _json(resp: httpx.Response, key: str, what: str) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise Transient(
                f"bfl: the {resp.status_code} answer to {what} was not a JSON object "
                f"({_http.body_snippet(resp, 80, (key,))!r}); the task may have been accepted and billed",
                maybe_billed=True,
            )
        return data

    @staticmethod
    def _error(resp: httpx.Response, key: str) -> ProviderError:
        if resp.status_code == 422:
            return BadRequest(f"bfl: HTTP 422: the request was refused: {_http.body_snippet(resp, secrets=(key,))}")
        return _http.error_from_status(resp, VENDOR, secrets=(key,))

    def _check_host(self, url: str, opts: dict[str, Any], task_id: str) -> None:
        """The key goes only to the base URL's host and BFL's own hosts."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        base = (urlsplit(self.base_url).hostname or "").lower()
        trusted = {base, *(str(h).lower() for h in opts.get("trusted_hosts", ()))}
        if parts.scheme in ("http", "https") and (host in trusted or host.endswith(TRUSTED_SUFFIXES)):
            return
        raise Transient(
            f"bfl: task {task_id}: the polling_url points at {host or url[:40]!r}, not a BFL host; the key is not sent "
            "there (options.trusted_hosts adds hosts); the task may have been billed",
            maybe_billed=True,
        )

    def _poll(
        self, url: str, task_id: str, key: str, deadline: _http.Deadline, opts: dict[str, Any]
    ) -> tuple[dict[str, Any], int]:
        """Poll until Ready, inside the deadline; the Ready answer and the number of polls."""
        interval = float(opts.get("poll_interval_s", 0.25))
        max_interval = float(opts.get("max_poll_interval_s", 2.0))
        max_errors = int(opts.get("max_poll_errors", 5))
        polls = errors = 0
        status = "Pending"
        while True:
            if polls and not deadline.sleep(interval):
                raise Transient(
                    f"bfl: polling task {task_id} timed out: still {status} when the call's deadline passed "
                    f"({deadline.describe()}, {polls} polls); the task was accepted and may finish and be billed",
                    request_id=task_id,
                    maybe_billed=True,
                )
            interval = min(max_interval, interval * 1.5)
            polls += 1
            resp = _http.send(
                self.client, "GET", url, deadline=deadline, vendor=VENDOR, what=f"polling task {task_id}",
                headers={"x-key": key, "accept": "application/json"},
            )
            if resp.status_code in (401, 403):
                raise AuthenticationFailed(
                    f"bfl: the API key was refused while polling task {task_id} (HTTP {resp.status_code}); the task "
                    "was accepted and may be billed",
                    request_id=task_id,
                    maybe_billed=True,
                )
            if resp.status_code == 429 or resp.status_code >= 500 or resp.status_code == 408:
                errors += 1
                if errors > max_errors:
                    raise Transient(
                        f"bfl: polling task {task_id} failed {errors} times (last HTTP {resp.status_code}); the task "
                        "may finish and be billed",
                        request_id=task_id,
                        maybe_billed=True,
                    )
                continue
            if resp.status_code == 404:
                answer: dict[str, Any] = {"status": "Task not found"}
            elif resp.status_code >= 400:
                raise Transient(
                    f"bfl: polling task {task_id} was refused (HTTP {resp.status_code}: "
                    f"{_http.body_snippet(resp, secrets=(key,))}); the task may be billed",
                    request_id=task_id,
                    maybe_billed=True,
                )
            else:
                answer = self._json(resp, key, f"polling task {task_id}")
            status = str(answer.get("status") or "")
            if status == "Ready":
                return answer, polls
            if status in PENDING:
                continue
            raise self._task_failed(task_id, status, answer, key)

    @staticmethod
    def _task_failed(task_id: str, status: str, answer: dict[str, Any], key: str) -> ProviderError:
        details = _http.redact(str(answer.get("details") or answer.get("error") or "")[:300], (key,))
        tail = f": {details}" if details else ""
        if status in MODERATED:
            what = "the prompt or input image" if status == "Request Moderated" else "the generated image"
            return ContentFiltered(
                f"bfl: task {task_id}: {status}: BFL's moderation refused {what}{tail} (not charged)",
                request_id=task_id,
                billed=False,
            )
        if status == "Task not found":
            return Transient(
                f"bfl: task {task_id}: Task not found (unknown or expired) while polling; it may have run and been "
                "billed",
                request_id=task_id,
                maybe_billed=True,
            )
        return Transient(
            f"bfl: task {task_id} ended with status {status or 'none'!r}{tail}; the vendor may have billed it",
            request_id=task_id,
            maybe_billed=True,
        )

    def _download(
        self,
        ready: dict[str, Any],
        polling_url: str,
        task_id: str,
        key: str,
        deadline: _http.Deadline,
        opts: dict[str, Any],
    ) -> tuple[tuple[bytes, int, int], int]:
        """Download the Ready task's image at once, fetching again (``options.download_attempts``, default 3; after an
        expired link the task is polled once more for a fresh one). Never generates again: when every try failed
        the image was still paid for, so the error is ``Transient(billed=True)``."""
        url = str(_result_of(ready).get("sample") or "")
        got, tries, last = _http.download_retrying(
            self.client, url, VENDOR, deadline, opts,
            refresh=lambda: self._fresh_link(polling_url, task_id, key, deadline))
        if got is not None:
            data, (w, h) = got
            return (data, w, h), tries
        raise Transient(
            f"bfl: task {task_id} was Ready but its image could not be downloaded ({tries} tries within "
            f"{deadline.describe()}); last: {last}; the vendor billed the generation",
            request_id=task_id,
            billed=True,
            maybe_billed=False,
        )

    def _fresh_link(self, polling_url: str, task_id: str, key: str, deadline: _http.Deadline) -> str | None:
        """Poll a Ready task once more for a new signed link (None when that fails)."""
        try:
            resp = _http.send(
                self.client, "GET", polling_url, deadline=deadline, vendor=VENDOR, what=f"polling task {task_id}",
                headers={"x-key": key, "accept": "application/json"},
            )
        except Transient:
            return None
        if resp.status_code != 200:
            return None
        try:
            answer = resp.json()
        except ValueError:
            return None
        result = answer.get("result") if isinstance(answer, dict) else None
        if isinstance(answer, dict) and answer.get("status") == "Ready" and isinstance(result, dict):
            sample = result.get("sample")
            return str(sample) if sample else None
        return None


def _result_of(answer: dict[str, Any]) -> dict[str, Any]:
    """A Ready answer's ``result`` object (empty when it has none)."""
    result = answer.get("result")
    return result if isinstance(result, dict) else {}


_IMAGE_FIELDS = {"image_prompt", "input_image", *(f"input_image_{i}" for i in range(2, 9))}
