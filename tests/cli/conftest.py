"""Fixtures of the CLI tests: a keys file of their own, small fast pipeline configs."""

from __future__ import annotations

from pathlib import Path

import pytest

FAST = """
name = "fast"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "final:sd3.5-medium"]
width = 256
height = 256
qa = { enabled = false }
[sim]
latency_scale = {scale}
fail_rate = 0.0
"""


@pytest.fixture(autouse=True)
def _keys_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "cfg" / "image-gen" / "keys.toml"
    monkeypatch.setenv("IMAGE_GEN_KEYS_FILE", str(path))
    return path


def fast_config(tmp_path: Path, scale: float = 0.0, stages: int = 2) -> Path:
    text = FAST.replace("{scale}", str(scale))
    if stages == 3:
        text = text.replace('"final:sd3.5-medium"]', '"layout:ideogram-v2a", "final:sd3.5-medium"]')
    p = tmp_path / f"fast-{scale}-{stages}.toml"
    p.write_text(text, encoding="utf-8")
    return p
