"""Provider calls: reserved in the ledger, retried, settled, and reused on resume.

``CallMaker.call`` is step 4-5 of a stage (budget, call). Before anything is sent it computes the request's
digest (model, provider, operation, every parameter, the input image's bytes, the purpose and tile index) and
reuses an ``ok`` call of the same run with that digest: a resumed run never sends a finished call again (tiles,
re-rolls, escalations and fallbacks included). Otherwise each attempt reserves its expected cost against the caps
and records the call as ``sent`` in one transaction, is sent, and is settled with what it cost. Transient errors
and rate limits are retried with backoff and jitter, honouring ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from image_gen.providers._limits import call_priority
from image_gen.providers.base import (
    AuthenticationFailed,
    ContentFiltered,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    NotConfigured,
    OutOfMemory,
    Provider,
    ProviderError,
    RateLimited,
)
from image_gen.store.ledger import CapExceeded, Caps, Ledger, RunNotLive
from image_gen.store.models import Artifact, Call

if TYPE_CHECKING:
    from image_gen.config import RetrySettings
    from image_gen.pipeline.plan import Route
    from image_gen.store.artifacts import ArtifactStore
    from image_gen.store.registry import Registry

log = logging.getLogger("image_gen.calls")


class StageStop(Exception):
    """Ends the run at this stage with a status and a recorded reason."""

    def __init__(self, status: str, reason: str, error_kind: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.error_kind = error_kind


def request_digest(run_id: str, route: Route, request: ImageRequest, purpose: str, index: int | None) -> str:
    """What was asked, exactly: equal digests in one run are the same call."""
    described = request.describe()
    for k in ("init_image", "mask"):
        data = getattr(request, k)
        described[k] = None if data is None else hashlib.sha256(data).hexdigest()
    payload = ["call-v1", run_id, route.entry.id, route.entry.version, route.provider, route.entry.vendor_model,
               purpose, index, described]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def json_safe(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))


@dataclass
class CallMaker:
    registry: Registry
    ledger: Ledger
    artifacts: ArtifactStore
    caps: Caps
    retry: RetrySettings
    provider: Callable[[str], Provider]
    owner: str | None = None
    sleep: Callable[[float], None] = time.sleep
    stop: threading.Event = field(default_factory=threading.Event)
    record_artifact: Callable[[str, Any, bool], None] | None = None

    def call(self, *, run_id: str, stage_run_id: int, route: Route, request: ImageRequest, purpose: str,
             retries: int, index: int | None = None, priority: int = 0) -> ImageResult:
        """One logical call: reused if this run finished it before, else sent (with retries) and recorded.
        ``priority``: where several calls wait for one of a vendor's places, the highest goes first (a pipeline
        gives later stages more, so briefs in flight finish before new ones start)."""
        from tenacity import Retrying, retry_if_exception, stop_after_attempt

        digest = request_digest(run_id, route, request, purpose, index)
        done = self.registry.ok_call(run_id, digest)
        if done is not None:
            return self._reuse(done)
        attempts = int(retries) + 1
        expected = route.entry.price_for(request.width, request.height, request.num_images)
        provider = self.provider(route.provider)
        retrying = Retrying(stop=stop_after_attempt(attempts), wait=self._wait,
                            retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
                            sleep=self.sleep, reraise=True)
        try:
            for attempt in retrying:
                with attempt, call_priority(priority):
                    return self._attempt(run_id, stage_run_id, route, provider, request, purpose,
                                         attempt.retry_state.attempt_number, expected, digest)
        except ContentFiltered as exc:
            raise StageStop("failed", f"content filtered: {exc}", "content_filtered") from exc
        except AuthenticationFailed as exc:
            raise StageStop("failed", str(exc), "auth") from exc
        except NotConfigured as exc:
            raise StageStop("failed", str(exc), "not_configured") from exc
        except OutOfMemory:
            raise
        except ProviderError as exc:
            kind = type(exc).__name__
            tried = f" after {attempts} attempts" if exc.retryable else ""
            raise StageStop("failed", f"{kind}{tried}: {exc}", kind.lower()) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, retry_state: Any) -> float:
        import random

        rs = self.retry
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(float(exc.retry_after), rs.max_retry_after_s)
        n = retry_state.attempt_number
        base = min(rs.max_s, rs.initial_s * 2 ** (n - 1))
        return float(base / 2 + random.uniform(0, base / 2))

    def _reuse(self, call: Call) -> ImageResult:
        meta = dict(call.meta or {})
        shas = meta.pop("artifacts", [])
        images = [GeneratedImage(self.artifacts.read_bytes(sha), seed=call.seed) for sha in shas]
        return ImageResult(images=images, seed=call.seed, request_id=call.vendor_request_id, cost_usd=0.0,
                           latency_s=0.0, simulated=call.simulated, metadata=meta)

    def _attempt(self, run_id: str, stage_run_id: int, route: Route, provider: Provider, request: ImageRequest,
                 purpose: str, attempt: int, expected: float, digest: str) -> ImageResult:
        if self.stop.is_set():
            raise StageStop("interrupted", "interrupted before the call was sent", "interrupted")
        row = Call(run_id=run_id, stage_run_id=stage_run_id, attempt=attempt, model_id=route.entry.id,
                   provider=route.provider, operation=request.operation, purpose=purpose,
                   request=request.describe(), request_digest=digest, expected_cost_usd=expected,
                   simulated=route.provider == "sim")
        try:
            call = self.ledger.reserve(self.caps, row, owner=self.owner)
        except CapExceeded as exc:
            raise StageStop("budget_stopped", str(exc), "budget") from None
        except RunNotLive as exc:
            # cancelled: say so on the stage; taken over (resume --force): the run is no longer this process's
            raise StageStop("cancelled" if exc.status == "cancelled" else "taken_over", str(exc),
                            "cancelled" if exc.status == "cancelled" else "taken_over") from None
        t0 = time.perf_counter()
        try:
            result = provider.generate(request)
        except ProviderError as exc:
            # a vendor's bill: what it charged; a lost answer: what it may have charged; a local engine: what its
            # failed attempts cost; a refusal before any work: nothing
            local_cost = float(getattr(exc, "cost_usd", 0.0) or 0.0)
            maybe = bool(exc.maybe_billed) and not exc.billed
            cost = expected if (exc.billed or maybe) else local_cost
            self.ledger.settle(call.id, state="failed", cost_usd=cost, billed=exc.billed, maybe_billed=maybe,
                               error_kind=type(exc).__name__, error=str(exc)[:2000],
                               latency_s=time.perf_counter() - t0, vendor_request_id=exc.request_id)
            raise
        except Exception as exc:  # an engine bug must still leave a trace; the vendor may have billed
            remote = route.provider not in ("sim", "local")
            self.ledger.settle(call.id, state="failed", cost_usd=expected if remote else 0.0, maybe_billed=remote,
                               error_kind=type(exc).__name__, error=str(exc)[:2000],
                               latency_s=time.perf_counter() - t0)
            log.exception("provider %s failed unexpectedly", route.provider)
            raise StageStop("failed", f"{route.provider} failed unexpectedly: {type(exc).__name__}: {exc}",
                            "internal") from exc
        cost = result.cost_usd if result.cost_usd is not None else expected
        latency = result.latency_s if result.latency_s else time.perf_counter() - t0
        try:
            shas = [self.artifacts.put_bytes(img.data)[0] for img in result.images]
            with self.registry.session():  # the images' rows and the settlement: one transaction
                if self.record_artifact is not None:
                    for sha, img in zip(shas, result.images, strict=True):
                        self.record_artifact(sha, img, result.simulated)
                self.ledger.settle(call.id, state="ok", cost_usd=cost, billed=True, latency_s=latency,
                                   vendor_request_id=result.request_id, seed=result.seed,
                                   meta={**json_safe(result.metadata), "artifacts": shas})
        except Exception as exc:  # the vendor answered and billed; its image could not be kept
            self.ledger.settle(call.id, state="failed", cost_usd=cost, billed=True,
                               error_kind=type(exc).__name__, error=f"answer could not be stored: {exc}"[:2000],
                               latency_s=latency, vendor_request_id=result.request_id)
            raise
        return result


def record_artifact(registry: Registry, artifacts: ArtifactStore, root: Any, sha: str, image: Any,
                    simulated: bool, size_bytes: int | None = None) -> None:
    """The artifact's row (first writer wins: one insert-or-ignore). ``image`` is a PIL image or a
    ``GeneratedImage``, whose size and format are read from its header (nothing is decoded); the row's ``path`` is
    the store's location of it (relative to the workspace for its own folder, else the object's URL, credentials
    masked). ``root`` is unused (the store knows where it is)."""
    if isinstance(image, GeneratedImage):
        from PIL import Image

        with Image.open(io.BytesIO(image.data)) as header:
            width, height, fmt = header.width, header.height, header.format
    else:
        width, height, fmt = image.width, image.height, image.format
    if size_bytes is None:
        size_bytes = len(image.data) if isinstance(image, GeneratedImage) else artifacts.size(sha)
    registry.add_artifact(Artifact(sha256=sha, path=artifacts.location(sha), width=width, height=height,
                                   format=(fmt or "PNG"), size_bytes=size_bytes, simulated=simulated))
