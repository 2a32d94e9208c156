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

The plots draw the same ``PipelineMetrics`` the tables print, and return the values they drew.

Results from the offline simulator are labelled SIMULATED on every page and in every picture.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image_gen.reporting.metrics import (
    LatencySummary,
    PipelineMetrics,
    RunRecord,
    _finite,
    load_runs,
    pipeline_metrics,
)

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


# One formatting for every figure, tables and pictures alike: dollars to four places, seconds to the tenth.
def money(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"${v:.4f}"


def pct(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.0%}"


def secs(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.1f} s"


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


# --------------------------------------------------------------------------------------------------- pictures


def _figure(sim: bool, title: str, size: tuple[float, float]) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110, layout="constrained")
    fig.suptitle(
        title + ("  [SIMULATED]" if sim else ""), fontsize=13, fontweight="bold", color="#a05a00" if sim else "black"
    )
    if sim:
        fig.text(
            0.5,
            0.5,
            "SIMULATED",
            fontsize=60,
            color="#d39e00",
            alpha=0.12,
            ha="center",
            va="center",
            rotation=25,
            zorder=0,
        )
    return fig


def drawn_values(fig: Any) -> dict[str, float]:
    """The values a figure drew, read back from its artists: every bar and point tagged with a ``gid``."""
    out: dict[str, float] = {}
    for ax in fig.axes:
        for patch in ax.patches:
            gid = patch.get_gid()
            if gid:
                # horizontal bars have a fixed height, vertical ones a fixed width; the value is the other side
                out[gid] = float(patch.get_width() if gid.startswith("h:") else patch.get_height())
        for coll in ax.collections:
            gid = coll.get_gid()
            if gid:
                (x, y), *_ = coll.get_offsets().tolist()
                out[gid + ":x"], out[gid + ":y"] = float(x), float(y)
    return out


