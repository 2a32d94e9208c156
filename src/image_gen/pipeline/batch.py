"""Batches: briefs submitted together, recorded first, then run by an executor, resumable after a crash anywhere.

``submit`` checks the config and the briefs whole (bad input changes nothing), then records the batch and all its
items in one transaction. ``run_batch`` hands every item that has not finished to an executor (``run_job`` on each):
an item's run id is set by compare-and-set in the transaction that creates its run, before any paid call, so an item
is never started twice, and a crashed item is resumed (finished calls reused) rather than started again. ``cancel``
is compare-and-set on the batch: unstarted items are cancelled, and running items stop before their next call.

Batch states: ``pending`` (recorded, not run yet) -> ``running`` -> ``completed`` (every item completed) |
``failed`` (every item ended, some failed, were rejected or cancelled) | ``awaiting_approval`` (the others completed)
| ``cancelled``. Item states: ``pending``, ``running``, then their run's state (``completed``, ``failed``,
``budget_stopped``, ``interrupted``, ``awaiting_approval``, ``rejected``, ``cancelled``); ``status`` reads an item's
state from its run, so an item approved since shows as its run ends.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from image_gen.errors import InputError, WorkFailed
from image_gen.store.models import Batch, BatchItem, Call, Run, utcnow

if TYPE_CHECKING:
    from image_gen.config import Config
    from image_gen.pipeline.executors import BriefJob
    from image_gen.pipeline.routing import Routing
    from image_gen.pipeline.runner import Brief, Runner
    from image_gen.pipeline.stage import StagePlan
    from image_gen.store.registry import Registry
    from image_gen.workspace import Workspace

ITEM_DONE = ("completed", "rejected", "cancelled", "awaiting_approval")
"""Item states a batch run does not take up again (an item waiting for approval continues with ``approve``)."""
ITEM_RETRY = ("failed", "budget_stopped", "interrupted")
BATCH_OPEN = ("pending", "running", "failed", "awaiting_approval")
MIN_PREFIX = 4

log = logging.getLogger("image_gen.batch")


@dataclass
class BatchStatus:
    batch_id: str
    name: str | None
    status: str
    executor: str | None
    simulated: bool
    total: int
    counts: dict[str, int]
    spend_usd: float
    eta_s: float | None
    created_at: str
    finished_at: str | None
    reason: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Jobs that raised instead of ending their run (this process's ``run_batch`` only; details in the log file)."""

    @property
    def done(self) -> int:
        return sum(n for s, n in self.counts.items() if s in ITEM_DONE)

    @property
    def failed(self) -> int:
        """Items that ended without their image (failed, budget-stopped); interrupted ones count as left."""
        return sum(n for s, n in self.counts.items() if s in ("failed", "budget_stopped"))

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(done=self.done, failed=self.failed, remaining=self.remaining)
        return d


# -- submit -----------------------------------------------------------------------------------------------------

def brief_record(brief: Brief) -> dict[str, Any]:
    rec: dict[str, Any] = {"prompt": brief.prompt, "negative_prompt": brief.negative_prompt,
                           "expect_text": brief.expect_text, "width": brief.width, "height": brief.height,
                           "seed": brief.seed, "channel": brief.channel}
    return {k: v for k, v in rec.items() if v is not None}


def brief_from_record(data: dict[str, Any], idx: int) -> Brief:
    from image_gen.pipeline.runner import Brief

    return Brief(data["prompt"], data.get("negative_prompt"), data.get("expect_text"), index=idx,
                 width=data.get("width"), height=data.get("height"), seed=data.get("seed"),
                 channel=data.get("channel"))


def config_snapshot(runner: Runner) -> dict[str, Any]:
    from image_gen.store.registry import redact_url

    snapshot = runner.config.model_dump(mode="json", exclude_none=True)
    snapshot["simulate"] = runner.simulate
    if snapshot.get("registry_url"):
        snapshot["registry_url"] = redact_url(snapshot["registry_url"])
    return snapshot


