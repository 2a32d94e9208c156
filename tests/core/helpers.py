"""Test helpers: run the CLI in-process with its real exit-code mapping."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from image_gen.cli import main

SMALL_STAGED = """
name = "staged-small"
[pipeline]
model = "staged-selection"
stages = ["draft:ideogram-v1-turbo", "layout:ideogram-v2a", "final:sd3.5-medium", "hires:imagen4"]
width = 512
height = 512
[stage.draft]
steps = 20
guidance_scale = 6.0
seed = 42
[stage.final]
steps = 40
strength = 0.35
[stage.hires]
gate = "approval"
"""


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def invoke(*args: str) -> Result:
    runner = CliRunner()
    code = 0
    with runner.isolation() as (out, err, _):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        stdout = out.getvalue().decode()
        stderr = err.getvalue().decode()
    return Result(code, stdout, stderr)


def run_captured(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process under pytest's ``capsys``: (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def db_rows(ws: Path) -> dict[str, int]:
    """Row counts per registry table (empty if there is no database)."""
    import sqlite3

    db = ws / ".image-gen" / "registry.db"
    if not db.exists():
        return {}
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}
    finally:
        con.close()
