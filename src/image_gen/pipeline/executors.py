"""Executors: where a batch's briefs run. One small interface, so a batch runs the same way in threads of this
process (``local``, the default) or on a Ray cluster (``ray``, ``pipeline/executors_ray.py``, extra ``[ray]``).

An executor is handed :class:`BriefJob` values (plain, picklable fields: which batch item, which workspace and
registry) and runs :func:`run_job` on each, wherever it likes. ``run_job`` is safe to call again for the same job,
after a crash or in another process or machine: the item's run id is set by compare-and-set in the transaction that
creates its run, before any paid call, so a second call resumes that run (reusing every finished call) instead of
starting another, and a run whose lease is live in another process is left to that process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from image_gen.errors import InputError

__all__ = ["BriefJob", "Executor", "LocalExecutor", "OnDone", "check_executor", "get_executor", "run_job"]


@dataclass(frozen=True)
class BriefJob:
    """One batch item to run (picklable: plain fields only)."""

    batch_id: str
    idx: int
    """The batch item's index."""
    workspace: str
    """The workspace root folder."""
    registry_url: str | None
    simulate: bool | None = None
    artifacts_url: str | None = None
    """Where artifacts are stored when not in the workspace (passed through to the workspace)."""


OnDone = Callable[[BriefJob, "dict[str, Any] | BaseException"], None]


def run_job(job: BriefJob) -> dict[str, Any]:
    """Run (or resume) one batch item; returns ``RunOutcome.to_dict()`` (plus ``batch_id``, ``idx``, ``item_status``).

    Module-level and picklable; safe to call again for the same job (after a crash, in another process or machine):
    it opens the workspace and registry (cached per process), reads the batch config and the item's brief from the
    registry, and starts the item's run (its run id recorded on the item by compare-and-set in the same transaction
    that creates the run row, before any paid call) or, when the item already has a run, resumes it (taking it over
    when its lease holder is dead). An item whose run is live in another process is not touched: the result then
    has ``item_status`` ``"elsewhere"``.
    """
    from image_gen.pipeline.batch import run_item

    return run_item(job)


class Executor(Protocol):
    name: str

    def run(self, jobs: Sequence[BriefJob], *, concurrency: int, on_done: OnDone) -> None:
        """Run every job (at most ``concurrency`` at once); call ``on_done(job, result or exception)`` in this
        process as each ends. Ctrl-C stops dispatching, lets running jobs stop before their next call, and raises
        ``KeyboardInterrupt``."""
        ...


class LocalExecutor:
    """Threads in this process (provider calls wait on the network), as ``run --concurrency N`` does."""

    name = "local"

    def __init__(self) -> None:
        self.stop = threading.Event()

    def run(self, jobs: Sequence[BriefJob], *, concurrency: int, on_done: OnDone) -> None:
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        pending = list(jobs)
        if not pending:
            return
        workers = max(1, min(concurrency, len(pending)))
        running: dict[Future[dict[str, Any]], BriefJob] = {}
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-gen-batch")
        try:
            while pending or running:
                while pending and len(running) < workers and not self.stop.is_set():
                    job = pending.pop(0)
                    running[pool.submit(run_job, job)] = job
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED, timeout=0.5)
                for fut in done:
                    job = running.pop(fut)
                    exc = fut.exception()
                    on_done(job, exc if exc is not None else fut.result())
        except KeyboardInterrupt:
            self.stop.set()
            from image_gen.pipeline.batch import stop_local_runs

            stop_local_runs()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)


def check_executor(name: str, address: str | None = None) -> None:
    """Bad input (naming the flag) for an unknown executor, a stray ``--address`` or a missing extra; connects to
    nothing, so a batch can be checked before it is recorded."""
    from importlib.util import find_spec

    if name not in ("local", "ray"):
        raise InputError(f"unknown executor {name!r}; expected local or ray", field="--executor")
    if name == "local" and address:
        raise InputError("--address is for --executor ray", field="--address")
    if name == "ray" and (find_spec("ray") is None or find_spec("image_gen.pipeline.executors_ray") is None):
        raise InputError("the ray executor needs the [ray] extra (pip install 'image-gen[ray]')", field="--executor")


def get_executor(name: str, address: str | None = None) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``; ``address`` is Ray's: ``auto`` or ``ray://host:port``)."""
    if name == "local":
        if address:
            raise InputError("--address is for --executor ray", field="--address")
        return LocalExecutor()
    if name == "ray":
        from importlib import import_module

        try:
            executors_ray = import_module("image_gen.pipeline.executors_ray")
        except ImportError as exc:
            raise InputError(f"the ray executor needs the [ray] extra (pip install 'image-gen[ray]'): {exc}",
                             field="--executor") from None
        executor: Executor = executors_ray.RayExecutor(address=address)
        return executor
    raise InputError(f"unknown executor {name!r}; expected local or ray", field="--executor")
