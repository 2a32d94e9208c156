"""The run lifecycle: takes one brief through every stage of a pipeline, and moves runs through their states.

A run's states: ``running`` (held by one process's lease) -> ``awaiting_approval`` | ``completed`` | ``failed`` |
``budget_stopped`` | ``interrupted`` | ``rejected`` | ``cancelled``. Every change is compare-and-set, so two
approvals, or a resume racing a live process, cannot both act. Each stage runs as the numbered steps of
``pipeline/stage.py``; models are routed once, up front (``pipeline/plan.py``); calls are reserved, settled and
reused on resume by ``pipeline/calls.py``; spend goes through ``store/ledger.py``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from image_gen.catalog import Catalog
from image_gen.config import Config
from image_gen.errors import InputError, RunsInterrupted, WorkFailed
from image_gen.imaging.labels import label_texts
from image_gen.pipeline.calls import CallMaker, StageStop
from image_gen.pipeline.lease import Leases, lease_live
from image_gen.pipeline.plan import Planner, Route, StagePlan
from image_gen.pipeline.stage import (
    StageExecutor,
    StageOutcome,
    asked_size,
    cache_key,
    derived_seed,
    stage_params,
)
from image_gen.providers import load_provider_class
from image_gen.providers.base import Provider, ProviderError, ProviderSettings
from image_gen.store.ledger import Caps, Ledger
from image_gen.store.models import Approval, BatchItem, Run, StageRun

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.pipeline.routing import History, Routing
    from image_gen.store.registry import Registry
    from image_gen.workspace import Workspace

__all__ = ["Brief", "Events", "ItemTaken", "Route", "RunOutcome", "Runner", "StageOutcome", "StagePlan",
           "StageStop", "asked_size", "cache_key", "derived_seed"]

log = logging.getLogger("image_gen.runner")

RESUMABLE = ("interrupted", "failed", "budget_stopped")
FINAL = ("completed", "rejected", "cancelled")


@dataclass
class Brief:
    prompt: str
    negative_prompt: str | None = None
    expect_text: list[str] | None = None
    index: int | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    """Per-brief size and seed (a batch's prompt file): they override every stage's size and seed."""
    channel: str | None = None
    """The delivery channel the brief is meant for (recorded on its batch item)."""

    def expected(self) -> list[str]:
        return list(self.expect_text) if self.expect_text else label_texts(self.prompt)

    def options(self) -> dict[str, Any] | None:
        """The brief's own size, seed and channel (recorded with its run), or None."""
        opts = {k: v for k in ("width", "height", "seed", "channel") if (v := getattr(self, k)) is not None}
        return opts or None


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
    routing: dict[str, Any] | None = None
    """How the run was routed before it started (latency SLA, capability classes): ``Run.routing``."""

    @property
    def provider_calls(self) -> int:
        return sum(s.calls for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "stages"}
        d["stages"] = [s.to_dict() for s in self.stages]
        d["provider_calls"] = self.provider_calls
        return d


Events = Callable[[str, dict[str, Any]], None]


class ItemTaken(Exception):
    """The batch item already has a run (another process started it first): nothing was written."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


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
        self.stop = threading.Event()
        self.planner = Planner(config, self.catalog, self.simulate, self.provider, self._configured_providers,
                               self.history)
        self._leases: Leases | None = None
        self._calls: CallMaker | None = None
        self.on_complete: Callable[[str], list[str]] | None = None
        """Called with the run id when a run completes (delivery hooks in here from above); returns warnings."""

    # -- composition ----------------------------------------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        return self.workspace.registry()

    @property
    def leases(self) -> Leases:
        with self._lock:
            if self._leases is None:
                self._leases = Leases(self.registry)
            return self._leases

    @property
    def caps(self) -> Caps:
        b = self.config.budget
        return Caps(b.per_run_usd, b.per_day_usd, getattr(b, "timezone", None) or "UTC")

    @property
    def calls(self) -> CallMaker:
        with self._lock:
            if self._calls is None:
                from functools import partial

                from image_gen.pipeline.calls import record_artifact

                store = self.workspace.artifacts()
                store.clean_temp()
                self._calls = CallMaker(
                    registry=self.registry, ledger=Ledger(self.registry), artifacts=store, caps=self.caps,
                    retry=self.config.retry, provider=self.provider, owner=self.leases.owner, sleep=self.sleep,
                    stop=self.stop,
                    record_artifact=partial(record_artifact, self.registry, store, self.workspace.root))
            return self._calls

    def provider(self, name: str) -> Provider:
        with self._lock:
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

    # -- 1. plan --------------------------------------------------------------------------------------------------
    def plan(self) -> list[StagePlan]:
        """Resolve and route every model every stage may call; bad input fails here, changing nothing."""
        return self.planner.plan()

    def check_configured(self, plans: list[StagePlan]) -> None:
        self.planner.check(plans)

    def history(self) -> History:
        """What the registry recorded per model: stage latencies by asked size, QA outcomes (routing's input)."""
        from image_gen.pipeline.routing import History

        try:
            registry = self.workspace.existing_registry()
        except InputError:
            return History()  # a new workspace has no history; reading it must not create its registry
        return History.load(registry)

    def route(self, plans: list[StagePlan] | None = None, *, seed_size: tuple[int, int] | None = None) -> Routing:
        """Staged or single-call (``pipeline.sla_s``), decided from the registry's history before any call; the
        decision and its inputs are what ``Run.routing`` records (``pipeline/routing.py``)."""
        from image_gen.pipeline.routing import decide

        plans = plans if plans is not None else self.plan()
        return decide(self, plans, seed_size=seed_size)

    def single_call_plans(self, model: str, size: tuple[int, int] | None, gated: bool) -> list[StagePlan]:
        """The plan of the single-call path: one stage on ``model`` asked for ``size``, gated if the pipeline is."""
        from image_gen.pipeline.routing import single_call_config

        planner = Planner(single_call_config(self.config, model, size, gated), self.catalog, self.simulate,
                          self.provider, self._configured_providers, self.history)
        plans = planner.plan()
        planner.check(plans)
        return plans

    def plans_for_run(self, run: Run) -> list[StagePlan]:
        """A started run's plans as routed when it started: its single-call model and size, its class choices."""
        routing = run.routing or {}
        if routing.get("mode") == "single-call":
            size = routing.get("size")
            return self.single_call_plans(routing["single_call_model"], (size[0], size[1]) if size else None,
                                          bool(routing.get("gate")))
        return self.plan_pinned(routing)

    def plan_pinned(self, routing: dict[str, Any]) -> list[StagePlan]:
        pinned = {name: c["model"] for name, c in (routing.get("classes") or {}).items() if c.get("model")}
        return self.planner.plan(pinned=pinned or None)

    def stage_params(self, plan: StagePlan, brief: Brief, input_sha: str | None) -> dict[str, Any]:
        art = self.registry.artifact(input_sha) if input_sha else None
        return stage_params(plan, brief, (art.width, art.height) if art is not None else None)

    asked_size = staticmethod(asked_size)

    def cache_key(self, plan: StagePlan, brief: Brief, params: dict[str, Any], input_sha: str | None) -> str:
        return cache_key(plan, brief, params, input_sha)

    # -- runs -----------------------------------------------------------------------------------------------------
    def start(self, brief: Brief, plans: list[StagePlan] | None = None,
              seed_image: Image.Image | None = None, routing: Routing | None = None, *,
              batch: tuple[str, int] | None = None) -> RunOutcome:
        """Start a run; ``seed_image`` is handed to the first stage as its input (finishing an existing image).
        ``routing``: the decision made for these plans (default: decided now, from the registry's history).

        ``batch`` (batch id, item index): the run is that batch item's; its run id is set on the item by
        compare-and-set in the transaction that creates the run, before any call, or ``ItemTaken`` is raised and
        nothing is written."""
        from image_gen.pipeline.calls import record_artifact
        from image_gen.store.artifacts import redact_artifacts_url
        from image_gen.store.registry import redact_url

        plans = plans if plans is not None else self.plan()
        self.check_configured(plans)
        if routing is None:
            routing = self.route(plans, seed_size=seed_image.size if seed_image is not None else None)
        plans = routing.plans
        run_id = uuid.uuid4().hex[:12]
        seed_sha = None
        if seed_image is not None:
            store = self.workspace.artifacts()
            rgb = seed_image.convert("RGB")
            seed_sha, _, data = store.put_image(rgb, {"prompt": brief.prompt, "stage": "seed-image"})
            record_artifact(self.registry, store, self.workspace.root, seed_sha, rgb, False, len(data))
        snapshot = self.config.model_dump(mode="json", exclude_none=True)
        snapshot["simulate"] = self.simulate
        if snapshot.get("registry_url"):
            snapshot["registry_url"] = redact_url(snapshot["registry_url"])
        if snapshot.get("artifacts_url"):
            snapshot["artifacts_url"] = redact_artifacts_url(snapshot["artifacts_url"])
        leases = self.leases
        with self.registry.session() as s:  # the run and its stage rows appear together, or not at all
            s.add(Run(id=run_id, status="running", pipeline_name=self.config.name or self.config_source,
                      prompt=brief.prompt, negative_prompt=brief.negative_prompt, expect_text=brief.expect_text,
                      config=snapshot, config_source=self.config_source, simulated=self.simulate,
                      brief_index=brief.index, input_artifact=seed_sha, lease_owner=leases.owner,
                      lease_until=leases.until(), routing=routing.record, batch_id=batch[0] if batch else None,
                      brief_options=brief.options()))
            s.flush()
            if batch is not None:
                res = s.execute(update(BatchItem).where(BatchItem.batch_id == batch[0], BatchItem.idx == batch[1],
                                                        BatchItem.run_id.is_(None), BatchItem.status == "pending")
                                .values(run_id=run_id, status="running"))
                if getattr(res, "rowcount", 0) != 1:
                    raise ItemTaken(f"batch {batch[0]} item {batch[1]} already has a run")
            for p in plans:
                s.add(StageRun(run_id=run_id, idx=p.idx, name=p.name, model_id=p.entry.id,
                               requested_model=p.requested, provider=p.provider, params={}, status="pending",
                               substitution=p.substitution))
        leases.hold(run_id)
        self.events("run_start", {"run_id": run_id, "prompt": brief.prompt, "stages": len(plans)})
        return self._continue(run_id, plans, brief, seed_sha)

    def start_many(self, briefs: list[Brief], plans: list[StagePlan] | None = None, *, concurrency: int = 1,
                   seed_image: Image.Image | None = None) -> list[RunOutcome]:
        """Run several briefs, up to ``concurrency`` at once (threads: provider calls wait on the network).

        Outcomes come back in the order of ``briefs``; each run is recorded as if it ran alone. Ctrl-C stops every
        run before its next call, marks it ``interrupted`` and raises ``RunsInterrupted``.
        """
        plans = plans if plans is not None else self.plan()
        self.check_configured(plans)
        # decided once for the batch, before its first call: every run of it is routed alike
        routing = self.route(plans, seed_size=seed_image.size if seed_image is not None else None)
        if concurrency <= 1 or len(briefs) <= 1:
            return [self.start(b, plans, seed_image=seed_image, routing=routing) for b in briefs]
        from concurrent.futures import ThreadPoolExecutor

        self.registry  # noqa: B018 - open the registry (and migrate) once, before the threads share it
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="image-gen-run")
        try:
            futures = [pool.submit(self.start, b, plans, seed_image=seed_image, routing=routing) for b in briefs]
            return [f.result() for f in futures]
        except KeyboardInterrupt:
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise RunsInterrupted(self._interrupt_held()) from None
        finally:
            pool.shutdown(wait=True)

    def _interrupt_held(self) -> list[str]:
        ids = self.leases.held() if self._leases is not None else []
        for run_id in ids:
            for attempt in range(3):
                try:
                    self._mark_interrupted(run_id)
                    break
                except Exception:  # the interrupt cut a statement short: its database may refuse a moment longer
                    if attempt == 2:  # give up the lease at least: a later resume takes the run over
                        self._log_exception(f"run {run_id} could not be marked interrupted")
                        self.leases.release(run_id)
                    else:
                        time.sleep(0.5)
        return ids

    def _mark_interrupted(self, run_id: str) -> None:
        ledger = Ledger(self.registry)
        ledger.interrupt_sent(run_id, "stopped (Ctrl-C) while the call was in flight; may have been billed")
        with self.registry.session() as s:
            s.execute(update(StageRun).where(StageRun.run_id == run_id, StageRun.status == "running")
                      .values(status="interrupted", reason="interrupted (Ctrl-C)"))
        self.registry.transition(run_id, ["running"], "interrupted", owner=self.leases.owner,
                                 reason="interrupted (Ctrl-C): image-gen resume " + run_id,
                                 error_kind="interrupted", lease_owner=None, lease_until=None)
        self.leases.release(run_id)

    def resume(self, run_id: str, *, force: bool = False) -> RunOutcome:
        """Finish an interrupted, failed or budget-stopped run (or a ``running`` one whose process is gone):
        finished calls are reused, calls that were in flight are sent again and counted."""
        run = self.registry.find_run(run_id)
        if run.status in FINAL:
            return self.outcome(run.id)
        if run.status == "awaiting_approval":
            raise InputError(f"run {run.id} waits for approval: image-gen approve {run.id} (or reject)", field="RUN")
        plans = self.plans_for_run(run)  # a resumed run keeps the routing it started with
        self.check_configured(plans)
        leases = self.leases
        if run.status == "running":
            if lease_live(run.lease_owner, run.lease_until) and not force:
                raise WorkFailed(f"run {run.id} is running in another process ({run.lease_owner}); wait for it, "
                                 "or take it over with resume --force")
            taken = leases.take(run.id, ["running"], previous_owner=run.lease_owner, any_owner=force)
        else:
            taken = leases.take(run.id, list(RESUMABLE), any_owner=True)
        if not taken:
            now = self.registry.get_run(run.id)
            raise WorkFailed(f"run {run.id} changed while resuming (now {now.status if now else 'gone'}); "
                             "nothing was done")
        Ledger(self.registry).interrupt_sent(run.id, "process ended while the call was in flight; may have "
                                                     "been billed; sent again on resume")
        self.registry.update(Run, run.id, reason=None, error_kind=None)
        brief = self.brief_of(run)
        self.events("run_start", {"run_id": run.id, "prompt": run.prompt, "stages": len(plans)})
        return self._continue(run.id, plans, brief, run.input_artifact)

    def approve(self, run_id: str, note: str | None = None, *, by: str | None = None) -> RunOutcome:
        """Record the approval and continue the run; exactly one of several concurrent approvals acts."""
        run, stage = self._decide(run_id, "approved", note, by)
        plans = self.plans_for_run(run)
        self.check_configured(plans)
        brief = self.brief_of(run)
        self.events("run_start", {"run_id": run.id, "prompt": run.prompt, "stages": len(plans)})
        return self._continue(run.id, plans, brief, run.input_artifact)

    @staticmethod
    def brief_of(run: Run) -> Brief:
        """The brief a recorded run ran, its own size, seed and channel included."""
        opts = run.brief_options or {}
        return Brief(run.prompt, run.negative_prompt, run.expect_text, run.brief_index, width=opts.get("width"),
                     height=opts.get("height"), seed=opts.get("seed"), channel=opts.get("channel"))

    def reject(self, run_id: str, note: str | None = None, *, by: str | None = None) -> RunOutcome:
        run, stage = self._decide(run_id, "rejected", note, by)
        return self.outcome(run.id)

    def cancel(self, run_id: str, note: str | None = None) -> RunOutcome:
        """Stop a run for good: a live process stops before its next call."""
        run = self.registry.find_run(run_id)
        ok = self.registry.transition(run.id, ["running", "awaiting_approval", *RESUMABLE], "cancelled",
                                      reason=f"cancelled: {note or ''}".rstrip(": "), error_kind="cancelled")
        if not ok:
            raise WorkFailed(f"run {run.id} is {run.status}: nothing to cancel")
        return self.outcome(run.id)

    def _decide(self, run_id: str, decision: str, note: str | None, by: str | None) -> tuple[Run, StageRun]:
        """Compare-and-set the run out of ``awaiting_approval`` and record the decision, in one transaction."""
        from sqlalchemy import select

        run = self.registry.find_run(run_id)
        leases = self.leases
        with self.registry.session() as s:
            stage = s.scalars(select(StageRun).where(StageRun.run_id == run.id,
                                                     StageRun.status == "awaiting_approval")).first()
            values: dict[str, Any] = ({"lease_owner": leases.owner, "lease_until": leases.until(), "reason": None}
                                      if decision == "approved" else
                                      {"reason": f"rejected at {stage.name if stage else '?'}: {note or ''}",
                                       "qa_passed": False, "error_kind": "rejected"})
            res = s.execute(update(Run).where(Run.id == run.id, Run.status == "awaiting_approval")
                            .values(status="running" if decision == "approved" else "rejected", **values))
            if getattr(res, "rowcount", 0) == 1 and stage is not None:
                s.add(Approval(run_id=run.id, stage_name=stage.name, decision=decision, note=note, decided_by=by))
                if decision == "rejected":
                    stage.status, stage.reason = "rejected", note or "rejected"
                else:
                    stage.status, stage.reason = "pending", None
                s.flush()
                s.expunge(stage)
                decided = True
            else:
                decided = False
        if not decided:
            done = self.registry.approvals(run.id)
            if done:
                last = done[-1]
                who = f" by {last.decided_by}" if last.decided_by else ""
                raise WorkFailed(f"run {run.id} already {last.decision}{who} at {last.decided_at:%Y-%m-%d %H:%M:%S} "
                                 f"UTC; nothing was done")
            raise InputError(f"run {run.id} is not waiting for approval (status: {run.status})", field="RUN")
        if decision == "approved":
            leases.hold(run.id)
        assert stage is not None
        return run, stage

    # -- the stages of one run ------------------------------------------------------------------------------------
    def _continue(self, run_id: str, plans: list[StagePlan], brief: Brief, seed_sha: str | None) -> RunOutcome:
        rows = {s.idx: s for s in self.registry.stage_runs(run_id)}
        executor = StageExecutor(self.workspace, self.registry, self.calls, self.simulate)
        prev_sha: str | None = seed_sha
        layout_sha: str | None = None
        status, reason, error_kind = "completed", None, None
        try:
            for plan in plans:
                row = rows[plan.idx]
                if row.status == "done":
                    prev_sha = row.artifact_sha
                    if plan.entry.can("typography"):
                        layout_sha = prev_sha
                    continue
                self.events("stage_start", {"run_id": run_id, "stage": plan.name, "model": plan.entry.id})
                try:
                    out = executor.run(run_id, row, plan, brief, prev_sha, layout_sha)
                except StageStop as stop:
                    status, reason, error_kind = stop.status, stop.reason, stop.error_kind
                    self.events("stage_end", {"run_id": run_id, "stage": plan.name, "status": stop.status,
                                              "reason": stop.reason})
                    break
                except Exception as exc:  # a bug or an unforeseen input: the stage and run end failed, not stuck
                    self._log_exception(f"run {run_id} stage {plan.name} failed")
                    status, reason, error_kind = "failed", f"stage {plan.name}: internal error: {_one_line(exc)}", \
                        "internal"
                    self.registry.update(StageRun, row.id, status="failed", reason=reason)
                    self.events("stage_end", {"run_id": run_id, "stage": plan.name, "status": "failed",
                                              "reason": reason})
                    break
                self.events("stage_end", {"run_id": run_id, "stage": plan.name, "status": "done",
                                          "cache_hit": out.cache_hit, "cost_usd": out.cost_usd,
                                          "latency_s": out.latency_s, "model": out.model})
                prev_sha = out.artifact
                if plan.entry.can("typography"):
                    layout_sha = prev_sha
            self._finish_run(run_id, status, reason, error_kind)
        except KeyboardInterrupt:  # also while finishing: a run is never left "running" (a finished one stays so)
            self.stop.set()
            raise RunsInterrupted(self._interrupt_held()) from None
        outcome = self.outcome(run_id)
        outcome.error_kind = error_kind
        outcome.warnings = [w for p in plans for w in p.warnings]
        if self.on_complete is not None and outcome.status == "completed":
            outcome.warnings.extend(self.on_complete(run_id))
        self.events("run_end", outcome.to_dict())
        return outcome

    def _log_exception(self, message: str) -> None:
        """The traceback goes to the workspace's log file, never the screen."""
        from image_gen.workspace import attach_log_file

        attach_log_file(self.workspace)
        log.exception(message)

    def _finish_run(self, run_id: str, status: str, reason: str | None, error_kind: str | None) -> None:
        if status == "taken_over":  # resume --force gave the run to another process: leave it to that one
            self.leases.release(run_id)
            return
        with self.registry.session():  # the figures read, the run's final status and its lease: one transaction
            if not self._finish_row(run_id, status, reason, error_kind):
                self.leases.clear(run_id)  # the run changed under us: its lease still goes, if it is ours
        # only once that is committed: interrupted before, the run is still held here and marked interrupted
        self.leases.forget(run_id)

    def _finish_row(self, run_id: str, status: str, reason: str | None, error_kind: str | None) -> bool:
        """Write the run's figures and final status, its lease cleared with them; False when the run was no longer
        this runner's to write (the compare-and-set changed nothing)."""
        stages = self.registry.stage_runs(run_id)
        done = [s for s in stages if s.status == "done" and s.artifact_sha]
        final = done[-1] if done else None
        qa_passed = None
        if final is not None and final.qa is not None:
            qa_passed = bool(final.qa.get("passed"))
        cost, _, _ = self.registry.call_totals(run_id=run_id)
        values = dict(
            reason=reason, error_kind=error_kind,
            cost_usd=round(cost, 6),
            latency_s=round(sum(s.latency_s for s in stages), 4),
            final_artifact=final.artifact_sha if final else None,
            qa_passed=qa_passed if status in ("completed", "awaiting_approval") else False,
            lease_owner=None, lease_until=None,
        )
        if status == "cancelled":  # someone else already set it; record the figures only
            # (only on a cancelled run: a run taken over by ``resume --force`` belongs to its new owner)
            return self.registry.update_where(Run, run_id, {"status": "cancelled"}, **{
                k: v for k, v in values.items() if k not in ("reason", "error_kind")}) == 1
        return self.registry.transition(run_id, ["running"], status, owner=self.leases.owner, **values)

    def outcome(self, run_id: str) -> RunOutcome:
        with self.registry.reading():  # one snapshot
            run = self.registry.find_run(run_id)
            stages = []
            calls_of = self.registry.call_counts(run.id)
            for s in self.registry.stage_runs(run.id):
                stages.append(StageOutcome(
                    name=s.name, model=s.model_id, status=s.status, cache_hit=s.cache_hit, cost_usd=s.cost_usd,
                    latency_s=s.latency_s, calls=calls_of.get(s.id, 0), artifact=s.artifact_sha, reason=s.reason,
                    qa_passed=None if s.qa is None else bool(s.qa.get("passed")), outputs=list(s.outputs or []),
                ))
        return RunOutcome(
            run_id=run.id, status=run.status, prompt=run.prompt, stages=stages, cost_usd=run.cost_usd,
            latency_s=run.latency_s, simulated=run.simulated, final_artifact=run.final_artifact,
            qa_passed=run.qa_passed, reason=run.reason, error_kind=run.error_kind, routing=run.routing,
        )
