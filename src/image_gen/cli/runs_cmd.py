"""``runs list|show|latest|compare``: read the experiment registry; read-only, they create nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from image_gen.cli._common import emit_json, existing_workspace, get_run, json_option, qa_word, workspace_option
from image_gen.records import run_record, run_summary


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


@click.group()
def runs() -> None:
    """List, show, search and compare recorded runs (read-only: creates nothing)."""


_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None) -> datetime | None:
    """``--since``: an ISO date or time (2026-11-27, 2026-11-27T08:00), or a relative age (30m, 2h, 3d, 1w).
    Returns a naive UTC time (as the registry stores them)."""
    from image_gen.errors import InputError

    if value is None:
        return None
    v = value.strip().lower()
    m = _RELATIVE.match(v)
    if m:
        return datetime.now(UTC).replace(tzinfo=None) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"expected an ISO date (2026-11-27) or an age such as 30m, 2h, 3d, 1w; got {value!r}",
                         field="--since") from None
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when


def _filters(f: Any) -> Any:
    for opt in reversed([
        click.option("--search", "-s", help="Words that must all appear in the prompt (or pipeline name)."),
        click.option("--status", help="Only runs with this status (completed, failed, awaiting_approval, "
                                      "interrupted, ...)."),
        click.option("--model", help="Only runs with a stage on this model (id or alias; sim: twins included)."),
        click.option("--config", "config", help="Only runs of this pipeline (its name or config file)."),
        click.option("--since", help="Only runs created since: an ISO date/time or an age (30m, 2h, 3d, 1w)."),
    ]):
        f = opt(f)
    return f


def _model_ids(model: str | None) -> list[str] | None:
    """The model ids a ``--model`` filter matches: the catalog id of an alias and its simulated twin."""
    if not model:
        return None
    from image_gen.catalog import SIM_PREFIX, Catalog, UnknownModel

    base = model[len(SIM_PREFIX):] if model.startswith(SIM_PREFIX) else model
    try:
        mid = Catalog.load().resolve(base).id
    except UnknownModel:
        mid = base
    return [mid, SIM_PREFIX + mid] if not model.startswith(SIM_PREFIX) else [SIM_PREFIX + mid]


def _query(ws: Any, *, search: str | None, status: str | None, model: str | None, config: str | None,
           since: str | None, limit: int) -> list[Any]:
    return list(ws.existing_registry().list_runs(search=search, status=status, limit=limit,
                                                 models=_model_ids(model), pipeline=config,
                                                 since=parse_since(since)))


@runs.command("list")
@_filters
@click.option("--limit", "-n", type=click.IntRange(1, 100000), default=50, show_default=True,
              help="At most this many runs, newest first.")
@workspace_option
@json_option
def list_runs(search: str | None, status: str | None, model: str | None, config: str | None, since: str | None,
              limit: int, workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """List recent runs, newest first."""
    since_ok = parse_since(since)  # bad input before the workspace is looked at
    del since_ok
    ws = existing_workspace(workspace, registry_url)
    data = [run_summary(r) for r in _query(ws, search=search, status=status, model=model, config=config, since=since,
                                    limit=limit)]
    if as_json:
        emit_json({"runs": data})
        return
    from image_gen.cli._render import console, fixed, table

    if not data:
        click.echo("no runs match", err=True)
        return
    cells = [[d["run_id"], d["status"], qa_word(d["qa_passed"]), f"{d['cost_usd']:.4f}", f"{d['latency_s']:.1f}",
              d["created_at"].strftime("%m-%d %H:%M") if d["created_at"] else "-", "yes" if d["simulated"] else "-"]
             for d in data]
    t = table()
    for i, head in enumerate(("run", "status", "QA", "cost $", "s", "created", "sim")):
        t.add_column(head, justify="right" if head in ("cost $", "s") else "left",
                     **fixed([c[i] for c in cells], head))
    t.add_column("prompt", no_wrap=True, overflow="ellipsis")  # the one column that may be shortened
    for c, d in zip(cells, data, strict=True):
        t.add_row(*c, escape(d["prompt"]))
    console().print(t)


def _show(rec: dict[str, Any]) -> None:
    from image_gen.cli._render import console

    con = console()
    sim = " \\[simulated]" if rec["simulated"] else ""  # escaped: rich would read [simulated] as a style
    con.print(f"[bold]run {rec['run_id']}[/bold] {rec['status']}{sim}")
    con.print(f"prompt: {escape(rec['prompt'])}", overflow="fold")
    if rec["negative_prompt"]:
        con.print(f"negative prompt: {escape(rec['negative_prompt'])}", overflow="fold")
    if rec["pipeline"]:
        con.print(f"pipeline: {escape(str(rec['pipeline']))}")
    con.print(f"cost ${rec['cost_usd']:.4f}  latency {rec['latency_s']:.2f}s  QA {qa_word(rec['qa_passed'])}")
    routing = rec.get("routing") or {}
    if routing:
        p = routing.get("p_within_sla")
        sla = f"  SLA {routing['sla_s']:g}s  P(within) {p:.3f} (target {routing['sla_target']:g})" \
            if routing.get("sla_s") is not None and p is not None else ""
        con.print(f"routing: {routing.get('mode')}{sla}")
        if routing.get("reason"):
            con.print(f"  why: {escape(str(routing['reason']))}", overflow="fold")
        for st in (routing.get("staged") or {}).get("stages", []):
            con.print(f"  {escape(str(st.get('stage')))}: {escape(str(st.get('model')))} {st.get('size')} from "
                      f"{st.get('source')} ({st.get('samples')} samples)")
    for s in rec["stages"]:
        p = s["params"] or {}
        bits = [f"QA {qa_word(None if s['qa'] is None else bool(s['qa'].get('passed')))}",
                f"seed {s['seed']}" if s["seed"] is not None else None,
                f"steps {p['steps']}" if p.get("steps") is not None else None,
                f"guidance {p['guidance_scale']}" if p.get("guidance_scale") is not None else None,
                f"{p['width']}x{p['height']}" if p.get("width") and p.get("height") else None,
                f"upscale {p['upscale']}" if p.get("upscale") else None,
                f"${s['cost_usd']:.4f}", f"{s['latency_s']:.2f}s", f"calls {len(s['calls'])}"]
        hit = " cache-hit" if s["cache_hit"] else ""
        shown_provider = s["provider"] and not str(s["model"]).startswith(f"{s['provider']}:")
        provider = f" ({s['provider']})" if shown_provider else ""
        con.print(f"  [{s['idx']}] {s['stage']}: {s['model']}{provider} {s['status']}{hit}")
        con.print("      " + "  ".join(b for b in bits if b))
        if s["artifact_sha256"]:
            con.print(f"      artifact {s['artifact_sha256']}")
        if s["reason"]:
            con.print(f"      reason: {escape(s['reason'])}", overflow="fold")
    for a in rec["approvals"]:
        note = f": {escape(a['note'])}" if a["note"] else ""
        con.print(f"{a['decision']} at {a['stage']}{note}")
    if rec["reason"]:
        con.print(f"reason: {escape(rec['reason'])}", overflow="fold")


@runs.command("show")
@click.argument("run_id", metavar="RUN")
@workspace_option
@json_option
def show(run_id: str, workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """Everything recorded about one run: per stage model, prompt, parameters, seed, cost, latency, artifact."""
    ws = existing_workspace(workspace, registry_url)
    rec = run_record(ws, get_run(ws, run_id))
    if as_json:
        emit_json(rec)
        return
    _show(rec)


@runs.command("latest")
@_filters
@workspace_option
@json_option
def latest(search: str | None, status: str | None, model: str | None, config: str | None, since: str | None,
           workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """The newest run (of those the filters match), shown as `runs show` shows it."""
    from image_gen.errors import RunNotFound

    parse_since(since)
    ws = existing_workspace(workspace, registry_url)
    rows = _query(ws, search=search, status=status, model=model, config=config, since=since, limit=1)
    if not rows:
        raise RunNotFound("no run matches", field="RUN")
    rec = run_record(ws, rows[0])
    if as_json:
        emit_json(rec)
        return
    _show(rec)


@runs.command("compare")
@click.argument("run_ids", metavar="RUN...", nargs=-1, required=True)
@workspace_option
@json_option
def compare(run_ids: tuple[str, ...], workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """Runs side by side: status, QA, cost, latency, calls and the model of each stage."""
    ws = existing_workspace(workspace, registry_url)
    recs = [run_record(ws, get_run(ws, r), with_calls=False) for r in run_ids]
    rows = [{"run_id": r["run_id"], "status": r["status"], "qa_passed": r["qa_passed"], "cost_usd": r["cost_usd"],
             "latency_s": r["latency_s"], "calls": sum(s["calls"] for s in r["stages"]),
             "stages": [f"{s['stage']}:{s['model']}" for s in r["stages"]], "prompt": r["prompt"]} for r in recs]
    if as_json:
        emit_json({"runs": rows})
        return
    from image_gen.cli._render import console, fixed, table, wrapped

    con = console()
    cells = [[r["run_id"], r["status"], qa_word(r["qa_passed"]), f"{r['cost_usd']:.4f}", f"{r['latency_s']:.2f}",
              str(r["calls"])] for r in rows]
    t = table()
    for i, head in enumerate(("run", "status", "QA", "cost $", "s", "calls")):
        t.add_column(head, justify="right" if head in ("cost $", "s", "calls") else "left",
                     **fixed([c[i] for c in cells], head))
    t.add_column("prompt", no_wrap=True, overflow="ellipsis")  # the one column that may be shortened
    for c, r in zip(cells, rows, strict=True):
        t.add_row(*c, escape(r["prompt"]))
    con.print(t)
    for r in rows:  # stage models in full, one line per run (wrapped by the terminal, never cut)
        click.echo(wrapped(f"{r['run_id']}: {' > '.join(r['stages'])}"))
