"""The Ray executor (``--executor ray [--address auto|ray://host:port]``, extra ``[ray]``): a batch's briefs run on a
Ray cluster, sharing the registry (PostgreSQL for several machines) and the artifact store.

What runs where:

- **Briefs** are Ray tasks, one per :class:`~image_gen.pipeline.executors.BriefJob`, running
  :func:`~image_gen.pipeline.executors.run_job`. A worker that dies (killed, out of memory, its node lost) has its
  task retried (``max_retries``); the retry resumes the item's run (the dead process's lease is seen as dead), so
  finished calls are reused and never sent again.
- **Local (diffusers) stages**: when the batch's pipeline routes a stage to the local engine and the cluster has GPUs,
  the briefs run on one actor per GPU (``num_gpus=1``) instead, so each GPU's process keeps its loaded pipelines
  (the engine's process cache) from brief to brief. With no GPU in the cluster they run as ordinary tasks.
- **Vendor limits** hold cluster-wide: a named, detached async actor (:class:`VendorLimits`, in namespace
  ``image-gen``) holds one counter per vendor limit; every worker installs a limiter backend
  (``providers._limits.install_backend``) so that a provider's per-vendor places (``max_concurrency``) and per-key
  in-flight units also come from that actor. A hold is kept alive by its process (renewed every few seconds); the
  hold of a process that died is given back when its lease runs out, or at once when the actor sees the process gone
  on its own node.

``on_done`` is called in the driver as each brief ends (a ``ray.wait`` loop), at most ``concurrency`` briefs run at
once, and Ctrl-C cancels what is still running (each run stops before its next call, recorded ``interrupted``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ray

if TYPE_CHECKING:
    from image_gen.pipeline.executors import BriefJob, OnDone

__all__ = ["LIMITS_ACTOR", "NAMESPACE", "RayExecutor", "RayLimiterBackend", "VendorLimits", "batch_uses_local",
           "limits_actor"]

log = logging.getLogger("image_gen.executors.ray")

NAMESPACE = "image-gen"
LIMITS_ACTOR = "image-gen-vendor-limits"
HOLD_TTL_S = float(os.environ.get("IMAGE_GEN_RAY_HOLD_TTL_S", "20"))
"""How long a vendor-limit hold lasts without renewal (its holder renews it every third of that)."""

Work = Callable[["BriefJob"], dict[str, Any]]


# -- cluster-wide vendor limits ---------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    from image_gen.pipeline.lease import _pid_alive as alive

    return alive(pid)


class VendorLimits:
    """Per-vendor limits shared by every worker of the cluster (an async Ray actor; one coroutine per waiter).

    A limit is named by its holder (``slots:ideogram``, ``inflight:ideogram:<key fingerprint>``); its capacity is the
    latest one a caller gave. A hold is a token with an expiry its holder renews; an expired hold, or one whose
    process is gone from this actor's node, is given back."""

    def __init__(self, ttl_s: float = HOLD_TTL_S, node_id: str | None = None) -> None:
        self.ttl_s = ttl_s
        self.node_id = node_id if node_id is not None else ray.get_runtime_context().get_node_id()
        self.capacity: dict[str, int] = {}
        self.used: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.grants: dict[str, int] = {}
        self.holds: dict[str, tuple[str, int, float, int, str]] = {}
        """token -> (name, units, expires at, holder pid, holder node)"""
        self.waiting: dict[str, tuple[str, int, str, int, int]] = {}
        """waiter id -> (name, pid, node, priority, arrival number): a free place goes to the waiter of its name with
        the highest priority, the earliest among equals (``providers._limits.call_priority``)"""
        self._arrivals = 0
        self._lock: asyncio.Lock | None = None
        self._conds: dict[str, asyncio.Condition] = {}
        """one condition per name, on one lock: a release wakes only the waiters of its name"""
        self._next_expiry: float | None = None
        """when the earliest hold expires (``time.monotonic()``), as of the last reaping"""

    def _cond(self, name: str) -> asyncio.Condition:
        if self._lock is None:
            self._lock = asyncio.Lock()
        cond = self._conds.get(name)
        if cond is None:
            cond = self._conds[name] = asyncio.Condition(self._lock)
        return cond

    def _reap(self) -> None:
        """Give back expired holds and those of dead processes on this node (run where a waiter finds no place:
        on its arrival and when its wait runs out, not on every release)."""
        now = time.monotonic()
        nearest: float | None = None
        for token, (name, units, until, pid, node) in list(self.holds.items()):
            if until <= now or (node == self.node_id and not _pid_alive(pid)):
                del self.holds[token]
                self.used[name] = max(0, self.used.get(name, 0) - units)
            else:
                nearest = until if nearest is None else min(nearest, until)
        self._next_expiry = nearest

    def _first_in_line(self, waiter: str) -> bool:
        """No live waiter of the same name is ahead (a waiter whose process died on this node is passed over)."""
        name, _, _, priority, arrival = self.waiting[waiter]
        ahead = sorted((-w[3], w[4], w[1], w[2]) for w in self.waiting.values()
                       if w[0] == name and (-w[3], w[4]) < (-priority, arrival))
        return not any(node != self.node_id or _pid_alive(pid) for _, _, pid, node in ahead)

    async def acquire(self, name: str, units: int, capacity: int, timeout: float | None, pid: int,
                      node: str, priority: int = 0) -> str | None:
        """A token for ``units`` of ``name`` (at most its capacity), or None when none came free in ``timeout``.
        Waiters of one name are served by ``priority`` (higher first), then in order of arrival."""
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = uuid.uuid4().hex
        cond = self._cond(name)
        async with cond:
            self.capacity[name] = max(1, capacity)
            self._arrivals += 1
            self.waiting[waiter] = (name, pid, node, int(priority), self._arrivals)
            look = True  # on arrival and after a wait ran out: reap, and see whether the caller still lives
            try:
                while True:
                    cap = self.capacity[name]
                    take = min(units, cap)
                    if look:
                        if node == self.node_id and not _pid_alive(pid):
                            return None  # the caller died while it waited (killed): nobody to give the place to
                        if self.used.get(name, 0) + take > cap:
                            self._reap()
                    if self.used.get(name, 0) + take <= cap and self._first_in_line(waiter):
                        token = uuid.uuid4().hex
                        self.used[name] = self.used.get(name, 0) + take
                        self.peak[name] = max(self.peak.get(name, 0), self.used[name])
                        self.grants[name] = self.grants.get(name, 0) + 1
                        self.holds[token] = (name, take, time.monotonic() + self.ttl_s, pid, node)
                        return token
                    now = time.monotonic()
                    left = None if deadline is None else deadline - now
                    if left is not None and left <= 0:
                        return None
                    # wake on a release or a new capacity of this name, or to reap an expired hold or a dead holder
                    expiry = None if self._next_expiry is None else self._next_expiry - now
                    wait = min(x for x in (left, expiry, 1.0) if x is not None)
                    try:
                        await asyncio.wait_for(cond.wait(), max(0.01, wait))
                        look = False
                    except TimeoutError:
                        look = True
            finally:
                self.waiting.pop(waiter, None)
                cond.notify_all()  # the next in line may go now

    async def acquire_many(self, holds: list[tuple[str, int, int]], timeout: float | None, pid: int, node: str,
                           priority: int = 0) -> list[str] | None:
        """Tokens for several limits, ``(name, units, capacity)`` each, taken in order as ``acquire`` takes one
        (within one ``timeout``), or None, holding none of them, when one did not come free in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        tokens: list[str] = []
        for name, units, capacity in holds:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            token = await self.acquire(name, units, capacity, left, pid, node, priority)
            if token is None:
                for taken in tokens:
                    await self.release(taken)
                return None
            tokens.append(token)
        return tokens

    async def release(self, token: str) -> None:
        hold = self.holds.get(token)
        if hold is None:
            return
        cond = self._cond(hold[0])
        async with cond:
            hold = self.holds.pop(token, None)
            if hold is not None:
                self.used[hold[0]] = max(0, self.used.get(hold[0], 0) - hold[1])
                cond.notify_all()

    async def renew(self, tokens: list[str]) -> None:
        until = time.monotonic() + self.ttl_s
        for token in tokens:
            hold = self.holds.get(token)
            if hold is not None:
                self.holds[token] = (hold[0], hold[1], until, hold[3], hold[4])

    async def stats(self) -> dict[str, Any]:
        """Capacity, units in use, the peak in use and grants per limit; the pids holding and waiting."""
        return {
            "capacity": dict(self.capacity), "used": dict(self.used), "peak": dict(self.peak),
            "grants": dict(self.grants),
            "holding": sorted({(h[0], h[3]) for h in self.holds.values()}),
            "waiting": sorted({(w[0], w[1]) for w in self.waiting.values()}),
        }


def limits_actor(name: str = LIMITS_ACTOR, ttl_s: float = HOLD_TTL_S) -> Any:
    """The cluster's vendor-limits actor (created detached on first use; every driver and worker shares it)."""
    remote = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(VendorLimits)
    return remote.options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote(ttl_s)


