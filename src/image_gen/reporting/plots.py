"""The report's matplotlib plots (cost against success, latency), each returning the values it drew.

The plots draw the same ``PipelineMetrics`` the tables print; the values are read back from the figures' artists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from image_gen.reporting.formatting import money, secs
from image_gen.reporting.metrics import PipelineMetrics


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
