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
    # 7 finished stage runs, one served from the cache
    assert m.cache_hit_rate == pytest.approx(1 / 7)
    assert m.statuses == {"completed": 3, "failed": 1}

    draft, final = m.stages
    assert [draft.name, final.name] == ["draft", "final"]
    assert draft.latency.mean == pytest.approx(np.mean([2.0, 2.5, 0.0, 3.0]))
    assert draft.qa_pass_rate == pytest.approx(3 / 4)
    assert final.runs == 4 and final.latency.n == 3  # the failed stage has no latency sample
    assert final.qa_pass_rate == pytest.approx(2 / 3)
    assert final.cost_mean == pytest.approx((0.05 + 0.05 + 0.12) / 4)


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
