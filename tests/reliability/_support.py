"""Scaffolding for the reliability suite: CLI processes (started together on a barrier), registry reads."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[2] / "src"

# A CLI process that imports everything first, then waits for a go file: processes started with it act at the same
# moment (the race is on the registry, not on who finished importing first).
_BARRIER = """
import os, sys, time
from image_gen.cli import main
import image_gen.api, image_gen.pipeline.runner, image_gen.store.registry  # the work, imported before the race
go = sys.argv[1]
open(f"{go}.ready.{os.getpid()}", "w").close()
deadline = time.time() + 120
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.002)
main(sys.argv[2:])
"""


def env(**extra: str) -> dict[str, str]:
    """The environment for CLI processes: this worktree's sources first, no vendor keys."""
    from tests.conftest import cli_env

    e = cli_env(**extra)
    e["PYTHONPATH"] = os.pathsep.join([str(SRC), *[p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return e


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "image_gen.cli", *args]


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str


def popen(argv: Sequence[str], **extra_env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(**extra_env))


def run_together(argvs: Sequence[Sequence[str]], go: Path, timeout_s: float = 180, **extra_env: str) -> list[Done]:
    """Run several CLI invocations (argv after ``image-gen``) released at the same moment; their results."""
    procs = [subprocess.Popen([sys.executable, "-c", _BARRIER, str(go), *a], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env(**extra_env)) for a in argvs]
    # release once every process has imported (their import is what takes time on a busy machine)
    deadline = time.time() + 60
    while time.time() < deadline and not all(Path(f"{go}.ready.{p.pid}").exists() or p.poll() is not None
                                             for p in procs):
        time.sleep(0.01)
    go.write_text("go")
    out = []
    for p in procs:
        so, se = p.communicate(timeout=timeout_s)
        out.append(Done(p.returncode, so, se))
    return out


def sqlite_rows(db: Path, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows from the SQLite registry, read while other processes write (an empty list if it is not there yet)."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return list(con.execute(query, params).fetchall())
        finally:
            con.close()
    except sqlite3.Error:
        return []


def url_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    """Rows from any registry URL (SQLite or PostgreSQL)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(query)).fetchall()]
    finally:
        engine.dispose()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen[str] | None = None,
             every: float = 0.02) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            so, se = proc.communicate()
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}: {so[-2000:]}{se[-2000:]}")
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


GATED = """
name = "gated"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "hires:imagen-4"]
width = 128
height = 128
[pipeline.qa]
enabled = false
[stage.hires]
gate = "approval"
"""
"""A two-stage pipeline whose second stage waits for approval (small, QA off: the tests are about the gate)."""
