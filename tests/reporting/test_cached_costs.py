"""A run answered from the cache spends nothing, yet the pipeline comparison counts what its images cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from image_gen import api
from image_gen.reporting.metrics import load_runs, pipeline_metrics
from image_gen.workspace import Workspace


def test_cached_rerun_reports_production_cost_and_full_hit_rate(ws_path: Path) -> None:
    cfg = {"pipeline": {"stages": ["draft:ideogram-v1-turbo", "layout:ideogram-v2a"], "width": 256, "height": 256},
           "sim": {"fail_rate": 0.0}}
    first = api.run_pipeline(cfg, 'Tin of tea, label "EARL"', simulate=True, workspace=ws_path)
    again = api.run_pipeline(cfg, 'Tin of tea, label "EARL"', simulate=True, workspace=ws_path)
    assert not isinstance(first, list) and not isinstance(again, list)
    assert first.cost_usd > 0 and again.cost_usd == 0  # the re-run spent nothing
    reg = Workspace.resolve(ws_path).registry()
    (r1,) = load_runs(reg, [first.run_id], "staged")
    (r2,) = load_runs(reg, [again.run_id], "staged")
    assert r2.cost_usd == pytest.approx(r1.cost_usd) and r2.latency_s == pytest.approx(r1.latency_s)
    assert r2.calls == r1.calls >= 2
    m1, m2 = pipeline_metrics([r1], "a"), pipeline_metrics([r2], "b")
    assert m1.cache_hit_rate == 0 and m2.cache_hit_rate == 1
    assert m2.cost_per_image == pytest.approx(m1.cost_per_image)
