"""The registry's blocks: writes in one thread's ``session()`` block (however nested) commit together or not at
all; reads inside a block see its own writes; another thread never joins it (on SQLite it waits its turn); the hot
path's Core statements fill defaults, return keys and read rows back as model objects. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from image_gen.store.models import Artifact, Call, Run, StageRun
from image_gen.store.registry import Registry


@pytest.fixture(params=["sqlite", "postgres"])
def reg(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else f"sqlite:///{tmp_path}/r.db"
    registry = Registry(url)
    request.addfinalizer(registry.close)
    return registry


def _run(reg: Registry, run_id: str) -> None:
    reg.insert(Run(id=run_id, status="running", pipeline_name="p", prompt="x", config={}, config_source="c"))


def test_a_block_commits_all_its_writes_or_none(reg: Registry) -> None:
    _run(reg, "r1")
    with pytest.raises(RuntimeError), reg.session():
        reg.update(Run, "r1", reason="first")
        with reg.session():  # nested: the same transaction
            reg.insert(StageRun(run_id="r1", idx=0, name="s", model_id="m", requested_model="m", provider="sim",
                                params={}, status="pending"))
            assert reg.transition("r1", ["running"], "failed")
        raise RuntimeError("after the writes")
    run = reg.get_run("r1")
    assert run is not None and run.status == "running" and run.reason is None
    assert reg.stage_runs("r1") == []
    with reg.session():
        reg.update(Run, "r1", reason="kept")
        assert reg.transition("r1", ["running"], "completed")
    run = reg.get_run("r1")
    assert run is not None and (run.status, run.reason) == ("completed", "kept")


def test_reads_in_a_block_see_its_writes_and_others_see_them_only_after(reg: Registry) -> None:
    _run(reg, "r2")
    seen: dict[str, object] = {}
    with reg.session():
        reg.update(Run, "r2", reason="inside")
        run = reg.get_run("r2")
        seen["inside"] = run.reason if run else None
        t = threading.Thread(target=lambda: seen.setdefault("other", (reg.get_run("r2") or Run()).reason))
        t.start()
        t.join(10)
    assert seen == {"inside": "inside", "other": None}
    run = reg.get_run("r2")
    assert run is not None and run.reason == "inside"


def test_another_threads_write_waits_for_the_block_and_is_not_lost(reg: Registry) -> None:
    _run(reg, "r3")
    order: list[str] = []

    def other() -> None:
        reg.update(Run, "r3", error_kind="other")
        order.append("other wrote")

    with reg.session():
        reg.update(Run, "r3", reason="block")
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.3)  # the other writer is blocked (SQLite: its turn; PostgreSQL: the row lock)
        order.append("block ends")
    t.join(30)
    assert order == ["block ends", "other wrote"]
    run = reg.get_run("r3")
    assert run is not None and (run.reason, run.error_kind) == ("block", "other")


def test_core_writes_fill_defaults_return_keys_and_read_back(reg: Registry) -> None:
    _run(reg, "r4")
    call = reg.insert(Call(run_id="r4", model_id="m", provider="sim", operation="generate", request={"a": [1, 2]},
                           state="sent", request_digest="d1", expected_cost_usd=0.5, cost_usd=0.5))
    assert isinstance(call.id, int) and call.created_at is not None and call.attempt == 1
    second = reg.insert(Call(run_id="r4", model_id="m", provider="sim", operation="generate", request={},
                             state="sent", cost_usd=0.25))
    assert second.id == call.id + 1
    reg.update(Call, call.id, state="ok", latency_s=1.5, meta={"artifacts": ["abc"]})
    found = reg.ok_call("r4", "d1")
    assert found is not None and found.id == call.id and found.meta == {"artifacts": ["abc"]}
    assert found.request == {"a": [1, 2]}
    assert reg.ok_call("r4", "other") is None
    assert reg.call_totals(run_id="r4") == (0.75, 1.5, 2)
    assert reg.call_counts("r4") == {None: 2}
    with pytest.raises(KeyError):
        reg.update(Call, 999999, state="ok")
    reg.add_artifact(Artifact(sha256="s" * 64, path="p", width=2, height=3, format="PNG", size_bytes=10))
    reg.add_artifact(Artifact(sha256="s" * 64, path="other", width=9, height=9, format="PNG", size_bytes=1))
    art = reg.artifact("s" * 64)
    assert art is not None and (art.path, art.width) == ("p", 2)  # the first writer wins
    assert not reg.transition("r4", ["completed"], "failed")  # compare-and-set: not from running


def test_ctrl_c_while_a_run_is_being_finished_leaves_it_interrupted_not_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's final status and its lease are written in one transaction; Ctrl-C inside it rolls both back, and
    the run, still held by its runner, is marked interrupted (never left ``running`` with nobody holding it)."""
    from image_gen.config import load_config
    from image_gen.errors import RunsInterrupted
    from image_gen.pipeline.runner import Brief, Runner
    from image_gen.workspace import Workspace

    cfg = load_config({"pipeline": {"stages": ["draft:ideogram-v1-turbo"], "width": 128, "height": 128,
                                    "qa": {"enabled": False}}})
    runner = Runner(Workspace(tmp_path / "ws"), cfg, simulate=True)
    real = Registry.transition
    interrupted: list[str] = []

    def transition_then_interrupt(self: Registry, run_id: str, *args: object, **kwargs: object) -> bool:
        done = real(self, run_id, *args, **kwargs)  # type: ignore[arg-type]
        if not interrupted and kwargs.get("final_artifact") is not None:  # the run's final status, once:
            interrupted.append(run_id)  # after its last writes, before their commit
            raise KeyboardInterrupt
        return done

    monkeypatch.setattr(Registry, "transition", transition_then_interrupt)
    with pytest.raises(RunsInterrupted) as caught:
        runner.start(Brief("a tin of tea"))
    (run_id,) = caught.value.run_ids
    run = runner.registry.get_run(run_id)
    assert run is not None and run.status == "interrupted" and run.lease_owner is None, run
