"""Latency-SLA routing on simulated history whose staged p95 is 9 s: ``--sla 20`` runs staged, ``--sla 5`` runs
single-call, each recording its estimate; a resumed run keeps its routing; a gated pipeline keeps its gate."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from image_gen.reporting.metrics import load_runs, pipeline_metrics
from image_gen.workspace import Workspace
from tests.core.helpers import invoke
from tests.routing.history import record_runs, write_config

STAGES = [("draft", "ideogram-v1-turbo"), ("final", "sd3.5-medium")]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding 30 recorded simulated runs of the fast pipeline (256 px, both stages)."""
    root = tmp_path_factory.mktemp("recorded") / "ws"
    root.mkdir()
    registry = Workspace.resolve(str(root), None).registry()
    ids = record_runs(registry, STAGES, 30)
    p95 = pipeline_metrics(load_runs(registry, ids)).latency.p95
    assert 8.5 <= p95 <= 9.5, p95  # the history the tests route on: a staged p95 of about 9 s
    registry.close()
    return root


@pytest.fixture
def ws(recorded: Path, tmp_path: Path) -> Path:
    """A copy of the recorded workspace of one's own."""
    root = tmp_path / "ws"
    shutil.copytree(recorded, root)
    return root


def run_json(ws: Path, config: Path, *args: str) -> dict[str, Any]:
    res = invoke("run", "--config", str(config), "--prompt", "a bottle labelled 'AQUA'", "--simulate",
                 "--workspace", str(ws), "--json", *args)
    assert res.code == 0, res.stderr
    out = res.json()["runs"][0]
    assert isinstance(out, dict)
    return out


def test_sla_20_runs_staged_with_its_recorded_estimate(ws: Path, tmp_path: Path) -> None:
    out = run_json(ws, write_config(tmp_path), "--sla", "20")
    routing = out["routing"]
    assert routing["mode"] == "staged"
    assert routing["p_within_sla"] >= 0.95
    assert [s["name"] for s in out["stages"]] == ["draft", "final"]
    staged = routing["staged"]
    assert 8.0 <= staged["p95_s"] <= 10.0  # the estimate is the recorded history's
    assert [(s["stage"], s["source"], s["samples"]) for s in staged["stages"]] == [
        ("draft", "history", 30), ("final", "history", 30)]
    shown = invoke("runs", "show", out["run_id"], "--workspace", str(ws), "--json").json()
    assert shown["routing"] == routing


def test_sla_5_runs_single_call_with_its_recorded_estimate(ws: Path, tmp_path: Path) -> None:
    out = run_json(ws, write_config(tmp_path), "--sla", "5")
    routing = out["routing"]
    assert routing["mode"] == "single-call"
    assert routing["p_within_sla"] < 0.95
    assert routing["staged"]["p95_s"] > 5
    # largest-available, as the planner resolves it under --simulate
    assert [(s["name"], s["model"]) for s in out["stages"]] == [("single-call", "sim:gemini-3-pro-image")]
    assert out["provider_calls"] >= 1
    assert routing["single_call_model"] == "gemini-3-pro-image"
    assert routing["size"] == [256, 256]  # the size the staged pipeline delivers
    assert "single_call" in routing and "p_within_sla" in routing["single_call"]
    assert "< target 0.95" in routing["reason"]
    text = invoke("runs", "show", out["run_id"], "--workspace", str(ws))
    assert text.code == 0
    assert "routing: single-call" in text.stdout and "P(within)" in text.stdout


def test_the_config_sets_the_sla_and_its_target_and_model(ws: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, 'sla_s = 9.5\nsla_target = 0.5\nsla_model = "sd3.5-large"')
    out = run_json(ws, cfg)
    assert out["routing"]["mode"] == "staged"  # p(<= 9.5 s) is about 0.97: above a target of 0.5
    cfg = write_config(tmp_path, 'sla_s = 7.0\nsla_target = 0.5\nsla_model = "sd3.5-large"', "strict.toml")
    out = run_json(ws, cfg)
    assert out["routing"]["mode"] == "single-call"
    assert [s["model"] for s in out["stages"]] == ["sim:sd3.5-large"]


