"""The estimate tells what a run then spends: same calls, same catalog cost (simulated, QA off, no failures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from image_gen import api
from image_gen.pipeline.estimate import estimate

CONFIG = {
    "pipeline": {"stages": ["draft:ideogram-v1-turbo", "final:sd3.5-medium", "big:ideogram-v2a"],
                 "qa": {"enabled": False}},
    "stage": {
        "draft": {"width": 256, "height": 256},
        "final": {"upscale": "2x", "tile_size": 128, "overlap": 16},  # 512 px in tiles of 128: 5 x 5
        "big": {"width": 1536, "height": 1536},  # above ideogram's native area: its native upscaler
    },
    "sim": {"fail_rate": 0.0},
}


def test_estimate_matches_what_the_run_spends(tmp_path: Path) -> None:
    est = estimate(CONFIG, simulate=True)
    assert [s.calls for s in est.stages] == [1, 1 + 25, 1 + 1]
    assert est.stages[1].delivered == (512, 512)
    assert not (tmp_path / "ws").exists()
    outcome = api.run_pipeline(CONFIG, 'Tin, label "GOLDEN"', simulate=True, workspace=tmp_path / "ws")
    assert not isinstance(outcome, list) and outcome.status == "completed", outcome.reason
    assert [s.calls for s in outcome.stages] == [s.calls for s in est.stages]
    assert outcome.cost_usd == pytest.approx(est.cost_usd)


def test_rerolls_and_escalation_are_an_upper_bound_only() -> None:
    cfg = {"model": "ideogram-v2a", "max_rerolls": 2, "escalate_to": "ideogram-v3", "width": 512, "height": 512}
    est = estimate(cfg, briefs=3)
    (stage,) = est.stages
    assert stage.calls == 1 and stage.max_calls == 4
    assert est.calls == 3 and est.max_calls == 12
    assert est.max_cost_usd > est.cost_usd > 0
