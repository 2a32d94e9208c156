"""The report's SLA hit rate per pipeline: runs routed with an SLA whose own latency was within it."""

from __future__ import annotations

from pathlib import Path

from image_gen.reporting.metrics import load_runs, pipeline_metrics
from image_gen.reporting.report import Comparison, PipelineRuns, markdown, sla_rows, to_html
from image_gen.workspace import Workspace
from tests.routing.history import record_runs

STAGES = [("draft", "ideogram-v1-turbo"), ("final", "sd3.5-medium")]


def test_the_sla_hit_rate_counts_the_ended_runs_within_their_sla(tmp_path: Path) -> None:
    registry = Workspace.resolve(str(tmp_path / "ws"), None).registry()
    staged = {"mode": "staged", "sla_s": 8.0, "p_within_sla": 0.6}
    ids = record_runs(registry, STAGES, 30, routing=staged)
    single = {"mode": "single-call", "sla_s": 8.0, "p_within_sla": 0.2}
    ids += record_runs(registry, [("single-call", "gemini-3-pro-image")], 4, routing=single, seed=5)
    failed = record_runs(registry, STAGES, 1, routing=staged, seed=6)[0]
    waiting = record_runs(registry, STAGES, 1, routing=staged, seed=7)[0]
    assert registry.transition(failed, ["completed"], "failed")
    assert registry.transition(waiting, ["completed"], "awaiting_approval")
    plain = record_runs(registry, STAGES, 3, seed=8)  # no SLA: not counted
    runs = load_runs(registry, [*ids, failed, waiting, *plain], "fast")
    recorded = {rid: registry.get_run(rid) for rid in ids}
    within = sum(r.latency_s <= 8.0 for r in recorded.values() if r is not None)
    assert 0 < within < 30  # the history straddles the SLA

    sla = pipeline_metrics(runs).sla
    assert sla is not None
    assert (sla.runs, sla.staged, sla.single_call) == (36, 32, 4)
    assert sla.ended == 35  # the waiting run has not ended
    assert sla.met == within  # the failed run and the slow ones missed it
    assert abs(sla.hit_rate - within / 35) < 1e-9
    head, rows = sla_rows([pipeline_metrics(runs)])
    assert rows[0][head.index("SLA hit rate")].endswith(f"({within}/35), 1 not ended")
    assert rows[0][head.index("routed staged / single-call")] == "32 / 4"

    comparison = Comparison(["brief"], [PipelineRuns("fast", "fast.toml", runs)])
    metrics = comparison.metrics
    assert "## Latency SLA" in markdown(comparison, metrics, [])
    assert "<h2>Latency SLA</h2>" in to_html(comparison, metrics, [])
    assert pipeline_metrics(runs).to_dict()["sla"]["met"] == within


def test_no_sla_no_section(tmp_path: Path) -> None:
    registry = Workspace.resolve(str(tmp_path / "ws"), None).registry()
    runs = load_runs(registry, record_runs(registry, STAGES, 2), "fast")
    assert pipeline_metrics(runs).sla is None
    comparison = Comparison(["brief"], [PipelineRuns("fast", "fast.toml", runs)])
    assert "Latency SLA" not in markdown(comparison, comparison.metrics, [])
