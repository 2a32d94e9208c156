"""Capability classes: a stage names ``class:typography`` (or ``class:large-format``) and the runner picks the
cheapest configured model of that class whose recorded QA pass rate and p95 latency meet the stage's limits."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from image_gen.catalog import Catalog
from image_gen.config import load_config
from image_gen.errors import InputError
from image_gen.pipeline.runner import Runner
from image_gen.workspace import Workspace
from tests.core.helpers import invoke
from tests.routing.history import record_runs

CONFIG = """
name = "classes"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "layout:class:typography"]
width = 256
height = 256
qa = {{ enabled = false }}
[stage.layout]
{layout}
[sim]
fail_rate = 0.0
"""
LIMITS = "min_pass_rate = 0.9\nmax_latency_s = 6.0"


def config(tmp_path: Path, layout: str = LIMITS, name: str = "classes.toml") -> Path:
    p = tmp_path / name
    p.write_text(CONFIG.format(layout=layout), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """History of three typography models at 256 px: v2a-turbo (cheapest) passes QA 60% of the time; v3-turbo
    passes always and is fast; v2a passes always but its p95 (6 s typical) is over 6 s."""
    root = tmp_path_factory.mktemp("classes") / "ws"
    root.mkdir()
    registry = Workspace.resolve(str(root), None).registry()
    record_runs(registry, [("layout", "ideogram-v2a-turbo")], 30, qa_pass={"ideogram-v2a-turbo": 0.6}, seed=3)
    record_runs(registry, [("layout", "ideogram-v3-turbo")], 30, qa_pass={"ideogram-v3-turbo": 1.0}, seed=4)
    record_runs(registry, [("layout", "ideogram-v2a")], 30, qa_pass={"ideogram-v2a": 1.0}, seed=5)
    registry.close()
    return root


@pytest.fixture
def ws(recorded: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(recorded, root)
    return root


def plans(ws: Path, cfg: Path, *, simulate: bool = True) -> list:
    return Runner(Workspace.resolve(str(ws), None), load_config(cfg), simulate=simulate).plan()


def test_the_cheapest_model_meeting_the_limits_is_chosen_and_why_is_recorded(ws: Path, tmp_path: Path) -> None:
    layout = plans(ws, config(tmp_path))[1]
    assert layout.entry.id == "sim:ideogram-v3-turbo"
    assert layout.requested == "class:typography"
    why = layout.substitution
    assert "the cheapest" in why and "QA pass rate 1.00 over 30 >= 0.9" in why
    assert re.search(r"ideogram-v2a-turbo: QA pass rate 0\.[0-8]\d over 30 < 0\.9", why)  # cheaper, fails QA
    assert "ideogram-v2a: p95" in why and "> 6 s" in why  # passes QA, too slow
    assert "fewer than 20" in why  # the models without history are not assumed to pass


def test_a_run_records_the_choice_on_the_stage_and_in_its_routing(ws: Path, tmp_path: Path) -> None:
    res = invoke("run", "--config", str(config(tmp_path)), "--prompt", "a jar labelled 'JAM'", "--simulate",
                 "--workspace", str(ws), "--json")
    assert res.code == 0, res.stderr
    out = res.json()["runs"][0]
    assert [s["model"] for s in out["stages"]] == ["sim:ideogram-v1-turbo", "sim:ideogram-v3-turbo"]
    assert out["routing"]["mode"] == "staged"
    assert out["routing"]["classes"]["layout"]["model"] == "ideogram-v3-turbo"
    shown = invoke("runs", "show", out["run_id"], "--workspace", str(ws), "--json").json()
    layout = shown["stages"][1]
    assert layout["requested_model"] == "class:typography"
    assert layout["substitution"].startswith("class:typography -> ideogram-v3-turbo")


def test_without_limits_the_cheapest_of_the_class_wins_ties_by_id(ws: Path, tmp_path: Path) -> None:
    catalog = Catalog.load()
    for cls in ("typography", "large-format"):
        cfg = config(tmp_path, "", f"{cls}.toml")
        cfg.write_text(cfg.read_text().replace("class:typography", f"class:{cls}"), encoding="utf-8")
        want = min(catalog.of_class(cls), key=lambda e: (e.price_for(256, 256), e.id))
        assert plans(ws, cfg)[1].entry.id == "sim:" + want.id


def test_no_model_qualifying_exits_2_before_any_call_naming_stage_and_class(ws: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path, "min_pass_rate = 0.99\nmax_latency_s = 1.0")
    res = invoke("run", "--config", str(cfg), "--prompt", "a jar labelled 'JAM'", "--simulate",
                 "--workspace", str(ws))
    assert res.code == 2
    assert "stage layout" in res.stderr and "class:typography" in res.stderr
    registry = Workspace.resolve(str(ws), None).registry()
    assert all(r.pipeline_name != "classes" for r in registry.list_runs(limit=1000))  # nothing was started


def test_configured_means_a_key_for_a_real_run(ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path, "", "large.toml")
    cfg.write_text(cfg.read_text().replace("class:typography", "class:large-format"), encoding="utf-8")
    monkeypatch.setenv("IDEOGRAM_API_KEY", "test-key")
    with pytest.raises(InputError, match="stage layout.*class:large-format.*not configured"):
        plans(ws, cfg, simulate=False)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    layout = plans(ws, cfg, simulate=False)[1]
    want = min(Catalog.load().of_class("large-format"), key=lambda e: (e.price_for(256, 256), e.id))
    assert layout.entry.id == want.id and layout.provider == want.provider


def test_an_approved_run_keeps_the_model_chosen_when_it_started(ws: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path, LIMITS + '\ngate = "approval"')
    res = invoke("run", "--config", str(cfg), "--prompt", "a jar labelled 'JAM'", "--simulate",
                 "--workspace", str(ws), "--json")
    out = res.json()["runs"][0]
    assert out["status"] == "awaiting_approval"
    # meanwhile v2a-turbo (cheaper) records enough passes to qualify: a new run would pick it
    registry = Workspace.resolve(str(ws), None).registry()
    record_runs(registry, [("layout", "ideogram-v2a-turbo")], 200, qa_pass={"ideogram-v2a-turbo": 1.0}, seed=9)
    assert plans(ws, cfg)[1].entry.id == "sim:ideogram-v2a-turbo"
    approved = invoke("approve", out["run_id"], "--workspace", str(ws), "--json")
    assert approved.code == 0, approved.stderr
    done = approved.json()["runs"][0]
    assert done["status"] == "completed"
    assert done["stages"][1]["model"] == "sim:ideogram-v3-turbo"
