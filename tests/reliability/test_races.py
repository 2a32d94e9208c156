"""Races on the transactional core: spend caps under threads and processes (SQLite and PostgreSQL), two approvals
at once, approve against reject, and resume against a live run."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from image_gen.store.ledger import CapExceeded, Caps, Ledger
from image_gen.store.models import Call, Run
from image_gen.store.registry import Registry
from tests.core.helpers import invoke
from tests.reliability._support import GATED, cli, popen, run_together, sqlite_rows, url_rows, wait_for, write

THREADS = 16


# -- ledger under threads --------------------------------------------------------------------------------------------
def _thread_race(open_registry: Callable[[], Registry], caps: Caps, price: float, run_ids: list[str],
                 per_thread: int) -> tuple[int, int]:
    """THREADS threads, each with its own registry connection, reserve (and settle at the quoted price) at once."""
    barrier = threading.Barrier(THREADS)
    accepted: list[int] = []
    rejected: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        reg = open_registry()
        ledger = Ledger(reg)
        try:
            barrier.wait()
            for k in range(per_thread):
                row = Call(run_id=run_ids[(i + k) % len(run_ids)], model_id="sim:m", provider="sim",
                           operation="generate", purpose="stage", request={}, expected_cost_usd=price)
                try:
                    call = ledger.reserve(caps, row)
                except CapExceeded as exc:
                    with lock:
                        rejected.append(str(exc))
                    continue
                with lock:
                    accepted.append(call.id)
                ledger.settle(call.id, state="ok", cost_usd=price, billed=True)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            reg.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(accepted) + len(rejected) == THREADS * per_thread
    assert all("budget" in r for r in rejected)
    return len(accepted), len(rejected)


def _ledger_races(url: str) -> None:
    setup = Registry(url)
    day_runs = [f"day{i}" for i in range(4)]
    with setup.session() as s:
        for rid in [*day_runs, "onerun"]:
            s.add(Run(id=rid, status="running", prompt="p", config={}))
    try:
        # one per-day cap shared by 4 runs: 50c at 3c a call -> exactly 16 calls, never 51c
        n, _ = _thread_race(lambda: Registry(url), Caps(per_day_usd=0.50), 0.03, day_runs, per_thread=3)
        assert n == 50 // 3
        spent_day = Ledger(setup).spent_today()
        assert spent_day <= 0.50 + 1e-9 and spent_day == pytest.approx(16 * 0.03)
        # one per-run cap (and a loose per-day cap): 25c at 2c a call on one run -> exactly 12 calls
        n, _ = _thread_race(lambda: Registry(url), Caps(per_run_usd=0.25, per_day_usd=5.0), 0.02, ["onerun"],
                            per_thread=2)
        assert n == 25 // 2
        assert Ledger(setup).spent_on_run("onerun") == pytest.approx(12 * 0.02)
        assert Ledger(setup).spent_on_run("onerun") <= 0.25 + 1e-9
        with setup.reading() as s:
            from sqlalchemy import func, select

            assert s.scalar(select(func.count()).select_from(Call).where(Call.state == "sent")) == 0
    finally:
        setup.close()


def test_ledger_caps_hold_under_threads_sqlite(tmp_path: Path) -> None:
    _ledger_races(f"sqlite:///{tmp_path / 'registry.db'}")


def test_ledger_caps_hold_under_threads_postgres(postgres_url: str) -> None:
    _ledger_races(postgres_url)


# -- two processes against one daily cap -----------------------------------------------------------------------------
PRICE = 0.02  # ideogram-v1-turbo
BRIEFS_EACH = 6
DAY_CAP = 0.17  # 8 of the 12 briefs fit


def _budget_config(tmp_path: Path, registry_url: str | None) -> Path:
    url = f'registry_url = "{registry_url}"\n' if registry_url else ""
    return write(tmp_path / "budget.toml", f"""
