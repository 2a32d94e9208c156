"""The comparison report: run (or reuse) pipelines on the same briefs and write Markdown, HTML and pictures.

Written to the output folder:

- ``report.md`` and ``report.html``: the before/after table (render success, average latency, cost per image,
  and the other metrics of ``metrics.py``), a per-stage breakdown, the plots and the contact sheets;
- ``cost_vs_success.png``: cost per image against render success, one point per pipeline;
- ``latency.png``: the distribution of end-to-end latency per pipeline and the mean latency of each stage;
- ``contact_sheet_NN.png``: per brief, every stage's output of every pipeline, with its QA verdict;
- ``metrics.json``: the figures, for machines.

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

from image_gen.reporting.metrics import PipelineMetrics, RunRecord, load_runs, pipeline_metrics

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
    metrics = [p.metrics for p in comparison.pipelines]
    sim = comparison.simulated
    written = [
        plot_cost_vs_success(metrics, out / "cost_vs_success.png", sim),
        plot_latency(comparison, out / "latency.png", sim),
    ]
    sheets = []
    for i, prompt in enumerate(comparison.briefs):
        path = out / f"contact_sheet_{i + 1:02d}.png"
        contact_sheet(comparison, i, prompt, open_artifact, sim).save(path, optimize=False)
        sheets.append(path)
    written += sheets
    data = {
        "simulated": sim,
        "briefs": comparison.briefs,
        "pipelines": [
            dict(m.to_dict(), source=p.source, reused_runs=p.reused, run_ids=[r.run_id for r in p.runs])
            for m, p in zip(metrics, comparison.pipelines, strict=True)
        ],
    }
    (out / "metrics.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    (out / "report.md").write_text(markdown(comparison, metrics, written), encoding="utf-8")
    (out / "report.html").write_text(to_html(comparison, metrics, written), encoding="utf-8")
    return [out / "report.md", out / "report.html", out / "metrics.json", *written]


def _money(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"${v:.4f}"


def _pct(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.0%}"


def _secs(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.2f} s"


def summary_rows(metrics: Sequence[PipelineMetrics]) -> tuple[list[str], list[list[str]]]:
    head = [
        "pipeline",
        "runs",
        "render success",
        "avg latency",
        "p50 / p95 latency",
        "cost per image",
        "cost per successful asset",
        "calls per asset",
        "re-rolls",
        "escalations",
        "cache hit rate",
    ]
    rows = [
        [
            m.pipeline,
            str(m.runs),
            f"{_pct(m.success_rate)} ({m.successes}/{m.runs})",
            _secs(m.latency.mean),
            f"{_secs(m.latency.p50)} / {_secs(m.latency.p95)}",
            _money(m.cost_per_image),
            _money(m.cost_per_success),
            f"{m.calls_per_asset:.2f}",
            str(m.rerolls),
            str(m.escalations),
            _pct(m.cache_hit_rate),
        ]
        for m in metrics
    ]
    return head, rows


def stage_rows(m: PipelineMetrics) -> tuple[list[str], list[list[str]]]:
    head = [
        "stage",
        "model",
        "runs",
        "latency mean / p50 / p95",
        "cost per run",
        "calls",
        "re-rolls",
        "escalations",
        "cache hits",
        "QA pass",
    ]
    rows = [
        [
            s.name,
            ", ".join(s.models),
            str(s.runs),
            f"{_secs(s.latency.mean)} / {_secs(s.latency.p50)} / {_secs(s.latency.p95)}",
            _money(s.cost_mean),
            str(s.calls),
            str(s.rerolls),
            str(s.escalations),
            _pct(s.cache_hit_rate),
            _pct(s.qa_pass_rate),
        ]
        for s in m.stages
    ]
    return head, rows


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _definitions() -> str:
    return (
        "Render success: the run delivered an image that passed automatic QA (label text by OCR, softness, "
        "size); a run waiting at an approval gate counts by its last finished stage. Latency is end to end "
        "(sum of stages). Cost per successful asset = all spend / successful runs. Calls exclude cache hits."
    )


def markdown(comparison: Comparison, metrics: Sequence[PipelineMetrics], pictures: Sequence[Path]) -> str:
    parts = ["# image-gen pipeline comparison", ""]
    if comparison.simulated:
        parts += [f"> **{SIMULATED_NOTE}**", ""]
    parts += [
        f"{len(comparison.briefs)} briefs, {len(metrics)} pipelines: "
        + ", ".join(f"`{p.label}` ({p.source})" for p in comparison.pipelines),
        "",
    ]
    parts += ["## Before / after", "", _md_table(*summary_rows(metrics)), "", _definitions(), ""]
    parts += ["## Per stage", ""]
    for m in metrics:
        parts += [f"### {m.pipeline}", "", _md_table(*stage_rows(m)), ""]
    parts += [
        "## Plots",
        "",
        "![Cost per image against render success](cost_vs_success.png)",
        "",
        "![Latency distribution and per-stage latency](latency.png)",
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
        status = "success" if r.succeeded else f"not a success ({r.status})"
        reasons = [f"{s.name}: {why}" for s in r.stages if s.qa_passed is False for why in s.qa_reasons[:2]]
        extra = f"; QA failures on the way: {'; '.join(reasons[:3])}" if reasons else ""
        lines.append(f"- `{p.label}` run `{r.run_id}`: {status}, {_money(r.cost_usd)}, {_secs(r.latency_s)}{extra}")
    return "\n".join(lines)


def to_html(comparison: Comparison, metrics: Sequence[PipelineMetrics], pictures: Sequence[Path]) -> str:
    e = html.escape

    def table(head: list[str], rows: list[list[str]]) -> str:
        th = "".join(f"<th>{e(h)}</th>" for h in head)
        trs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"

    banner = f'<div class="sim">{e(SIMULATED_NOTE)}</div>' if comparison.simulated else ""
    body = [
        banner,
        "<h1>image-gen pipeline comparison</h1>",
        f"<p>{len(comparison.briefs)} briefs, {len(metrics)} pipelines: "
        + ", ".join(f"<code>{e(p.label)}</code> ({e(p.source)})" for p in comparison.pipelines)
        + "</p>",
        "<h2>Before / after</h2>",
        table(*summary_rows(metrics)),
        f"<p class='note'>{e(_definitions())}</p>",
        "<h2>Per stage</h2>",
    ]
    for m in metrics:
        body += [f"<h3>{e(m.pipeline)}</h3>", table(*stage_rows(m))]
    body += [
        "<h2>Plots</h2>",
        '<img src="cost_vs_success.png" alt="Cost per image against render success">',
        '<img src="latency.png" alt="Latency distribution and per-stage latency">',
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
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left}th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}"
        ".sim{background:#fff3cd;border:2px solid #d39e00;padding:.6em 1em;font-weight:bold;margin:1em 0}"
        ".note{color:#555;font-size:.9em}"
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


def plot_cost_vs_success(metrics: Sequence[PipelineMetrics], path: Path, sim: bool) -> Path:
    fig = _figure(sim, "Cost per image against render success", (7.5, 5.0))
    ax = fig.add_subplot()
    colors = _colors(len(metrics))
    for m, c in zip(metrics, colors, strict=True):
        x, y = m.cost_per_image, m.success_rate * 100
        ax.scatter([x], [y], s=140, color=c, edgecolor="black", zorder=3, label=m.pipeline)
        ax.annotate(
            f"{m.pipeline}\n{_money(x)}/image, {y:.0f}% success\n{_money(m.cost_per_success)}/success",
            (x, y),
            xytext=(10, -8),
            textcoords="offset points",
            fontsize=9,
            va="top",
        )
    xs = [m.cost_per_image for m in metrics if math.isfinite(m.cost_per_image)]
    ax.set_xlim(0, max(xs + [0.01]) * 1.6)
    ax.set_ylim(-5, 110)
    ax.set_xlabel("cost per image (USD)")
    ax.set_ylabel("render success (% of briefs passing QA)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.savefig(path)
    return path


def plot_latency(comparison: Comparison, path: Path, sim: bool) -> Path:
    fig = _figure(sim, "Latency", (11.0, 4.8))
    ax1, ax2 = fig.subplots(1, 2)
    labels = [p.label for p in comparison.pipelines]
    data = [[r.latency_s for r in p.runs] or [0.0] for p in comparison.pipelines]
    colors = _colors(len(labels))
    box = ax1.boxplot(data, tick_labels=labels, patch_artist=True, widths=0.5)
    for patch, c in zip(box["boxes"], colors, strict=True):
        patch.set_facecolor(c)
        patch.set_alpha(0.6)
    for i, vals in enumerate(data):
        jitter = [i + 1 + 0.12 * ((k % 5) - 2) / 2 for k in range(len(vals))]
        ax1.scatter(jitter, vals, s=14, color="black", zorder=3)
    ax1.set_title("end-to-end latency per brief")
    ax1.set_ylabel("seconds")
    ax1.grid(True, axis="y", alpha=0.3)

    # per-stage mean latency, stacked per pipeline
    stage_names: list[str] = []
    for p in comparison.pipelines:
        for s in p.metrics.stages:
            if s.name not in stage_names:
                stage_names.append(s.name)
    stage_colors = _colors(len(stage_names), "tab20")
    left = [0.0] * len(labels)
    for name, c in zip(stage_names, stage_colors, strict=True):
        widths = []
        for p in comparison.pipelines:
            sm = next((s for s in p.metrics.stages if s.name == name), None)
            widths.append(sm.latency.mean if sm and math.isfinite(sm.latency.mean) else 0.0)
        ax2.barh(labels, widths, left=left, color=c, edgecolor="white", label=name)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax2.set_title("mean latency per stage")
    ax2.set_xlabel("seconds")
    ax2.legend(fontsize=8, loc="lower right")
    ax2.grid(True, axis="x", alpha=0.3)
    fig.savefig(path)
    return path


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
        verdict = "success" if run.succeeded else run.status
        d.text((pad, y + 8), label, font=f_title, fill=(20, 20, 20))
        d.text((pad, y + 30), verdict, font=f_cell, fill=(0, 120, 0) if run.succeeded else (180, 0, 0))
        d.text((pad, y + 46), f"${run.cost_usd:.3f}  {run.latency_s:.1f}s", font=f_cell, fill=(60, 60, 60))
        x = label_w
        for s in run.stages:
            cell = _thumb(open_artifact, s.artifact, s.status)
            sheet.paste(cell, (x + (THUMB - cell.width) // 2, y + (THUMB - cell.height) // 2))
            qa = {True: "QA pass", False: "QA FAIL", None: "QA -"}[s.qa_passed]
            colour = {True: (0, 120, 0), False: (180, 0, 0), None: (90, 90, 90)}[s.qa_passed]
            d.rectangle((x - 1, y - 1, x + THUMB, y + THUMB), outline=colour, width=2)
            d.text((x, y + THUMB + 4), _fit(d, f"{s.name} · {s.model}", f_cell, THUMB), font=f_cell, fill=(20, 20, 20))
            d.text(
                (x, y + THUMB + 20),
                f"{qa}   ${s.cost_usd:.3f}  {s.latency_s:.1f}s" + ("  cache" if s.cache_hit else ""),
                font=f_cell,
                fill=colour,
            )
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