class RayLimiterBackend:
    """The limiter backend a worker installs: holds come from the :class:`VendorLimits` actor and are renewed by a
    background thread while held."""

    def __init__(self, actor: Any, ttl_s: float = HOLD_TTL_S) -> None:
        self.actor = actor
        self.ttl_s = ttl_s
        self.pid = os.getpid()
        self.node = ray.get_runtime_context().get_node_id()
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def acquire(self, name: str, units: int, capacity: int, timeout: float | None) -> object | None:
        return self._ask(lambda priority: self.actor.acquire.remote(name, units, capacity, timeout, self.pid,
                                                                    self.node, priority))

    def acquire_many(self, holds: list[tuple[str, int, int]], timeout: float | None) -> object | None:
        """Several limits in one round trip to the actor (a tuple of tokens), or None, holding none."""
        tokens = self._ask(lambda priority: self.actor.acquire_many.remote(holds, timeout, self.pid, self.node,
                                                                           priority))
        return None if tokens is None else tuple(tokens)  # type: ignore[arg-type]

    def _ask(self, remote: Callable[[int], Any]) -> Any:
        try:
            from image_gen.providers._limits import current_priority

            got = ray.get(remote(current_priority()))
        except Exception as exc:  # the limits actor is gone for good: nothing was sent, the runner may retry
            from image_gen.providers.base import RateLimited

            raise RateLimited(f"cluster-wide vendor limits unavailable ({type(exc).__name__}); not sent",
                              retry_after=5.0) from None
        if got is not None:
            with self._lock:
                self._held.update(got if isinstance(got, list) else [got])
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._renew, name="image-gen-limit-renew", daemon=True)
                    self._thread.start()
        return got

    def release(self, token: object) -> None:
        tokens = list(token) if isinstance(token, tuple) else [token]
        with self._lock:
            self._held.difference_update(str(t) for t in tokens)
        for t in tokens:
            self.actor.release.remote(t)

    def _renew(self) -> None:
        while True:
            time.sleep(self.ttl_s / 3)
            with self._lock:
                tokens = sorted(self._held)
            if not tokens:
                with self._lock:
                    if not self._held:
                        self._thread = None
                        return
                continue
            try:
                self.actor.renew.remote(tokens)
            except Exception:  # the actor restarting: the next beat tries again
                continue