def plot_cost_vs_success(metrics: Sequence[PipelineMetrics], path: Path, sim: bool) -> dict[str, float]:
    """Measured cost per image (to the gate) against render success, one filled point per pipeline; where a gate
    has runs waiting, a hollow PROJECTED point for 'every waiting run approved'. Returns the values drawn."""
    fig = _figure(sim, "Cost per image against render success", (8.5, 5.2))
    ax = fig.add_subplot()
    colors = _colors(len(metrics))
    xs = []
    for m, c in zip(metrics, colors, strict=True):
        x, y = m.cost_per_image, m.success_rate * 100
        pts = ax.scatter([x], [y], s=140, color=c, edgecolor="black", zorder=3, label=f"{m.pipeline} (measured)")
        pts.set_gid(f"measured|{m.pipeline}")
        xs.append(x)
        ax.annotate(
            f"{m.pipeline}: {money(x)}/image, {y:.0f}% success\n{money(m.cost_per_success)}/successful asset",
            (x, y),
            xytext=(10, -8),
            textcoords="offset points",
            fontsize=9,
            va="top",
        )
        g = m.gate
        if g is not None and math.isfinite(g.cost_per_image_all_approved) and (g.waiting or g.runs):
            px = g.cost_per_image_all_approved
            proj = ax.scatter(
                [px], [y], s=140, facecolor="none", edgecolor=c, linewidth=2, linestyle="--", zorder=3,
                label=f"{m.pipeline} + {g.stages[0]} for every run (PROJECTED)",
            )
            proj.set_gid(f"projected|{m.pipeline}")
            xs.append(px)
            ax.annotate("", (px, y), xytext=(x, y), arrowprops={"arrowstyle": "->", "color": c, "linestyle": "--"})
            ax.annotate(
                f"PROJECTED, every waiting run approved: {money(px)}/image\n"
                f"({g.stages[0]} measured on {g.runs} of {g.of_runs}, {g.waiting} at catalog price)",
                (px, y),
                xytext=(-10, 14),
                textcoords="offset points",
                fontsize=8,
                ha="right",
                color="#444",
            )
    finite = [v for v in xs if math.isfinite(v)]
    ax.set_xlim(0, max(finite + [0.01]) * 1.5)
    ax.set_ylim(-5, 115)
    ax.set_xlabel("cost per image, measured to the gate (USD)")
    ax.set_ylabel("render success (% of briefs passing QA)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)
    return drawn_values(fig)


def plot_latency(metrics: Sequence[PipelineMetrics], path: Path, sim: bool) -> dict[str, float]:
    """Left: mean iterate and end-to-end latency per pipeline, each run's value as a dot. Right: each stage's
    share of the mean end to end, stacked (so the bar ends at the table's mean), and a gated stage apart, as
    measured on the runs that went through it. Returns the values drawn (read back from the artists)."""
    fig = _figure(sim, "Latency (seconds)", (12.5, 5.0))
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.5])
    labels = [m.pipeline for m in metrics]
    width = 0.38
    for k, (kind, colour) in enumerate((("iterate", "#9ecae1"), ("end to end", "#3182bd"))):
        for i, m in enumerate(metrics):
            lat = m.iterate if kind == "iterate" else m.latency
            x = i + (k - 0.5) * width
            (bar,) = ax1.bar([x], [lat.mean if math.isfinite(lat.mean) else 0.0], width=width * 0.95, color=colour,
                             label=kind if i == 0 else None)
            bar.set_gid(f"v:{kind}|{m.pipeline}")
            top = max([bar.get_height(), *lat.values])
            ax1.annotate(secs(lat.mean), (x, top), xytext=(0, 4), textcoords="offset points",
                         ha="center", fontsize=9, fontweight="bold")
            ax1.scatter([x + width * 0.3 * ((j % 5) - 2) / 2 for j in range(len(lat.values))], lat.values, s=10,
                        color="black", zorder=3)
    ax1.set_xticks(range(len(labels)), labels)
    ax1.set_title("mean per run (dots: each run)", fontsize=10)
    ax1.set_ylabel("seconds")
    tops = [v for m in metrics for v in (*m.latency.values, *m.iterate.values, m.latency.mean) if math.isfinite(v)]
    ax1.set_ylim(0, max(tops + [1.0]) * 1.35)
    ax1.legend(fontsize=8, loc="upper center", ncol=2)
    ax1.grid(True, axis="y", alpha=0.3)

    stage_names: list[str] = []
    for m in metrics:
        for s in m.stages:
            if not s.gated and s.name not in stage_names:
                stage_names.append(s.name)
    stage_colors = dict(zip(stage_names, _colors(len(stage_names), "tab20"), strict=True))
    rows: list[str] = []
    for m in metrics:
        y = len(rows)
        rows.append(f"{m.pipeline}\nto the gate" if m.gate else m.pipeline)
        left = 0.0
        for s in m.stages:
            if s.gated:
                continue
            share = s.latency_share if math.isfinite(s.latency_share) else 0.0
            (bar,) = ax2.barh([y], [share], left=left, color=stage_colors[s.name], edgecolor="white",
                              label=s.name if s.name not in ax2.get_legend_handles_labels()[1] else None)
            bar.set_gid(f"h:share|{m.pipeline}|{s.name}")
            if share >= 1.5:
                ax2.text(left + share / 2, y, f"{s.name}\n{secs(share)}", ha="center", va="center", fontsize=7)
            left += share
        ax2.annotate(f"= {secs(m.latency.mean)}", (left, y), xytext=(4, 0), textcoords="offset points",
                     va="center", fontsize=9, fontweight="bold")
        g = m.gate
        if g is not None:
            y = len(rows)
            rows.append(f"{m.pipeline}: {' + '.join(g.stages)}\n(gated, ran in {g.runs} of {g.of_runs})")
            mean = g.latency.mean if math.isfinite(g.latency.mean) else 0.0
            if math.isfinite(g.latency.mean):  # nothing measured, nothing drawn
                (bar,) = ax2.barh([y], [mean], color="#cccccc", hatch="//", edgecolor="#666666")
                bar.set_gid(f"h:gated|{m.pipeline}")
            note = secs(g.latency.mean) + " per run that ran it" if g.runs else "not run in any run yet"
            ax2.annotate(note, (mean, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=9)
    ax2.set_yticks(range(len(rows)), rows, fontsize=8)
    ax2.invert_yaxis()
    ax2.set_title("each stage's share of the mean end to end (stacked = the table's mean)", fontsize=10)
    ax2.set_xlabel("seconds")
    xmax = max([m.latency.mean for m in metrics if math.isfinite(m.latency.mean)]
               + [m.gate.latency.mean for m in metrics if m.gate and math.isfinite(m.gate.latency.mean)] + [1.0])
    ax2.set_xlim(0, xmax * 1.35)
    ax2.legend(fontsize=8, loc="lower right")
    ax2.grid(True, axis="x", alpha=0.3)
    fig.savefig(path)
    return drawn_values(fig)


def _colors(n: int, cmap: str = "tab10") -> list[Any]:
    from matplotlib import colormaps

    cm = colormaps[cmap]
    return [cm(i % cm.N) for i in range(n)]


THUMB = 240


def contact_sheet(
    comparison: Comparison, i: int, prompt: str, open_artifact: Callable[[str], Image.Image], sim: bool
) -> Image.Image:
    """One row per pipeline, one cell per stage: the stage's output with model, QA verdict, cost and latency."""
    from PIL import Image, ImageDraw, ImageFont

    rows = [(p.label, p.runs[i]) for p in comparison.pipelines]
    cols = max((len(r.stages) for _, r in rows), default=1)
    label_w, cap_h, pad, head_h = 150, 62, 10, 70 if sim else 46
    width = label_w + cols * (THUMB + pad) + pad
    height = head_h + len(rows) * (THUMB + cap_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (250, 250, 248))
    d = ImageDraw.Draw(sheet)
    f_title = ImageFont.load_default(size=16)
    f_cell = ImageFont.load_default(size=12)
    d.text((pad, 8), _fit(d, f"Brief {i + 1}: {prompt}", f_title, width - 2 * pad), font=f_title, fill=(20, 20, 20))
    if sim:
        d.rectangle((0, 34, width, 62), fill=(255, 243, 205))
        d.text(
            (pad, 39), "SIMULATED: offline simulator output, not the vendors' models", font=f_title, fill=(160, 90, 0)
        )
    y = head_h
    for label, run in rows:
        verdict = "success" if run.success else run.status
        d.text((pad, y + 8), label, font=f_title, fill=(20, 20, 20))
        d.text((pad, y + 30), verdict, font=f_cell, fill=(0, 120, 0) if run.success else (180, 0, 0))
        d.text((pad, y + 46), f"{money(run.cost_to_gate_usd)}  {secs(run.latency_to_gate_s)}", font=f_cell,
               fill=(60, 60, 60))
        if run.past_gate:
            d.text((pad, y + 62), "to the gate", font=f_cell, fill=(90, 90, 90))
        x = label_w
        for s in run.stages:
            cell = _thumb(open_artifact, s.artifact, s.status)
            sheet.paste(cell, (x + (THUMB - cell.width) // 2, y + (THUMB - cell.height) // 2))
            qa = {True: "QA pass", False: "QA FAIL", None: "QA -"}[s.qa_passed]
            colour = {True: (0, 120, 0), False: (180, 0, 0), None: (90, 90, 90)}[s.qa_passed]
            d.rectangle((x - 1, y - 1, x + THUMB, y + THUMB), outline=colour, width=2)
            d.text((x, y + THUMB + 4), _fit(d, f"{s.name} · {s.model}", f_cell, THUMB), font=f_cell, fill=(20, 20, 20))
            if s.ran:
                caption = f"{qa}   {money(s.cost_usd)}  {secs(s.latency_s)}" + ("  cache" if s.cache_hit else "")
            elif s.waiting:
                caption = f"waiting: PROJECTED {money(s.projected_usd)}"
            else:
                caption = "did not run"
            d.text((x, y + THUMB + 20), caption, font=f_cell, fill=colour)
            why = s.qa_reasons[0] if s.qa_passed is False and s.qa_reasons else ""
            if why:
                d.text((x, y + THUMB + 36), _fit(d, why, f_cell, THUMB), font=f_cell, fill=(120, 0, 0))
            x += THUMB + pad
        y += THUMB + cap_h + pad
    return sheet


def _thumb(open_artifact: Callable[[str], Image.Image], sha: str | None, status: str) -> Image.Image:
    from PIL import Image, ImageDraw, ImageFont

    if sha:
        try:
            img = open_artifact(sha).convert("RGB")
            img.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
            return img
        except (OSError, KeyError):
            status = "image missing"
    cell = Image.new("RGB", (THUMB, THUMB), (225, 225, 225))
    d = ImageDraw.Draw(cell)
    f = ImageFont.load_default(size=14)
    text = status.replace("_", " ")
    w = d.textlength(text, font=f)
    d.text(((THUMB - w) / 2, THUMB / 2 - 8), text, font=f, fill=(90, 90, 90))
    return cell


def _fit(d: Any, text: str, font: Any, width: float) -> str:
    if d.textlength(text, font=font) <= width:
        return text
    while text and d.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
