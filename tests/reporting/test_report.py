"""The report command end to end on the offline simulator, with small renders so it stays quick."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from image_gen.cli import main
from tests.core.helpers import run_captured

BASELINE = """
name = "baseline"
[pipeline]
model = "largest-available"
steps = 60
width = 512
height = 512
"""
STAGED = """
name = "staged"
[pipeline]
model = "staged-selection"
stages = ["draft:ideogram-v1-turbo", "layout:ideogram-v2a"]
width = 512
height = 512
[stage.layout]
strength = 0.6
max_rerolls = 1
"""
PROMPTS = 'Bottle on a table, label "AQUA PURE"\nCoffee bag, label reads "NIGHT OWL"\n'


def runs_in(ws: Path) -> int:
    con = sqlite3.connect(ws / ".image-gen" / "registry.db")
    try:
        return int(con.execute("select count(*) from runs").fetchone()[0])
    finally:
        con.close()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report")
    paths = {
        "ws": root / "ws",
        "out": root / "out",
        "baseline": root / "baseline.toml",
        "staged": root / "staged.toml",
        "prompts": root / "prompts.txt",
    }
    paths["ws"].mkdir()
    paths["baseline"].write_text(BASELINE, encoding="utf-8")
    paths["staged"].write_text(STAGED, encoding="utf-8")
    paths["prompts"].write_text(PROMPTS, encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def report(made: dict[str, Path]) -> dict[str, object]:
    argv = [
        "report",
        "--compare",
        str(made["baseline"]),
        str(made["staged"]),
        "--prompt-file",
        str(made["prompts"]),
        "--simulate",
        "--out",
        str(made["out"]),
        "--workspace",
        str(made["ws"]),
        "--json",
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("IMAGE_GEN_REGISTRY_URL", raising=False)
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return {"code": code}


def test_report_writes_every_page_and_picture(made, report, capsys):
    assert report["code"] == 0
    out = made["out"]
    for name in (
        "report.md",
        "report.html",
        "metrics.json",
        "cost_vs_success.png",
        "latency.png",
        "contact_sheet_01.png",
        "contact_sheet_02.png",
    ):
        assert (out / name).is_file(), name
    data = json.loads((out / "metrics.json").read_text())
    assert data["simulated"] is True
    labels = [p["pipeline"] for p in data["pipelines"]]
    assert labels == ["baseline", "staged"]
    staged = data["pipelines"][1]
    assert [s["name"] for s in staged["stages"]] == ["draft", "layout"]
    assert staged["runs"] == 2 and len(staged["run_ids"]) == 2
    for p in data["pipelines"]:
        assert 0 <= p["success_rate"] <= 1
        assert p["cost_per_image"] == pytest.approx(p["cost_total"] / p["runs"])


def test_simulated_label_on_every_page(made, report):
    md = (made["out"] / "report.md").read_text()
    html = (made["out"] / "report.html").read_text()
    assert md.startswith("# image-gen pipeline comparison\n\n> **SIMULATED RESULTS")
    assert html.count("SIMULATED RESULTS") == 2 and "<title>image-gen pipeline comparison (SIMULATED)" in html
    assert "| pipeline | runs | render success | delivered size | end to end mean (p50 / p95) |" in md
    assert "Like for like: every pipeline delivers 512x512" in md
    for name in ("cost_vs_success.png", "latency.png", "contact_sheet_01.png"):
        assert f'src="{name}"' in html and f"({name})" in md


def test_pictures_are_real_images_of_readable_size(made, report):
    for name in ("cost_vs_success.png", "latency.png"):
        with Image.open(made["out"] / name) as img:
            assert img.format == "PNG" and img.width >= 700 and img.height >= 450
    with Image.open(made["out"] / "contact_sheet_01.png") as sheet:
        # two pipeline rows; the staged row has two stage cells, each a thumbnail of the stage's output
        assert sheet.width >= 150 + 2 * 240 and sheet.height >= 2 * 240
        assert len(set(sheet.convert("L").getdata())) > 50  # real pictures, not blank cells


def test_reuse_reads_finished_runs_without_running_again(made, report, capsys):
    before = runs_in(made["ws"])
    assert before == 4
    code, out, _ = run_captured(
        [
            "report",
            "--compare",
            str(made["baseline"]),
            str(made["staged"]),
            "--prompt-file",
            str(made["prompts"]),
            "--reuse",
            "--out",
            str(made["out"] / "again"),
            "--workspace",
            str(made["ws"]),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    assert runs_in(made["ws"]) == before
    again = json.loads(out)
    first = json.loads((made["out"] / "metrics.json").read_text())
    assert [p["run_ids"] for p in again["pipelines"]] == [p["run_ids"] for p in first["pipelines"]]
    assert all(p["reused_runs"] == 2 for p in again["pipelines"])


def test_missing_config_is_bad_input(made, capsys):
    code, _, err = run_captured(
        [
            "report",
            "--compare",
            str(made["baseline"]),
            str(made["ws"] / "nope.toml"),
            "--prompt",
            "x",
            "--out",
            str(made["out"] / "x"),
            "--workspace",
            str(made["ws"]),
        ],
        capsys,
    )
    assert code == 2 and "nope.toml" in err


def test_run_metrics_are_computed_when_read_and_agree_with_the_report(made, report):
    """Nothing is written at the end of a run; each run's figures, computed from the registry, add up to the
    report's."""
    from image_gen.reporting.metrics import load_runs, run_metrics
    from image_gen.workspace import Workspace

    data = json.loads((made["out"] / "metrics.json").read_text())
    staged = data["pipelines"][1]
    ws = Workspace.resolve(made["ws"])
    try:
        reg = ws.registry()
        values = [run_metrics(r) for r in load_runs(reg, staged["run_ids"])]
        assert all(reg.metrics(rid) == [] for rid in staged["run_ids"])  # no metrics row written by a run
    finally:
        ws.close()
    assert sum(v["cost_usd"] for v in values) == pytest.approx(staged["cost_total"])
    assert sum(v["success"] for v in values) == staged["successes"]
    assert sum(v["calls"] for v in values) == staged["calls"]
    assert sum(v["latency_s"] for v in values) / len(values) == pytest.approx(staged["latency"]["mean"])
    assert {"stage.draft.latency_s", "stage.layout.latency_s"} <= set(values[0])