def submit(runner: Runner, briefs: Sequence[Brief], *, name: str | None = None, executor: str = "local") -> str:
    """Record a batch of ``briefs`` to run on ``runner``'s config; its id. The config is planned first (an unknown
    model or an unconfigured provider is bad input) and the batch and all its items are written in one transaction,
    so bad input writes nothing."""
    if not briefs:
        raise InputError("no briefs to submit", field="--prompt-file")
    if name is not None and (not name.strip() or len(name) > 200):
        raise InputError("expected a batch name of 1 to 200 characters", field="--name")
    plans = runner.plan()
    runner.check_configured(plans)
    batch_id = "b" + uuid.uuid4().hex[:11]
    with runner.registry.session() as s:
        s.add(Batch(id=batch_id, name=name, status="pending", executor=executor, config=config_snapshot(runner),
                    config_source=runner.config_source, simulated=runner.simulate, brief_count=len(briefs)))
        s.flush()
        for i, b in enumerate(briefs):
            s.add(BatchItem(batch_id=batch_id, idx=i, brief=brief_record(b), status="pending"))
    return batch_id


# -- finding ----------------------------------------------------------------------------------------------------

def find_batch(registry: Registry, ref: str) -> Batch:
    """The batch named by its id or a unique prefix of at least four characters; bad input otherwise."""
    import re

    ref = ref.strip()
    with registry.reading() as s:
        found = s.get(Batch, ref) if ref else None
        if found is not None:
            return found
        if len(ref) < MIN_PREFIX or not re.fullmatch(r"[0-9A-Za-z_-]+", ref):
            raise InputError(f"no batch {ref!r} (give a batch id or a unique prefix of at least {MIN_PREFIX} "
                             "characters)", field="BATCH")
        rows = list(s.scalars(select(Batch).where(Batch.id.startswith(ref, autoescape=True)).limit(11)))
    if not rows:
        raise InputError(f"no batch {ref!r} in this registry", field="BATCH")
    if len(rows) > 1:
        raise InputError(f"{ref!r} matches several batches: {', '.join(b.id for b in rows[:10])}; give more "
                         "characters", field="BATCH")
    return rows[0]


def items(registry: Registry, batch_id: str) -> list[BatchItem]:
    with registry.reading() as s:
        return list(s.scalars(select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.idx)))


# -- status -----------------------------------------------------------------------------------------------------

def status(registry: Registry, batch_id: str, *, with_items: bool = False, concurrency: int | None = None
           ) -> BatchStatus:
    """Counts per item state, spend so far (every call of the batch's runs, in flight ones at their reserved cost)
    and an ETA: the mean wall time of finished items times the items left, over the items running at once."""
    with registry.reading() as s:
        batch = s.get(Batch, batch_id)
        if batch is None:
            raise InputError(f"no batch {batch_id!r} in this registry", field="BATCH")
        rows = list(s.scalars(select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.idx)))
        spend = s.scalar(select(func.coalesce(func.sum(Call.cost_usd), 0.0)).join(Run, Run.id == Call.run_id)
                         .where(Run.batch_id == batch_id)) or 0.0
        runs = {r.id: r for r in s.scalars(select(Run).where(Run.batch_id == batch_id))}
    def state(it: BatchItem) -> str:
        run = runs.get(it.run_id) if it.run_id else None
        return run.status if run is not None else it.status

    counts: dict[str, int] = {}
    for it in rows:
        counts[state(it)] = counts.get(state(it), 0) + 1
    durations = [(r.updated_at - r.created_at).total_seconds() for r in runs.values()
                 if r.status in ("completed", "failed", "rejected", "awaiting_approval", "budget_stopped")]
    left = sum(n for st, n in counts.items() if st in ("pending", "running"))
    eta: float | None = None
    if left == 0:
        eta = 0.0
    elif durations and batch.status not in ("cancelled",):
        parallel = max(1, concurrency or counts.get("running", 0) or 1)
        eta = round(sum(durations) / len(durations) * left / min(parallel, left), 1)
    item_rows = []
    if with_items:
        for it in rows:
            run = runs.get(it.run_id) if it.run_id else None
            item_rows.append({"idx": it.idx, "status": state(it), "run_id": it.run_id, "prompt": it.brief["prompt"],
                              "channel": it.brief.get("channel"), "cost_usd": run.cost_usd if run else 0.0,
                              "qa_passed": run.qa_passed if run else None, "reason": run.reason if run else None})
    return BatchStatus(batch_id=batch.id, name=batch.name, status=batch.status, executor=batch.executor,
                       simulated=batch.simulated, total=len(rows), counts=counts, spend_usd=round(float(spend), 6),
                       eta_s=eta, created_at=f"{batch.created_at:%Y-%m-%d %H:%M:%S}",
                       finished_at=f"{batch.finished_at:%Y-%m-%d %H:%M:%S}" if batch.finished_at else None,
                       reason=batch.reason, items=item_rows)


