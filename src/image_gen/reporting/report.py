"""The comparison report: run (or reuse) pipelines on the same briefs and write Markdown, HTML and pictures.

Written to the output folder:

- ``report.md`` and ``report.html``: whether the pipelines deliver the same size; the before/after table (measured,
  every run, up to any approval gate: render success, iterate and end-to-end latency, cost per image, and the other
  metrics of ``metrics.py``); the gated part (measured where it ran, PROJECTED at catalog price where a run waits);
  a per-stage breakdown; the plots and the contact sheets;
- ``cost_vs_success.png``: measured cost per image against render success, one point per pipeline, and a hollow
  PROJECTED point where approval-gated runs wait;
- ``latency.png``: iterate and end-to-end latency per pipeline, and each stage's share of the mean end to end;
- ``contact_sheet_NN.png``: per brief, every stage's output of every pipeline, with its QA verdict;
- ``metrics.json``: the figures, for machines, with the values each plot drew (read back from the plots).

The plots draw the same ``PipelineMetrics`` the tables print, and return the values they drew (``plots.py``); the
contact sheets are drawn by ``sheets.py``; the figures are formatted by ``formatting.py``. This module assembles the
report: running or reusing the pipelines, the tables, the fairness and summary lines, and the Markdown and HTML.

Results from the offline simulator are labelled SIMULATED on every page and in every picture.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image_gen.reporting.formatting import money, pct, secs
from image_gen.reporting.metrics import (
    LatencySummary,
    PipelineMetrics,
    RunRecord,
    _finite,
    load_runs,
    pipeline_metrics,
)
from image_gen.reporting.plots import drawn_values, plot_cost_vs_success, plot_latency
from image_gen.reporting.sheets import THUMB, contact_sheet

__all__ = [  # the plots, sheets and formatting are re-exported: callers import them from here
    "DEFINITIONS",
    "FINISHED",
    "SIMULATED_NOTE",
    "SLA_NOTE",
    "THUMB",
    "Comparison",
    "PipelineRuns",
    "contact_sheet",
    "drawn_values",
    "fairness_line",
    "gate_rows",
    "markdown",
    "money",
    "pct",
    "plot_cost_vs_success",
    "plot_latency",
    "run_comparison",
    "secs",
    "sla_rows",
    "spent_line",
    "stage_rows",
    "summary_rows",
    "to_html",
    "write_report",
]

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.pipeline.runner import Brief
    from image_gen.workspace import Workspace

SIMULATED_NOTE = (
    "SIMULATED RESULTS: produced by image-gen's offline simulator (deterministic stand-ins with the real models' "
    "price and latency profiles and configured defect rates), not by the vendors' models."
)
FINISHED = ("completed", "awaiting_approval", "failed", "rejected", "budget_stopped")


@dataclass
class PipelineRuns:
    label: str
    source: str
    runs: list[RunRecord]
    reused: int = 0
    """How many of the runs were read from the registry instead of run now."""

    @property
    def metrics(self) -> PipelineMetrics:
        return pipeline_metrics(self.runs, self.label)


@dataclass
class Comparison:
    briefs: list[str]
    pipelines: list[PipelineRuns]

    @property
    def metrics(self) -> list[PipelineMetrics]:
        """Each pipeline's figures, computed from its runs' records (the tables and the plots use these)."""
        return [p.metrics for p in self.pipelines]

    @property
    def simulated(self) -> bool:
        return any(r.simulated for p in self.pipelines for r in p.runs)


def run_comparison(
    configs: Sequence[str | Path],
    briefs: Sequence[Brief],
    *,
    workspace: Workspace,
    simulate: bool | None = None,
    reuse: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Run every config on every brief in one workspace (or, with ``reuse``, read each pipeline's latest
    finished run of a brief from the registry, running only what is missing)."""
    from image_gen.api import make_runner
    from image_gen.config import load_config

    registry = workspace.registry()
    out: list[PipelineRuns] = []
    labels: set[str] = set()
    for path in configs:
        cfg = load_config(path)
        label = cfg.name or Path(path).stem
        while label in labels:
            label += "'"
        labels.add(label)
        runner = make_runner(cfg, workspace=workspace, simulate=simulate, config_source=str(path))
        previous = _finished_runs(registry, str(path)) if reuse else {}
        plans = None
        ids: list[str] = []
        reused = 0
        for brief in briefs:
            if brief.prompt in previous:
                ids.append(previous[brief.prompt])
                reused += 1
                continue
            if plans is None:
                plans = runner.plan()
            if progress:
                progress(f"{label}: {brief.prompt[:60]}")
            ids.append(runner.start(brief, plans).run_id)
        out.append(PipelineRuns(label, str(path), load_runs(registry, ids, label), reused))
    return Comparison([b.prompt for b in briefs], out)


