"""Focused checks of the core's other promises: the approval gate holds whatever the cache holds, the cache key
ignores run policy, and run ids are matched exactly or by a unique plain prefix."""

from __future__ import annotations

from pathlib import Path

from image_gen.store.models import Run, StageRun
from image_gen.store.registry import Registry
from tests.core.helpers import invoke, write
from tests.reliability._support import GATED

PROMPT = "Jar of marmalade, studio shot"


def _run(cfg: Path, ws: Path, prompt: str = PROMPT) -> dict:
    r = invoke("run", "--config", str(cfg), "--prompt", prompt, "--simulate", "--workspace", str(ws), "--json")
    assert r.code == 0, r.stderr
    return dict(r.json()["runs"][0])


def _decide(action: str, run_id: str, ws: Path, *extra: str) -> dict:
    r = invoke(action, run_id, *extra, "--workspace", str(ws), "--json")
    assert r.code == 0, r.stderr
    return dict(r.json())


def test_the_gate_holds_whatever_the_cache_holds(tmp_path: Path, ws_path: Path) -> None:
    cfg = write(tmp_path / "gated.toml", GATED)
    first = _run(cfg, ws_path)
    assert first["status"] == "awaiting_approval"
    done = _decide("approve", first["run_id"], ws_path)
    assert done["runs"][0]["status"] == "completed" and done["provider_calls"] == 2

    # the same brief again: its hires image is cached, yet the new run waits for its own decision
    again = _run(cfg, ws_path)
    assert again["status"] == "awaiting_approval" and again["provider_calls"] == 0
    assert [s["status"] for s in again["stages"]] == ["done", "awaiting_approval"]
    approved = _decide("approve", again["run_id"], ws_path)
    run = approved["runs"][0]
    assert run["status"] == "completed" and approved["provider_calls"] == 0 and run["cost_usd"] == 0
    hires = run["stages"][1]
    assert hires["cache_hit"] and hires["cost_usd"] == 0 and hires["calls"] == 0
    assert "taken from the cache at no cost" in hires["reason"] and "approved by" in hires["reason"]
    assert hires["artifact"] == done["runs"][0]["stages"][1]["artifact"]

    # a rejected run's re-run waits too
    third = _run(cfg, ws_path)
    assert third["status"] == "awaiting_approval"
    assert _decide("reject", third["run_id"], ws_path, "--note", "not now")["runs"][0]["status"] == "rejected"
    fourth = _run(cfg, ws_path)
    assert fourth["status"] == "awaiting_approval" and fourth["provider_calls"] == 0


POLICY = """
name = "policy"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "final:sd3.5-medium"]
width = 128
height = 128
[pipeline.qa]
check_text = false
[stage.final]
strength = 0.4
{policy}
"""


def test_the_cache_key_ignores_run_policy(tmp_path: Path, ws_path: Path) -> None:
    first = write(tmp_path / "a.toml", POLICY.format(policy="retries = 1\nmax_rerolls = 0"))
    out = _run(first, ws_path)
    assert out["status"] == "completed" and out["provider_calls"] >= 2
    changed = write(tmp_path / "b.toml", POLICY.format(policy='retries = 6\nmax_rerolls = 3\n'
                                                               'fallback_model = "sd3.5-large-turbo"\n'
                                                               'escalate_to = "sd3.5-large"\n'
                                                               "[stage.final.qa]\nsharpness_min = 0.0"))
    again = _run(changed, ws_path)
    assert again["status"] == "completed"
    assert again["provider_calls"] == 0, again  # changing run policy never re-bills a rendered stage
    assert all(s["cache_hit"] for s in again["stages"])


def test_run_ids_match_exactly_or_by_a_unique_plain_prefix(tmp_path: Path, ws_path: Path) -> None:
    cfg = write(tmp_path / "gated.toml", GATED)
    real = _run(cfg, ws_path)["run_id"]
    reg = Registry.for_path(ws_path / ".image-gen" / "registry.db")
    planted = ["4b4a00000000", "abcd00000001", "abcd00000002"]
    try:
        with reg.session() as s:
            for rid in planted:
                s.add(Run(id=rid, status="awaiting_approval", prompt="planted", config={}))
                s.flush()
                s.add(StageRun(run_id=rid, idx=0, name="hires", model_id="imagen-4", requested_model="imagen-4",
                               provider="sim", params={}, status="awaiting_approval"))
    finally:
        reg.close()

    for bad in ("%", "%%%%", "4b4_", "____", "abc", "4b4%", "abcd*"):
        r = invoke("approve", bad, "--workspace", str(ws_path))
        assert r.code == 2, (bad, r.stderr)  # bad input: never a pattern, never a short prefix
    assert "4b4a00000000" not in invoke("approve", "4b4_", "--workspace", str(ws_path)).stderr

    ambiguous = invoke("approve", "abcd", "--workspace", str(ws_path))
    assert ambiguous.code == 2
    assert "abcd00000001" in ambiguous.stderr and "abcd00000002" in ambiguous.stderr  # the candidates

    unique = real[:5] if not real.startswith(("4b4a", "abcd")) else real
    ok = invoke("approve", unique, "--workspace", str(ws_path), "--json")
    assert ok.code == 0, ok.stderr
    assert ok.json()["runs"][0]["run_id"] == real and ok.json()["runs"][0]["status"] == "completed"
    reg = Registry.for_path(ws_path / ".image-gen" / "registry.db")
    try:  # the planted runs were left alone
        assert {r.id: r.status for r in reg.list_runs(ids=planted)} == dict.fromkeys(planted, "awaiting_approval")
        assert not reg.approvals("4b4a00000000")
    finally:
        reg.close()