def list_batches(registry: Registry, limit: int = 50) -> list[BatchStatus]:
    with registry.reading() as s:
        ids = list(s.scalars(select(Batch.id).order_by(Batch.created_at.desc(), Batch.id).limit(limit)))
    return [status(registry, i) for i in ids]


# -- cancel -----------------------------------------------------------------------------------------------------

def cancel(registry: Registry, batch_id: str, note: str | None = None) -> BatchStatus:
    """Compare-and-set the batch to ``cancelled``; unstarted items are cancelled, and the runs of started ones are
    cancelled (a process running one stops before its next call). A batch already ended: ``WorkFailed``."""
    reason = f"cancelled: {note or ''}".rstrip(": ")
    with registry.session() as s:
        res = s.execute(update(Batch).where(Batch.id == batch_id, Batch.status.in_(BATCH_OPEN))
                        .values(status="cancelled", reason=reason, finished_at=utcnow(), updated_at=utcnow()))
        ok = getattr(res, "rowcount", 0) == 1
        if ok:
            s.execute(update(BatchItem).where(BatchItem.batch_id == batch_id, BatchItem.status == "pending",
                                              BatchItem.run_id.is_(None)).values(status="cancelled"))
    if not ok:
        now = find_batch(registry, batch_id)
        raise WorkFailed(f"batch {batch_id} is {now.status}: nothing to cancel")
    from image_gen.pipeline.runner import RESUMABLE

    for it in items(registry, batch_id):
        if it.run_id and it.status not in ITEM_DONE:
            registry.transition(it.run_id, ["running", "awaiting_approval", *RESUMABLE], "cancelled",
                                reason=reason, error_kind="cancelled")
            _settle_item(registry, batch_id, it.idx, it.run_id)
    return status(registry, batch_id)


def _settle_item(registry: Registry, batch_id: str, idx: int, run_id: str) -> str:
    """Copy the run's state onto its item (``running`` while the run runs); the item's state."""
    run = registry.get_run(run_id)
    state = run.status if run is not None else "failed"
    with registry.session() as s:
        s.execute(update(BatchItem).where(BatchItem.batch_id == batch_id, BatchItem.idx == idx,
                                          BatchItem.run_id == run_id).values(status=state))
    return state


# -- running items (the executors' run_job) --------------------------------------------------------------------

@dataclass
class _Context:
    """What the jobs of one batch share in one process: the workspace (its registry), one runner, its plans."""

    workspace: Workspace
    runner: Runner
    plans: list[StagePlan]
    routing: Routing
    """Decided once for the batch in this process (latency-SLA routing), before its first call."""


_CONTEXTS: dict[tuple[Any, ...], _Context] = {}
_WORKSPACES: dict[tuple[Any, ...], Workspace] = {}
_CONTEXT_LOCK = threading.RLock()


def _workspace(job: BriefJob) -> Workspace:
    from image_gen.workspace import Workspace

    key = (job.workspace, job.registry_url, job.artifacts_url)
    with _CONTEXT_LOCK:
        ws = _WORKSPACES.get(key)
        if ws is None:
            ws = Workspace.resolve(job.workspace, job.registry_url, artifacts_url=job.artifacts_url)
            _WORKSPACES[key] = ws
        return ws


def runner_for_batch(ws: Workspace, batch: Batch, *, simulate: bool | None = None) -> Runner:
    """A runner rebuilt from the config snapshot recorded with the batch (no config file needed)."""
    from image_gen.config import load_config
    from image_gen.pipeline.runner import Runner

    snapshot = dict(batch.config)
    snapshot.pop("registry_url", None)  # recorded redacted; the workspace already chose the registry
    snapshot.pop("simulate", None)
    cfg: Config = load_config(snapshot)
    sim = batch.simulated if simulate is None else simulate
    runner = Runner(ws, cfg, simulate=sim, config_source=batch.config_source)
    if cfg.pipeline.deliver:
        # a worker process is its own composition root: the batch's runs deliver their channels as api.make_runner's
        from image_gen.delivery.deliver import attach

        attach(runner)
    return runner


