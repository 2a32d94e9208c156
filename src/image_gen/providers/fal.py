"""fal.ai models (``fal:<endpoint id>``, e.g. ``fal:fal-ai/flux/dev``) through fal's queue API, over httpx.

Wire (``https://queue.fal.run``, ``FAL_QUEUE_BASE_URL`` or ``settings.base_url``; header ``Authorization: Key
<FAL_KEY>``), as in fal's queue reference and ``fal-client``:

- submit: ``POST {base}/{endpoint id}`` with the model input as JSON -> ``{request_id, status_url, response_url,
  cancel_url, queue_position}``;
- status: ``GET {base}/{owner}/{alias}/requests/{id}/status`` -> ``{status: IN_QUEUE|IN_PROGRESS|COMPLETED,
  queue_position?, error?, error_type?, metrics?}`` (only the first two segments of the endpoint id, as fal-client
  builds it; the URLs fal returns are used when they are on the API's origin);
- result: ``GET {base}/{owner}/{alias}/requests/{id}`` -> the model output, e.g. ``{images: [{url, width, height,
  content_type}], seed, has_nsfw_concepts, timings}``; a failed run answers an error status
  (422 ``{detail: [...]}`` for invalid input);
- cancel: ``PUT .../requests/{id}/cancel`` (sent, best effort, when the deadline ends the polling).

One submission per call (never sent again); status polls (``options.poll_interval_s``, default 0.25 s) run inside
the call's whole deadline, and a 429/5xx answer to a poll only delays the next poll. Outputs are downloaded at once
(fal's CDN, no key). Input fields: ``_hosted.build_input`` with fal's usual names (``image_size``,
``num_inference_steps``, ``guidance_scale``, ``image_url``, ``strength``, ``num_images``). Price: the catalog's or the
user's (``cost_usd=None``); the run's metrics (``inference_time``) are recorded.

Errors: submit 4xx/429/5xx as ``_http.error_from_status`` (none billed); after the submission, a run that failed
(result 4xx) is ``BadRequest``, a result 5xx or a lost answer ``Transient(maybe_billed=True)``; all images flagged by
``has_nsfw_concepts`` -> ``ContentFiltered(billed=True)``; an expired output URL -> ``Transient(maybe_billed=True)``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import httpx

from image_gen.providers import _hosted, _http
from image_gen.providers.base import (
    BadRequest,
    ContentFiltered,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    ProviderError,
    Transient,
)

VENDOR = "fal"
DEFAULT_BASE_URL = "https://queue.fal.run"
NAMESPACES = ("workflows", "comfy")
FIELDS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "seed": "seed",
    "num_images": "num_images",
    "steps": "num_inference_steps",
    "guidance": "guidance_scale",
    "image": "image_url",
    "strength": "strength",
}


def app_path(endpoint: str) -> str:
    """The part of an endpoint id that names the app (``fal-ai/flux/dev`` -> ``fal-ai/flux``), as fal-client does."""
    parts = endpoint.strip("/").split("/")
    if parts[0] in NAMESPACES:
        return "/".join(parts[:3])
    return "/".join(parts[:2])


class FalProvider(_http.HttpProvider):
    """fal's queue API. The key comes from ``FAL_KEY``."""

    name = "fal"
    key_env = ("FAL_KEY",)
    base_url_env = "FAL_QUEUE_BASE_URL"
    default_base_url = DEFAULT_BASE_URL

    def generate(self, request: ImageRequest) -> ImageResult:
        key = self._require_key()
        opts = self._options(request)
        body, dropped = _hosted.build_input(request, opts, FIELDS, "image_size", VENDOR)
        endpoint = request.vendor_model.strip("/")
        deadline = self._deadline()
        headers = {"Authorization": f"Key {key}", "Accept": "application/json"}
        started = time.monotonic()
        with self._slot(deadline):
            resp = _http.send(
                self.client, "POST", f"{self.base_url}/{endpoint}", deadline=deadline, vendor=VENDOR,
                what=f"POST /{endpoint}", headers=headers, json=body,
            )
            if resp.status_code >= 400:
                raise _http.error_from_status(resp, VENDOR, secrets=(key,))
            queued = _hosted.answer_json(resp, VENDOR, key, "the submission", None)
            request_id = str(queued.get("request_id") or "")
            if not request_id:
                raise Transient("fal: the submission's answer had no request_id; may have been billed",
                                maybe_billed=True)
            base = f"{self.base_url}/{app_path(endpoint)}/requests/{request_id}"
            status_url = _hosted.api_url(queued.get("status_url"), base + "/status", self.base_url)
            result_url = _hosted.api_url(queued.get("response_url"), base, self.base_url)
            cancel_url = _hosted.api_url(queued.get("cancel_url"), base + "/cancel", self.base_url)
            status = self._wait(status_url, cancel_url, headers, deadline, opts, request_id, key)
            resp = _http.send(self.client, "GET", result_url, deadline=deadline, vendor=VENDOR,
                              what="GET the result", headers=headers)
            if resp.status_code >= 400:
                raise self._run_error(resp, key, request_id)
            output = _hosted.answer_json(resp, VENDOR, key, "the result", request_id)
            result = self._result(request, output, status, deadline, request_id, body, dropped)
        result.latency_s = time.monotonic() - started
        return result

    def _wait(
        self,
        status_url: str,
        cancel_url: str,
        headers: dict[str, str],
        deadline: _http.Deadline,
        opts: dict[str, Any],
        request_id: str,
        key: str,
    ) -> dict[str, Any]:
        interval = float(opts.get("poll_interval_s", 0.25))
        polls = 0
        last = "IN_QUEUE"
        while True:
            try:
                resp = _http.send(self.client, "GET", status_url, deadline=deadline, vendor=VENDOR,
                                  what="GET the status", headers=headers, params={"logs": "0"})
            except Transient:
                if deadline.expired():
                    break
                resp = None
            polls += 1
            wait = interval
            if resp is not None and resp.status_code >= 400:
                retry = _hosted.poll_error(resp)
                if retry is None:
                    raise _after_submit(_http.error_from_status(resp, VENDOR, secrets=(key,)), request_id)
                wait = max(interval, retry)
            elif resp is not None:
                status = _hosted.answer_json(resp, VENDOR, key, "a status poll", request_id)
                last = str(status.get("status") or "")
                if last == "COMPLETED":
                    status["polls"] = polls
                    return status
                if last not in ("IN_QUEUE", "IN_PROGRESS"):
                    raise Transient(f"fal: unknown request status {last!r}; may have been billed",
                                    maybe_billed=True, request_id=request_id)
            if not deadline.sleep(wait):
                break
        self._cancel(cancel_url, headers)
        raise Transient(
            f"fal: request {request_id} was still {last} when the call's deadline ({deadline.describe()}) passed "
            f"({polls} status polls); cancel sent; may have been billed",
            maybe_billed=True,
            request_id=request_id,
        )

    def _cancel(self, url: str, headers: dict[str, str]) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.client.put(url, headers=headers, timeout=httpx.Timeout(0.3))

    @staticmethod
    def _run_error(resp: httpx.Response, key: str, request_id: str) -> ProviderError:
        detail = _http.body_snippet(resp, secrets=(key,))
        if resp.status_code in (400, 422):
            return BadRequest(f"fal: HTTP {resp.status_code}: the model refused its input: {detail}",
                              request_id=request_id)
        err = _http.error_from_status(resp, VENDOR, secrets=(key,), request_id=request_id)
        return _after_submit(err, request_id)

    def _result(
        self,
        request: ImageRequest,
        output: dict[str, Any],
        status: dict[str, Any],
        deadline: _http.Deadline,
        request_id: str,
        body: dict[str, Any],
        dropped: list[str],
    ) -> ImageResult:
        urls = _hosted.output_urls(output)
        flags = output.get("has_nsfw_concepts")
        flagged = [bool(f) for f in flags] if isinstance(flags, list) else []
        keep = [u for i, u in enumerate(urls) if not (i < len(flagged) and flagged[i])]
        if urls and not keep:
            raise ContentFiltered(f"fal: the safety checker flagged all {len(urls)} image(s) (has_nsfw_concepts; "
                                  "billed)", billed=True, request_id=request_id)
        if not keep:
            raise Transient("fal: the result had no image; may have been billed", maybe_billed=True,
                            request_id=request_id)
        seed = output.get("seed") if isinstance(output.get("seed"), int) else request.seed
        images = []
        for url in keep:
            data, w, h = _hosted.download(self.client, url, deadline, VENDOR, auth=None, request_id=request_id)
            images.append(GeneratedImage(data=data, seed=seed, width=w, height=h,
                                         metadata={"actual_size": f"{w}x{h}"}))
        meta: dict[str, Any] = {
            "endpoint": request.vendor_model,
            "request_id": request_id,
            "sent": {k: (v if k != "image_url" else "<data uri>") for k, v in body.items() if k != "prompt"},
            "actual_size": images[0].metadata["actual_size"],
            "metrics": status.get("metrics") or {},
            "status_polls": status.get("polls"),
            "filtered_images": sum(flagged),
        }
        if dropped:
            meta["not_sent"] = dropped
        if isinstance(output.get("timings"), dict):
            meta["timings"] = output["timings"]
        return ImageResult(images=images, seed=seed, request_id=request_id, cost_usd=None, metadata=meta)



def _after_submit(err: ProviderError, request_id: str) -> ProviderError:
    """An error after the submission was accepted: the request exists at the vendor and may run (and bill)."""
    if not isinstance(err, BadRequest):
        err.maybe_billed = True
    err.request_id = request_id
    return err
