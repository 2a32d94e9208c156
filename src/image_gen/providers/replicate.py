"""Replicate models (``replicate:<owner>/<model>[:version]``) through Replicate's predictions API, over httpx.

Wire (``https://api.replicate.com``, ``REPLICATE_BASE_URL`` or ``settings.base_url``; header ``Authorization:
Bearer <REPLICATE_API_TOKEN>``), as in Replicate's HTTP reference and the ``replicate`` client:

- create: ``POST /v1/models/{owner}/{model}/predictions`` ``{"input": {...}}`` (an official model, its latest
  version) or, with a version, ``POST /v1/predictions`` ``{"version": ..., "input": {...}}``; header ``Prefer:
  wait=N`` (N = ``options.wait_s``, default 60, at most what the deadline leaves, 1..60) holds the answer until the
  prediction ends or N seconds pass. Answer 201: ``{id, model, version, status: starting|processing|succeeded|
  failed|canceled, input, output, error, logs, metrics: {predict_time}, urls: {get, cancel, stream, web},
  data_removed}``;
- poll: ``GET urls.get`` (``/v1/predictions/{id}``) every ``options.poll_interval_s`` (default 0.5 s) until a
  final status, inside the call's whole deadline; a 429/5xx answer to a poll only delays the next; when the deadline
  passes the prediction is cancelled (``POST urls.cancel``, best effort);
- output: a URL string, a list of them, or an object holding them (``replicate.delivery``); downloaded at once
  (API-created outputs are deleted after an hour), with the key only when the URL is on the API's origin.

One creation per call (never sent again). Input fields: ``_hosted.build_input`` with Replicate's usual names
(``aspect_ratio``, ``num_outputs``, ``image``, ``prompt_strength``; steps and guidance are sent only when
``options.fields`` names them). Price: the catalog's or the user's (``cost_usd=None``); ``metrics.predict_time`` is
recorded.

Errors: create 4xx/429/5xx as ``_http.error_from_status`` (Replicate's problem details ``{title, detail, status}``;
none billed); ``failed`` -> ``ContentFiltered(maybe_billed=True)`` when the error says NSFW, else
``Transient(maybe_billed=True)``; ``canceled`` -> ``Transient(maybe_billed=True)``; an expired output URL or
``data_removed`` -> ``Transient(maybe_billed=True)``.
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
    Transient,
)

VENDOR = "replicate"
DEFAULT_BASE_URL = "https://api.replicate.com"
FIELDS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "seed": "seed",
    "num_images": "num_outputs",
    "image": "image",
    "strength": "prompt_strength",
}
FINAL = {"succeeded", "failed", "canceled"}
NSFW_WORDS = ("nsfw", "safety", "sensitive")


def parse_model(target: str) -> tuple[str, str, str | None]:
    """``owner/model[:version]`` -> (owner, model, version or None); ``BadRequest`` for anything else."""
    ref, _, version = target.partition(":")
    owner, _, name = ref.partition("/")
    if not owner or not name or "/" in name:
        raise BadRequest(f"replicate: {target!r} is not owner/model[:version]")
    return owner, name, version or None


class ReplicateProvider(_http.HttpProvider):
    """Replicate's predictions API. The key comes from ``REPLICATE_API_TOKEN``."""

    name = "replicate"
    key_env = ("REPLICATE_API_TOKEN",)
    base_url_env = "REPLICATE_BASE_URL"
    default_base_url = DEFAULT_BASE_URL

    def generate(self, request: ImageRequest) -> ImageResult:
        key = self._require_key()
        owner, model, version = parse_model(request.vendor_model)
        opts = self._options(request)
        body_input, dropped = _hosted.build_input(request, opts, FIELDS, "aspect_ratio", VENDOR)
        if version:
            path, body = "/v1/predictions", {"version": version, "input": body_input}
        else:
            path, body = f"/v1/models/{owner}/{model}/predictions", {"input": body_input}
        deadline = self._deadline()
        auth = {"Authorization": f"Bearer {key}"}
        wait_s = int(max(1, min(60, float(opts.get("wait_s", 60)), deadline.remaining() - 0.5)))
        started = time.monotonic()
        with self._slot(deadline):
            resp = _http.send(
                self.client, "POST", self.base_url + path, deadline=deadline, vendor=VENDOR, what=f"POST {path}",
                headers={**auth, "Prefer": f"wait={wait_s}", "Accept": "application/json"}, json=body,
            )
            if resp.status_code >= 400:
                raise _http.error_from_status(resp, VENDOR, secrets=(key,))
            prediction = _hosted.answer_json(resp, VENDOR, key, "the prediction", None)
            pid = str(prediction.get("id") or "")
            if not pid:
                raise Transient("replicate: the prediction had no id; may have been billed", maybe_billed=True)
            polls = 0
            if prediction.get("status") not in FINAL:
                prediction, polls = self._wait(prediction, pid, auth, deadline, opts, key)
            result = self._result(request, prediction, pid, auth, deadline, body_input, dropped, polls)
        result.latency_s = time.monotonic() - started
        return result

    def _wait(
        self,
        prediction: dict[str, Any],
        pid: str,
        auth: dict[str, str],
        deadline: _http.Deadline,
        opts: dict[str, Any],
        key: str,
    ) -> tuple[dict[str, Any], int]:
        given = prediction.get("urls")
        urls: dict[str, Any] = given if isinstance(given, dict) else {}
        get_url = _hosted.api_url(urls.get("get"), f"{self.base_url}/v1/predictions/{pid}", self.base_url)
        cancel_url = _hosted.api_url(urls.get("cancel"), f"{get_url}/cancel", self.base_url)
        interval = float(opts.get("poll_interval_s", 0.5))
        polls = 0
        last = str(prediction.get("status") or "starting")
        while deadline.sleep(interval):
            try:
                resp = _http.send(self.client, "GET", get_url, deadline=deadline, vendor=VENDOR,
                                  what="GET the prediction", headers=auth)
            except Transient:
                if deadline.expired():
                    break
                continue
            polls += 1
            if resp.status_code >= 400:
                retry = _hosted.poll_error(resp)
                if retry is None:
                    err = _http.error_from_status(resp, VENDOR, secrets=(key,), request_id=pid)
                    err.maybe_billed = True
                    raise err
                if retry > interval and not deadline.sleep(retry - interval):
                    break
                continue
            prediction = _hosted.answer_json(resp, VENDOR, key, "a prediction poll", pid)
            last = str(prediction.get("status") or "")
            if last in FINAL:
                return prediction, polls
        with contextlib.suppress(httpx.HTTPError):
            self.client.post(cancel_url, headers=auth, timeout=httpx.Timeout(0.3))
        raise Transient(
            f"replicate: prediction {pid} was still {last} when the call's deadline ({deadline.describe()}) passed "
            f"({polls} polls); cancel sent; may have been billed",
            maybe_billed=True,
            request_id=pid,
        )

    def _result(
        self,
        request: ImageRequest,
        prediction: dict[str, Any],
        pid: str,
        auth: dict[str, str],
        deadline: _http.Deadline,
        body_input: dict[str, Any],
        dropped: list[str],
        polls: int,
    ) -> ImageResult:
        status = prediction.get("status")
        error = _http.redact(str(prediction.get("error") or ""), (auth["Authorization"][7:],))[:300]
        if status == "failed":
            if any(w in error.lower() for w in NSFW_WORDS):
                raise ContentFiltered(f"replicate: prediction {pid} failed: {error}", maybe_billed=True,
                                      request_id=pid)
            raise Transient(f"replicate: prediction {pid} failed: {error or 'no error given'}; may have been billed",
                            maybe_billed=True, request_id=pid)
        if status == "canceled":
            raise Transient(f"replicate: prediction {pid} was canceled; may have been billed", maybe_billed=True,
                            request_id=pid)
        if prediction.get("data_removed"):
            raise Transient(f"replicate: the outputs of prediction {pid} were already removed; may have been billed",
                            maybe_billed=True, request_id=pid)
        urls = _hosted.output_urls(prediction.get("output"))
        if not urls:
            raise Transient(f"replicate: prediction {pid} succeeded with no image output; may have been billed",
                            maybe_billed=True, request_id=pid)
        seed = body_input.get("seed") if isinstance(body_input.get("seed"), int) else None
        images = []
        for url in urls:
            data, w, h = _hosted.download(
                self.client, url, deadline, VENDOR,
                auth=auth if _hosted.same_origin(url, self.base_url) else None, request_id=pid,
            )
            images.append(GeneratedImage(data=data, seed=seed, width=w, height=h,
                                         metadata={"actual_size": f"{w}x{h}"}))
        metrics = prediction.get("metrics") if isinstance(prediction.get("metrics"), dict) else {}
        meta: dict[str, Any] = {
            "model": prediction.get("model") or request.vendor_model,
            "version": prediction.get("version"),
            "prediction_id": pid,
            "sent": {k: (v if k != "image" else "<data uri>") for k, v in body_input.items() if k != "prompt"},
            "actual_size": images[0].metadata["actual_size"],
            "metrics": metrics,
            "polls": polls,
        }
        if dropped:
            meta["not_sent"] = dropped
        return ImageResult(images=images, seed=seed, request_id=pid, cost_usd=None, metadata=meta)
