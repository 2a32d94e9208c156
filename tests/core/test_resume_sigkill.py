"""A run killed with SIGKILL in the middle completes when resumed; no finished stage is called again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.core.helpers import SMALL_STAGED, invoke, write

# timing: SIGKILL at a point of the run, polled for (make test runs it serially)
pytestmark = pytest.mark.timing


def _stage_status(db: Path) -> dict[str, str]:
    """Stage name -> status, plus "layout-call" -> state of layout's latest call."""
    if not db.exists():
        return {}
    try:
        con = sqlite3.connect(db, timeout=5)
        rows = con.execute("select name, status from stage_runs order by idx").fetchall()
        call = con.execute("select c.state from calls c join stage_runs s on c.stage_run_id = s.id "
                           "where s.name = 'layout' order by c.id desc limit 1").fetchone()
        con.close()
    except sqlite3.Error:
        return {}
    return {**dict(rows), **({"layout-call": call[0]} if call else {})}


def test_sigkill_then_resume(ws_path: Path, tmp_path: Path) -> None:
    cfg = write(tmp_path / "slow.toml", SMALL_STAGED + "\n[sim]\nlatency_scale = 0.4\nfail_rate = 0.0\n")
    cmd = [sys.executable, "-m", "image_gen.cli", "run", "--config", str(cfg), "--prompt",
           'Olive oil tin, label text "GOLDEN GROVE"', "--simulate", "--workspace", str(ws_path), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    db = ws_path / ".image-gen" / "registry.db"
    deadline = time.time() + 120
    while time.time() < deadline:
        st = _stage_status(db)
        if st.get("draft") == "done" and st.get("layout-call") == "sent":
            break
        if proc.poll() is not None:
            raise AssertionError(f"run ended before it could be killed: {proc.communicate()}")
        time.sleep(0.05)
    else:
        raise AssertionError("draft stage never finished")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = _stage_status(db)
    assert killed["draft"] == "done" and killed["final"] == "pending"

    con = sqlite3.connect(db)
    run_id = con.execute("select id from runs").fetchone()[0]
    draft_calls_before = con.execute(
        "select count(*) from calls c join stage_runs s on c.stage_run_id = s.id where s.name = 'draft'"
    ).fetchone()[0]
    con.close()

    r = invoke("resume", run_id, "--workspace", str(ws_path), "--json")
    assert r.code == 0, r.stderr
    out = r.json()["runs"][0]
    assert out["status"] == "awaiting_approval"
    assert [s["status"] for s in out["stages"]] == ["done", "done", "done", "awaiting_approval"]

    shown = invoke("runs", "show", run_id, "--workspace", str(ws_path), "--json").json()
    by_stage = {s["stage"]: s["calls"] for s in shown["stages"]}
    assert len(by_stage["draft"]) == draft_calls_before == 1  # the finished stage was not called again
    ok_per_stage = {name: sum(c["state"] == "ok" for c in calls) for name, calls in by_stage.items()}
    assert ok_per_stage["draft"] == 1 and ok_per_stage["layout"] >= 1
    # the call in flight at the kill is visible as interrupted, and was sent again (at-least-once)
    assert any(c["state"] == "interrupted" for c in by_stage["layout"])
    json.dumps(shown)
