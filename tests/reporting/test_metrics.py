from __future__ import annotations

import math

import numpy as np
import pytest

from image_gen.reporting.metrics import RunRecord, StageRecord, percentile, pipeline_metrics


def stage(
    name: str,
    latency: float,
    cost: float,
    *,
    calls: int = 1,
    hit: bool = False,
    qa: bool | None = True,
    rerolls: int = 0,
    escalated: str | None = None,
    status: str = "done",
) -> StageRecord:
    return StageRecord(
        name=name,
        model=f"m-{name}",
        status=status,
        latency_s=latency,
        cost_usd=cost,
        cache_hit=hit,
        calls=calls,
        rerolls=rerolls,
        escalated_to=escalated,
        qa_passed=qa,
        artifact="a" * 64 if status == "done" else None,
    )


def run(i: int, stages: list[StageRecord], *, status: str = "completed", qa: bool | None = True) -> RunRecord:
    return RunRecord(
        run_id=f"r{i}",
        pipeline="p",
        prompt=f"brief {i}",
        status=status,
        latency_s=sum(s.latency_s for s in stages),
        cost_usd=sum(s.cost_usd for s in stages),
        qa_passed=qa,
        simulated=True,
        stages=stages,
        brief_index=i,
        final_artifact="f" * 64 if status in ("completed", "awaiting_approval") else None,
    )


@pytest.mark.parametrize("q", [0, 5, 50, 95, 100])
def test_percentile_matches_numpy(q):
    vals = [3.2, 0.5, 9.9, 4.4, 4.4, 7.1, 2.0]
    assert percentile(vals, q) == pytest.approx(float(np.percentile(vals, q)))
    assert math.isnan(percentile([], q))


def test_pipeline_figures_from_runs():
    runs = [
        run(0, [stage("draft", 2.0, 0.02), stage("final", 6.0, 0.05, calls=2, rerolls=1)]),
        run(1, [stage("draft", 2.5, 0.02, qa=False), stage("final", 5.0, 0.05)], qa=True),
        run(
            2,
            [
                stage("draft", 0.0, 0.0, hit=True, calls=0),
                stage("final", 9.0, 0.12, calls=2, escalated="big", qa=False),
            ],
            qa=False,
        ),
        run(
            3,
            [stage("draft", 3.0, 0.02), stage("final", 0.0, 0.0, calls=1, status="failed", qa=None)],
            status="failed",
            qa=False,
        ),
    ]
    m = pipeline_metrics(runs)
    assert m.runs == 4 and m.successes == 2
    assert m.success_rate == 0.5
    total = sum(r.cost_usd for r in runs)
    assert m.cost_total == pytest.approx(total)
    assert m.cost_per_image == pytest.approx(total / 4)
    assert m.cost_per_success == pytest.approx(total / 2)
    assert m.calls == 1 + 2 + 1 + 1 + 0 + 2 + 1 + 1
    assert m.calls_per_asset == pytest.approx(m.calls / 4)
    e2e = [r.latency_s for r in runs]
    assert m.latency.mean == pytest.approx(np.mean(e2e))
    assert m.latency.p50 == pytest.approx(np.percentile(e2e, 50))
    assert m.latency.p95 == pytest.approx(np.percentile(e2e, 95))
    assert (m.rerolls, m.escalations) == (1, 1)
    # 8 stage runs ran (the failed one too), one served from the cache
    assert m.cache_hit_rate == pytest.approx(1 / 8)
    assert m.statuses == {"completed": 3, "failed": 1}

    draft, final = m.stages
    assert [draft.name, final.name] == ["draft", "final"]
    assert draft.latency.mean == pytest.approx(np.mean([2.0, 2.5, 0.0, 3.0]))
    assert draft.qa_pass_rate == pytest.approx(3 / 4)
    assert final.runs == 4 and final.latency.n == 4  # the failed stage ran: its time counts
    assert final.qa_pass_rate == pytest.approx(2 / 3)
    assert final.cost_per_run == pytest.approx((0.05 + 0.05 + 0.12) / 4)
    assert draft.latency_share + final.latency_share == pytest.approx(m.latency.mean)
    assert m.iterate.mean == pytest.approx(np.mean([2.0, 2.5, 0.0, 3.0]))
    assert m.gate is None and not draft.gated


