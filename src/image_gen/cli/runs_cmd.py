"""``runs list|show|compare``: read the experiment registry."""

from __future__ import annotations

from typing import Any

import click

from image_gen.cli._common import emit_json, json_option, workspace_option


def run_record(ws: Any, run: Any, *, with_calls: bool = True) -> dict[str, Any]:
    reg = ws.registry()
    stages = []
    for s in reg.stage_runs(run.id):
        calls = reg.calls(stage_run_id=s.id)
        stages.append({
            "stage": s.name, "idx": s.idx, "model": s.model_id, "requested_model": s.requested_model,
            "provider": s.provider, "status": s.status, "prompt": run.prompt,
            "negative_prompt": (s.params or {}).get("negative_prompt"), "params": s.params, "seed": s.seed,
            "cost_usd": s.cost_usd, "latency_s": s.latency_s, "cache_hit": s.cache_hit,
            "input_artifact": s.input_artifact, "artifact_sha256": s.artifact_sha, "outputs": s.outputs,
            "qa": s.qa, "adapters": s.adapters, "rerolls": s.rerolls, "escalated_to": s.escalated_to,
            "substitution": s.substitution, "reason": s.reason,
            "started_at": s.started_at, "finished_at": s.finished_at,
            **({"calls": [{
                "id": c.id, "attempt": c.attempt, "purpose": c.purpose, "model": c.model_id,
                "provider": c.provider, "operation": c.operation, "state": c.state, "error_kind": c.error_kind,
                "error": c.error, "cost_usd": c.cost_usd, "billed": c.billed, "latency_s": c.latency_s,
                "seed": c.seed, "vendor_request_id": c.vendor_request_id, "simulated": c.simulated,
                "created_at": c.created_at, "finished_at": c.finished_at,
            } for c in calls]} if with_calls else {"calls": len(calls)}),
        })
    return {
        "run_id": run.id, "status": run.status, "prompt": run.prompt, "negative_prompt": run.negative_prompt,
        "pipeline": run.pipeline_name, "simulated": run.simulated, "cost_usd": run.cost_usd,
        "latency_s": run.latency_s, "final_artifact": run.final_artifact, "qa_passed": run.qa_passed,
        "reason": run.reason, "created_at": run.created_at, "updated_at": run.updated_at,
        "approvals": [{"stage": a.stage_name, "decision": a.decision, "note": a.note, "at": a.decided_at}
                      for a in reg.approvals(run.id)],
        "stages": stages,
    }


@click.group()
def runs() -> None:
    """List, show, search and compare recorded runs."""


@runs.command("list")
@click.option("--search", "-s", help="Words that must all appear in the prompt (or pipeline name).")
@click.option("--status", help="Only runs with this status.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@workspace_option
@json_option
def list_runs(search: str | None, status: str | None, limit: int, workspace: str | None, as_json: bool) -> None:
    """List recent runs, newest first."""
    from image_gen.workspace import Workspace

    ws = Workspace.resolve(workspace)
    rows = ws.registry().list_runs(search=search, status=status, limit=limit)
    data: list[dict[str, Any]] = [{"run_id": r.id, "status": r.status, "cost_usd": r.cost_usd, "latency_s": r.latency_s,
             "qa_passed": r.qa_passed, "simulated": r.simulated, "pipeline": r.pipeline_name,
             "prompt": r.prompt, "created_at": r.created_at} for r in rows]
    if as_json:
        emit_json(data)
        return
    from rich.table import Table

    from image_gen.cli._render import console

    t = Table()
    for col in ("run", "status", "cost $", "latency s", "QA", "sim", "prompt"):
        t.add_column(col)
    for d in data:
        qa = "-" if d["qa_passed"] is None else ("pass" if d["qa_passed"] else "FAIL")
        t.add_row(d["run_id"], d["status"], f"{d['cost_usd']:.4f}", f"{d['latency_s']:.2f}", qa,
                  "yes" if d["simulated"] else "", d["prompt"][:60])
    console().print(t)


def _get(ws: Any, run_id: str) -> Any:
    from image_gen.errors import RunNotFound

    run = ws.registry().get_run(run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r} in the registry of {ws.root}", field="RUN")
    return run


@runs.command("show")
@click.argument("run_id", metavar="RUN")
@workspace_option
@json_option
def show(run_id: str, workspace: str | None, as_json: bool) -> None:
    """Everything recorded about one run: per stage model, prompt, parameters, seed, cost, latency, artifact."""
    from image_gen.workspace import Workspace

    ws = Workspace.resolve(workspace)
    rec = run_record(ws, _get(ws, run_id))
    if as_json:
        emit_json(rec)
        return
    from image_gen.cli._render import console

    con = console()
    sim = " \\[simulated]" if rec["simulated"] else ""  # escaped: rich would read [simulated] as a style
    con.print(f"[bold]run {rec['run_id']}[/bold] {rec['status']}{sim}")
    con.print(f"prompt: {rec['prompt']}")
    con.print(f"cost ${rec['cost_usd']:.4f}  latency {rec['latency_s']:.2f}s  QA {rec['qa_passed']}")
    for s in rec["stages"]:
        p = s["params"] or {}
        con.print(f"  [{s['idx']}] {s['stage']}: {s['model']} ({s['provider']}) {s['status']}"
                  f"{' cache-hit' if s['cache_hit'] else ''}  seed {s['seed']}  steps {p.get('steps')}  "
                  f"guidance {p.get('guidance_scale')}  {p.get('width')}x{p.get('height')}  "
                  f"${s['cost_usd']:.4f}  {s['latency_s']:.2f}s  calls {len(s['calls'])}")
        con.print(f"      artifact {s['artifact_sha256']}")
        if s["reason"]:
            con.print(f"      reason: {s['reason']}")
    if rec["reason"]:
        con.print(f"reason: {rec['reason']}")


@runs.command("compare")
@click.argument("run_ids", metavar="RUN...", nargs=-1, required=True)
@workspace_option
@json_option
def compare(run_ids: tuple[str, ...], workspace: str | None, as_json: bool) -> None:
    """Runs side by side: status, QA, cost, latency, calls and the model of each stage."""
    from image_gen.workspace import Workspace

    ws = Workspace.resolve(workspace)
    recs = [run_record(ws, _get(ws, r), with_calls=False) for r in run_ids]
    rows = [{"run_id": r["run_id"], "status": r["status"], "qa_passed": r["qa_passed"], "cost_usd": r["cost_usd"],
             "latency_s": r["latency_s"], "calls": sum(s["calls"] for s in r["stages"]),
             "stages": [f"{s['stage']}:{s['model']}" for s in r["stages"]], "prompt": r["prompt"]} for r in recs]
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    from image_gen.cli._render import console

    t = Table()
    for col in ("run", "status", "QA", "cost $", "latency s", "calls", "stages"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["run_id"], r["status"], str(r["qa_passed"]), f"{r['cost_usd']:.4f}", f"{r['latency_s']:.2f}",
                  str(r["calls"]), " > ".join(r["stages"]))
    console().print(t)
