"""One workspace with simulated runs, renditions and two batches, made once per test session (worker)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.export._support import add_batch, add_rendition

CONFIG = """
name = "export-small"
[pipeline]
model = "staged-selection"
stages = ["draft:ideogram-v1-turbo", "final:sd3.5-medium"]
width = 256
height = 256
[stage.draft]
steps = 20
guidance_scale = 6.0
seed = 42
[stage.draft.qa]
check_text = false
[stage.final]
strength = 0.35
[sim]
latency_scale = 0
"""
PROMPTS = ['Bottle on a table, label "AQUA PURE"', 'Coffee bag, label "NIGHT OWL"', 'Tea tin, label "GREEN LEAF"']


@dataclass
class Made:
    ws: Path
    runs: list[str]
    """Three runs: 0 has renditions ``social`` (JPEG 128x128) and ``banner`` (PNG 200x100), 1 has none (its final
    image is exported), 2 has ``social`` (WebP 96x96)."""
    batch: str
    """Runs 0 and 1."""
    other_batch: str
    """Run 2."""


@pytest.fixture(scope="session")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    from image_gen import api
    from image_gen.workspace import Workspace

    root = tmp_path_factory.mktemp("export")
    cfg = root / "export-small.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    ws_path = root / "ws"
    ws_path.mkdir()
    outcomes = api.run_pipeline(cfg, PROMPTS, workspace=ws_path, simulate=True)
    assert isinstance(outcomes, list)
    runs = [o.run_id for o in outcomes]
    ws = Workspace.resolve(ws_path)
    try:
        assert all(ws.registry().get_run(r).final_artifact for r in runs)  # type: ignore[union-attr]
        add_rendition(ws, runs[0], "social", (128, 128), "JPEG")
        add_rendition(ws, runs[0], "banner", (200, 100), "PNG", qa_passed=False, reasons=["over the byte budget"])
        add_rendition(ws, runs[2], "social", (96, 96), "WEBP")
        batch = add_batch(ws, runs[:2])
        other = add_batch(ws, runs[2:], name="other")
    finally:
        ws.close()
    return Made(ws_path, runs, batch, other)
