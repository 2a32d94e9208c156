"""Run records: a recorded run as the CLI's ``--json`` and the studio's JSON API show it. Reads the registry only."""

from __future__ import annotations

from typing import Any


def run_record(ws: Any, run: Any, *, with_calls: bool = True) -> dict[str, Any]:
    """One run as ``image-gen runs show --json`` prints it (and the studio serves it): every stage with its
    parameters, seed, cost, latency, QA verdict and calls (what each cost, and whether it may have been billed)."""
    reg = ws.existing_registry()
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
                "error": c.error, "cost_usd": c.cost_usd, "billed": c.billed, "maybe_billed": c.maybe_billed,
                "expected_cost_usd": c.expected_cost_usd, "request_digest": c.request_digest, "latency_s": c.latency_s,
                "seed": c.seed, "vendor_request_id": c.vendor_request_id, "simulated": c.simulated,
                "created_at": c.created_at, "finished_at": c.finished_at,
            } for c in calls]} if with_calls else {"calls": len(calls)}),
        })
    return {
        "run_id": run.id, "status": run.status, "prompt": run.prompt, "negative_prompt": run.negative_prompt,
        "pipeline": run.pipeline_name, "simulated": run.simulated, "cost_usd": run.cost_usd,
        "latency_s": run.latency_s, "final_artifact": run.final_artifact, "qa_passed": run.qa_passed,
        "reason": run.reason, "error_kind": run.error_kind, "routing": run.routing, "created_at": run.created_at,
        "updated_at": run.updated_at, "parent_run_id": run.parent_run_id, "input_artifact": run.input_artifact,
        "approvals": [{"stage": a.stage_name, "decision": a.decision, "note": a.note, "at": a.decided_at,
                       "by": a.decided_by} for a in reg.approvals(run.id)],
        "stages": stages,
    }


def run_summary(r: Any) -> dict[str, Any]:
    """One run as ``image-gen runs list --json`` lists it (and ``GET /api/runs`` serves it)."""
    return {"run_id": r.id, "status": r.status, "cost_usd": r.cost_usd, "latency_s": r.latency_s,
            "qa_passed": r.qa_passed, "simulated": r.simulated, "pipeline": r.pipeline_name,
            "config_source": r.config_source, "prompt": r.prompt, "created_at": r.created_at,
            "parent_run_id": r.parent_run_id, "final_artifact": r.final_artifact}
