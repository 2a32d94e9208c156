"""Without a terminal, progress is one plain line per stage event as it happens; Ctrl-C exits 130 with a hint."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.conftest import fast_config
from tests.core.helpers import invoke

# timing: Ctrl-C (SIGINT) and a pipe read while the run goes on (make test runs it serially)
pytestmark = pytest.mark.timing


def _start(tmp_path: Path, cfg: Path, ws: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PYTHONUNBUFFERED"] = "0"  # the CLI must flush its own lines
    return subprocess.Popen(
        [sys.executable, "-m", "image_gen.cli", "run", "--config", str(cfg), "--prompt", 'Tin, label "GOLDEN"',
         "--simulate", "--workspace", str(ws)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
        # Ctrl-C's default action, whatever this process inherited: a shell starts a background job (`make test &`,
        # nohup) with SIGINT ignored, and Python then installs no KeyboardInterrupt handler in the child either
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 120) -> list[str]:
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"no {needle!r} on stderr; got {lines}")


def test_stage_lines_reach_a_pipe_before_the_run_ends(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    proc = _start(tmp_path, fast_config(tmp_path, scale=0.5, stages=3), ws)
    try:
        lines = _read_until(proc, "stage draft done")
        assert proc.poll() is None, "the line came only when the process ended"
        assert any("stage draft (sim:ideogram-v1-turbo) started" in ln for ln in lines)
        assert not any("\r" in ln or "\x1b[" in ln for ln in lines), "a progress bar was drawn into a pipe"
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0
    assert "stage final done" in err and "completed" in err


def test_ctrl_c_exits_130_with_a_resume_hint(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    proc = _start(tmp_path, fast_config(tmp_path, scale=0.5, stages=3), ws)
    try:
        lines = _read_until(proc, "stage layout (sim:ideogram-v2a) started")
        run_id = next(m.group(1) for ln in lines if (m := re.search(r"run (\w+) started \(", ln)))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 130, err
    assert f"interrupted; finish with: image-gen resume {run_id}" in err
    assert "Traceback" not in err
    shown = invoke("runs", "show", run_id, "--workspace", str(ws), "--json")
    assert shown.code == 0
    status = shown.json()["status"]
    assert status == "interrupted"
    assert all(c["state"] != "sent" for st in shown.json()["stages"] for c in st["calls"])
