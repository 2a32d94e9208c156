"""The plots draw the very figures the tables print (read back from the matplotlib artists), quickly, from records."""

from __future__ import annotations

from pathlib import Path

import pytest

from image_gen.reporting.metrics import pipeline_metrics
from image_gen.reporting.report import (
    gate_rows,
    money,
    pct,
    plot_cost_vs_success,
    plot_latency,
    secs,
    stage_rows,
    summary_rows,
)
from tests.reporting.test_metrics import gated_runs, run, stage


def _row(head: list[str], rows: list[list[str]], first: str) -> dict[str, str]:
    (row,) = [r for r in rows if r[0].split(" (")[0] == first]
    return dict(zip(head, row, strict=True))


@pytest.mark.parametrize("approved", [0, 1, 4])
def test_plotted_values_equal_the_tables(tmp_path: Path, approved: int) -> None:
    baseline = pipeline_metrics(
        [run(i, [stage("main", 18.0 + i * 1.37, 0.134, qa=i % 3 == 0)], qa=i % 3 == 0) for i in range(5)],
        "baseline",
    )
    staged = pipeline_metrics(gated_runs(approved=approved), "staged")
    metrics = [baseline, staged]
    cost = plot_cost_vs_success(metrics, tmp_path / "c.png", True)
    lat = plot_latency(metrics, tmp_path / "l.png", True)
    assert (tmp_path / "c.png").stat().st_size > 10_000 and (tmp_path / "l.png").stat().st_size > 10_000
    head, rows = summary_rows(metrics)
    g_head, g_rows = gate_rows(metrics)
    for m in metrics:
        row = _row(head, rows, m.pipeline)
        e2e = row["end to end mean (p50 / p95)"].split(" (")[0]
        assert money(cost[f"measured|{m.pipeline}:x"]) == row["cost per image"]
        assert pct(cost[f"measured|{m.pipeline}:y"] / 100) == row["render success"].split(" ")[0]
        assert secs(lat[f"v:end to end|{m.pipeline}"]) == e2e
        assert secs(lat[f"v:iterate|{m.pipeline}"]) == row["iterate (first stage) mean"]
        shares = {k.split("|")[2]: v for k, v in lat.items() if k.startswith(f"h:share|{m.pipeline}|")}
        assert secs(sum(shares.values())) == e2e
        s_head, s_rows = stage_rows(m)
        assert {n: secs(v) for n, v in shares.items()} == {
            n: _row(s_head, s_rows, n)["share of mean end to end"] for n in shares
        }
    g = _row(g_head, g_rows, "staged")
    assert money(cost["projected|staged:x"]) == g["PROJECTED cost per image if every waiting run is approved"]
    if approved:
        assert secs(lat["h:gated|staged"]) == g["measured latency mean"]
    else:  # nothing measured behind the gate: no bar, and the table says so
        assert "h:gated|staged" not in lat and g["measured latency mean"] == "n/a"
    assert "projected|baseline:x" not in cost and "h:gated|baseline" not in lat
    # the staged headline point does not move with approvals; the projected one stays put too (catalog = measured)
    assert cost["measured|staged:x"] == pytest.approx(0.07)
    assert cost["projected|staged:x"] == pytest.approx(0.07 + 0.134)