def test_without_history_the_catalog_latency_is_used_and_said(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    out = run_json(root, write_config(tmp_path), "--sla", "20")
    stages = out["routing"]["staged"]["stages"]
    assert [s["source"] for s in stages] == ["catalog", "catalog"]
    assert all("fewer than 20" in s["why"] and "lognormal sigma" in s["spread"] for s in stages)
    assert out["routing"]["mode"] == "staged"


def test_no_sla_records_no_routing(ws: Path, tmp_path: Path) -> None:
    out = run_json(ws, write_config(tmp_path))
    assert out["routing"] is None
    assert [s["name"] for s in out["stages"]] == ["draft", "final"]


def test_a_gated_pipeline_routed_single_call_still_waits_for_approval_and_keeps_its_routing(
        ws: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "[stage.final]\ngate = \"approval\"")
    out = run_json(ws, cfg, "--sla", "5")
    routing = out["routing"]
    assert routing["mode"] == "single-call"
    assert "approval wait at final not counted" in routing["gate"]
    assert out["status"] == "awaiting_approval"
    assert out["provider_calls"] == 0  # the gate holds the one call until someone approves
    approved = invoke("approve", out["run_id"], "--workspace", str(ws), "--json")
    assert approved.code == 0, approved.stderr
    done = approved.json()["runs"][0]
    assert done["status"] == "completed"
    assert [(s["name"], s["model"], s["calls"]) for s in done["stages"]] == [
        ("single-call", "sim:gemini-3-pro-image", 1)]
    assert done["routing"] == routing  # decided once, before the first call; approval does not re-route


def test_a_staged_gated_pipeline_within_the_sla_waits_at_its_gate(ws: Path, tmp_path: Path) -> None:
    out = run_json(ws, write_config(tmp_path, "[stage.final]\ngate = \"approval\""), "--sla", "20")
    assert out["routing"]["mode"] == "staged"
    assert out["status"] == "awaiting_approval"
    assert [s["status"] for s in out["stages"]] == ["done", "awaiting_approval"]


def test_a_resumed_run_keeps_its_routing_when_the_history_has_changed(ws: Path, tmp_path: Path) -> None:
    from image_gen import api
    from image_gen.store.models import Run

    cfg = write_config(tmp_path, "[stage.final]\ngate = \"approval\"")
    out = run_json(ws, cfg, "--sla", "5")
    registry = Workspace.resolve(str(ws), None).registry()
    # the history changes (40 more runs): the started run is not routed again
    record_runs(registry, [("draft", "ideogram-v1-turbo"), ("final", "sd3.5-medium")], 40, size=(256, 256),
                seed=11)
    assert registry.transition(out["run_id"], ["awaiting_approval"], "interrupted")
    resumed = api.resume(out["run_id"], workspace=str(ws))
    assert resumed.routing == out["routing"]
    assert [s.name for s in resumed.stages] == ["single-call"]
    assert resumed.status == "awaiting_approval"  # and its gate still holds
    run = registry.get_run(out["run_id"])
    assert isinstance(run, Run) and run.routing == out["routing"]


def test_estimate_with_an_sla_says_how_the_run_would_be_routed_and_spends_nothing(ws: Path, tmp_path: Path) -> None:
    res = invoke("run", "--config", str(write_config(tmp_path)), "--prompt", "a bottle labelled 'AQUA'",
                 "--simulate", "--workspace", str(ws), "--json", "--sla", "5", "--estimate")
    assert res.code == 0, res.stderr
    data = res.json()
    assert data["routing"]["mode"] == "single-call"
    assert [s["stage"] for s in data["estimate"]["stages"]] == ["single-call"]  # the path it would be routed to
    assert data["estimate"]["calls"] == 1
    registry = Workspace.resolve(str(ws), None).registry()
    assert len(registry.list_runs(limit=1000)) == 30  # nothing was run