def test_awaiting_approval_counts_by_its_last_stage_and_to_dict_is_json_safe():
    import json

    runs = [
        run(
            0,
            [stage("layout", 1.0, 0.04), stage("hires", 0.0, 0.0, calls=0, status="awaiting_approval", qa=None)],
            status="awaiting_approval",
        )
    ]
    m = pipeline_metrics(runs)
    assert m.successes == 1
    none = pipeline_metrics([run(0, [stage("x", 1.0, 0.1, qa=False)], qa=False)])
    assert none.successes == 0 and math.isinf(none.cost_per_success)
    d = none.to_dict()
    assert d["cost_per_success"] is None
    json.dumps(d, allow_nan=False)


def gated_runs(approved: int, n: int = 5, price: float = 0.134) -> list[RunRecord]:
    """n runs of draft -> final -> hires (approval gate); the first ``approved`` went through hires."""
    out = []
    for i in range(n):
        hires = (
            stage("hires", 10.0, price)
            if i < approved
            else stage("hires", 0.0, 0.0, calls=0, status="awaiting_approval", qa=None)
        )
        hires.gated = True
        if i >= approved:
            hires.waiting, hires.projected_usd = True, price
        out.append(
            run(i, [stage("draft", 2.0 + i, 0.02), stage("final", 5.0, 0.05), hires],
                status="completed" if i < approved else "awaiting_approval")
        )
    return out


def test_waiting_stage_did_not_run_and_is_projected_apart():
    m = pipeline_metrics(gated_runs(approved=1))
    draft, final, hires = m.stages
    assert (hires.runs, hires.waiting, hires.gated) == (1, 4, True)
    assert hires.cost_total == pytest.approx(0.134) and hires.projected_total == pytest.approx(4 * 0.134)
    assert hires.cache_hit_rate == 0 and hires.latency.n == 1
    # the headline is measured to the gate: every run delivered the final stage's image
    assert m.successes == 5 and m.cost_total == pytest.approx(5 * 0.07)
    assert m.latency.mean == pytest.approx(np.mean([7.0 + i for i in range(5)]))
    assert draft.latency_share + final.latency_share == pytest.approx(m.latency.mean)
    g = m.gate
    assert g is not None and (g.stages, g.runs, g.waiting, g.decided_not_run) == (["hires"], 1, 4, 0)
    assert g.cost_per_image_all_approved == pytest.approx((5 * 0.07 + 0.134 + 4 * 0.134) / 5)
    assert g.cost_per_asset == pytest.approx(0.07 + 0.134)  # every stage the approved asset went through


@pytest.mark.parametrize("approved", [0, 2, 5])
def test_approvals_move_only_the_gated_figures(approved):
    base = pipeline_metrics(gated_runs(approved=1))
    m = pipeline_metrics(gated_runs(approved=approved))
    same = ("successes", "cost_total", "cost_per_image", "cost_per_success", "calls", "cache_hit_rate")
    assert {k: getattr(m, k) for k in same} == {k: getattr(base, k) for k in same}
    assert m.latency == base.latency and m.iterate == base.iterate and m.stages[:2] == base.stages[:2]
    assert m.gate is not None and (m.gate.runs, m.gate.waiting) == (approved, 5 - approved)
    assert m.gate.cost_total == pytest.approx(0.134 * approved)
    assert m.gate.projected_total == pytest.approx(0.134 * (5 - approved))
    assert m.gate.cost_per_image_all_approved == pytest.approx(base.gate.cost_per_image_all_approved)


def test_rejected_gate_is_decided_not_projected():
    runs = gated_runs(approved=1, n=3)
    rej = runs[2].stages[2]
    rej.status, rej.waiting, rej.projected_usd = "rejected", False, 0.0
    runs[2].status = "rejected"
    m = pipeline_metrics(runs)
    assert m.gate is not None and (m.gate.runs, m.gate.waiting, m.gate.decided_not_run) == (1, 1, 1)
    assert m.gate.projected_total == pytest.approx(0.134)
