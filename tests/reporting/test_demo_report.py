"""The demo's report (examples/baseline.toml against examples/staged.toml on examples/prompts.txt, simulated, a
subset of the gated runs approved) tells one story: per-stage run counts are what ran, stage costs add up to run
costs, the plots draw the tables' figures, and approving more runs moves only the gated figures.

The first ``DEMO_BRIEFS`` briefs of examples/prompts.txt keep it quick; ``IMAGE_GEN_DEMO_BRIEFS=10`` runs them all.
"""

from __future__ import annotations

import math
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from image_gen import api
from image_gen.reporting.metrics import load_runs
from image_gen.reporting.report import (
    Comparison,
    PipelineRuns,
    fairness_line,
    gate_rows,
    money,
    pct,
    run_comparison,
    secs,
    stage_rows,
    summary_rows,
    write_report,
)
from image_gen.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "examples" / "baseline.toml"
STAGED = ROOT / "examples" / "staged.toml"
DEMO_BRIEFS = int(os.environ.get("IMAGE_GEN_DEMO_BRIEFS", "4"))
RAN = ("done", "failed", "running")  # stage rows that left pending / the gate: read here without metrics.py's rule


def _briefs() -> list[Any]:
    return api.read_prompt_file(ROOT / "examples" / "prompts.txt")[:DEMO_BRIEFS]


def _row(head: list[str], rows: list[list[str]], first: str) -> dict[str, str]:
    (row,) = [r for r in rows if r[0].split(" (")[0] == first]
    return dict(zip(head, row, strict=True))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("IMAGE_GEN_REGISTRY_URL", "IMAGE_GEN_SIMULATE"):
            mp.delenv(var, raising=False)
        ws = Workspace.resolve(root / "ws")
        briefs = _briefs()
        # `image-gen run` of the staged pipeline: every run stops at the hires approval gate
        outcomes = api.run_pipeline(str(STAGED), briefs, simulate=True, workspace=ws)
        assert isinstance(outcomes, list)
        waiting = [o.run_id for o in outcomes if o.status == "awaiting_approval"]
        assert len(waiting) >= 3, [o.status for o in outcomes]
        api.approve(waiting[0], "approved in the test", workspace=ws)
        # `image-gen report --reuse`: reads the staged runs, runs the baseline
        comparison = run_comparison([str(BASELINE), str(STAGED)], briefs, workspace=ws, simulate=True, reuse=True)
        assert comparison.pipelines[1].reused == len(briefs)
        first = comparison.metrics
        out = root / "report"
        written = write_report(comparison, out, ws.artifacts().open)
        ids = [[r.run_id for r in p.runs] for p in comparison.pipelines]
        reg = ws.registry()
        stage_rows_db = {rid: reg.stage_runs(rid) for rid in ids[1]}  # as the report read them
        # two more approvals: the same runs, read again
        for rid in waiting[1:3]:
            api.approve(rid, "approved later", workspace=ws)
        again = Comparison(
            comparison.briefs,
            [PipelineRuns(p.label, p.source, load_runs(reg, i, p.label)) for p, i in zip(comparison.pipelines, ids,
                                                                                        strict=True)],
        )
        ws.close()
    import json

    return {
        "ws": root / "ws",
        "out": out,
        "written": written,
        "comparison": comparison,
        "first": first,
        "again": again.metrics,
        "again_comparison": again,
        "stage_rows_db": stage_rows_db,
        "approved_later": waiting[1:3],
        "data": json.loads((out / "metrics.json").read_text(encoding="utf-8")),
    }