name = "budget-race"
{url}
[pipeline]
stages = ["draft:ideogram-v1-turbo"]
width = 128
height = 128
[pipeline.qa]
enabled = false
[budget]
per_day_usd = {DAY_CAP}
[sim]
latency_scale = 0.03
fail_rate = 0.0
""")


def _budget_race(tmp_path: Path, ws: Path, registry_url: str | None) -> None:
    cfg = _budget_config(tmp_path, registry_url)
    argvs = []
    for p in range(2):
        briefs = write(tmp_path / f"briefs{p}.txt",
                       "\n".join(f"Tin of tea number {p}-{i}, studio shot" for i in range(BRIEFS_EACH)) + "\n")
        argvs.append(["run", "--config", str(cfg), "--prompt-file", str(briefs), "--simulate", "--concurrency", "4",
                      "--workspace", str(ws), "--json"])
    results = run_together(argvs, tmp_path / "go")
    for r in results:
        assert r.code in (0, 1), r.stderr
        assert "Traceback" not in r.stderr
    outs = [run for r in results for run in json.loads(r.stdout)["runs"]]
    assert len(outs) == 2 * BRIEFS_EACH

    url = registry_url or f"sqlite:///{ws / '.image-gen' / 'registry.db'}"
    calls = url_rows(url, "select state, cost_usd from calls")
    runs = url_rows(url, "select id, status, reason from runs")
    spent = sum(c[1] for c in calls)
    assert spent <= DAY_CAP + 1e-9, f"spent ${spent:.4f} past the ${DAY_CAP} cap"
    fit = round(DAY_CAP * 100) // round(PRICE * 100)
    assert sum(c[0] == "ok" for c in calls) == fit  # exactly the calls that fit were made
    assert not [c for c in calls if c[0] == "sent"]
    by_status: dict[str, list[tuple]] = {}
    for r in runs:
        by_status.setdefault(r[1], []).append(r)
    assert len(by_status.get("completed", [])) == fit
    stopped = by_status.get("budget_stopped", [])
    assert len(stopped) == 2 * BRIEFS_EACH - fit
    assert set(by_status) <= {"completed", "budget_stopped"}, by_status.keys()
    for r in stopped:  # each says why
        assert "budget" in r[2] and "daily cap" in r[2], r[2]
    assert {o["status"] for o in outs} == {"completed", "budget_stopped"}


@pytest.mark.slow
def test_two_processes_share_a_daily_cap_sqlite(tmp_path: Path, ws_path: Path) -> None:
    _budget_race(tmp_path, ws_path, None)


@pytest.mark.slow
def test_two_processes_share_a_daily_cap_postgres(tmp_path: Path, ws_path: Path, postgres_url: str) -> None:
    _budget_race(tmp_path, ws_path, postgres_url)


# -- approvals -------------------------------------------------------------------------------------------------------
GATED_SLOW = GATED + """[sim]
latency_scale = 0.02
fail_rate = 0.0
"""


def _waiting_run(cfg: Path, ws: Path, prompt: str) -> str:
    r = invoke("run", "--config", str(cfg), "--prompt", prompt, "--simulate", "--workspace", str(ws), "--json")
    assert r.code == 0, r.stderr
    run = r.json()["runs"][0]
    assert run["status"] == "awaiting_approval"
    return str(run["run_id"])


def _hires_calls(db: Path, run_id: str) -> int:
    rows = sqlite_rows(db, "select count(*) from calls c join stage_runs s on c.stage_run_id = s.id "
                           "where s.run_id = ? and s.name = 'hires'", (run_id,))
    return int(rows[0][0])


@pytest.mark.slow
def test_two_approvals_at_once_call_the_gated_stage_once(tmp_path: Path, ws_path: Path) -> None:
    cfg = write(tmp_path / "gated.toml", GATED_SLOW)
    db = ws_path / ".image-gen" / "registry.db"
    run_id = _waiting_run(cfg, ws_path, "Jar of honey, studio shot")
    assert _hires_calls(db, run_id) == 0

    a, b = run_together([["approve", run_id, "--workspace", str(ws_path), "--by", who] for who in ("ann", "bob")],
                        tmp_path / "go")
    assert sorted([a.code, b.code]) == [0, 1], (a, b)
    loser = a if a.code == 1 else b
    assert "already approved" in loser.stderr and "nothing was done" in loser.stderr
    assert _hires_calls(db, run_id) == 1  # the gated stage was called exactly once
    assert sqlite_rows(db, "select count(*) from approvals where run_id = ?", (run_id,))[0][0] == 1
    assert sqlite_rows(db, "select status from runs where id = ?", (run_id,))[0][0] == "completed"


@pytest.mark.slow
def test_approve_against_reject_records_one_decision(tmp_path: Path, ws_path: Path) -> None:
    cfg = write(tmp_path / "gated.toml", GATED_SLOW)
    db = ws_path / ".image-gen" / "registry.db"
    run_id = _waiting_run(cfg, ws_path, "Bottle of vinegar, studio shot")

    ap, rj = run_together([["approve", run_id, "--workspace", str(ws_path)],
                           ["reject", run_id, "--note", "not this one", "--workspace", str(ws_path)]],
                          tmp_path / "go")
    decisions = sqlite_rows(db, "select decision from approvals where run_id = ?", (run_id,))
    assert len(decisions) == 1, decisions
    status = sqlite_rows(db, "select status from runs where id = ?", (run_id,))[0][0]
    if decisions[0][0] == "approved":
        assert (ap.code, rj.code) == (0, 1), (ap, rj)
        assert "already approved" in rj.stderr
        assert status == "completed" and _hires_calls(db, run_id) == 1
    else:
        assert rj.code == 0 and ap.code == 1, (ap, rj)
        assert "already rejected" in ap.stderr
        assert status == "rejected" and _hires_calls(db, run_id) == 0


# -- resume never takes a live run -----------------------------------------------------------------------------------
SLOW = """
name = "slow"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "final:ideogram-v3-quality"]
width = 128
height = 128
[pipeline.qa]
enabled = false
[sim]
latency_scale = 0.5
fail_rate = 0.0
"""


@pytest.mark.timing
@pytest.mark.slow
def test_resume_refuses_a_live_run_and_changes_nothing(tmp_path: Path, ws_path: Path) -> None:
    cfg = write(tmp_path / "slow.toml", SLOW)
    db = ws_path / ".image-gen" / "registry.db"
    proc = popen(cli("run", "--config", str(cfg), "--prompt", "Tin of cocoa, studio shot", "--simulate",
                     "--workspace", str(ws_path), "--json"))
    try:
        # the second stage's call (about 7 s of simulated latency) is in flight
        wait_for(lambda: bool(sqlite_rows(db, "select 1 from calls c join stage_runs s on c.stage_run_id = s.id "
                                              "where s.name = 'final' and c.state = 'sent'")),
                 120, "the final stage's call to be sent", proc)
        run_id, owner = sqlite_rows(db, "select id, lease_owner from runs")[0]
        assert f":{proc.pid}:" in owner
        calls_q = "select id, state, cost_usd, attempt, request_digest from calls order by id"
        runs_q = "select id, status, lease_owner, reason, error_kind from runs"
        before = (sqlite_rows(db, calls_q), sqlite_rows(db, runs_q))

        r = invoke("resume", run_id[:6], "--workspace", str(ws_path))
        assert r.code == 1, (r.stdout, r.stderr)
        assert "running in another process" in r.stderr and owner in r.stderr  # names the other process
        after = (sqlite_rows(db, calls_q), sqlite_rows(db, runs_q))
        assert after == before  # nothing changed: the call in flight is still `sent`, the lease is the owner's
        assert [c[1] for c in after[0]] == ["ok", "sent"]
        assert proc.poll() is None
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()


FORCE = """
name = "force"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "final:ideogram-v3-quality", "polish:ideogram-v1-turbo"]
width = 128
height = 128
[pipeline.qa]
enabled = false
[stage.polish]
strength = 0.3
[sim]
latency_scale = 0.4
fail_rate = 0.0
"""


@pytest.mark.timing
@pytest.mark.slow
def test_resume_force_takes_over_and_the_old_process_steps_aside(tmp_path: Path, ws_path: Path) -> None:
    """``resume --force`` on a live run: the new owner finishes it; the old process stops before its next call
    without disturbing the new owner (its lease, the run's status)."""
    cfg = write(tmp_path / "force.toml", FORCE)
    db = ws_path / ".image-gen" / "registry.db"
    proc = popen(cli("run", "--config", str(cfg), "--prompt", "Tin of saffron, studio shot", "--simulate",
                     "--workspace", str(ws_path), "--json"))
    try:
        wait_for(lambda: bool(sqlite_rows(db, "select 1 from calls c join stage_runs s on c.stage_run_id = s.id "
                                              "where s.name = 'final' and c.state = 'sent'")),
                 120, "the final stage's call to be sent", proc)
        run_id = str(sqlite_rows(db, "select id from runs")[0][0])
        r = invoke("resume", run_id, "--force", "--workspace", str(ws_path), "--json")
        so, se = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert "Traceback" not in se, se
    assert r.code == 0, (r.stdout, r.stderr)
    assert r.json()["runs"][0]["status"] == "completed", r.json()["runs"][0]
    run = sqlite_rows(db, "select status, lease_owner from runs where id = ?", (run_id,))[0]
    assert run == ("completed", None), run
    assert not sqlite_rows(db, "select id from calls where state = 'sent'")
    assert [s for (s,) in sqlite_rows(db, "select status from stage_runs order by idx")] == ["done"] * 3
