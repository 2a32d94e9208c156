"""Helpers of the loopback end-to-end tests: run the installed ``image-gen`` command, read the registry."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

IMAGE_GEN = str(Path(sys.executable).with_name("image-gen"))


def image_gen(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would (a separate process; keys and base URLs from the environment)."""
    return subprocess.run(
        [IMAGE_GEN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.strip(), f"no JSON on stdout; stderr:\n{proc.stderr}"
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def rows(workspace: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows of the workspace's SQLite registry, as dicts (read-only connection)."""
    db = workspace / ".image-gen" / "registry.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, params)]
    finally:
        con.close()


def assert_no_key_anywhere(
    ws: Path, procs: Iterable[subprocess.CompletedProcess[str]], keys: Iterable[str]
) -> None:
    """No API key in the registry database, workspace files (logs too), image metadata or CLI output."""
    files = [p for p in ws.rglob("*") if p.is_file()]
    assert any(p.name == "registry.db" for p in files)
    keys = list(keys)
    for key in keys:
        for path in files:
            assert key.encode() not in path.read_bytes(), f"API key found in {path}"
        for proc in procs:
            assert key not in proc.stdout and key not in proc.stderr
    for path in files:
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
            with Image.open(path) as img:
                text = repr(img.info) + repr(getattr(img, "text", {}))
            assert not any(k in text for k in keys), f"API key in the metadata of {path}"
