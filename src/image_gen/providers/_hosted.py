"""What the hosting-platform providers (fal, Replicate) share: a model-agnostic input, polling inside the call's
deadline, finding the output images in any answer shape and downloading them at once.

Input: hosted models name their fields differently. Each host has default field names (``DEFAULT_FIELDS``); a
model's catalog or stage options adjust them:

- ``options.fields``: ``{generic name: the model's field name}``, ``""`` drops the field. Generic names: ``prompt``,
  ``negative_prompt``, ``seed``, ``num_images``, ``steps``, ``guidance``, ``image``, ``strength``.
- ``options.size``: how a size is sent: ``image_size`` (``{"width", "height"}``), ``width_height`` (two fields),
  ``aspect_ratio`` (the nearest of ``options.aspect_ratios``) or ``none``.
- ``options.input``: fields added to the input as they are (they win).

The input image is sent as a ``data:`` URI. What was not sent (a field the host's defaults leave out) is recorded.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from image_gen.providers import _http
from image_gen.providers.base import BadRequest, ImageRequest, Transient

RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "21:9", "9:21"]
GENERIC = ("prompt", "negative_prompt", "seed", "num_images", "steps", "guidance", "image", "strength")


def data_uri(data: bytes) -> str:
    mime = _http.mime_of(data)
    if mime == "application/octet-stream":
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def build_input(
    request: ImageRequest, opts: dict[str, Any], defaults: dict[str, str], default_size: str, vendor: str
) -> tuple[dict[str, Any], list[str]]:
    """The model input for ``request`` and the names of asked settings that were not sent."""
    fields = {**defaults, **{str(k): str(v) for k, v in dict(opts.get("fields") or {}).items()}}
    unknown = set(fields) - set(GENERIC)
    if unknown:
        raise BadRequest(f"{vendor}: options.fields names unknown settings {sorted(unknown)} (known: {GENERIC})")
    values: dict[str, Any] = {"prompt": request.prompt}
    if request.negative_prompt:
        values["negative_prompt"] = request.negative_prompt
    if request.seed is not None:
        values["seed"] = request.seed % 2**32
    if request.num_images != 1:
        values["num_images"] = request.num_images
    if request.steps is not None:
        values["steps"] = request.steps
    if request.guidance_scale is not None:
        values["guidance"] = request.guidance_scale
    if request.operation in ("img2img", "upscale"):
        if not request.init_image:
            raise BadRequest(f"{vendor}: {request.operation} needs an input image")
        values["image"] = data_uri(request.init_image)
        if request.strength is not None and request.operation == "img2img":
            values["strength"] = request.strength
    body: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in values.items():
        target = fields.get(name, "")
        if target:
            body[target] = value
        else:
            dropped.append(name)
    size_style = str(opts.get("size", default_size))
    asked = _http.asked_ratio(request.width, request.height, request.aspect_ratio)
    if asked is not None and request.operation == "generate":
        if size_style == "image_size" and request.width and request.height:
            body["image_size"] = {"width": int(request.width), "height": int(request.height)}
        elif size_style == "width_height" and request.width and request.height:
            body["width"], body["height"] = int(request.width), int(request.height)
        elif size_style in ("aspect_ratio", "image_size", "width_height"):
            ratios = [_http.parse_ratio(r) for r in opts.get("aspect_ratios") or RATIOS]
            w, h = _http.nearest_ratio(asked[0], asked[1], ratios)
            body["aspect_ratio"] = f"{w}:{h}"
        elif size_style != "none":
            raise BadRequest(f"{vendor}: options.size must be image_size, width_height, aspect_ratio or none")
        else:
            dropped.append("size")
    extra = opts.get("input") or {}
    if not isinstance(extra, dict):
        raise BadRequest(f"{vendor}: options.input must be a table of model input fields")
    body.update(extra)
    return body, dropped


def output_urls(value: Any) -> list[str]:
    """Every image URL (``http(s)://`` or ``data:``) in an answer, in order: strings, lists, and objects with a
    ``url`` (fal's ``{"images": [{"url": ...}]}``, Replicate's output string or list)."""
    return list(dict.fromkeys(_walk(value)))


def _walk(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value.startswith(("http://", "https://", "data:")):
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    elif isinstance(value, dict):
        if isinstance(value.get("url"), str):
            yield from _walk(value["url"])
            return
        for key in ("images", "image", "output", "outputs"):
            if key in value:
                yield from _walk(value[key])


def same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def api_url(given: Any, fallback: str, base: str) -> str:
    """A URL the vendor handed back (status/result/poll) when it is on the API's own origin, else ``fallback``: the
    key is only ever sent to the API base."""
    if isinstance(given, str) and given and same_origin(given, base):
        return given
    return fallback


def download(
    client: httpx.Client,
    url: str,
    deadline: _http.Deadline,
    vendor: str,
    *,
    auth: dict[str, str] | None,
    attempts: int = 2,
    request_id: str | None = None,
) -> tuple[bytes, int, int]:
    """One output image, fetched at once (hosts delete outputs within the hour). A ``data:`` URI is decoded.

    ``auth`` headers go only with a URL on the API's origin (the caller decides). Cut-off or 5xx fetches are tried
    again (``attempts``) inside the deadline; a gone link (403/404/410) is not. Every failure here comes after a
    generation the vendor ran: ``Transient(maybe_billed=True)``."""
    if url.startswith("data:"):
        head, _, payload = url.partition(",")
        try:
            data = base64.b64decode(payload, validate=True) if ";base64" in head else payload.encode()
        except (ValueError, binascii.Error):
            raise Transient(f"{vendor}: an output data URI did not decode; may have been billed",
                            maybe_billed=True, request_id=request_id) from None
        w, h = _http.image_size(data, vendor, "output image")
        return data, w, h
    last = ""
    for attempt in range(max(1, attempts)):
        if attempt and not deadline.sleep(0.1 * attempt):
            break
        try:
            resp = _http.send(client, "GET", url, deadline=deadline, vendor=vendor, what="downloading the output",
                              headers=auth or {})
        except Transient as exc:
            last = str(exc)
            if deadline.expired():
                break
            continue
        if resp.status_code in (401, 403, 404, 410):
            raise Transient(
                f"{vendor}: the output URL has expired or is gone (HTTP {resp.status_code}); the generation ran "
                "and may have been billed",
                maybe_billed=True,
                request_id=request_id,
            )
        if resp.status_code >= 400:
            last = f"HTTP {resp.status_code}"
            continue
        try:
            w, h = _http.image_size(resp.content, vendor, "output image")
        except Transient as exc:
            exc.request_id = request_id
            raise
        return resp.content, w, h
    raise Transient(
        f"{vendor}: the output could not be downloaded within the call's deadline ({deadline.describe()}); "
        f"last: {last}; the generation ran and may have been billed",
        maybe_billed=True,
        request_id=request_id,
    )


def poll_error(resp: httpx.Response) -> float | None:
    """For a status poll that failed: how long to wait before polling again (429 with ``Retry-After``, 408, 5xx),
    or None when polling cannot help."""
    if resp.status_code == 429:
        return _http.parse_retry_after(resp.headers.get("retry-after")) or 1.0
    if resp.status_code == 408 or resp.status_code >= 500:
        return 0.5
    return None


def answer_json(resp: httpx.Response, vendor: str, key: str, what: str, request_id: str | None) -> dict[str, Any]:
    """The JSON object of a host's answer; anything else is ``Transient(maybe_billed)`` (the request reached it)."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise Transient(
            f"{vendor}: the answer to {what} was not a JSON object ({len(resp.content)} bytes: "
            f"{_http.body_snippet(resp, 80, (key,))!r}); may have been billed",
            maybe_billed=True,
            request_id=request_id,
        )
    return data
