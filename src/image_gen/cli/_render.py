"""Printing and exporting run outcomes for the CLI (rich tables, progress, readable file names)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from image_gen.pipeline.runner import Events, RunOutcome
    from image_gen.workspace import Workspace


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


@contextmanager
def progress_events(total_stages: int, enabled: bool = True) -> Iterator[Events]:
    """A rich progress bar on stderr fed by the runner's events."""
    if not enabled or total_stages <= 0:
        yield lambda kind, data: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console(stderr=True), transient=False) as prog:
        task = prog.add_task("stages", total=total_stages)

        def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind == "stage_start":
                prog.update(task, description=f"{data['run_id']} {data['stage']} ({data['model']})")
            elif kind == "stage_end":
                prog.advance(task)

        yield on_event


def print_outcomes(outcomes: list[RunOutcome]) -> None:
    from rich.table import Table

    con = console()
    for o in outcomes:
        label = " \\[simulated]" if o.simulated else ""  # escaped: rich would read [simulated] as a style
        con.print(f"[bold]run {o.run_id}[/bold]{label}  {o.status}  ${o.cost_usd:.4f}  "
                  f"{o.latency_s:.2f}s  {o.prompt[:70]}")
        t = Table(show_header=True, header_style="bold")
        for col in ("stage", "model", "status", "cost $", "latency s", "cache hit", "calls", "QA"):
            t.add_column(col)
        for s in o.stages:
            qa = "-" if s.qa_passed is None else ("pass" if s.qa_passed else "FAIL")
            t.add_row(s.name, s.model, s.status, f"{s.cost_usd:.4f}", f"{s.latency_s:.2f}",
                      "yes" if s.cache_hit else "no", str(s.calls), qa)
        con.print(t)
        if o.reason:
            con.print(f"  reason: {o.reason}")
        for w in o.warnings:
            con.print(f"  [yellow]warning:[/yellow] {w}")
        if o.status == "awaiting_approval":
            con.print(f"  approve with: image-gen approve {o.run_id}")


def slug(text: str, n: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n].strip("-") or "image"


def export(outcomes: list[RunOutcome], out_dir: Path, workspace: Workspace) -> list[Path]:
    """Copy each stage's images (all of a ``--batch``) to ``out_dir`` under readable names; returns the paths.
    A simulated run's copies carry a visible "SIMULATED" corner mark."""
    from image_gen.imaging.marks import mark_simulated_png

    out_dir.mkdir(parents=True, exist_ok=True)
    store = workspace.artifacts()
    written = []
    for o in outcomes:
        for i, s in enumerate(o.stages):
            shas = s.outputs or ([s.artifact] if s.artifact else [])
            for k, sha in enumerate(shas):
                tag = "-sim" if o.simulated else ""
                extra = f"-{k + 1}" if len(shas) > 1 else ""
                name = f"{o.run_id}-{i}-{s.name}-{slug(s.model, 30)}-{slug(o.prompt, 30)}{extra}{tag}.png"
                dest = out_dir / name
                if o.simulated:  # exported simulator renders carry a visible mark; the stored artifact does not
                    dest.write_bytes(mark_simulated_png(store.path_for(sha).read_bytes()))
                else:
                    shutil.copyfile(store.path_for(sha), dest)
                written.append(dest)
    return written


def exit_code(outcomes: list[RunOutcome]) -> int:
    if any(o.error_kind in ("auth", "not_configured") for o in outcomes):
        return 2
    delivered_bad = (o.qa_passed is False and o.status in ("completed", "awaiting_approval") for o in outcomes)
    if any(o.status in ("failed", "budget_stopped") for o in outcomes) or any(delivered_bad):
        return 1
    return 0
