"""The SLA estimator's arithmetic: the Monte Carlo sum of the stages, seeded and so deterministic."""

from __future__ import annotations

import math

from image_gen.pipeline.routing import CATALOG_SPREAD, StageModel, simulate_path


def no_backoff(n: int) -> float:
    return 0.0


def test_history_stages_are_bootstrapped_and_summed() -> None:
    # each stage takes 3 s or 5 s, equally often: the sum is 6, 8 or 10 s with chances 1/4, 1/2, 1/4
    stages = [StageModel(n, "m", 256, 256, "history", samples=[3.0, 5.0]) for n in ("a", "b")]
    est = simulate_path(stages, 8.0, no_backoff)
    assert abs(est.p_within - 0.75) < 0.03
    assert est.p95_s == 10.0
    assert simulate_path(stages, 5.9, no_backoff).p_within == 0.0
    assert simulate_path(stages, 8.0, no_backoff).p_within == est.p_within  # seeded: the same answer every time


def test_catalog_stages_add_every_reroll_and_the_escalation_when_qa_always_fails() -> None:
    typical = 4.0
    once = StageModel("s", "m", 256, 256, "catalog", calls=[("render", typical, 0.0)])
    assert abs(simulate_path([once], typical, no_backoff).p_within - 0.5) < 0.03  # the median is the typical
    p95 = simulate_path([once], 100.0, no_backoff).p95_s
    assert abs(p95 / (typical * math.exp(1.645 * CATALOG_SPREAD)) - 1) < 0.05  # the stated spread
    failing = StageModel("s", "m", 256, 256, "catalog", calls=[("render", typical, 0.0)],
                         reroll=(typical, 0.0, 1.0), rerolls=2, escalation=(typical, 0.0))
    est = simulate_path([failing], 1e9, no_backoff)
    assert abs(est.p50_s / (4 * typical) - 1) < 0.1  # render + 2 re-rolls + escalation


def test_retries_cost_a_call_and_their_backoff() -> None:
    flaky = StageModel("s", "m", 256, 256, "catalog", calls=[("render", 1.0, 1.0)], retries=2)
    est = simulate_path([flaky], 1e9, lambda n: 10.0 * n)
    assert 32.5 < est.p50_s < 34.0  # 3 tries of about 1 s each, and backoffs of 10 s + 20 s
