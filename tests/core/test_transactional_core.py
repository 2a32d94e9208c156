"""The transactional core: billed-but-lost answers are charged, a stage never leaves its run stuck, every model a
stage may call is checked before the first paid call, and every command finds the registry the run chose."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import pytest

from image_gen import api
from image_gen.config import load_config
from image_gen.pipeline.runner import Brief, Runner
from image_gen.providers import register_provider
from image_gen.providers.base import ImageRequest, ImageResult, NotConfigured, ProviderError, Transient
from image_gen.providers.sim import SimProvider
from image_gen.store.ledger import Caps, Ledger, day_start_utc
from image_gen.store.models import Call
from image_gen.workspace import Workspace
from tests.core.helpers import db_rows, invoke, write


class Scripted(SimProvider):
    """The simulator answering in the vendor's name, failing as scripted (one step per call)."""

    name = "scripted"
    script: deque[Any] = deque()
    seen: list[ImageRequest] = []

    def is_configured(self) -> bool:
        return True

    def generate(self, request: ImageRequest) -> ImageResult:
        Scripted.seen.append(request)
        step = Scripted.script.popleft() if Scripted.script else "ok"
        if isinstance(step, BaseException):
            raise step
        res = super().generate(ImageRequest(**{**request.__dict__, "model": "sd3.5-medium"}))
        res.simulated, res.cost_usd = False, 0.05
        return res


@pytest.fixture
def scripted() -> type[Scripted]:
    register_provider("scripted", Scripted)
    Scripted.script = deque()
    Scripted.seen = []
    return Scripted


def _runner(ws: Path, stage: dict[str, Any] | None = None, **cfg: Any) -> Runner:
    config = load_config({
        "models": {"vendor-x": {"provider": "scripted", "vendor_model": "X-1", "price_per_image": 0.05,
                                "capabilities": ["txt2img", "img2img"]}},
        "pipeline": {"stages": ["only:vendor-x"], "width": 128, "height": 128},
        "stage": {"only": {"qa": {"enabled": False}, **(stage or {})}},
        "retry": {"initial_s": 0, "max_s": 0},
        **cfg,
    })
    return Runner(Workspace.resolve(ws), config, sleep=lambda s: None)


def test_lost_answers_are_charged_as_may_have_been_billed(ws_path: Path, scripted: type[Scripted]) -> None:
    scripted.script.extend([Transient("cut off", maybe_billed=True), Transient("503 before any work"),
                            Transient("timed out after sending", maybe_billed=True)])
    runner = _runner(ws_path)
    out = runner.start(Brief('tin, label "GOLD"'))
    assert out.status == "completed"
    calls = runner.registry.calls(out.run_id)
    assert [(c.state, c.maybe_billed, c.cost_usd) for c in calls] == [
        ("failed", True, 0.05), ("failed", False, 0.0), ("failed", True, 0.05), ("ok", False, 0.05)]
    assert out.cost_usd == pytest.approx(0.15)
    assert Ledger(runner.registry).spent_today() == pytest.approx(0.15)


def test_maybe_billed_calls_count_against_the_cap(ws_path: Path, scripted: type[Scripted]) -> None:
    scripted.script.extend([Transient("lost", maybe_billed=True)] * 5)
    runner = _runner(ws_path, budget={"per_run_usd": 0.10})
    out = runner.start(Brief("x"))
    assert out.status == "budget_stopped" and "over its cap" in (out.reason or "")
    assert len(scripted.seen) == 2  # the third attempt would have passed $0.10
    assert runner.registry.get_run(out.run_id).cost_usd == pytest.approx(0.10)  # type: ignore[union-attr]


