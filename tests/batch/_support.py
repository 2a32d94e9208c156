"""Configs and helpers shared by the batch tests (tiny images, no QA text check, no latency unless asked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SIM = """
name = "batch-sim"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "final:sd3.5-medium"]
width = 128
height = 128
[pipeline.qa]
enabled = false
[sim]
latency_scale = {latency}
fail_rate = 0.0
"""

IDEOGRAM = """
name = "batch-ideogram"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "layout:ideogram-v2a"]
width = 256
height = 256
on_retired = "fail"
[pipeline.qa]
enabled = false
[retry]
initial_s = 0
max_s = 0
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def sim_config(tmp_path: Path, latency: float = 0.0, name: str = "sim.toml") -> Path:
    return write(tmp_path / name, SIM.format(latency=latency))


def prompts(tmp_path: Path, n: int, name: str = "prompts.txt") -> Path:
    return write(tmp_path / name, "".join(f'Product shot {i}, label "ITEM {i}"\n' for i in range(n)))


def rows(url: str, query: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of a registry (SQLite or PostgreSQL URL)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(query), params).fetchall()]
    finally:
        engine.dispose()


def sqlite_url(ws: Path) -> str:
    return f"sqlite:///{ws / '.image-gen' / 'registry.db'}"