def _context(job: BriefJob) -> _Context:
    key = (job.workspace, job.registry_url, job.artifacts_url, job.batch_id, job.simulate)
    with _CONTEXT_LOCK:  # built once per process: the first job of a batch opens the registry, the others wait
        ctx = _CONTEXTS.get(key)
        if ctx is None or ctx.runner.stop.is_set():  # a runner stopped by Ctrl-C runs nothing more: build anew
            ws = _workspace(job)
            batch = find_batch(ws.registry(), job.batch_id)
            runner = runner_for_batch(ws, batch, simulate=job.simulate)
            plans = runner.plan()
            runner.check_configured(plans)
            ctx = _CONTEXTS[key] = _Context(ws, runner, plans, runner.route(plans))
        return ctx


def stop_local_runs() -> list[str]:
    """Ctrl-C: every runner of this process stops before its next call; its live runs are marked interrupted."""
    with _CONTEXT_LOCK:
        ctxs = list(_CONTEXTS.values())
    ids: list[str] = []
    for ctx in ctxs:
        ctx.runner.stop.set()
    for ctx in ctxs:
        ids += ctx.runner._interrupt_held()
    return ids


def forget_contexts(batch_id: str | None = None, *, keep: Workspace | None = None) -> None:
    """Drop this process's cached runners (of one batch, or all) and close the registries no runner uses any more
    (except ``keep``'s, the caller's own)."""
    with _CONTEXT_LOCK:
        for key in [k for k in _CONTEXTS if batch_id is None or k[3] == batch_id]:
            del _CONTEXTS[key]
        used = {id(c.workspace) for c in _CONTEXTS.values()}
        idle = [k for k, w in _WORKSPACES.items() if id(w) not in used]
        closing = [_WORKSPACES.pop(k) for k in idle]
    for w in closing:
        if w is not keep:
            w.close()


def _item(registry: Registry, batch_id: str, idx: int) -> BatchItem:
    with registry.reading() as s:
        it = s.scalars(select(BatchItem).where(BatchItem.batch_id == batch_id, BatchItem.idx == idx)).first()
    if it is None:
        raise InputError(f"batch {batch_id} has no item {idx}", field="BATCH")
    return it


