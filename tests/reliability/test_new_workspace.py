"""Five processes start at once on an empty folder: one migrates the new registry, the others wait for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability._support import run_together, sqlite_rows, write

ONE_STAGE = """
name = "new-workspace"
[pipeline]
stages = ["draft:ideogram-v1-turbo"]
width = 128
height = 128
[pipeline.qa]
enabled = false
"""


@pytest.mark.slow
def test_five_processes_start_on_an_empty_folder(tmp_path: Path) -> None:
    ws = tmp_path / "empty"
    ws.mkdir()
    cfg = write(tmp_path / "one.toml", ONE_STAGE)
    results = run_together([["run", "--config", str(cfg), "--prompt", f"Tin of biscuits number {i}", "--simulate",
                             "--workspace", str(ws), "--json"] for i in range(5)], tmp_path / "go")
    for r in results:
        assert r.code in (0, 1), r.stderr  # a QA verdict at most, never a crash
        assert "Traceback" not in r.stderr and "already exists" not in r.stderr, r.stderr
        assert json.loads(r.stdout)["runs"][0]["status"] == "completed"
    db = ws / ".image-gen" / "registry.db"
    assert sqlite_rows(db, "select count(*) from runs") == [(5,)]
    assert sqlite_rows(db, "select count(*) from calls where state = 'ok'") == [(5,)]
    assert sqlite_rows(db, "select count(*) from alembic_version") == [(1,)]
    assert sqlite_rows(db, "pragma integrity_check") == [("ok",)]