_INSTALLED: dict[str, Any] = {}


def _install_limits(actor: Any, ttl_s: float) -> None:
    """Install the cluster-wide limiter backend in this worker process (once per actor)."""
    from image_gen.providers import _limits

    key = repr(actor)
    if _INSTALLED.get("key") == key and _limits.installed_backend() is _INSTALLED.get("backend"):
        return
    backend = RayLimiterBackend(actor, ttl_s)
    _limits.install_backend(backend)
    _INSTALLED.update(key=key, backend=backend)


def _default_work(job: BriefJob) -> dict[str, Any]:
    from image_gen.pipeline.executors import run_job

    return run_job(job)


def _run_brief(job: BriefJob, limits: Any, ttl_s: float, work: Work | None) -> dict[str, Any]:
    """The body of a brief's task (in a Ray worker)."""
    if limits is not None:
        _install_limits(limits, ttl_s)
    else:  # a worker process is reused: a backend an earlier batch installed must not outlive it
        from image_gen.providers import _limits

        _limits.install_backend(None)
        _INSTALLED.clear()
    try:
        return (work or _default_work)(job)
    except KeyboardInterrupt:  # cancelled (Ctrl-C in the driver): the run was marked interrupted
        _forget_batch(job.batch_id)
        raise


def _forget_batch(batch_id: str | None) -> None:
    """Drop the runner this process cached for the batch (None: every batch): it was told to stop, and a retry or a
    later resume of the batch in this (reused) process needs a fresh one."""
    try:
        from image_gen.pipeline.batch import forget_contexts
    except ImportError:
        return
    forget_contexts(batch_id)


