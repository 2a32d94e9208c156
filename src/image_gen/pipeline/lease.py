"""Leases on running runs: the process that runs a run holds it (owner ``host:pid:token`` and a heartbeat), so
``resume`` never takes over a run another live process is still running.

A lease is live while its ``lease_until`` is in the future and, on this host, its process exists. A run whose
process died (SIGKILL, power loss) can be resumed as soon as that is seen; ``--force`` takes any lease.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import update

from image_gen.store.models import Run, utcnow

if TYPE_CHECKING:
    from image_gen.store.registry import Registry

LEASE_S = float(os.environ.get("IMAGE_GEN_LEASE_S", "30"))


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def lease_live(owner: str | None, until: datetime | None, now: datetime | None = None) -> bool:
    if not owner or until is None or until <= (now or utcnow()):
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        return int(pid) == os.getpid() or _pid_alive(int(pid))
    return True


class Leases:
    """The runs this runner holds, renewed by a heartbeat thread while any is held."""

    def __init__(self, registry: Registry, owner: str | None = None, ttl_s: float = LEASE_S) -> None:
        self.registry = registry
        self.owner = owner or new_owner()
        self.ttl = timedelta(seconds=ttl_s)
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def until(self) -> datetime:
        return utcnow() + self.ttl

    def take(self, run_id: str, expected: list[str], *, previous_owner: str | None = None,
             any_owner: bool = False) -> bool:
        """Compare-and-set the run to ``running`` under this owner (from ``expected`` statuses, and from
        ``previous_owner``'s lease unless ``any_owner``)."""
        with self.registry.session() as s:
            q = update(Run).where(Run.id == run_id, Run.status.in_(expected))
            if not any_owner:
                q = q.where(Run.lease_owner == previous_owner) if previous_owner else q.where(
                    Run.lease_owner.is_(None))
            res = s.execute(q.values(status="running", lease_owner=self.owner, lease_until=self.until(),
                                     updated_at=utcnow()))
            ok = getattr(res, "rowcount", 0) == 1
        if ok:
            self.hold(run_id)
        return bool(ok)

    def hold(self, run_id: str) -> None:
        with self._lock:
            self._held.add(run_id)
            if self._thread is None or not self._thread.is_alive():
                self._wake.clear()
                self._thread = threading.Thread(target=self._beat, name="image-gen-lease", daemon=True)
                self._thread.start()

    def release(self, run_id: str) -> None:
        """Give the run's lease up: in the registry first, then here (interrupted in between, the run is still
        this runner's to mark interrupted)."""
        self.clear(run_id)
        self.forget(run_id)

    def clear(self, run_id: str) -> None:
        """Clear the run's lease in the registry if it is still this runner's (joins an open registry block)."""
        self.registry.update_where(Run, run_id, {"lease_owner": self.owner}, lease_owner=None, lease_until=None)

    def forget(self, run_id: str) -> None:
        """Stop holding the run here (its lease was cleared in the registry, committed, by the caller)."""
        with self._lock:
            self._held.discard(run_id)

    def held(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    def _beat(self) -> None:
        while not self._wake.wait(self.ttl.total_seconds() / 3):
            ids = self.held()
            if not ids:
                return
            try:
                with self.registry.session() as s:
                    s.execute(update(Run).where(Run.id.in_(ids), Run.lease_owner == self.owner)
                              .values(lease_until=self.until()))
            except Exception:  # a busy database: the next beat tries again
                continue
