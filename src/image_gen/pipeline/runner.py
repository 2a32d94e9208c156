"""The stage runner: takes one brief through every stage of a pipeline.

Each stage reads as numbered steps, in this order:

1. plan      resolve the model (aliases, ``largest-available``, retired models, ``--simulate``) and its settings
2. cache     a stage whose cache key (model, parameters, prompt, seed, input artifact, adapters) was rendered
             before is taken from the cache: no provider call
3. gate      ``gate = "approval"``: the run stops as ``awaiting_approval`` until ``approve`` or ``reject``
4. budget    a call that would pass the per-run or per-day cap is not made; the run says why
5. call      the provider call, written to the registry before it is sent and after it returns; transient
             errors and rate limits are retried with backoff (tenacity), honouring ``Retry-After``
6. size      the delivered size is made to equal the asked size (crop to ratio, resample), recorded
7. upscale   ``upscale = "2x"|"4x"``: the model family's native upscaler, or tiled image-to-image
8. adapters  named adapters (color-match, typography-preserve, ...)
9. QA        automatic checks; a failing output is re-rolled with a new seed, then escalated
10. record   the artifact (content-addressed), the cache entry, the stage row; the image is handed to the next
             stage as its init image where that model takes one
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from image_gen.catalog import LOCAL_PREFIX, Catalog, ModelEntry
from image_gen.config import LARGEST, Config, StageSettings
from image_gen.errors import InputError, WorkFailed
from image_gen.providers import load_provider_class
from image_gen.providers.base import (
    AuthenticationFailed,
    ContentFiltered,
    ImageRequest,
    ImageResult,
    NotConfigured,
    OutOfMemory,
    Provider,
    ProviderError,
    ProviderSettings,
    RateLimited,
)
from image_gen.providers.sim import quoted_texts
from image_gen.store.models import Approval, CacheEntry, Call, Run, StageRun, utcnow

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.store.registry import Registry
    from image_gen.workspace import Workspace

log = logging.getLogger("image_gen.runner")

DEFAULT_SIZE = 1024
DEFAULT_HANDOFF_STRENGTH = 0.55
UPSCALE_TILE_STRENGTH = 0.25


@dataclass
class Brief:
    prompt: str
    negative_prompt: str | None = None
    expect_text: list[str] | None = None
    index: int | None = None

    def expected(self) -> list[str]:
        return list(self.expect_text) if self.expect_text else quoted_texts(self.prompt)


@dataclass
class StagePlan:
    idx: int
    name: str
    settings: StageSettings
    entry: ModelEntry
    requested: str
    provider: str
    substitution: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class StageOutcome:
    name: str
    model: str
    status: str
    cache_hit: bool = False
    cost_usd: float = 0.0
    latency_s: float = 0.0
    calls: int = 0
    artifact: str | None = None
    reason: str | None = None
    qa_passed: bool | None = None
    outputs: list[str] = field(default_factory=list)
    """Every image the stage delivered: its artifact first, then the other images of a batch."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunOutcome:
    run_id: str
    status: str
    prompt: str
    stages: list[StageOutcome]
    cost_usd: float
    latency_s: float
    simulated: bool
    final_artifact: str | None
    qa_passed: bool | None
    reason: str | None = None
    error_kind: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def provider_calls(self) -> int:
        return sum(s.calls for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "stages"}
        d["stages"] = [s.to_dict() for s in self.stages]
        d["provider_calls"] = self.provider_calls
        return d