def _finished_runs(registry: Any, source: str) -> dict[str, str]:
    """prompt -> id of the latest finished run of this config source."""
    found: dict[str, str] = {}
    want = Path(source).resolve()
    for run in registry.list_runs(limit=100_000):  # newest first
        if run.status not in FINISHED or not run.config_source:
            continue
        if Path(run.config_source).resolve() == want and run.prompt not in found:
            found[run.prompt] = run.id
    return found


# --------------------------------------------------------------------------------------------------- writing


def write_report(
    comparison: Comparison, out_dir: str | Path, open_artifact: Callable[[str], Image.Image]
) -> list[Path]:
    """Write the report files into ``out_dir``; ``open_artifact(sha)`` gives a stored image. Returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = comparison.metrics
    sim = comparison.simulated
    drawn = {
        "cost_vs_success": plot_cost_vs_success(metrics, out / "cost_vs_success.png", sim),
        "latency": plot_latency(metrics, out / "latency.png", sim),
    }
    written = [out / "cost_vs_success.png", out / "latency.png"]
    for i, prompt in enumerate(comparison.briefs):
        path = out / f"contact_sheet_{i + 1:02d}.png"
        contact_sheet(comparison, i, prompt, open_artifact, sim).save(path, optimize=False)
        written.append(path)
    data = {
        "simulated": sim,
        "briefs": comparison.briefs,
        "definitions": DEFINITIONS,
        "fairness": fairness_line(metrics),
        "pipelines": [
            dict(m.to_dict(), source=p.source, reused_runs=p.reused, run_ids=[r.run_id for r in p.runs])
            for m, p in zip(metrics, comparison.pipelines, strict=True)
        ],
        "plotted": _finite(drawn),
    }
    (out / "metrics.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    (out / "report.md").write_text(markdown(comparison, metrics, written), encoding="utf-8")
    (out / "report.html").write_text(to_html(comparison, metrics, written), encoding="utf-8")
    return [out / "report.md", out / "report.html", out / "metrics.json", *written]


def _stats(lat: LatencySummary) -> str:
    return f"{secs(lat.mean)} ({secs(lat.p50)} / {secs(lat.p95)})"


def _sizes(sizes: dict[str, int]) -> str:
    if not sizes:
        return "none"
    if len(sizes) == 1:
        return next(iter(sizes))
    return ", ".join(f"{k} ({v})" for k, v in sorted(sizes.items()))


def summary_rows(metrics: Sequence[PipelineMetrics]) -> tuple[list[str], list[list[str]]]:
    """The headline: measured, every run, up to any approval gate (so approvals never move it)."""
    head = [
        "pipeline",
        "runs",
        "render success",
        "delivered size",
        "end to end mean (p50 / p95)",
        "iterate (first stage) mean",
        "cost per image",
        "cost per successful asset",
        "calls per asset",
        "re-rolls",
        "escalations",
        "cache hit rate",
    ]
    rows = [
        [
            m.pipeline + (f" (to the {m.gate.stages[0]} gate)" if m.gate else ""),
            str(m.runs),
            f"{pct(m.success_rate)} ({m.successes}/{m.runs})",
            _sizes(m.sizes),
            _stats(m.latency),
            secs(m.iterate.mean),
            money(m.cost_per_image),
            money(m.cost_per_success),
            f"{m.calls_per_asset:.2f}",
            str(m.rerolls),
            str(m.escalations),
            pct(m.cache_hit_rate),
        ]
        for m in metrics
    ]
    return head, rows


def gate_rows(metrics: Sequence[PipelineMetrics]) -> tuple[list[str], list[list[str]]]:
    """Behind the approval gate: measured on the runs that went through it; projected for those still waiting."""
    head = [
        "pipeline",
        "gated stages",
        "ran (measured)",
        "measured cost: total, per run",
        "measured cost per asset delivered through it (every stage)",
        "measured latency mean",
        "QA pass",
        "size",
        "waiting",
        "PROJECTED cost of the waiting runs",
        "PROJECTED cost per image if every waiting run is approved",
    ]
    rows = []
    for m in metrics:
        g = m.gate
        if g is None:
            continue
        rows.append(
            [
                m.pipeline,
                " -> ".join(g.stages),
                f"{g.runs} of {g.of_runs}"
                + (f" ({g.decided_not_run} stopped or rejected)" if g.decided_not_run else ""),
                f"{money(g.cost_total)}, {money(g.cost_per_run)}",
                money(g.cost_per_asset),
                secs(g.latency.mean),
                f"{g.successes}/{g.runs}" if g.runs else "n/a",
                _sizes(g.sizes),
                str(g.waiting),
                f"{g.waiting} x {money(g.projected_per_run)} = {money(g.projected_total)}" if g.waiting else "none",
                money(g.cost_per_image_all_approved),
            ]
        )
    return head, rows


def stage_rows(m: PipelineMetrics) -> tuple[list[str], list[list[str]]]:
    head = [
        "stage",
        "model",
        "ran in",
        "latency mean (p50 / p95)",
        "share of mean end to end",
        "cost per run",
        "cost total",
        "calls (sent by these runs)",
        "re-rolls",
        "escalations",
        "cache hits",
        "QA pass",
        "PROJECTED (waiting)",
    ]
    rows = []
    for s in m.stages:
        ran = f"{s.runs} of {s.of_runs} runs" + (f" ({s.waiting} waiting)" if s.waiting else "")
        rows.append(
            [
                s.name + (" (gated)" if s.gated else ""),
                ", ".join(s.models),
                ran,
                _stats(s.latency),
                "not in it (gated)" if s.gated else secs(s.latency_share),
                money(s.cost_per_run),
                money(s.cost_total),
                f"{s.calls} ({s.calls_made})",
                str(s.rerolls),
                str(s.escalations),
                f"{s.cache_hits} of {s.runs}" + (f" ({pct(s.cache_hit_rate)})" if s.runs else ""),
                pct(s.qa_pass_rate),
                f"{s.waiting} x {money(s.projected_price)} = {money(s.projected_total)}" if s.waiting else "-",
            ]
        )
    return head, rows


def sla_rows(metrics: Sequence[PipelineMetrics]) -> tuple[list[str], list[list[str]]]:
    """Runs routed with a latency SLA: the SLA hit rate per pipeline (runs whose own latency was within it)."""
    head = [
        "pipeline",
        "SLA",
        "runs with an SLA",
        "routed staged / single-call",
        "SLA hit rate",
        "their latency mean (p50 / p95)",
        "estimated P(staged within SLA), mean",
    ]
    rows = []
    for m in metrics:
        s = m.sla
        if s is None:
            continue
        rows.append(
            [
                m.pipeline,
                ", ".join(secs(v) for v in s.slas),
                str(s.runs),
                f"{s.staged} / {s.single_call}",
                f"{pct(s.hit_rate)} ({s.met}/{s.ended})" + (f", {s.runs - s.ended} not ended" if s.runs > s.ended
                                                           else ""),
                _stats(s.latency),
                pct(s.mean_p_within),
            ]
        )
    return head, rows


SLA_NOTE = (
    "SLA hit rate = runs that completed within their SLA / runs with an SLA that ended (completed, failed or "
    "budget-stopped). A run's latency here is its own: the machine latency of every stage it ran (gated stages "
    "included, a cache hit counting 0); a person's wait at an approval gate is never counted. Routing sends a run "
    "single-call when the staged path's estimated P(within SLA) is below the pipeline's sla_target."
)


def fairness_line(metrics: Sequence[PipelineMetrics]) -> str:
    """Do the pipelines deliver the same size? Said either way, with the sizes."""
    parts = []
    for m in metrics:
        txt = f"{m.pipeline} {_sizes(m.sizes)}"
        if m.gate and m.gate.sizes:
            txt += f" (after the {m.gate.stages[0]} gate: {_sizes(m.gate.sizes)})"
        parts.append(txt)
    every = {k for m in metrics for k in m.sizes}
    if len(every) == 1 and all(len(m.sizes) == 1 for m in metrics):
        return f"Like for like: every pipeline delivers {next(iter(every))} ({'; '.join(parts)})."
    return (
        "NOT like for like: the pipelines deliver different sizes, so cost and latency compare different "
        f"deliverables: {'; '.join(parts)}."
    )


def spent_line(metrics: Sequence[PipelineMetrics]) -> str:
    return "Spent by these runs' own provider calls (every stage; a cache hit spends nothing): " + ", ".join(
        f"{m.pipeline} {money(m.spent)}" for m in metrics
    ) + "."


DEFINITIONS = (
    "Measured figures are over every run, up to any approval gate, so they do not depend on how many runs "
    "someone approved. Render success: the stage before the gate finished with an image that passed automatic QA "
    "(label text by OCR, softness, size). End to end = the sum of a run's stages before the gate; iterate = its "
    "first stage (the draft a designer waits on); a stage's share of the mean end to end = its latencies summed / "
    "runs. A stage served from the cache counts what producing its image cost (calls and latency too); the cache "
    "hit rate is shown beside. Cost per successful asset = cost / successes. A stage 'ran in' the runs that "
    "reached it: a stage waiting at its gate did not run. PROJECTED = the waiting stages' catalog price x the runs "
    "waiting, never added into a measured figure."
)


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(comparison: Comparison, metrics: Sequence[PipelineMetrics], pictures: Sequence[Path]) -> str:
    parts = ["# image-gen pipeline comparison", ""]
    if comparison.simulated:
        parts += [f"> **{SIMULATED_NOTE}**", ""]
    parts += [
        f"{len(comparison.briefs)} briefs, {len(metrics)} pipelines: "
        + ", ".join(f"`{p.label}` ({p.source})" for p in comparison.pipelines),
        "",
        f"**{fairness_line(metrics)}**",
        "",
    ]
    parts += ["## Before / after (measured, every run, up to any approval gate)", "", _md_table(*summary_rows(metrics))]
    parts += ["", spent_line(metrics), ""]
    g_head, g_rows = gate_rows(metrics)
    if g_rows:
        parts += ["## Behind the approval gate (measured where it ran; PROJECTED where a run waits)", ""]
        parts += [_md_table(g_head, g_rows), ""]
    s_head, s_rows = sla_rows(metrics)
    if s_rows:
        parts += ["## Latency SLA", "", _md_table(s_head, s_rows), "", SLA_NOTE, ""]
    parts += [DEFINITIONS, ""]
    parts += ["## Per stage", ""]
    for m in metrics:
        parts += [f"### {m.pipeline}", "", _md_table(*stage_rows(m)), ""]
    parts += [
        "## Plots",
        "",
        "![Cost per image against render success](cost_vs_success.png)",
        "",
        "![Latency: iterate and end to end per run, and each stage's share](latency.png)",
        "",
    ]
    parts += ["## Contact sheets", ""]
    for i, prompt in enumerate(comparison.briefs):
        parts += [
            f"### Brief {i + 1}: {prompt}",
            "",
            _verdict_lines(comparison, i),
            "",
            f"![Contact sheet, brief {i + 1}](contact_sheet_{i + 1:02d}.png)",
            "",
        ]
    if comparison.simulated:
        parts += [f"> **{SIMULATED_NOTE}**", ""]
    return "\n".join(parts)


def _verdict_lines(comparison: Comparison, i: int) -> str:
    lines = []
    for p in comparison.pipelines:
        r = p.runs[i]
        status = "success" if r.success else f"not a success ({r.status})"
        reasons = [f"{s.name}: {why}" for s in r.stages if s.qa_passed is False for why in s.qa_reasons[:2]]
        extra = f"; QA failures on the way: {'; '.join(reasons[:3])}" if reasons else ""
        gate = ""
        if r.past_gate:
            names = "/".join(s.name for s in r.past_gate)
            ran = [s for s in r.past_gate if s.ran]
            if ran:
                gate = (f"; {names} ran: {money(sum(s.cost_usd for s in ran))}, "
                        f"{secs(sum(s.latency_s for s in ran))}")
            elif r.waiting:
                gate = f"; {names} waiting (PROJECTED {money(sum(s.projected_usd for s in r.past_gate))})"
            else:
                gate = f"; {names} did not run ({r.past_gate[0].status})"
        lines.append(
            f"- `{p.label}` run `{r.run_id}`: {status}, {money(r.cost_to_gate_usd)}, {secs(r.latency_to_gate_s)}"
            f"{gate}{extra}"
        )
    return "\n".join(lines)


def to_html(comparison: Comparison, metrics: Sequence[PipelineMetrics], pictures: Sequence[Path]) -> str:
    e = html.escape

    def table(head: list[str], rows: list[list[str]]) -> str:
        th = "".join(f"<th>{e(h)}</th>" for h in head)
        trs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"

    banner = f'<div class="sim">{e(SIMULATED_NOTE)}</div>' if comparison.simulated else ""
    fair = fairness_line(metrics)
    body = [
        banner,
        "<h1>image-gen pipeline comparison</h1>",
        f"<p>{len(comparison.briefs)} briefs, {len(metrics)} pipelines: "
        + ", ".join(f"<code>{e(p.label)}</code> ({e(p.source)})" for p in comparison.pipelines)
        + "</p>",
        f"<p class='{'fair' if fair.startswith('Like') else 'unfair'}'>{e(fair)}</p>",
        "<h2>Before / after (measured, every run, up to any approval gate)</h2>",
        table(*summary_rows(metrics)),
        f"<p class='note'>{e(spent_line(metrics))}</p>",
    ]
    g_head, g_rows = gate_rows(metrics)
    if g_rows:
        body += [
            "<h2>Behind the approval gate (measured where it ran; PROJECTED where a run waits)</h2>",
            table(g_head, g_rows),
        ]
    s_head, s_rows = sla_rows(metrics)
    if s_rows:
        body += ["<h2>Latency SLA</h2>", table(s_head, s_rows), f"<p class='note'>{e(SLA_NOTE)}</p>"]
    body += [f"<p class='note'>{e(DEFINITIONS)}</p>", "<h2>Per stage</h2>"]
    for m in metrics:
        body += [f"<h3>{e(m.pipeline)}</h3>", table(*stage_rows(m))]
    body += [
        "<h2>Plots</h2>",
        '<img src="cost_vs_success.png" alt="Cost per image against render success">',
        '<img src="latency.png" alt="Latency: iterate and end to end per run, and each stage\'s share">',
        "<h2>Contact sheets</h2>",
    ]
    for i, prompt in enumerate(comparison.briefs):
        items = "".join(f"<li>{e(line[2:])}</li>" for line in _verdict_lines(comparison, i).splitlines())
        body += [
            f"<h3>Brief {i + 1}: {e(prompt)}</h3>",
            f"<ul>{items}</ul>",
            f'<img src="contact_sheet_{i + 1:02d}.png" alt="Contact sheet, brief {i + 1}">',
        ]
    body.append(banner)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left}th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}"
        ".sim{background:#fff3cd;border:2px solid #d39e00;padding:.6em 1em;font-weight:bold;margin:1em 0}"
        ".note{color:#555;font-size:.9em}.unfair{background:#fde2e1;border-left:4px solid #b00;padding:.4em .8em}"
        ".fair{background:#e3f4e1;border-left:4px solid #070;padding:.4em .8em}"
    )
    title = "image-gen pipeline comparison" + (" (SIMULATED)" if comparison.simulated else "")
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
