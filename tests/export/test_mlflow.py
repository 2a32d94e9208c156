"""``image-gen export --mlflow``: read back through MLflow's own client; a re-export updates, never duplicates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.core.helpers import invoke
from tests.export.conftest import PROMPTS, Made

pytest.importorskip("mlflow")

RUN_TAG = "image_gen.run_id"


def registry_runs(made: Made) -> dict[str, Any]:
    from image_gen.workspace import Workspace

    ws = Workspace.resolve(made.ws)
    try:
        reg = ws.registry()
        return {rid: (reg.get_run(rid), reg.stage_runs(rid)) for rid in made.runs}
    finally:
        ws.close()


def mlflow_runs(uri: str) -> tuple[Any, list[Any], list[Any]]:
    """(client, experiments, runs) of the tracking store, as MLflow itself reads them."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exps = [e for e in client.search_experiments(view_type=ViewType.ALL) if e.name != "Default"]
    runs = client.search_runs([e.experiment_id for e in exps], max_results=1000) if exps else []
    return client, exps, runs


def test_file_store_read_back_and_idempotent(made: Made, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from image_gen import api
    from image_gen.reporting.mlflow_export import config_hash

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store, behind this switch
    uri = (tmp_path / "mlruns").as_uri()
    first = api.export_mlflow(made.runs, tracking_uri=uri, workspace=made.ws).to_dict()
    assert [r["created"] for r in first["runs"]] == [True, True, True]
    client, exps, runs = mlflow_runs(uri)
    recorded = registry_runs(made)
    run0 = recorded[made.runs[0]][0]
    # one experiment for the one pipeline config, named after it, labelled simulated
    assert [e.name for e in exps] == [f"image-gen/export-small-{config_hash(run0.config)} [simulated]"]
    assert exps[0].tags["image_gen.config_hash"] == config_hash(run0.config)
    by_tag = {r.data.tags[RUN_TAG]: r for r in runs}
    assert sorted(by_tag) == sorted(made.runs) and len(runs) == 3
    for i, rid in enumerate(made.runs):
        run, stages = recorded[rid]
        m = by_tag[rid]
        assert m.info.status == "FINISHED" and m.data.tags["image_gen.simulated"] == "True"
        p = m.data.params
        assert p["prompt"] == PROMPTS[i]
        assert (p["draft.model"], p["draft.provider"], p["draft.steps"], p["draft.guidance"], p["draft.size"]) == (
            "sim:ideogram-v1-turbo", "sim", "20", "6.0", "256x256")
        assert p["final.model"] == "sim:sd3.5-medium" and p["final.strength"] == "0.35"
        assert {p["draft.seed"], p["final.seed"]} == {str(stages[0].seed), str(stages[1].seed)}
        metrics = m.data.metrics
        assert metrics["cost_usd"] == pytest.approx(run.cost_usd) and metrics["latency_s"] == pytest.approx(
            run.latency_s)
        assert metrics["success"] == float(bool(run.qa_passed)) and metrics["qa_passed"] == float(run.qa_passed)
        final_scores = stages[1].qa["scores"]
        assert metrics["final.qa.text_similarity_min"] == pytest.approx(final_scores["text_similarity_min"])
        assert metrics["final.cost_usd"] == pytest.approx(stages[1].cost_usd)
        arts = sorted(a.path for d in ("images", "renditions") for a in client.list_artifacts(m.info.run_id, d))
        expected = {0: ["images/final.png", "renditions/banner.png", "renditions/social.jpg"],
                    1: ["images/final.png"], 2: ["images/final.png", "renditions/social.webp"]}[i]
        assert arts == expected
        local = client.download_artifacts(m.info.run_id, "images/final.png", str(tmp_path / f"dl{i}"))
        assert Path(local).stat().st_size > 1000
    # a re-export finds each run by its tag: the same MLflow runs, no new metric points, no new files
    again = api.export_mlflow(made.runs, tracking_uri=uri, workspace=made.ws).to_dict()
    assert [r["mlflow_run_id"] for r in again["runs"]] == [r["mlflow_run_id"] for r in first["runs"]]
    assert [(r["created"], r["params_logged"], r["metrics_logged"]) for r in again["runs"]] == [(False, 0, 0)] * 3
    _, _, runs_after = mlflow_runs(uri)
    assert len(runs_after) == 3
    assert len(client.get_metric_history(by_tag[made.runs[0]].info.run_id, "cost_usd")) == 1


def test_sqlite_default_store_through_the_cli(made: Made, tmp_path: Path) -> None:
    """The default tracking store (SQLite, what MLflow 3 recommends), a batch, a named experiment, and --json."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = invoke("export", made.batch, "--mlflow", "--tracking-uri", uri, "--experiment", "launch",
                 "--workspace", str(made.ws), "--json")
    assert res.code == 0, res.stderr
    out = res.json()["mlflow"]
    assert list(out["experiments"]) == ["launch"] and [r["run_id"] for r in out["runs"]] == made.runs[:2]
    client, exps, runs = mlflow_runs(uri)
    assert [e.name for e in exps] == ["launch"]
    assert sorted(r.data.tags[RUN_TAG] for r in runs) == sorted(made.runs[:2])
    assert {r.data.tags["image_gen.batch_id"] for r in runs} == {made.batch}
    # artifacts beside the database, never in the working folder
    assert Path(exps[0].artifact_location.removeprefix("file://")).is_relative_to(tmp_path)
    res = invoke("export", *made.runs, "--mlflow", "--tracking-uri", uri, "--experiment", "launch",
                 "--workspace", str(made.ws), "--json")
    assert res.code == 0, res.stderr
    assert [r["created"] for r in res.json()["mlflow"]["runs"]] == [False, False, True]
    assert len(mlflow_runs(uri)[2]) == 3


def test_bad_input_before_mlflow(made: Made, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    store = tmp_path / "refused"
    res = invoke("export", made.runs[0], "--mlflow", "--tracking-uri", store.as_uri(), "--workspace", str(made.ws),
                 "--json")
    assert res.code == 2 and "MLFLOW_ALLOW_FILE_STORE" in json.loads(res.stderr)["error"]["message"]
    bundle = tmp_path / "bundle.zip"  # with --out too: MLflow's bad input is found before the bundle is written
    res = invoke("export", made.runs[0], "--out", str(bundle), "--mlflow", "--tracking-uri", store.as_uri(),
                 "--workspace", str(made.ws))
    assert res.code == 2 and not bundle.exists() and not store.exists()
    res = invoke("export", "nosuchid", "--mlflow", "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}",
                 "--workspace", str(made.ws))
    assert res.code == 2 and "nosuchid" in res.stderr
    assert not (tmp_path / "x.db").exists()
