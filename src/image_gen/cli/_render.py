"""Printing and exporting run outcomes for the CLI (rich tables, progress, readable file names)."""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image_gen.cli._common import qa_word

if TYPE_CHECKING:
    from image_gen.pipeline.runner import Events, RunOutcome
    from image_gen.workspace import Workspace


LIVE_RUNS: set[str] = set()
"""Runs started (or continued) by this process and not yet ended: named in the hint after Ctrl-C."""
_LIVE_LOCK = threading.Lock()


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _track(kind: str, data: dict[str, Any]) -> None:
    rid = data.get("run_id")
    if not rid:
        return
    with _LIVE_LOCK:
        if kind in ("run_start", "stage_start"):
            LIVE_RUNS.add(rid)
        elif kind == "run_end":
            LIVE_RUNS.discard(rid)


def stage_line(kind: str, data: dict[str, Any], elapsed: float) -> str | None:
    """One plain line for a runner event (without a terminal on stderr), or None for events not shown."""
    rid = data.get("run_id", "?")
    if kind == "run_start":
        return f"[{elapsed:6.1f}s] run {rid} started ({data.get('stages', '?')} stages)"
    if kind == "stage_start":
        return f"[{elapsed:6.1f}s] run {rid} stage {data['stage']} ({data.get('model', '?')}) started"
    if kind == "stage_end":
        extra = ""
        if data.get("status") == "done":
            extra = f" ${data.get('cost_usd') or 0:.4f} {data.get('latency_s') or 0:.2f}s"
            extra += " cache hit" if data.get("cache_hit") else ""
        return f"[{elapsed:6.1f}s] run {rid} stage {data['stage']} {data.get('status', 'ended')}{extra}"
    if kind == "run_end":
        return (f"[{elapsed:6.1f}s] run {rid} {data.get('status', 'ended')} ${data.get('cost_usd') or 0:.4f} "
                f"QA {qa_word(data.get('qa_passed'))}")
    return None


@contextmanager
def progress_events(total_stages: int, enabled: bool = True) -> Iterator[Events]:
    """Progress on stderr fed by the runner's events: a rich progress bar on a terminal; otherwise (a pipe,
    a log file) one plain line per event, written and flushed as it happens."""
    LIVE_RUNS.clear()
    if not enabled or total_stages <= 0:
        yield _track
        return
    if not sys.stderr.isatty():
        t0 = time.monotonic()
        lock = threading.Lock()

        def plain(kind: str, data: dict[str, Any]) -> None:
            _track(kind, data)
            line = stage_line(kind, data, time.monotonic() - t0)
            if line is not None:
                with lock:
                    sys.stderr.write(line + "\n")
                    sys.stderr.flush()

        yield plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console(stderr=True), transient=False) as prog:
        task = prog.add_task("stages", total=total_stages)

        def on_event(kind: str, data: dict[str, Any]) -> None:
            _track(kind, data)
            if kind == "stage_start":
                prog.update(task, description=f"{data['run_id']} {data['stage']} ({data['model']})")
            elif kind == "stage_end":
                prog.advance(task)

        yield on_event


def fixed(values: list[str], header: str) -> dict[str, Any]:
    """Column settings for ids, models and statuses: never wrapped, never shortened."""
    return {"no_wrap": True, "overflow": "ignore", "min_width": max([len(header), *map(len, values)])}


def wrapped(text: str, indent: str = "    ") -> str:
    """A plain line wrapped at the terminal's width (COLUMNS) between words, never inside an id."""
    import textwrap

    width = shutil.get_terminal_size((80, 24)).columns
    return "\n".join(textwrap.wrap(text, width=max(width, 40), subsequent_indent=indent, break_long_words=False,
                                    break_on_hyphens=False)) or text


def table() -> Any:
    """A compact table (no box, one space between columns) so ids fit at 80 columns."""
    from rich.table import Table

    return Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, show_header=True, header_style="bold",
                 show_edge=False)


def print_outcomes(outcomes: list[RunOutcome]) -> None:
    from rich.markup import escape

    con = console()
    for o in outcomes:
        label = " \\[simulated]" if o.simulated else ""  # escaped: rich would read [simulated] as a style
        con.print(f"[bold]run {o.run_id}[/bold]{label}  {o.status}  ${o.cost_usd:.4f}  "
                  f"{o.latency_s:.2f}s  QA {qa_word(o.qa_passed)}")
        con.print(f"  {escape(o.prompt)}", overflow="fold")
        if o.routing and o.routing.get("reason"):
            con.print(f"  routing: {o.routing['mode']}: {escape(o.routing['reason'])}", overflow="fold")
        t = table()
        t.add_column("stage", **fixed([s.name for s in o.stages], "stage"))
        t.add_column("model", **fixed([s.model for s in o.stages], "model"))
        t.add_column("status", **fixed([s.status for s in o.stages], "status"))
        for col in ("cost $", "s", "cache", "calls", "QA"):
            t.add_column(col, no_wrap=True, justify="right" if col in ("cost $", "s", "calls") else "left")
        for s in o.stages:
            t.add_row(s.name, s.model, s.status, f"{s.cost_usd:.4f}", f"{s.latency_s:.2f}",
                      "hit" if s.cache_hit else "-", str(s.calls), qa_word(s.qa_passed))
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
                data = store.read_bytes(sha)  # by hash, from wherever the store keeps it
                # exported simulator renders carry a visible mark; the stored artifact does not
                dest.write_bytes(mark_simulated_png(data) if o.simulated else data)
                written.append(dest)
    return written


def exit_code(outcomes: list[RunOutcome]) -> int:
    if any(o.error_kind in ("auth", "not_configured") for o in outcomes):
        return 2
    delivered_bad = (o.qa_passed is False and o.status in ("completed", "awaiting_approval") for o in outcomes)
    if any(o.status in ("failed", "budget_stopped") for o in outcomes) or any(delivered_bad):
        return 1
    return 0