def test_per_stage_run_counts_are_what_ran(demo):
    staged = demo["first"][1]
    rows = demo["stage_rows_db"]
    for st in staged.stages:
        ran = sum(1 for srs in rows.values() for s in srs if s.name == st.name and s.status in RAN)
        assert st.runs == ran, st.name
        assert st.of_runs == len(rows)
    hires = next(s for s in staged.stages if s.name == "hires")
    # the first run approved before the report ran; the two approved later were still waiting then
    assert hires.gated and hires.runs == 1 and hires.waiting == len(rows) - 1
    assert staged.gate is not None and staged.gate.runs == 1 and staged.gate.waiting == len(rows) - 1
    head, table = stage_rows(staged)
    row = _row(head, table, "hires")
    assert row["ran in"] == f"1 of {len(rows)} runs ({len(rows) - 1} waiting)"
    assert row["cache hits"] == "0 of 1 (0%)"  # approved and rendered, not served from the cache
    assert row["share of mean end to end"] == "not in it (gated)"


def test_stage_costs_add_up_to_run_costs(demo):
    for p, m in zip(demo["comparison"].pipelines, demo["first"], strict=True):
        for r in p.runs:
            assert r.cost_usd == pytest.approx(sum(s.cost_usd for s in r.stages if s.status in RAN))
            assert r.latency_s == pytest.approx(sum(s.latency_s for s in r.stages if s.status in RAN), abs=1e-3)
        to_gate = [s for s in m.stages if not s.gated]
        assert sum(s.cost_total for s in to_gate) == pytest.approx(m.cost_total)
        assert m.cost_per_image == pytest.approx(m.cost_total / m.runs)
        gated = sum(s.cost_total for s in m.stages if s.gated)
        assert gated == pytest.approx(m.gate.cost_total if m.gate else 0.0)
        assert m.cost_total + gated == pytest.approx(sum(r.cost_usd for r in p.runs))
        # the shares of the mean end to end add up to it
        assert sum(s.latency_share for s in to_gate) == pytest.approx(m.latency.mean)
    baseline, staged = demo["first"]
    assert baseline.gate is None and staged.gate is not None
    # the projection: catalog price x the runs waiting, beside the measured figure and never in it
    hires = next(s for s in staged.stages if s.name == "hires")
    assert hires.projected_price > 0
    assert staged.gate.projected_total == pytest.approx(hires.projected_price * staged.gate.waiting)
    through = [r for r in demo["comparison"].pipelines[1].runs if r.status == "completed"]
    assert staged.gate.cost_per_asset == pytest.approx(sum(r.cost_usd for r in through) / len(through))
    assert staged.gate.cost_per_image_all_approved == pytest.approx(
        (staged.cost_total + staged.gate.cost_total + staged.gate.projected_total) / staged.runs
    )


def test_plots_draw_the_tables_figures(demo):
    metrics = demo["first"]
    drawn = demo["data"]["plotted"]
    cost, lat = drawn["cost_vs_success"], drawn["latency"]
    head, rows = summary_rows(metrics)
    g_head, g_rows = gate_rows(metrics)
    for m in metrics:
        row = _row(head, rows, m.pipeline)
        # cost against success: to the cent's hundredth and the percent, as printed
        assert money(cost[f"measured|{m.pipeline}:x"]) == row["cost per image"]
        assert pct(cost[f"measured|{m.pipeline}:y"] / 100) == row["render success"].split(" ")[0]
        # iterate and end to end bars: to the tenth of a second, as printed
        assert secs(lat[f"v:end to end|{m.pipeline}"]) == row["end to end mean (p50 / p95)"].split(" (")[0]
        assert secs(lat[f"v:iterate|{m.pipeline}"]) == row["iterate (first stage) mean"]
        # the stacked stage shares end where the table's mean end to end is, and each one is its row's share
        shares = {k.split("|")[2]: v for k, v in lat.items() if k.startswith(f"h:share|{m.pipeline}|")}
        assert secs(sum(shares.values())) == row["end to end mean (p50 / p95)"].split(" (")[0]
        s_head, s_rows = stage_rows(m)
        for name, v in shares.items():
            assert secs(v) == _row(s_head, s_rows, name)["share of mean end to end"]
        assert set(shares) == {s.name for s in m.stages if not s.gated}
        if m.gate is not None:
            g = _row(g_head, g_rows, m.pipeline)
            assert secs(lat[f"h:gated|{m.pipeline}"]) == g["measured latency mean"]
            assert money(cost[f"projected|{m.pipeline}:x"]) == g[
                "PROJECTED cost per image if every waiting run is approved"
            ]
        else:
            assert f"h:gated|{m.pipeline}" not in lat and f"projected|{m.pipeline}:x" not in cost
    md = (demo["out"] / "report.md").read_text(encoding="utf-8")
    for row in rows + g_rows:
        assert "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" in md