def _result(job: BriefJob, item_status: str, outcome: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out = dict(outcome or {"run_id": None, "status": item_status, "cost_usd": 0.0, "provider_calls": 0})
    out.update(batch_id=job.batch_id, idx=job.idx, item_status=item_status, **extra)
    return out


def run_item(job: BriefJob) -> dict[str, Any]:
    """See :func:`image_gen.pipeline.executors.run_job`."""
    from image_gen.pipeline.lease import lease_live
    from image_gen.pipeline.runner import ItemTaken

    ctx = _context(job)
    runner, reg = ctx.runner, ctx.runner.registry
    item = _item(reg, job.batch_id, job.idx)
    batch = find_batch(reg, job.batch_id)
    if item.run_id is None and item.status != "pending":  # cancelled before it started
        return _result(job, item.status)
    if batch.status == "cancelled":
        with reg.session() as s:
            s.execute(update(BatchItem).where(BatchItem.id == item.id, BatchItem.status == "pending",
                                              BatchItem.run_id.is_(None)).values(status="cancelled"))
        item = _item(reg, job.batch_id, job.idx)
        if item.run_id is None:
            return _result(job, item.status)
    if item.run_id is None:
        try:
            outcome = runner.start(brief_from_record(item.brief, item.idx), ctx.plans, routing=ctx.routing,
                                   batch=(job.batch_id, job.idx))
            return _result(job, _settle_item(reg, job.batch_id, job.idx, outcome.run_id), outcome.to_dict())
        except ItemTaken:  # another process started it first (resume or leave it, below), or a cancel came first
            item = _item(reg, job.batch_id, job.idx)
            batch = find_batch(reg, job.batch_id)
            if item.run_id is None:
                return _result(job, item.status)
    run = reg.get_run(item.run_id)
    if run is None:
        raise WorkFailed(f"batch {job.batch_id} item {job.idx}: its run {item.run_id} is missing")
    if run.status == "running" and run.lease_owner != runner.leases.owner and lease_live(run.lease_owner,
                                                                                         run.lease_until):
        return _result(job, "elsewhere", run_id=run.id)
    if batch.status == "cancelled" or run.status in ("completed", "rejected", "cancelled", "awaiting_approval"):
        if batch.status == "cancelled":
            reg.transition(run.id, ["running", "failed", "budget_stopped", "interrupted"], "cancelled",
                           reason="cancelled: batch cancelled", error_kind="cancelled")
        state = _settle_item(reg, job.batch_id, job.idx, run.id)
        return _result(job, state, runner.outcome(run.id).to_dict())
    try:
        outcome = runner.resume(run.id)
    except WorkFailed:  # a live process took it between our read and our compare-and-set: it is that one's
        now = reg.get_run(run.id)
        if now is not None and now.status == "running":
            return _result(job, "elsewhere", run_id=run.id)
        raise
    return _result(job, _settle_item(reg, job.batch_id, job.idx, outcome.run_id), outcome.to_dict())


# -- running a batch --------------------------------------------------------------------------------------------

Progress = Callable[[BatchStatus], None]


def jobs_for(ws: Workspace, batch: Batch, *, registry_url: str | None = None) -> list[BriefJob]:
    from image_gen.pipeline.executors import BriefJob

    reg = ws.registry()
    with reg.reading() as s:  # an item's state is its run's (an item approved since may have failed since)
        runs = dict(s.execute(select(Run.id, Run.status).where(Run.batch_id == batch.id)).tuples().all())
    todo = [it for it in items(reg, batch.id) if runs.get(it.run_id or "", it.status) not in ITEM_DONE]
    return [BriefJob(batch_id=batch.id, idx=it.idx, workspace=str(ws.root), registry_url=registry_url,
                     simulate=batch.simulated, artifacts_url=getattr(ws, "artifacts_url", None)) for it in todo]


def run_batch(ws: Workspace, batch_ref: str, *, executor: str | None = None, address: str | None = None,
              concurrency: int | None = None, progress: Progress | None = None) -> BatchStatus:
    """Run every item of the batch that has not finished (a new batch, or one killed anywhere) and wait for them;
    the batch's status at the end. Items a live process is running are left to it."""
    from image_gen.pipeline.executors import get_executor

    reg = ws.registry()
    batch = find_batch(reg, batch_ref)
    if batch.status == "cancelled":
        return status(reg, batch.id)
    name = executor or batch.executor or "local"
    exe = get_executor(name, address)
    if name == "local":  # an unknown model or an unconfigured provider here: bad input, nothing runs
        check = runner_for_batch(ws, batch)
        check.check_configured(check.plan())
    with reg.session() as s:
        s.execute(update(Batch).where(Batch.id == batch.id, Batch.status.in_(BATCH_OPEN + ("completed",)))
                  .values(status="running", executor=name, finished_at=None, updated_at=utcnow()))
    jobs = jobs_for(ws, batch, registry_url=ws.registry_url)
    conc = max(1, concurrency or int(batch.config.get("concurrency") or 1))
    if jobs and name == "local":  # jobs run in this process: they share this workspace's open registry
        with _CONTEXT_LOCK:
            _WORKSPACES.setdefault((jobs[0].workspace, jobs[0].registry_url, jobs[0].artifacts_url), ws)
    lock = threading.Lock()
    errors: list[str] = []

    def on_done(job: BriefJob, result: dict[str, Any] | BaseException) -> None:
        if isinstance(result, BaseException):  # the traceback goes to the workspace's log file
            from image_gen.workspace import attach_log_file

            attach_log_file(ws)
            log.error("batch %s item %s: %s", job.batch_id, job.idx, result, exc_info=result)
            errors.append(f"item {job.idx}: {type(result).__name__}: {str(result)[:300]}")
        if progress is not None:
            with lock:
                progress(status(reg, batch.id, concurrency=conc))

    if progress is not None:
        progress(status(reg, batch.id, concurrency=conc))
    try:
        exe.run(jobs, concurrency=conc, on_done=on_done)
    finally:
        forget_contexts(batch.id, keep=ws)
    end = finish(reg, batch.id)
    end.errors = errors
    return end


def finish(registry: Registry, batch_id: str) -> BatchStatus:
    """Set the batch's end state once no item is pending or running (compare-and-set from ``running``)."""
    st = status(registry, batch_id)
    if st.counts.get("pending", 0) or st.counts.get("running", 0):
        return st
    if set(st.counts) <= {"completed"}:
        end = "completed"
    elif set(st.counts) <= {"completed", "awaiting_approval"}:
        end = "awaiting_approval"
    else:
        end = "failed"
    with registry.session() as s:
        s.execute(update(Batch).where(Batch.id == batch_id, Batch.status.in_(("running", "awaiting_approval")))
                  .values(status=end, finished_at=utcnow(), updated_at=utcnow()))
    return status(registry, batch_id)