class StageStop(Exception):
    """Ends the run at this stage with a status and a recorded reason."""

    def __init__(self, status: str, reason: str, error_kind: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.error_kind = error_kind


Events = Callable[[str, dict[str, Any]], None]


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def derived_seed(prompt: str, stage: str) -> int:
    """The seed of a stage that sets none: stable for a prompt, so an unchanged re-run hits the cache."""
    return int(_digest("seed", prompt, stage)[:8], 16) % 2**31


class Runner:
    """Runs briefs through a pipeline config against a workspace's registry and artifact store."""

    def __init__(
        self,
        workspace: Workspace,
        config: Config,
        *,
        simulate: bool | None = None,
        config_source: str | None = None,
        events: Events | None = None,
        sleep: Callable[[float], None] = time.sleep,
        providers: dict[str, Provider] | None = None,
    ) -> None:
        self.workspace = workspace
        self.config = config
        self.simulate = config.simulate if simulate is None else simulate
        self.config_source = config_source
        self.catalog = Catalog.load({k: v.model_dump(exclude_none=True) for k, v in config.models.items()})
        self.events = events or (lambda kind, data: None)
        self.sleep = sleep
        self._providers: dict[str, Provider] = dict(providers or {})
        self._lock = threading.RLock()

    # -- the composition of providers ---------------------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        return self.workspace.registry()

    def provider(self, name: str) -> Provider:
        with self._lock:
            return self._provider(name)

    def _provider(self, name: str) -> Provider:
        if name not in self._providers:
            pc = self.config.providers.get(name)
            settings = ProviderSettings(
                base_url=pc.base_url if pc else None,
                timeout_s=pc.timeout_s if pc else 60.0,
                connect_timeout_s=pc.connect_timeout_s if pc else 10.0,
                max_concurrency=pc.max_concurrency if pc else 4,
                options=dict(pc.options) if pc else {},
            )
            if name == "sim":
                sim = self.config.sim
                settings.options.update(
                    latency_scale=sim.latency_scale, soft_rate=sim.soft_rate, typo_rate=sim.typo_rate,
                    fail_rate=sim.fail_rate, catalog=self.catalog,
                )
            self._providers[name] = load_provider_class(name)(settings)
        return self._providers[name]

    # -- 1. plan ------------------------------------------------------------------------------------------------
    def plan(self) -> list[StagePlan]:
        """Resolve every stage's model before anything is written: bad input fails here, changing nothing."""
        plans: list[StagePlan] = []
        for idx, (name, st) in enumerate(self.config.stage_specs()):
            requested = st.model or LARGEST
            warnings: list[str] = []
            substitution = None
            if requested == LARGEST:
                avail = ["sim"] if self.simulate else self._configured_providers()
                entry = self.catalog.largest_available(avail)
            else:
                entry = self.catalog.resolve(requested)
            on_retired = st.on_retired or self.config.on_retired
            if entry.retired:
                successor = entry.successor or "(none named)"
                if on_retired == "successor" and entry.successor:
                    substitution = f"{entry.id} retired on {entry.retired_on}; ran successor {successor}"
                    entry = self.catalog.resolve(entry.successor)
                    warnings.append(substitution)
                elif self.simulate:
                    warnings.append(
                        f"stage {name}: {entry.id} was retired on {entry.retired_on}; simulating it anyway, but a "
                        f"real run would fail (successor: {successor}; set on_retired = \"successor\")"
                    )
                else:
                    raise WorkFailed(
                        f"stage {name}: model {entry.id} was retired on {entry.retired_on}; use its successor "
                        f"{successor} (or set on_retired = \"successor\")"
                    )
            provider = st.provider or entry.provider
            if provider == "local" and not entry.id.startswith(LOCAL_PREFIX):
                target = self.config.providers.get("local")
                models = (target.options.get("models", {}) if target else {}) or {}
                vendor = models.get(entry.id) or entry.local_repo or entry.vendor_model
                entry = entry.model_copy(update={"provider": "local", "vendor_model": vendor})
            if self.simulate:
                entry = self.catalog.simulated(entry)
                provider = "sim"
            plans.append(StagePlan(idx, name, st, entry, requested, provider, substitution, warnings))
        return plans

    def _configured_providers(self) -> list[str]:
        from image_gen.providers import available_providers

        out = []
        for name in available_providers():
            if name == "sim":
                continue
            try:
                if self.provider(name).is_configured():
                    out.append(name)
            except ProviderError:
                continue
        return out

    def check_configured(self, plans: list[StagePlan]) -> None:
        for p in plans:
            prov = self.provider(p.provider)
            if not prov.is_configured():
                raise NotConfigured(
                    f"stage {p.name}: provider {p.provider!r} for {p.entry.id} is not configured "
                    f"(set its API key in the environment, or run with --simulate)"
                )

    # -- runs ---------------------------------------------------------------------------------------------------
    def start(self, brief: Brief, plans: list[StagePlan] | None = None,
              seed_image: Image.Image | None = None) -> RunOutcome:
        """Start a run; ``seed_image`` is handed to the first stage as its input (finishing an existing image)."""
        plans = plans if plans is not None else self.plan()
        self.check_configured(plans)
        run_id = uuid.uuid4().hex[:12]
        seed_sha = None
        if seed_image is not None:
            seed_sha, _, _ = self.workspace.artifacts().put_image(
                seed_image.convert("RGB"), {"prompt": brief.prompt, "stage": "seed-image"})
            self._record_artifact(seed_sha, seed_image, False)
        snapshot = self.config.model_dump(mode="json", exclude_none=True)
        snapshot["simulate"] = self.simulate
        reg = self.registry
        reg.add(
            Run(
                id=run_id, status="running", pipeline_name=self.config.name or self.config_source,
                prompt=brief.prompt, negative_prompt=brief.negative_prompt, expect_text=brief.expect_text,
                config=snapshot, config_source=self.config_source, simulated=self.simulate,
                brief_index=brief.index, input_artifact=seed_sha,
            )
        )
        for p in plans:
            reg.add(
                StageRun(
                    run_id=run_id, idx=p.idx, name=p.name, model_id=p.entry.id, requested_model=p.requested,
                    provider=p.provider, params={}, status="pending", substitution=p.substitution,
                )
            )
        self.events("run_start", {"run_id": run_id, "prompt": brief.prompt, "stages": len(plans)})
        return self._continue(run_id, plans, brief, seed_sha)

    def start_many(self, briefs: list[Brief], plans: list[StagePlan] | None = None, *, concurrency: int = 1,
                   seed_image: Image.Image | None = None) -> list[RunOutcome]:
        """Run several briefs, up to ``concurrency`` at once (threads: provider calls wait on the network).

        Outcomes come back in the order of ``briefs``; each run is recorded as if it ran alone.
        """
        plans = plans if plans is not None else self.plan()
        self.check_configured(plans)
        if concurrency <= 1 or len(briefs) <= 1:
            return [self.start(b, plans, seed_image=seed_image) for b in briefs]
        from concurrent.futures import ThreadPoolExecutor

        self.registry  # noqa: B018 - open the registry (and migrate) once, before the threads share it
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="image-gen-run") as pool:
            return list(pool.map(lambda b: self.start(b, plans, seed_image=seed_image), briefs))

    def resume(self, run_id: str) -> RunOutcome:
        run = self._get_run(run_id)
        if run.status in ("completed", "rejected"):
            return self.outcome(run.id)
        brief = Brief(run.prompt, run.negative_prompt, run.expect_text, run.brief_index)
        plans = self.plan()
        self.check_configured(plans)
        # a call that was in flight when the process died may have been billed: mark it, keep it visible
        for c in self.registry.calls(run.id):
            if c.state == "sent":
                self.registry.update(Call, c.id, state="interrupted",
                                     error="process ended while the call was in flight; may have been billed")
        self.registry.update(Run, run.id, status="running", reason=None)
        return self._continue(run.id, plans, brief, run.input_artifact)

    def approve(self, run_id: str, note: str | None = None) -> RunOutcome:
        run, stage = self._waiting(run_id)
        self.registry.add(Approval(run_id=run.id, stage_name=stage.name, decision="approved", note=note))
        return self.resume(run.id)

    def reject(self, run_id: str, note: str | None = None) -> RunOutcome:
        run, stage = self._waiting(run_id)
        self.registry.add(Approval(run_id=run.id, stage_name=stage.name, decision="rejected", note=note))
        self.registry.update(StageRun, stage.id, status="rejected", reason=note or "rejected")
        self.registry.update(Run, run.id, status="rejected", reason=f"rejected at {stage.name}: {note or ''}",
                             qa_passed=False)
        return self.outcome(run.id)

    def _waiting(self, run_id: str) -> tuple[Run, StageRun]:
        """The run and the stage it waits at; bad input if it waits at none."""
        run = self._get_run(run_id)
        waiting = [s for s in self.registry.stage_runs(run.id) if s.status == "awaiting_approval"]
        if run.status != "awaiting_approval" or not waiting:
            raise InputError(f"run {run.id} is not waiting for approval (status: {run.status})")
        return run, waiting[0]

    def _get_run(self, run_id: str) -> Run:
        run = self.registry.get_run(run_id)
        if run is None:
            raise InputError(f"no run {run_id!r} in this workspace's registry", field="RUN")
        return run

    def _continue(self, run_id: str, plans: list[StagePlan], brief: Brief, seed_sha: str | None) -> RunOutcome:
        rows = {s.idx: s for s in self.registry.stage_runs(run_id)}
        prev_sha: str | None = seed_sha
        layout_sha: str | None = None
        status, reason, error_kind = "completed", None, None
        for plan in plans:
            row = rows[plan.idx]
            if row.status == "done":
                prev_sha = row.artifact_sha
                if plan.entry.can("typography"):
                    layout_sha = prev_sha
                continue
            self.events("stage_start", {"run_id": run_id, "stage": plan.name, "model": plan.entry.id})
            try:
                out = self.run_stage(run_id, row, plan, brief, prev_sha, layout_sha)
            except StageStop as stop:
                status, reason, error_kind = stop.status, stop.reason, stop.error_kind
                self.events("stage_end", {"run_id": run_id, "stage": plan.name, "status": stop.status,
                                          "reason": stop.reason})
                break
            self.events("stage_end", {"run_id": run_id, "stage": plan.name, "status": "done",
                                      "cache_hit": out.cache_hit, "cost_usd": out.cost_usd,
                                      "latency_s": out.latency_s})
            prev_sha = out.artifact
            if plan.entry.can("typography"):
                layout_sha = prev_sha
        self._finish_run(run_id, status, reason)
        outcome = self.outcome(run_id)
        outcome.error_kind = error_kind
        outcome.warnings = [w for p in plans for w in p.warnings]
        self.events("run_end", outcome.to_dict())
        return outcome

    def _finish_run(self, run_id: str, status: str, reason: str | None) -> None:
        stages = self.registry.stage_runs(run_id)
        done = [s for s in stages if s.status == "done" and s.artifact_sha]
        final = done[-1] if done else None
        qa_passed = None
        if final is not None and final.qa is not None:
            qa_passed = bool(final.qa.get("passed"))
        self.registry.update(
            Run, run_id, status=status, reason=reason,
            cost_usd=round(sum(s.cost_usd for s in stages), 6),
            latency_s=round(sum(s.latency_s for s in stages), 4),
            final_artifact=final.artifact_sha if final else None,
            qa_passed=qa_passed if status in ("completed", "awaiting_approval") else False,
        )

    def outcome(self, run_id: str) -> RunOutcome:
        run = self._get_run(run_id)
        stages = []
        for s in self.registry.stage_runs(run.id):
            calls = self.registry.calls(stage_run_id=s.id)
            stages.append(StageOutcome(
                name=s.name, model=s.model_id, status=s.status, cache_hit=s.cache_hit, cost_usd=s.cost_usd,
                latency_s=s.latency_s, calls=len(calls), artifact=s.artifact_sha, reason=s.reason,
                qa_passed=None if s.qa is None else bool(s.qa.get("passed")), outputs=list(s.outputs or []),
            ))
        return RunOutcome(
            run_id=run.id, status=run.status, prompt=run.prompt, stages=stages, cost_usd=run.cost_usd,
            latency_s=run.latency_s, simulated=run.simulated, final_artifact=run.final_artifact,
            qa_passed=run.qa_passed, reason=run.reason,
        )

    # -- one stage ----------------------------------------------------------------------------------------------
    def stage_params(self, plan: StagePlan, brief: Brief, input_sha: str | None) -> dict[str, Any]:
        st = plan.settings
        width, height = st.width, st.height
        if not (width and height):
            art = self.registry.artifact(input_sha) if input_sha and not st.aspect_ratio else None
            if art is not None:  # a handoff without an asked size keeps the incoming image's size
                width, height = width or art.width, height or art.height
            elif st.aspect_ratio:
                a, b = (int(x) for x in st.aspect_ratio.split(":"))
                scale = (DEFAULT_SIZE * DEFAULT_SIZE / (a * b)) ** 0.5
                width, height = int(round(a * scale / 16) * 16), int(round(b * scale / 16) * 16)
            else:
                width, height = width or DEFAULT_SIZE, height or DEFAULT_SIZE
        handoff = input_sha is not None and plan.entry.can("img2img")
        return {
            "operation": "img2img" if handoff else "generate",
            "width": width,
            "height": height,
            "aspect_ratio": st.aspect_ratio,
            "seed": st.seed if st.seed is not None else derived_seed(brief.prompt, plan.name),
            "steps": st.steps,
            "guidance_scale": st.guidance_scale,
            "strength": (st.strength if st.strength is not None else DEFAULT_HANDOFF_STRENGTH) if handoff else None,
            "num_images": st.num_images or 1,
            "negative_prompt": st.negative_prompt or brief.negative_prompt,
            "options": {**plan.entry.options, **(st.options or {})},
            "upscale": st.upscale,
            "tile_size": st.tile_size,
            "overlap": st.overlap,
            "adapters": list(st.adapters or []),
            "retries": st.retries if st.retries is not None else 3,
            "max_rerolls": st.max_rerolls or 0,
            "escalate_to": st.escalate_to,
            "fallback_model": st.fallback_model,
            "qa": (st.qa.model_dump() if st.qa else None),
            "handoff": "img2img" if handoff else ("none: model has no image-to-image" if input_sha else None),
        }

    @staticmethod
    def asked_size(params: dict[str, Any]) -> tuple[int, int]:
        """The size the stage delivers: its width x height, times the upscale factor."""
        f = int(params["upscale"].rstrip("x")) if params.get("upscale") else 1
        return params["width"] * f, params["height"] * f

    def cache_key(self, plan: StagePlan, brief: Brief, params: dict[str, Any], input_sha: str | None) -> str:
        return _digest(
            "stage-v1", plan.entry.id, plan.entry.version, plan.provider, plan.entry.vendor_model,
            brief.prompt, brief.expect_text, params, input_sha,
        )

    def run_stage(self, run_id: str, row: StageRun, plan: StagePlan, brief: Brief, input_sha: str | None,
                  layout_sha: str | None) -> StageOutcome:
        reg = self.registry
        params = self.stage_params(plan, brief, input_sha)
        key = self.cache_key(plan, brief, params, input_sha)
        reg.update(StageRun, row.id, params=params, seed=params["seed"], cache_key=key, input_artifact=input_sha,
                   started_at=utcnow(), status="running")

        # 2. cache
        hit = reg.cache_get(key)
        if hit is not None and all(self.workspace.artifacts().path_for(a).exists() for a in hit.artifacts):
            produced = {k: hit.result.get(k) for k in ("cost_usd", "latency_s", "calls", "rerolls")}
            reg.update(StageRun, row.id, status="done", cache_hit=True, artifact_sha=hit.artifacts[0],
                       params={**params, "from_cache": produced},
                       outputs=hit.artifacts, seed=hit.seed, qa=hit.result.get("qa"),
                       adapters=hit.result.get("adapters"), cost_usd=0.0, latency_s=0.0, finished_at=utcnow())
            return StageOutcome(plan.name, plan.entry.id, "done", cache_hit=True, artifact=hit.artifacts[0],
                                qa_passed=None if hit.result.get("qa") is None else hit.result["qa"]["passed"])

        # 3. gate
        if plan.settings.gate == "approval":
            decisions = [a for a in reg.approvals(run_id) if a.stage_name == plan.name]
            if not decisions or decisions[-1].decision != "approved":
                reg.update(StageRun, row.id, status="awaiting_approval",
                           reason="waiting for approval: image-gen approve " + run_id)
                raise StageStop("awaiting_approval", f"stage {plan.name} waits for approval")

        ctx = _StageContext(run_id=run_id, row=row, plan=plan, brief=brief, params=params)
        try:
            image, result_meta = self._render_with_qa(ctx, input_sha)
            image = self._deliver_size(ctx, image)
            if params["upscale"]:
                image = self._upscale(ctx, image, int(params["upscale"].rstrip("x")))
            adapters_record = self._apply_adapters(ctx, image, input_sha, layout_sha)
            image = ctx.image_after_adapters or image
            changed = params["adapters"] or params["upscale"] or ctx.size_fixes
            verdict = self._qa(ctx, image, asked=self.asked_size(params)) if changed else ctx.verdict
        except StageStop as stop:
            reg.update(StageRun, row.id, status=stop.status, reason=stop.reason, cost_usd=ctx.cost,
                       latency_s=ctx.latency, finished_at=utcnow(), rerolls=ctx.rerolls,
                       escalated_to=ctx.escalated_to)
            raise

        # 10. record
        sha = self._store(ctx, image, final=True)
        others = [self._store(ctx, self._deliver_size(ctx, g.to_pil().convert("RGB"), upscale_short=False),
                              final=False, seed=g.seed) for g in ctx.batch]
        qa = verdict.to_dict() if verdict is not None else None
        reg.update(StageRun, row.id, status="done", artifact_sha=sha, outputs=[sha, *others],
                   seed=ctx.seed_used, qa=qa, adapters=adapters_record, cost_usd=round(ctx.cost, 6),
                   latency_s=round(ctx.latency, 4), finished_at=utcnow(), rerolls=ctx.rerolls,
                   escalated_to=ctx.escalated_to, model_id=ctx.model_used or plan.entry.id,
                   params={**params, **result_meta})
        reg.cache_put(CacheEntry(key=key, model_id=plan.entry.id, artifacts=[sha, *others],
                                 seed=ctx.seed_used, result={"qa": qa, "adapters": adapters_record,
                                                             "cost_usd": ctx.cost, "latency_s": ctx.latency,
                                                             "calls": ctx.calls, "rerolls": ctx.rerolls}))
        return StageOutcome(plan.name, plan.entry.id, "done", cost_usd=ctx.cost, latency_s=ctx.latency,
                            calls=ctx.calls, artifact=sha, qa_passed=None if qa is None else qa["passed"])

    # 4-5. budget and the provider call, with retries -----------------------------------------------------------
    def call(self, ctx: _StageContext, entry: ModelEntry, provider_name: str, request: ImageRequest,
             purpose: str) -> ImageResult:
        from tenacity import Retrying, retry_if_exception, stop_after_attempt

        attempts = int(ctx.params["retries"]) + 1
        expected = entry.price_for(request.width, request.height, request.num_images)
        provider = self.provider(provider_name)
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._check_budget(ctx.run_id, expected, entry)
                    return self._one_call(ctx, entry, provider_name, provider, request, purpose,
                                          attempt.retry_state.attempt_number, expected)
        # provider messages start with the provider's name already
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

        rs = self.config.retry
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(float(exc.retry_after), rs.max_retry_after_s)
        n = retry_state.attempt_number
        base = min(rs.max_s, rs.initial_s * 2 ** (n - 1))
        return base / 2 + random.uniform(0, base / 2)

    def _check_budget(self, run_id: str, expected: float, entry: ModelEntry) -> None:
        b = self.config.budget
        reg = self.registry
        if b.per_run_usd is not None:
            spent = self._run_spend(run_id)
            if spent + expected > b.per_run_usd + 1e-9:
                raise StageStop(
                    "budget_stopped",
                    f"budget: the next call ({entry.id}, ${expected:.4f}) would bring this run to "
                    f"${spent + expected:.4f}, over its cap of ${b.per_run_usd:.4f}; not sent",
                    "budget",
                )
        if b.per_day_usd is not None:
            spent_day = reg.spent_today()
            if spent_day + expected > b.per_day_usd + 1e-9:
                raise StageStop(
                    "budget_stopped",
                    f"budget: the next call ({entry.id}, ${expected:.4f}) would bring today's spend to "
                    f"${spent_day + expected:.4f}, over the daily cap of ${b.per_day_usd:.4f}; not sent",
                    "budget",
                )

    def _run_spend(self, run_id: str) -> float:
        total = 0.0
        for c in self.registry.calls(run_id):
            total += c.cost_usd if c.state in ("ok", "failed") else c.expected_cost_usd
        return total

    def _one_call(self, ctx: _StageContext, entry: ModelEntry, provider_name: str, provider: Provider,
                  request: ImageRequest, purpose: str, attempt: int, expected: float) -> ImageResult:
        reg = self.registry
        call = reg.add(Call(
            run_id=ctx.run_id, stage_run_id=ctx.row.id, attempt=attempt, model_id=entry.id, provider=provider_name,
            operation=request.operation, purpose=purpose, request=request.describe(), state="sent",
            expected_cost_usd=expected, simulated=provider_name == "sim",
        ))
        t0 = time.perf_counter()
        try:
            result = provider.generate(request)
        except ProviderError as exc:
            # billed by a vendor: its price; a local engine reports what its failed attempts cost
            cost = expected if exc.billed else float(getattr(exc, "cost_usd", 0.0) or 0.0)
            reg.update(Call, call.id, state="failed", error_kind=type(exc).__name__, error=str(exc)[:2000],
                       cost_usd=cost, billed=exc.billed, latency_s=time.perf_counter() - t0,
                       vendor_request_id=exc.request_id, finished_at=utcnow())
            ctx.cost += cost
            ctx.calls += 1
            raise
        except Exception as exc:  # an engine bug must still leave a trace, then surface as a failure
            reg.update(Call, call.id, state="failed", error_kind=type(exc).__name__, error=str(exc)[:2000],
                       latency_s=time.perf_counter() - t0, finished_at=utcnow())
            ctx.calls += 1
            raise StageStop("failed", f"{provider_name} failed unexpectedly: {type(exc).__name__}: {exc}",
                            "internal") from exc
        cost = result.cost_usd if result.cost_usd is not None else expected
        latency = result.latency_s if result.latency_s else time.perf_counter() - t0
        shas = []
        for img in result.images:
            pil = img.to_pil()
            sha, _ = self.workspace.artifacts().put_bytes(img.data)
            self._record_artifact(sha, pil, result.simulated)
            shas.append(sha)
        reg.update(Call, call.id, state="ok", cost_usd=cost, billed=True, latency_s=latency,
                   vendor_request_id=result.request_id, seed=result.seed, finished_at=utcnow(),
                   meta={**_json_safe(result.metadata), "artifacts": shas})
        ctx.cost += cost
        ctx.latency += latency
        ctx.calls += 1
        return result

    def _record_artifact(self, sha: str, pil: Image.Image, simulated: bool) -> None:
        from sqlalchemy.exc import IntegrityError

        from image_gen.store.models import Artifact

        if self.registry.artifact(sha) is not None:
            return
        path = self.workspace.artifacts().path_for(sha)
        with suppress(IntegrityError):  # another process recorded the same content first
            self.registry.add(Artifact(sha256=sha, path=str(path.relative_to(self.workspace.root)), width=pil.width,
                                       height=pil.height, format=(pil.format or "PNG"),
                                       size_bytes=path.stat().st_size, simulated=simulated))

    # 5 + 9. render, QA, re-roll, escalate ------------------------------------------------------------------------
    def _request(self, ctx: _StageContext, entry: ModelEntry, seed: int, input_sha: str | None) -> ImageRequest:
        p = ctx.params
        init = self.workspace.artifacts().read_bytes(input_sha) if (input_sha and entry.can("img2img")) else None
        options = dict(p["options"])
        if p["tile_size"] and entry.provider == "local":  # latent tiling is the local engine's; vendors tile upscales
            options.setdefault("tile_size", p["tile_size"])
            options.setdefault("overlap", p["overlap"] if p["overlap"] is not None else 32)
        return ImageRequest(
            model=entry.id, vendor_model=entry.vendor_model, prompt=ctx.brief.prompt,
            operation="img2img" if init is not None else "generate",
            negative_prompt=p["negative_prompt"], width=p["width"], height=p["height"],
            aspect_ratio=p["aspect_ratio"], seed=seed, steps=p["steps"], guidance_scale=p["guidance_scale"],
            init_image=init, strength=p["strength"] if init is not None else None, num_images=p["num_images"],
            options=options,
        )

    def _render_with_qa(self, ctx: _StageContext, input_sha: str | None) -> tuple[Image.Image, dict[str, Any]]:
        plan, p = ctx.plan, ctx.params
        if plan.settings.render is False:
            if input_sha is None:
                raise StageStop("failed", f"stage {plan.name} has render = false but no input image", "bad_request")
            ctx.model_used = plan.entry.id
            image = self.workspace.artifacts().open(input_sha).convert("RGB")
            ctx.verdict = self._qa(ctx, image)
            return image, {"rendered": False}
        candidates: list[tuple[ModelEntry, str, str]] = [(plan.entry, plan.provider, "stage")]
        if p["escalate_to"]:
            esc = self.catalog.resolve(p["escalate_to"])
            candidates.append((*self._route(esc), "escalation"))
        # an attempt: (image, verdict, metadata, seed used, model used, the call's other images)
        best: tuple[Image.Image, Any, dict[str, Any], int | None, str, list[Any]] | None = None
        chosen = None
        for n, (entry, provider_name, purpose) in enumerate(candidates):
            rolls = p["max_rerolls"] + 1 if purpose == "stage" else 1
            for k in range(rolls):
                seed = (p["seed"] + 7919 * (k + n * 100)) % (2**32 - 1)  # the asked seed first, as given
                why = purpose if k == 0 else "reroll"
                request = self._request(ctx, entry, seed, input_sha)
                result, used = self._call_with_fallback(ctx, entry, provider_name, request, why)
                first = result.images[0]
                image = first.to_pil().convert("RGB")
                meta = {"vendor": _json_safe(result.metadata), "returned_size": [image.width, image.height]}
                if k > 0:
                    ctx.rerolls += 1
                if purpose == "escalation":
                    ctx.escalated_to = entry.id
                verdict = self._qa(ctx, image, asked=None, safety=result.metadata)
                attempt = (image, verdict, meta, first.seed if first.seed is not None else result.seed, used.id,
                           list(result.images[1:]))
                if verdict is None or verdict.passed:
                    chosen = attempt
                    break
                best = best or attempt  # failed attempts stay in the registry through their calls
            if chosen is not None:
                break
        image, ctx.verdict, meta, ctx.seed_used, ctx.model_used, ctx.batch = chosen or best  # type: ignore[misc]
        return image, meta

    def _call_with_fallback(self, ctx: _StageContext, entry: ModelEntry, provider_name: str,
                            request: ImageRequest, purpose: str) -> tuple[ImageResult, ModelEntry]:
        """The call, or on out-of-memory (after the engine's own ladder) the stage's lighter fallback model."""
        try:
            return self.call(ctx, entry, provider_name, request, purpose), entry
        except OutOfMemory as exc:
            fb = ctx.params.get("fallback_model")
            if not fb:
                raise StageStop("failed", f"out of memory on {entry.id} and no fallback_model: {exc}",
                                "out_of_memory") from exc
            fb_entry = self.catalog.resolve(fb)
            fb_entry, fb_provider = self._route(fb_entry, ctx.plan.settings.provider
                                                if fb_entry.provider == "local" else None)
            req = ImageRequest(**{**request.__dict__, "model": fb_entry.id, "vendor_model": fb_entry.vendor_model})
            try:
                return self.call(ctx, fb_entry, fb_provider, req, "fallback"), fb_entry
            except OutOfMemory as exc2:
                raise StageStop("failed", f"out of memory on {entry.id} and on fallback {fb}: {exc2}",
                                "out_of_memory") from exc2

    def _route(self, entry: ModelEntry, provider: str | None = None) -> tuple[ModelEntry, str]:
        """A model chosen during a stage (escalation, fallback, upscaler) and the provider that serves it:
        its simulated twin under ``--simulate``, else ``provider`` or the catalog's."""
        if self.simulate:
            return self.catalog.simulated(entry), "sim"
        return entry, provider or entry.provider

    def _qa(self, ctx: _StageContext, image: Image.Image, asked: tuple[int, int] | None = None,
            safety: dict[str, Any] | None = None) -> Any:
        qa_cfg = ctx.plan.settings.qa
        if qa_cfg is not None and not qa_cfg.enabled:
            return None
        from image_gen.qa import evaluate

        return evaluate(
            image, prompt=ctx.brief.prompt, expect_text=ctx.brief.expect_text,
            asked_size=asked, settings=qa_cfg,
            safety_flags=_safety_flags(safety),
        )

    # 6. size ----------------------------------------------------------------------------------------------------
    def _deliver_size(self, ctx: _StageContext, image: Image.Image, *, upscale_short: bool = True) -> Image.Image:
        """Make the image exactly the asked size. A model that rendered at its native size, well below the asked
        one, is upscaled (native upscaler, or tiled image-to-image with the stage's tile settings) first; then
        the image is cropped to the asked ratio and resampled. Each fix is recorded."""
        from PIL import Image as PILImage

        w, h = ctx.params["width"], ctx.params["height"]
        if (image.width, image.height) == (w, h):
            return image
        if upscale_short and image.width * image.height * 2 <= w * h:
            linear = (w * h / (image.width * image.height)) ** 0.5
            image = self._upscale(ctx, image, 2 if linear <= 2.0 + 1e-6 else 4)
        fixes = []
        src_ratio, ratio = image.width / image.height, w / h
        if abs(src_ratio - ratio) > 0.01:
            if src_ratio > ratio:
                nw = round(image.height * ratio)
                x0 = (image.width - nw) // 2
                image = image.crop((x0, 0, x0 + nw, image.height))
            else:
                nh = round(image.width / ratio)
                y0 = (image.height - nh) // 2
                image = image.crop((0, y0, image.width, y0 + nh))
            fixes.append("cropped to ratio")
        if (image.width, image.height) != (w, h):
            fixes.append(f"resampled {image.width}x{image.height} -> {w}x{h}")
            image = image.resize((w, h), PILImage.Resampling.LANCZOS)
        ctx.size_fixes.extend(fixes)
        return image

    # 7. upscale -------------------------------------------------------------------------------------------------
    def _upscale(self, ctx: _StageContext, image: Image.Image, factor: int) -> Image.Image:
        from PIL import Image as PILImage

        from image_gen.providers.base import encode_png

        p = ctx.params
        target = (image.width * factor, image.height * factor)
        entry = self.catalog.resolve(ctx.model_used or ctx.plan.entry.id)
        upscaler_id = entry.native_upscaler
        if upscaler_id and not p["tile_size"]:
            up, provider = self._route(self.catalog.resolve(upscaler_id))
            req = ImageRequest(model=up.id, vendor_model=up.vendor_model, prompt=ctx.brief.prompt,
                               operation="upscale", init_image=encode_png(image), seed=p["seed"],
                               width=target[0], height=target[1], options={"factor": factor})
            result = self.call(ctx, up, provider, req, "upscale")
            out = result.images[0].to_pil().convert("RGB")
            if out.size != target:
                out = out.resize(target, PILImage.Resampling.LANCZOS)
            ctx.size_fixes.append(f"upscaled {factor}x with {up.id}")
            return out
        from image_gen.pipeline.upscale import tiled_upscale

        entry_used, provider_name = self._route(entry, ctx.plan.settings.provider)
        tile_size = p["tile_size"] or 512
        overlap = p["overlap"] if p["overlap"] is not None else 32

        def render_tile(tile: Image.Image, index: int) -> Image.Image:
            req = ImageRequest(model=entry_used.id, vendor_model=entry_used.vendor_model, prompt=ctx.brief.prompt,
                               operation="img2img", init_image=encode_png(tile), strength=UPSCALE_TILE_STRENGTH,
                               width=tile.width, height=tile.height, seed=(p["seed"] + index) % 2**31,
                               steps=p["steps"], guidance_scale=p["guidance_scale"], options=p["options"])
            res = self.call(ctx, entry_used, provider_name, req, "tile")
            return res.images[0].to_pil().convert("RGB").resize(tile.size, PILImage.Resampling.LANCZOS)

        if not entry_used.can("img2img"):
            raise StageStop("failed", f"upscale: {entry.id} has neither a native upscaler nor image-to-image",
                            "bad_request")
        out = tiled_upscale(image, factor, tile_size=tile_size, overlap=overlap, render_tile=render_tile)
        ctx.size_fixes.append(f"upscaled {factor}x in tiles of {tile_size} (overlap {overlap}) with {entry.id}")
        return out

    # 8. adapters ------------------------------------------------------------------------------------------------
    def _apply_adapters(self, ctx: _StageContext, image: Image.Image, input_sha: str | None,
                        layout_sha: str | None) -> list[dict[str, Any]]:
        from image_gen.pipeline.adapters import AdapterContext, get_adapter

        names = ctx.params["adapters"]
        if not names:
            return []
        store = self.workspace.artifacts()
        prev = store.open(input_sha).convert("RGB") if input_sha else None
        layout = store.open(layout_sha).convert("RGB") if layout_sha else prev
        actx = AdapterContext(prompt=ctx.brief.prompt, expected_texts=ctx.brief.expected(), stage_name=ctx.plan.name,
                              previous_image=prev, layout_image=layout)
        records = []
        for name in names:
            res = get_adapter(name)(image, actx)
            image = res.image
            records.append({"adapter": name, **_json_safe(res.record)})
        ctx.image_after_adapters = image
        return records

    def _store(self, ctx: _StageContext, image: Image.Image, *, final: bool, seed: int | None = None) -> str:
        p = ctx.params
        meta = {
            "prompt": ctx.brief.prompt, "negative_prompt": p["negative_prompt"], "model": ctx.model_used,
            "stage": ctx.plan.name, "seed": seed if seed is not None else ctx.seed_used, "steps": p["steps"],
            "guidance_scale": p["guidance_scale"],
            "strength": p["strength"], "size": f"{image.width}x{image.height}", "simulated": self.simulate,
            "size_fixes": ctx.size_fixes if final else [], "upscale": p["upscale"], "adapters": p["adapters"],
        }
        sha, _, _ = self.workspace.artifacts().put_image(image, meta)
        self._record_artifact(sha, image, self.simulate)
        return sha


@dataclass
class _StageContext:
    run_id: str
    row: StageRun
    plan: StagePlan
    brief: Brief
    params: dict[str, Any]
    cost: float = 0.0
    latency: float = 0.0
    calls: int = 0
    rerolls: int = 0
    escalated_to: str | None = None
    model_used: str | None = None
    seed_used: int | None = None
    verdict: Any = None
    size_fixes: list[str] = field(default_factory=list)
    batch: list[Any] = field(default_factory=list)
    """The other images of the chosen call (``num_images`` > 1): delivered at the asked size, recorded, exported."""
    image_after_adapters: Any = None


def _safety_flags(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """The vendor's safety signals as QA flags (a flag is raised when true or a non-empty reason)."""
    if not meta:
        return None
    flags: dict[str, Any] = {}
    if "is_image_safe" in meta:
        flags["unsafe_image"] = meta["is_image_safe"] is False
    reason = meta.get("finish_reason")
    if isinstance(reason, str) and reason.upper() not in ("SUCCESS", "STOP", ""):
        flags["finish_reason"] = reason
    for key in ("rai_filtered_reason", "raiFilteredReason"):
        if meta.get(key):
            flags["rai_filtered_reason"] = meta[key]
    return flags or None


def _json_safe(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))
