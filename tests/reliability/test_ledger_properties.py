"""Property-based test of the spend ledger: random sequences of reserve / settle / interrupt against random caps.

A model of the ledger in integer cents decides what must happen; the registry must agree after every step:
- spend (today, and per run) is the sum of the charges: a call in flight costs its reservation, an ``ok`` call what
  it cost, a billed or "may have been billed" failure its expected cost, a free failure nothing;
- a reservation is accepted exactly when it keeps every cap, and an accepted one never takes spend past a cap;
- a rejected reservation writes nothing (no row, no change to any sum).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from image_gen.store.ledger import EPS, CapExceeded, Caps, Ledger
from image_gen.store.models import Call, Run
from image_gen.store.registry import Registry

RUNS = 3


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry.for_path(Path(tmp_path_factory.mktemp("ledger")) / "registry.db")
    yield reg
    reg.close()


def _fresh(registry: Registry) -> list[str]:
    """Empty the registry; RUNS new runs."""
    ids = [f"p{uuid.uuid4().hex[:11]}" for _ in range(RUNS)]
    with registry.session() as s:
        s.execute(delete(Call))
        s.execute(delete(Run))
        for rid in ids:
            s.add(Run(id=rid, status="running", prompt="p", config={}))
    return ids


def _call(run_id: str, cents: int) -> Call:
    return Call(run_id=run_id, model_id="sim:m", provider="sim", operation="generate", purpose="stage",
                request={}, expected_cost_usd=cents / 100)


def _rows(registry: Registry) -> int:
    with registry.reading() as s:
        return int(s.scalar(select(func.count()).select_from(Call)) or 0)


@dataclass
class Model:
    """The ledger in cents: call id -> (run index, expected cents, charged cents, state)."""

    calls: dict[int, list] = field(default_factory=dict)

    def day(self) -> int:
        return sum(c[2] for c in self.calls.values())

    def run(self, r: int) -> int:
        return sum(c[2] for c in self.calls.values() if c[0] == r)

    def open(self) -> list[int]:
        return sorted(i for i, c in self.calls.items() if c[3] == "sent")


reserve_op = st.tuples(st.just("reserve"), st.integers(0, RUNS - 1), st.integers(0, 40))
settle_op = st.tuples(st.just("settle"), st.integers(0, 1000),
                      st.sampled_from(["ok", "billed", "maybe_billed", "free"]), st.integers(0, 100))
interrupt_op = st.tuples(st.just("interrupt"), st.integers(0, RUNS - 1))
ops_strategy = st.lists(st.one_of(reserve_op, reserve_op, settle_op, interrupt_op), min_size=8, max_size=30)
caps_strategy = st.tuples(st.one_of(st.none(), st.integers(0, 80)), st.one_of(st.none(), st.integers(0, 150)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(caps=caps_strategy, ops=ops_strategy)
def test_ledger_matches_its_model(registry: Registry, caps: tuple[int | None, int | None], ops: list[tuple]) -> None:
    per_run, per_day = caps
    limits = Caps(per_run_usd=None if per_run is None else per_run / 100,
                  per_day_usd=None if per_day is None else per_day / 100)
    ledger = Ledger(registry)
    run_ids = _fresh(registry)
    model = Model()

    for op in ops:
        if op[0] == "reserve":
            _, r, cents = op
            fits = ((per_run is None or model.run(r) + cents <= per_run)
                    and (per_day is None or model.day() + cents <= per_day))
            before = _rows(registry)
            try:
                call = ledger.reserve(limits, _call(run_ids[r], cents))
            except CapExceeded as exc:
                assert not fits, f"rejected a reservation that fits: {exc}"
                assert "budget" in str(exc)
                assert _rows(registry) == before  # a rejected reservation writes nothing
            else:
                assert fits, f"accepted {cents}c on run {r} past a cap (run {model.run(r)}, day {model.day()})"
                assert call.state == "sent" and _rows(registry) == before + 1
                model.calls[call.id] = [r, cents, cents, "sent"]
                # the accepted reservation keeps every cap, in the registry itself
                if per_run is not None:
                    assert ledger.spent_on_run(run_ids[r]) <= per_run / 100 + EPS
                if per_day is not None:
                    assert ledger.spent_today() <= per_day / 100 + EPS
        elif op[0] == "settle":
            _, pick, kind, pct = op
            open_ids = model.open()
            if not open_ids:
                continue
            cid = open_ids[pick % len(open_ids)]
            expected = model.calls[cid][1]
            if kind == "ok":
                charged = expected * pct // 100  # the vendor reported what it cost (at most the quote)
                ledger.settle(cid, state="ok", cost_usd=charged / 100, billed=True)
            elif kind == "billed":
                charged = expected
                ledger.settle(cid, state="failed", cost_usd=charged / 100, billed=True)
            elif kind == "maybe_billed":
                charged = expected
                ledger.settle(cid, state="failed", cost_usd=charged / 100, maybe_billed=True)
            else:
                charged = 0
                ledger.settle(cid, state="failed", cost_usd=0.0)
            model.calls[cid][2:] = [charged, "ok" if kind == "ok" else "failed"]
        else:
            _, r = op
            n = ledger.interrupt_sent(run_ids[r], "test: process gone")
            hit = [i for i in model.open() if model.calls[i][0] == r]
            assert n == len(hit)
            for i in hit:
                model.calls[i][2:] = [model.calls[i][1], "interrupted"]

        # spend = the sum of the charges, today and on the run the step touched
        assert ledger.spent_today() == pytest.approx(model.day() / 100, abs=1e-9)
        assert ledger.spent_on_run(run_ids[op[1] if op[0] != "settle" else 0]) == pytest.approx(
            model.run(op[1] if op[0] != "settle" else 0) / 100, abs=1e-9)

    for r, rid in enumerate(run_ids):
        assert ledger.spent_on_run(rid) == pytest.approx(model.run(r) / 100, abs=1e-9)
    with registry.reading() as s:
        states = dict(s.execute(select(Call.id, Call.state)).tuples().all())
    assert states == {i: c[3] for i, c in model.calls.items()}
