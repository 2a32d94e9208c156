"""Retries, rate limits, failures and the call log, with a scripted provider standing in for a vendor."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import pytest

from image_gen.config import load_config
from image_gen.pipeline.runner import Brief, Runner
from image_gen.providers import register_provider
from image_gen.providers.base import (
    ContentFiltered,
    ImageRequest,
    ImageResult,
    ProviderError,
    ProviderSettings,
    RateLimited,
    Transient,
)
from image_gen.providers.sim import SimProvider
from image_gen.workspace import Workspace


class ScriptedProvider:
    """Answers from a queue: an exception instance is raised, ``"ok"`` renders with the simulator."""

    name = "scripted"
    script: deque[Any] = deque()
    seen: list[ImageRequest] = []

    def __init__(self, settings: ProviderSettings) -> None:
        self._sim = SimProvider(ProviderSettings(options={"fail_rate": 0.0, "soft_rate": 0.0, "typo_rate": 0.0}))

    def is_configured(self) -> bool:
        return True

    def generate(self, request: ImageRequest) -> ImageResult:
        ScriptedProvider.seen.append(request)
        step = ScriptedProvider.script.popleft() if ScriptedProvider.script else "ok"
        if isinstance(step, ProviderError):
            raise step
        res = self._sim.generate(ImageRequest(**{**request.__dict__, "model": "sd3.5-medium"}))
        res.simulated = False
        res.cost_usd = 0.05
        return res


@pytest.fixture
def scripted() -> type[ScriptedProvider]:
    register_provider("scripted", ScriptedProvider)
    ScriptedProvider.script = deque()
    ScriptedProvider.seen = []
    return ScriptedProvider


def make_runner(ws: Path, **stage: Any) -> tuple[Runner, list[float]]:
    cfg = load_config({
        "models": {"vendor-x": {"provider": "scripted", "vendor_model": "X-1", "price_per_image": 0.05,
                                "capabilities": ["txt2img", "img2img"]}},
        "pipeline": {"stages": ["only:vendor-x"], "width": 256, "height": 256},
        "stage": {"only": {"qa": {"enabled": False}, **stage}},
        "retry": {"initial_s": 0.5, "max_s": 4.0},
    })
    waits: list[float] = []
    return Runner(Workspace.resolve(ws), cfg, sleep=waits.append), waits


def test_transient_and_rate_limit_are_retried_honouring_retry_after(ws_path: Path, scripted: Any) -> None:
    scripted.script.extend([Transient("503 from vendor"), RateLimited("429", retry_after=7.0), "ok"])
    runner, waits = make_runner(ws_path, retries=3)
    out = runner.start(Brief('bottle "AQUA"'))
    assert out.status == "completed"
    assert waits[1] == 7.0 and 0 < waits[0] <= 0.5
    calls = runner.registry.calls(out.run_id)
    assert [c.state for c in calls] == ["failed", "failed", "ok"]
    assert [c.error_kind for c in calls[:2]] == ["Transient", "RateLimited"]
    assert [c.attempt for c in calls] == [1, 2, 3]
    assert sum(c.cost_usd for c in calls) == pytest.approx(0.05)


def test_persistent_failure_ends_with_a_recorded_reason(ws_path: Path, scripted: Any) -> None:
    scripted.script.extend([Transient("500")] * 5)
    runner, waits = make_runner(ws_path, retries=2)
    out = runner.start(Brief("x"))
    assert out.status == "failed" and "Transient" in (out.reason or "") or "500" in (out.reason or "")
    stage = runner.registry.stage_runs(out.run_id)[0]
    assert stage.status == "failed" and stage.reason
    assert len(runner.registry.calls(out.run_id)) == 3
    assert len(waits) == 2


def test_content_filter_is_recorded_as_billed(ws_path: Path, scripted: Any) -> None:
    scripted.script.append(ContentFiltered("is_image_safe false", billed=True))
    runner, _ = make_runner(ws_path)
    out = runner.start(Brief("x"))
    assert out.status == "failed" and out.error_kind == "content_filtered"
    (call,) = runner.registry.calls(out.run_id)
    assert call.billed and call.cost_usd == pytest.approx(0.05)
    assert runner.registry.get_run(out.run_id).cost_usd == pytest.approx(0.05)  # type: ignore[union-attr]


def test_call_is_written_before_it_is_sent(ws_path: Path, scripted: Any) -> None:
    states: list[str] = []
    runner, _ = make_runner(ws_path)
    orig = ScriptedProvider.generate

    def spy(self: ScriptedProvider, request: ImageRequest) -> ImageResult:
        states.extend(c.state for c in runner.registry.calls())
        return orig(self, request)

    ScriptedProvider.generate = spy  # type: ignore[method-assign]
    try:
        runner.start(Brief("x"))
    finally:
        ScriptedProvider.generate = orig  # type: ignore[method-assign]
    assert states == ["sent"]


def test_unchanged_rerun_makes_no_call_and_changed_seed_does(ws_path: Path, scripted: Any) -> None:
    runner, _ = make_runner(ws_path, seed=5)
    runner.start(Brief("x"))
    runner.start(Brief("x"))
    assert len(scripted.seen) == 1
    runner2, _ = make_runner(ws_path, seed=6)
    runner2.start(Brief("x"))
    assert len(scripted.seen) == 2 and scripted.seen[-1].seed == 6


def test_qa_failure_rerolls_then_escalates_and_keeps_the_first_attempt(ws_path: Path) -> None:
    cfg = load_config({
        "pipeline": {"stages": ["layout:ideogram-v2a"], "width": 384, "height": 384},
        "stage": {"layout": {"seed": 11, "max_rerolls": 1, "escalate_to": "ideogram-v3"}},
        "sim": {"typo_rate": 1.0, "soft_rate": 0.0, "fail_rate": 0.0},
    })
    runner = Runner(Workspace.resolve(ws_path), cfg, simulate=True)
    out = runner.start(Brief('Kids cereal box, title "CRUNCHY STARS"'))
    assert out.status == "completed" and out.qa_passed is False
    (stage,) = runner.registry.stage_runs(out.run_id)
    calls = runner.registry.calls(out.run_id)
    assert [(c.purpose, c.model_id) for c in calls] == [
        ("stage", "sim:ideogram-v2a"), ("reroll", "sim:ideogram-v2a"), ("escalation", "sim:ideogram-v3")]
    assert stage.rerolls == 1 and stage.escalated_to == "sim:ideogram-v3"
    # every attempt failed: the stage keeps the first one, with that attempt's own seed and model
    assert stage.seed == 11 == calls[0].seed and stage.model_id == "sim:ideogram-v2a"
    assert stage.qa is not None and not stage.qa["passed"] and "read as" in stage.qa["reasons"][0]


def test_briefs_run_concurrently_each_recorded_as_if_alone(ws_path: Path, scripted: Any) -> None:
    import threading
    import time as _time

    state = {"now": 0, "peak": 0}
    lock = threading.Lock()
    orig = ScriptedProvider.generate

    def slow(self: ScriptedProvider, request: ImageRequest) -> ImageResult:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        try:
            _time.sleep(0.2)
            return orig(self, request)
        finally:
            with lock:
                state["now"] -= 1

    ScriptedProvider.generate = slow  # type: ignore[method-assign]
    try:
        runner, _ = make_runner(ws_path)
        briefs = [Brief(f'tin {i} "LABEL {i}"', index=i) for i in range(6)] + [Brief('tin 0 "LABEL 0"', index=6)]
        outs = runner.start_many(briefs, concurrency=3)
    finally:
        ScriptedProvider.generate = orig  # type: ignore[method-assign]
    assert [o.prompt for o in outs] == [b.prompt for b in briefs]  # in the order asked
    assert all(o.status == "completed" for o in outs)
    assert 2 <= state["peak"] <= 3
    for o in outs:
        calls = runner.registry.calls(o.run_id)
        assert all(c.state == "ok" for c in calls) and len(calls) <= 1
    assert len({o.run_id for o in outs}) == len(briefs)