class BriefWorker:
    """An actor holding one GPU (or none, in tests): runs one brief at a time in a process that keeps its loaded
    local pipelines between briefs. Threaded (two threads) so that ``stop`` reaches a brief that is running."""

    def __init__(self, limits: Any, ttl_s: float, work: Work | None) -> None:
        self.limits, self.ttl_s, self.work = limits, ttl_s, work
        self.briefs = 0
        self.stopped = False

    def run(self, job: BriefJob) -> dict[str, Any]:
        if self.stopped:  # an earlier Ctrl-C stopped the runners this process cached: start afresh
            self.stopped = False
            _forget_batch(None)
        self.briefs += 1
        return _run_brief(job, self.limits, self.ttl_s, self.work)

    def stop(self) -> None:
        """Stop the running brief before its next call (Ctrl-C in the driver)."""
        try:
            from image_gen.pipeline.batch import stop_local_runs
        except ImportError:
            return
        self.stopped = True
        stop_local_runs()

    def info(self) -> dict[str, Any]:
        """Its pid, the briefs it ran, the local pipelines its process holds loaded."""
        try:
            from image_gen.providers import _local_engine

            loaded = sorted(k[0] for k in _local_engine._CACHE)
        except ImportError:
            loaded = []
        return {"pid": os.getpid(), "briefs": self.briefs, "loaded": loaded,
                "gpu_ids": ray.get_runtime_context().get_accelerator_ids().get("GPU", [])}


def batch_uses_local(job: BriefJob) -> bool:
    """Whether the pipeline of ``job``'s batch routes any stage (or fallback, or upscaler) to the local engine."""
    from sqlalchemy import select

    from image_gen.config import load_config
    from image_gen.pipeline.runner import Runner
    from image_gen.store.models import Batch
    from image_gen.workspace import Workspace

    ws = Workspace.resolve(job.workspace, job.registry_url)
    with ws.registry().reading() as s:
        batch = s.scalars(select(Batch).where(Batch.id == job.batch_id)).first()
        if batch is None:
            return False
        config, simulated = dict(batch.config), batch.simulated
    config.pop("simulate", None)
    config.pop("registry_url", None)
    simulate = job.simulate if job.simulate is not None else simulated
    plans = Runner(ws, load_config(config), simulate=simulate).plan()
    return any(p.provider == "local" or any(r.provider == "local" for r in p.routes.values()) for p in plans)