def test_an_unexpected_exception_ends_the_run_failed_with_a_logged_traceback(
        ws_path: Path, scripted: type[Scripted], monkeypatch: pytest.MonkeyPatch) -> None:
    from image_gen.pipeline import stage

    def broken(self: Any, ctx: Any, image: Any, **kw: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(stage.StageExecutor, "_deliver_size", broken)
    runner = _runner(ws_path)
    out = runner.start(Brief("x"))
    assert out.status == "failed" and out.error_kind == "internal"
    assert out.reason == "stage only: internal error: ZeroDivisionError: division by zero"
    (row,) = runner.registry.stage_runs(out.run_id)
    assert row.status == "failed"
    log = (ws_path / ".image-gen" / "image-gen.log").read_text()
    assert "Traceback" in log and "ZeroDivisionError" in log
    assert [c.state for c in runner.registry.calls(out.run_id)] == ["ok"]  # the paid call is recorded


def test_escalation_and_upscaler_keys_are_checked_before_the_first_paid_call(
        ws_path: Path, scripted: type[Scripted]) -> None:
    runner = _runner(ws_path, {"escalate_to": "ideogram-v3", "max_rerolls": 1})
    with pytest.raises(NotConfigured, match=r"stage only \(escalation\): provider 'ideogram'"):
        runner.start(Brief("x"))
    runner = _runner(ws_path, {"upscale": "2x"}, models={
        "vendor-x": {"provider": "scripted", "vendor_model": "X-1", "price_per_image": 0.05,
                     "capabilities": ["txt2img"], "native_upscaler": "stability-upscale-fast"}})
    with pytest.raises(NotConfigured, match=r"\(upscaler\): provider 'stability'"):
        runner.start(Brief("x"))
    assert scripted.seen == [] and db_rows(ws_path).get("calls", 0) == 0


def test_a_model_routed_to_the_local_engine_upscales_through_it(ws_path: Path) -> None:
    cfg = load_config({"pipeline": {"stages": ["final:sd3.5-medium"]},
                       "stage": {"final": {"provider": "local", "upscale": "2x", "fallback_model": "sd3.5-large-turbo",
                                           "escalate_to": "ideogram-v3"}}})
    plans = Runner(Workspace.resolve(ws_path), cfg).plan()
    routes = {k: (r.entry.id, r.provider) for k, r in plans[0].routes.items()}
    assert routes["stage"] == ("sd3.5-medium", "local")
    assert routes["tile:sd3.5-medium"] == ("sd3.5-medium", "local")  # not the Stability upscale API
    assert "upscaler:sd3.5-medium" not in routes
    assert routes["escalation"] == ("ideogram-v3", "ideogram")
    assert routes["fallback"][0] == "sd3.5-large-turbo"


def test_the_day_is_the_budgets_time_zone() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    assert day_start_utc("UTC", now) == datetime(2026, 11, 27, 0, 0)
    assert day_start_utc("America/Los_Angeles", now) == datetime(2026, 11, 26, 8, 0)  # still the 26th there
    assert day_start_utc("Asia/Tokyo", now) == datetime(2026, 11, 26, 15, 0)


def test_ledger_refuses_past_the_cap_and_writes_nothing(ws_path: Path) -> None:
    reg = Workspace.resolve(ws_path).registry()
    ledger = Ledger(reg)
    caps = Caps(per_day_usd=0.10)
    for _ in range(2):
        ledger.reserve(caps, Call(model_id="m", provider="p", operation="generate", request={},
                                  expected_cost_usd=0.04))
    from image_gen.store.ledger import CapExceeded

    with pytest.raises(CapExceeded, match=r"today's spend \(UTC\) to \$0\.1200"):
        ledger.reserve(caps, Call(model_id="m", provider="p", operation="generate", request={},
                                  expected_cost_usd=0.04))
    assert len(reg.calls()) == 2 and ledger.spent_today() == pytest.approx(0.08)


SIM_CFG = """
name = "pg-choice"
registry_url = "{url}"
[pipeline]
stages = ["draft:ideogram-v1-turbo"]
width = 128
height = 128
[pipeline.qa]
enabled = false
"""


def test_every_command_finds_the_registry_a_run_chose(ws_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.db"
    cfg = write(tmp_path / "c.toml", SIM_CFG.format(url=f"sqlite:///{other}"))
    r = invoke("run", "--config", str(cfg), "--prompt", "x", "--simulate", "--workspace", str(ws_path), "--json")
    assert r.code == 0, r.stderr
    run_id = r.json()["runs"][0]["run_id"]
    assert other.exists() and not (ws_path / ".image-gen" / "registry.db").exists()
    listed = invoke("runs", "list", "--workspace", str(ws_path), "--json")
    assert listed.code == 0 and run_id in listed.stdout
    shown = invoke("runs", "show", run_id, "--workspace", str(ws_path), "--json")
    assert shown.code == 0 and run_id in shown.stdout
    # the URL the run used is recorded without secrets
    assert api.open_workspace(ws_path).registry().get_run(run_id).config["registry_url"].startswith("sqlite")  # type: ignore[union-attr]


@pytest.mark.parametrize("url", ["nosuchdb://x", "postgresql+psycopg://u:s3cret-pw@127.0.0.1:1/db"])
def test_a_bad_registry_url_is_bad_input_naming_the_field(ws_path: Path, tmp_path: Path, url: str) -> None:
    cfg = write(tmp_path / "c.toml", SIM_CFG.format(url=url))
    before = sorted(p.name for p in ws_path.rglob("*"))
    r = invoke("run", "--config", str(cfg), "--prompt", "x", "--simulate", "--workspace", str(ws_path))
    assert r.code == 2, r.stderr
    assert "registry_url" in r.stderr and "Traceback" not in r.stderr
    assert "s3cret-pw" not in r.stderr + r.stdout
    assert sorted(p.name for p in ws_path.rglob("*")) == before


def test_provider_errors_default_to_free(scripted: type[Scripted]) -> None:
    assert not ProviderError("x").maybe_billed and not ProviderError("x").billed