def test_fairness_line_names_the_sizes(demo):
    line = fairness_line(demo["first"])
    baseline, staged = demo["first"]
    assert baseline.sizes == {"2048x2048": DEMO_BRIEFS}  # the example configs deliver the same size
    assert set(staged.sizes) == {"2048x2048"}
    assert line.startswith("Like for like: every pipeline delivers 2048x2048")
    assert line in (demo["out"] / "report.md").read_text(encoding="utf-8")
    html = (demo["out"] / "report.html").read_text(encoding="utf-8")
    assert "Like for like" in html


def test_fairness_line_says_when_sizes_differ():
    from types import SimpleNamespace

    a = SimpleNamespace(pipeline="baseline", sizes={"1024x1024": 3}, gate=None)
    b = SimpleNamespace(pipeline="staged", sizes={"2048x2048": 3}, gate=None)
    line = fairness_line([a, b])  # type: ignore[list-item]
    assert line.startswith("NOT like for like") and "baseline 1024x1024" in line and "staged 2048x2048" in line


def test_approving_more_moves_only_the_gated_figures(demo):
    before, after = demo["first"], demo["again"]
    # the headline (measured, to the gate) and every ungated stage row are unchanged, to the printed digit
    assert summary_rows(before) == summary_rows(after)
    for b, a in zip(before, after, strict=True):
        bh, br = stage_rows(b)
        ah, ar = stage_rows(a)
        ungated = [s.name for s in b.stages if not s.gated]
        assert [r for r in br if r[0] in ungated] == [r for r in ar if r[0] in ungated]
    b, a = before[1], after[1]
    assert b.gate is not None and a.gate is not None
    assert (a.gate.runs, a.gate.waiting) == (b.gate.runs + 2, b.gate.waiting - 2)
    hb = next(s for s in b.stages if s.name == "hires")
    ha = next(s for s in a.stages if s.name == "hires")
    assert (ha.runs, ha.waiting) == (hb.runs + 2, hb.waiting - 2)
    # measured: plus what the two new hires renders cost; projected: minus two catalog prices
    newly = [
        s.cost_usd
        for r in demo["again_comparison"].pipelines[1].runs
        if r.run_id in demo["approved_later"]
        for s in r.stages
        if s.name == "hires"
    ]
    assert len(newly) == 2 and all(c > 0 for c in newly)
    assert a.gate.cost_total == pytest.approx(b.gate.cost_total + sum(newly))
    assert a.gate.projected_total == pytest.approx(b.gate.projected_total - 2 * hb.projected_price)
    assert a.gate.cost_per_image_all_approved * a.runs == pytest.approx(
        b.gate.cost_per_image_all_approved * b.runs + sum(newly) - 2 * hb.projected_price
    )
    # with the simulator charging the catalog price, the all-approved projection does not move at all
    if all(math.isclose(c, hb.projected_price) for c in newly):
        assert money(a.gate.cost_per_image_all_approved) == money(b.gate.cost_per_image_all_approved)


def test_runs_write_no_metrics_rows(demo):
    """Figures are computed when read: a finished (paid) run writes nothing to the metrics table."""
    con = sqlite3.connect(demo["ws"] / ".image-gen" / "registry.db")
    try:
        assert con.execute("select count(*) from runs").fetchone()[0] >= 2 * DEMO_BRIEFS
        assert con.execute("select count(*) from metrics").fetchone()[0] == 0
    finally:
        con.close()