# -- the executor -----------------------------------------------------------------------------------------------------
class RayExecutor:
    """Runs a batch's briefs on Ray (see the module's description).

    ``address``: ``auto`` (the cluster this machine belongs to), ``ray://host:port`` (Ray Client), or None (an
    existing ``RAY_ADDRESS``, else a local Ray started for this process). ``gpu_actors``: None decides from the batch
    (local stages and GPUs in the cluster), True always uses actors (``actor_gpus`` each: 0 runs them on CPUs, as
    the tests do), False never. ``cluster_limits``: install the cluster-wide vendor limits in each worker.
    ``work`` replaces ``run_job`` (a module-level function; tests)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, gpu_actors: bool | None = None, actor_gpus: float = 1,
                 actors: int | None = None, job_cpus: float = 0.25, max_retries: int = 3,
                 cluster_limits: bool = True, limits_name: str = LIMITS_ACTOR, hold_ttl_s: float = HOLD_TTL_S,
                 init_kwargs: dict[str, Any] | None = None, work: Work | None = None) -> None:
        self.address = address
        self.gpu_actors = gpu_actors
        self.actor_gpus = actor_gpus
        self.actors = actors
        self.job_cpus = job_cpus
        self.max_retries = max_retries
        self.cluster_limits = cluster_limits
        self.limits_name = limits_name
        self.hold_ttl_s = hold_ttl_s
        self.init_kwargs = dict(init_kwargs or {})
        self.work = work
        self.workers: list[Any] = []
        """The brief actors of the last ``run`` (empty when briefs ran as tasks)."""
        self.mode = "tasks"
        self.init_s: float | None = None
        """Seconds ``ray.init`` took (None: Ray was already initialised)."""

    # -- set-up ---------------------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Initialise Ray in this process unless it already is."""
        if ray.is_initialized():
            return
        started = time.monotonic()
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, **self.init_kwargs}
        if self.address:
            kwargs["address"] = self.address
        elif not os.environ.get("RAY_ADDRESS"):  # starting a local Ray (joining one takes no such option)
            kwargs.setdefault("include_dashboard", False)
        ray.init(**kwargs)
        self.init_s = round(time.monotonic() - started, 3)

    def limits(self) -> Any:
        return limits_actor(self.limits_name, self.hold_ttl_s) if self.cluster_limits else None

    def _use_actors(self, jobs: Sequence[BriefJob]) -> bool:
        if self.gpu_actors is not None:
            return self.gpu_actors
        if not jobs or ray.cluster_resources().get("GPU", 0) < 1:
            return False
        try:
            return batch_uses_local(jobs[0])
        except Exception as exc:  # an unreadable batch: tasks still run it (and report what is wrong)
            log.warning("could not tell whether batch %s has local stages: %s", jobs[0].batch_id, exc)
            return False

    def _start_actors(self, count: int, limits: Any) -> list[Any]:
        remote = ray.remote(BriefWorker)
        opts: dict[str, Any] = {"num_gpus": self.actor_gpus, "max_concurrency": 2, "max_restarts": -1,
                                "max_task_retries": self.max_retries}
        if not self.actor_gpus:
            opts["num_cpus"] = self.job_cpus
        return [remote.options(**opts).remote(limits, self.hold_ttl_s, self.work) for _ in range(count)]

    # -- running --------------------------------------------------------------------------------------------------
    def run(self, jobs: Sequence[BriefJob], *, concurrency: int, on_done: OnDone) -> None:
        pending = list(jobs)
        if not pending:
            return
        self.connect()
        limits = self.limits()
        width = max(1, min(concurrency, len(pending)))
        free: list[Any] = []
        self.workers = []
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if self._use_actors(pending) and not (self.actor_gpus and gpus < self.actor_gpus):
            count = self.actors or (min(width, int(gpus // self.actor_gpus)) if self.actor_gpus else width)
            self.workers = self._start_actors(max(1, min(width, count)), limits)
            free = list(self.workers)
            width = len(free)
            self.mode = "actors"
        else:
            self.mode = "tasks"
        task = ray.remote(_run_brief).options(num_cpus=self.job_cpus, max_retries=self.max_retries,
                                              retry_exceptions=False)
        running: dict[Any, tuple[BriefJob, Any]] = {}
        try:
            while pending or running:
                while pending and len(running) < width:
                    job = pending.pop(0)
                    if self.workers:
                        actor = free.pop(0)
                        running[actor.run.remote(job)] = (job, actor)
                    else:
                        running[task.remote(job, limits, self.hold_ttl_s, self.work)] = (job, None)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                for ref in ready:
                    job, actor = running.pop(ref)
                    if actor is not None:
                        free.append(actor)
                    result: dict[str, Any] | BaseException
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # the brief's error (a RayTaskError is also its cause's type), or lost
                        result = exc
                    on_done(job, result)
        except BaseException:  # Ctrl-C (or on_done failed): nothing is left running unseen
            self._cancel(running)
            raise

    def _cancel(self, running: dict[Any, tuple[BriefJob, Any]]) -> None:
        """Ctrl-C: each running brief stops before its next call (recorded ``interrupted``); wait a little for it."""
        for ref, (_, actor) in running.items():
            try:
                if actor is not None:
                    actor.stop.remote()
                else:
                    ray.cancel(ref)  # KeyboardInterrupt inside the task: the runner marks its run interrupted
            except Exception as exc:
                log.warning("could not cancel a brief: %s", exc)
        if running:
            ray.wait(list(running), num_returns=len(running), timeout=30)

    def shutdown_workers(self) -> None:
        for actor in self.workers:
            ray.kill(actor)
        self.workers = []
