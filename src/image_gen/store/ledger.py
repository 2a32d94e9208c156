"""The spend ledger: a call's expected cost is reserved before it is sent, in the same write transaction that
checks the caps, and settled with what it cost when it returns.

A reservation is the call's row itself (state ``sent``, ``cost_usd`` = expected cost), so spend is one sum over
calls: what finished calls cost plus what calls in flight may cost. The caps hold across threads and processes:
on SQLite the transaction is ``BEGIN IMMEDIATE`` (one writer at a time), on PostgreSQL it locks the ``spend`` row
of ``ledger_locks`` (``SELECT ... FOR UPDATE``) before it sums.

Charges: ``ok`` calls cost what the vendor reported (or the catalog price); a failure the vendor billed, or one
whose request reached the vendor and whose answer was lost ("may have been billed"), is charged its expected
cost; a failure before the request reached the vendor is free.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select

from image_gen.store.models import Call, LedgerLock, Run, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from image_gen.store.registry import Registry

EPS = 1e-9

_CALLS: Any = Call.__table__
_RUNS: Any = Run.__table__
# built once: the reservation runs them for every call
_DAY_SPEND = (select(func.coalesce(func.sum(_CALLS.c.cost_usd), 0.0))
              .where(_CALLS.c.created_at >= bindparam("_start"), _CALLS.c.created_at < bindparam("_end")))
_RUN_SPEND = select(func.coalesce(func.sum(_CALLS.c.cost_usd), 0.0)).where(_CALLS.c.run_id == bindparam("_run"))


@dataclass(frozen=True)
class Caps:
    per_run_usd: float | None = None
    per_day_usd: float | None = None
    timezone: str = "UTC"


class CapExceeded(Exception):
    """The call would pass a cap; nothing was written."""


class RunNotLive(Exception):
    """The run is no longer ``running`` under this owner (cancelled, taken over): the call is not made."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


def day_start_utc(timezone: str = "UTC", now: datetime | None = None) -> datetime:
    """Midnight of today in ``timezone``, as a naive UTC datetime (how the registry stores times)."""
    tz = ZoneInfo(timezone)
    local = (now or datetime.now(UTC)).astimezone(tz)
    start = datetime.combine(local.date(), time(0), tzinfo=tz)
    return start.astimezone(UTC).replace(tzinfo=None)


class Ledger:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    # -- sums ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _day_spend(s: Session, start: datetime) -> float:
        end = start + timedelta(days=1, hours=1)  # a day is 23-25 h long where clocks change
        return float(s.connection().execute(_DAY_SPEND, {"_start": start, "_end": end}).scalar() or 0.0)

    @staticmethod
    def _run_spend(s: Session, run_id: str) -> float:
        return float(s.connection().execute(_RUN_SPEND, {"_run": run_id}).scalar() or 0.0)

    def spent_today(self, timezone: str = "UTC") -> float:
        with self.registry.reading() as s:
            return self._day_spend(s, day_start_utc(timezone))

    def spent_on_run(self, run_id: str) -> float:
        with self.registry.reading() as s:
            return self._run_spend(s, run_id)

    # -- reserve and settle -------------------------------------------------------------------------------------
    def reserve(self, caps: Caps, call: Call, *, owner: str | None = None) -> Call:
        """Check the caps and insert ``call`` as ``sent`` with its expected cost reserved, in one transaction.

        Raises ``CapExceeded`` (with the reason) or ``RunNotLive``; then nothing was written.
        """
        expected = float(call.expected_cost_usd or 0.0)
        call.state = "sent"
        call.cost_usd = expected
        call.created_at = utcnow()
        reg = self.registry
        with reg.session() as s:
            if reg.dialect == "postgresql":
                reg.first("ledger_lock", lambda: select(LedgerLock.__table__.c.name)
                          .where(LedgerLock.__table__.c.name == "spend").with_for_update())
            if owner is not None and call.run_id is not None:
                run = reg.first("run_lease", lambda: select(_RUNS.c.status, _RUNS.c.lease_owner)
                                .where(_RUNS.c.id == bindparam("_run")), _run=call.run_id)
                if run is None or run.status != "running" or run.lease_owner != owner:
                    status = run.status if run is not None else "gone"
                    why = status if status != "running" else "running in another process (taken over)"
                    raise RunNotLive(f"run {call.run_id} is {why}; the call was not sent", status)
            if caps.per_run_usd is not None and call.run_id is not None:
                spent = self._run_spend(s, call.run_id)
                if spent + expected > caps.per_run_usd + EPS:
                    raise CapExceeded(
                        f"budget: the next call ({call.model_id}, ${expected:.4f}) would bring this run to "
                        f"${spent + expected:.4f}, over its cap of ${caps.per_run_usd:.4f}; not sent")
            if caps.per_day_usd is not None:
                spent_day = self._day_spend(s, day_start_utc(caps.timezone))
                if spent_day + expected > caps.per_day_usd + EPS:
                    raise CapExceeded(
                        f"budget: the next call ({call.model_id}, ${expected:.4f}) would bring today's spend "
                        f"({caps.timezone}) to ${spent_day + expected:.4f}, over the daily cap of "
                        f"${caps.per_day_usd:.4f}; not sent")
            reg.insert(call)
        return call

    def settle(self, call_id: int, *, state: str, cost_usd: float, billed: bool = False,
               maybe_billed: bool = False, **values: Any) -> None:
        """Write what the call cost (replacing the reservation) and how it ended."""
        self.registry.update(Call, call_id, state=state, cost_usd=round(float(cost_usd), 6), billed=billed,
                             maybe_billed=maybe_billed, finished_at=utcnow(), **values)

    def interrupt_sent(self, run_id: str, reason: str) -> int:
        """Calls of ``run_id`` still ``sent`` (their process died or was stopped): ``interrupted``, charged their
        expected cost as "may have been billed". Returns how many."""
        with self.registry.session() as s:
            calls = list(s.scalars(select(Call).where(Call.run_id == run_id, Call.state == "sent")))
            for c in calls:
                c.state = "interrupted"
                c.maybe_billed = True
                c.cost_usd = c.expected_cost_usd
                c.error = reason
                c.finished_at = utcnow()
        return len(calls)
