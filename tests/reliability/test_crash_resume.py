"""SIGKILL a staged run at ten points spread over it, resume it each time, and check what it promised:
no finished call is sent again, calls in flight are visible as interrupted and sent again, artifacts are whole and
named by their sha256, the registry is intact, and the run ends exactly as a run that was never killed."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from image_gen.imaging.tiling import TilePlan
from tests.core.helpers import invoke
from tests.reliability._support import cli, env, popen, sqlite_rows, wait_for, write

# timing: SIGKILL at ten points of the run, polled for every 5 ms (make test runs it serially)
pytestmark = pytest.mark.timing

SIZE, TILE, OVERLAP = 256, 192, 32
CRASH = f"""
name = "crash"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "layout:ideogram-v2a", "final:sd3.5-medium", "hires:imagen-4"]
width = {SIZE}
height = {SIZE}
[pipeline.qa]
check_text = false
[stage.draft]
seed = 42
[stage.final]
strength = 0.35
upscale = "2x"
tile_size = {TILE}
overlap = {OVERLAP}
[stage.hires]
gate = "approval"
[sim]
latency_scale = {{latency}}
fail_rate = 0.0
"""
PROMPT = 'Olive oil tin, label text "GOLDEN GROVE"'
TILES = len(TilePlan(SIZE * 2, SIZE * 2, TILE, OVERLAP))


@dataclass
class Snap:
    stages: dict[str, str]
    calls: list[tuple[int, str, str, str]]  # id, stage, purpose, state

    def of(self, stage: str, purpose: str | None = None, state: str | None = None) -> list[tuple[int, str, str, str]]:
        return [c for c in self.calls if c[1] == stage and (purpose is None or c[2] == purpose)
                and (state is None or c[3] == state)]


def snap(db: Path) -> Snap:
    stages = dict(sqlite_rows(db, "select name, status from stage_runs"))
    calls = sqlite_rows(db, "select c.id, s.name, c.purpose, c.state from calls c "
                            "join stage_runs s on s.id = c.stage_run_id order by c.id")
    return Snap(stages, calls)  # type: ignore[arg-type]


def tiles_ok(s: Snap) -> int:
    return len(s.of("final", "tile", "ok"))


# (where, exactly there, already past it): the process is killed at the first snapshot that is either
POINTS: list[tuple[str, Callable[[Snap], bool], Callable[[Snap], bool]]] = [
    ("draft call in flight", lambda s: bool(s.of("draft", state="sent")), lambda s: bool(s.of("draft", state="ok"))),
    ("draft call ok, its image not yet recorded (artifact write, QA)",
     lambda s: bool(s.of("draft", state="ok")) and s.stages.get("draft") != "done",
     lambda s: s.stages.get("draft") == "done"),
    ("between draft and layout, or layout's call in flight",
     lambda s: s.stages.get("draft") == "done" and not s.of("layout", state="ok"),
     lambda s: bool(s.of("layout", state="ok"))),
    ("layout call ok, its image not yet recorded",
     lambda s: bool(s.of("layout", state="ok")) and s.stages.get("layout") != "done",
     lambda s: s.stages.get("layout") == "done"),
    ("final's render call in flight", lambda s: bool(s.of("final", "stage", "sent")),
     lambda s: bool(s.of("final", "stage", "ok"))),
    ("first tile in flight", lambda s: bool(s.of("final", "tile", "sent")) and tiles_ok(s) == 0,
     lambda s: tiles_ok(s) >= 1),
    ("three tiles done, the next in flight", lambda s: tiles_ok(s) >= 3 and bool(s.of("final", "tile", "sent")),
     lambda s: tiles_ok(s) >= 4),
    ("between tiles, six done", lambda s: tiles_ok(s) >= 6, lambda s: tiles_ok(s) >= 6),
    ("every tile done, blending / QA / recording",
     lambda s: tiles_ok(s) >= TILES and s.stages.get("final") != "done", lambda s: s.stages.get("final") == "done"),
    ("hires call in flight, after the approval", lambda s: bool(s.of("hires", state="sent")),
     lambda s: bool(s.of("hires", state="ok"))),
]


def _kill_at(proc: subprocess.Popen[str], db: Path, exact: Callable[[Snap], bool],
             past: Callable[[Snap], bool]) -> tuple[Snap, bool]:
    deadline = time.time() + 120
    while time.time() < deadline:
        s = snap(db)
        hit = exact(s)
        if hit or past(s):
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return snap(db), hit
        if proc.poll() is not None:
            so, se = proc.communicate()
            raise AssertionError(f"the process ended (rc {proc.returncode}) before it could be killed: {so}{se}")
        time.sleep(0.005)
    raise AssertionError("timed out waiting for the kill point")


def _files(root: Path) -> list[Path]:
    return [p for p in (root / ".image-gen" / "artifacts").rglob("*") if p.is_file()]


@pytest.mark.slow
def test_kill_and_resume_at_ten_points(tmp_path: Path, ws_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "crash.toml", CRASH.format(latency=0.05))
    db = ws_path / ".image-gen" / "registry.db"
    ws = str(ws_path)
    proc = popen(cli("run", "--config", str(cfg), "--prompt", PROMPT, "--simulate", "--workspace", ws, "--json"))
    wait_for(lambda: bool(sqlite_rows(db, "select id from runs")), 120, "the run to be recorded", proc)
    run_id = str(sqlite_rows(db, "select id from runs")[0][0])

    kills, exact_hits, in_flight = 0, 0, []
    for k, (where, exact, past) in enumerate(POINTS):
        if k == len(POINTS) - 1:  # the last point is past the gate: approve in a process of its own
            proc = popen(cli("approve", run_id, "--workspace", ws, "--json"))
        killed, hit = _kill_at(proc, db, exact, past)
        kills += 1
        exact_hits += hit
        sent = [c[0] for c in killed.calls if c[3] == "sent"]
        in_flight += sent
        ok_digests = sqlite_rows(db, "select request_digest from calls where state = 'ok'")
        assert len(ok_digests) == len(set(ok_digests)), f"an ok call was repeated (killed at: {where})"
        # resume; the next point kills the resumed process (before the gate), the last one is resumed to the end
        if k < len(POINTS) - 2:
            proc = popen(cli("resume", run_id, "--workspace", ws, "--json"))
        else:
            r = subprocess.run(cli("resume", run_id, "--workspace", ws, "--json"), capture_output=True, text=True,
                               env=env(), timeout=180)
            assert r.returncode == 0, r.stderr
            out = json.loads(r.stdout)["runs"][0]
            assert out["status"] == ("awaiting_approval" if k == len(POINTS) - 2 else "completed"), out
            assert not list((ws_path / ".image-gen" / "artifacts").rglob(".tmp-*"))  # cleaned on resume

    assert kills == len(POINTS)
    # the run finished; nothing is left in flight
    status = sqlite_rows(db, "select status, reason from runs where id = ?", (run_id,))[0]
    assert status[0] == "completed", status
    calls = sqlite_rows(db, "select id, state, request_digest, maybe_billed, cost_usd, expected_cost_usd, purpose "
                            "from calls where run_id = ? order by id", (run_id,))
    assert not [c for c in calls if c[1] == "sent"]
    # no ok call was sent twice: every digest has exactly one ok call
    ok = [c[2] for c in calls if c[1] == "ok"]
    assert len(ok) == len(set(ok))
    # every call in flight at a kill is visible as interrupted (charged as may-have-been-billed), and was sent again
    by_id = {c[0]: c for c in calls}
    for cid in in_flight:
        c = by_id[cid]
        assert c[1] == "interrupted" and c[3] and c[4] == c[5], c
        assert any(o[2] == c[2] and o[1] == "ok" and o[0] > cid for o in calls), f"call {cid} was never re-sent"
    assert {c[1] for c in calls} <= {"ok", "interrupted"}
    # every artifact is whole: its bytes hash to its name; no temporary file is left
    files = _files(ws_path)
    assert not [f for f in files if f.name.startswith(".tmp-")]
    for f in files:
        assert hashlib.sha256(f.read_bytes()).hexdigest() == f.stem, f
    for (sha,) in sqlite_rows(db, "select sha256 from artifacts"):
        assert any(f.stem == sha for f in files), f"artifact row {sha} has no file"
    assert sqlite_rows(db, "pragma integrity_check") == [("ok",)]

    # the same brief, never killed (another workspace, no latency): the same calls, the same images
    ref_ws = tmp_path / "reference"
    ref_cfg = write(tmp_path / "ref.toml", CRASH.format(latency=0.0))
    r = invoke("run", "--config", str(ref_cfg), "--prompt", PROMPT, "--simulate", "--workspace", str(ref_ws),
               "--json")
    ref_id = r.json()["runs"][0]["run_id"]
    assert invoke("approve", ref_id, "--workspace", str(ref_ws)).code == 0
    ref_db = ref_ws / ".image-gen" / "registry.db"
    stage_q = "select name, status, artifact_sha from stage_runs order by idx"
    assert sqlite_rows(db, stage_q) == sqlite_rows(ref_db, stage_q)
    ref_ok = sqlite_rows(ref_db, "select purpose, count(*) from calls where state = 'ok' group by purpose")
    assert sqlite_rows(db, "select purpose, count(*) from calls where state = 'ok' group by purpose") == ref_ok
    assert dict(ref_ok)["tile"] == TILES
    with capsys.disabled():
        print(f"\n[crash/resume] kills={kills} exact points={exact_hits}/{len(POINTS)} "
              f"interrupted calls re-sent={len(in_flight)} ok calls={len(ok)} repeated ok calls=0 stuck runs=0")
