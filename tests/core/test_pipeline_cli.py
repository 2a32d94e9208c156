"""The staged pipeline end to end through the CLI, on the simulator and the embedded SQLite registry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from image_gen.store.artifacts import JSON_CHUNK, PARAMS_CHUNK
from tests.core.helpers import SMALL_STAGED, db_rows, invoke, write

BRIEFS = [
    'Matte black coffee bag on a wooden counter, label reads "NIGHT OWL ROAST"',
    'Craft beer can on ice, bold label "HOP STORM IPA"',
]


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    return write(tmp_path / "staged.toml", SMALL_STAGED)


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    return write(tmp_path / "prompts.txt", "# briefs\n" + "\n".join(BRIEFS) + "\n")


def run(ws: Path, *args: str):  # noqa: ANN201
    return invoke(*args, "--workspace", str(ws))


def test_staged_run_stops_at_gate_then_cache_then_approve(ws_path: Path, staged: Path, prompts: Path,
                                                          tmp_path: Path) -> None:
    first = run(ws_path, "run", "--config", str(staged), "--prompt-file", str(prompts), "--simulate", "--json")
    assert first.code == 0, first.stderr
    data = first.json()
    assert len(data["runs"]) == len(BRIEFS)
    for r in data["runs"]:
        assert r["status"] == "awaiting_approval" and r["simulated"] is True
        stages = {s["name"]: s for s in r["stages"]}
        assert [s["name"] for s in r["stages"]] == ["draft", "layout", "final", "hires"]
        assert stages["hires"]["status"] == "awaiting_approval" and stages["hires"]["calls"] == 0
        for name in ("draft", "layout", "final"):
            s = stages[name]
            assert s["status"] == "done" and not s["cache_hit"] and s["calls"] >= 1
            assert s["cost_usd"] > 0 and s["latency_s"] > 0
            assert s["model"].startswith("sim:")
        assert stages["draft"]["model"] == "sim:ideogram-v1-turbo"
    assert data["provider_calls"] >= 3 * len(BRIEFS)

    # The same command again: no provider call, every stage before the gate is a cache hit.
    again = run(ws_path, "run", "--config", str(staged), "--prompt-file", str(prompts), "--simulate", "--json")
    assert again.code == 0, again.stderr
    d2 = again.json()
    assert d2["provider_calls"] == 0
    for r in d2["runs"]:
        done = [s for s in r["stages"] if s["status"] == "done"]
        assert len(done) == 3 and all(s["cache_hit"] for s in done)
        assert all(s["cost_usd"] == 0 for s in r["stages"])
    # cached stages hand over the very same artifacts
    for r1, r2 in zip(data["runs"], d2["runs"], strict=True):
        assert [s["artifact"] for s in r1["stages"]] == [s["artifact"] for s in r2["stages"]]

    # Approving one run completes it; the hires stage makes its call.
    run_id = data["runs"][0]["run_id"]
    out_dir = tmp_path / "exported"
    approved = run(ws_path, "approve", run_id, "--note", "ship it", "--out-dir", str(out_dir), "--json")
    assert approved.code == 0, approved.stderr
    r = approved.json()["runs"][0]
    assert r["status"] == "completed"
    hires = r["stages"][-1]
    assert hires["status"] == "done" and hires["calls"] >= 1 and hires["artifact"]
    assert len(list(out_dir.glob("*.png"))) == 4

    # runs show --json: every stage with model, prompt, hyper-parameters, seed, cost, latency, sha, status
    shown = run(ws_path, "runs", "show", run_id, "--json").json()
    assert shown["status"] == "completed" and shown["approvals"][0]["decision"] == "approved"
    for s in shown["stages"]:
        assert s["model"] and s["prompt"] == BRIEFS[0] and s["status"] == "done"
        assert isinstance(s["seed"], int)
        for key in ("steps", "guidance_scale", "width", "height", "strength", "num_images", "operation"):
            assert key in s["params"]
        assert s["cost_usd"] >= 0 and s["latency_s"] >= 0 and len(s["artifact_sha256"]) == 64
    draft = shown["stages"][0]
    assert (draft["params"]["steps"], draft["params"]["guidance_scale"], draft["seed"]) == (20, 6.0, 42)
    # handoff: each later stage started from the previous stage's image
    for prev, nxt in zip(shown["stages"], shown["stages"][1:], strict=False):
        assert nxt["input_artifact"] == prev["artifact_sha256"]

    # artifacts are content-addressed and carry their parameters
    art = ws_path / ".image-gen" / "artifacts" / draft["artifact_sha256"][:2] / f"{draft['artifact_sha256']}.png"
    assert hashlib.sha256(art.read_bytes()).hexdigest() == draft["artifact_sha256"]
    with Image.open(art) as img:
        params = img.info[PARAMS_CHUNK]
        assert params.startswith(BRIEFS[0]) and "Steps: 20" in params and "Seed: 42" in params
        assert "CFG scale: 6.0" in params and "Simulated: true" in params
        assert '"stage": "draft"' in img.info[JSON_CHUNK]

    # search over prompt text
    found = run(ws_path, "runs", "list", "--search", "coffee wooden", "--json").json()["runs"]
    assert found and all("coffee" in r["prompt"].lower() for r in found)
    cmp = run(ws_path, "runs", "compare", run_id, data["runs"][1]["run_id"], "--json").json()["runs"]
    assert [c["run_id"] for c in cmp] == [run_id, data["runs"][1]["run_id"]]


def test_reject_ends_the_run(ws_path: Path, staged: Path) -> None:
    r = run(ws_path, "run", "--config", str(staged), "--prompt", BRIEFS[1], "--simulate", "--json")
    run_id = r.json()["runs"][0]["run_id"]
    rej = run(ws_path, "reject", run_id, "--note", "wrong colour", "--json")
    assert rej.code == 0
    assert rej.json()["runs"][0]["status"] == "rejected"
    again = run(ws_path, "approve", run_id)
    assert again.code == 1 and "already rejected" in again.stderr  # a decision is final; nothing is called


def test_budget_stops_before_the_call(ws_path: Path, tmp_path: Path) -> None:
    cfg = write(tmp_path / "b.toml", SMALL_STAGED + "\n[budget]\nper_run_usd = 0.05\n")
    r = run(ws_path, "run", "--config", str(cfg), "--prompt", BRIEFS[0], "--simulate", "--json")
    assert r.code == 1
    out = r.json()["runs"][0]
    assert out["status"] == "budget_stopped"
    assert "budget" in out["reason"] and "0.05" in out["reason"]
    shown = run(ws_path, "runs", "show", out["run_id"], "--json").json()
    spent = sum(c["cost_usd"] for s in shown["stages"] for c in s["calls"])
    assert spent <= 0.05
    layout = shown["stages"][1]
    assert layout["status"] == "budget_stopped" and layout["calls"] == []


def test_daily_budget(ws_path: Path, tmp_path: Path) -> None:
    cfg = write(tmp_path / "b.toml", SMALL_STAGED + "\n[budget]\nper_day_usd = 0.07\n")
    first = run(ws_path, "run", "--config", str(cfg), "--prompt", BRIEFS[0], "--simulate", "--json").json()
    assert first["runs"][0]["status"] == "budget_stopped"
    second = run(ws_path, "run", "--config", str(cfg), "--prompt", BRIEFS[1], "--simulate", "--json")
    assert second.json()["runs"][0]["status"] == "budget_stopped"
    assert "daily cap" in second.json()["runs"][0]["reason"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["generate", "--model", "no-such-model", "--prompt", "x", "--simulate"], "unknown model"),
        (["--model", "ideogram-v2a", "--prompt-file", "missing.txt", "--simulate"], "missing.txt"),
        (["run", "--config", "STAGED", "--prompt", "x", "--steps", "3"], "No such option"),
        (["generate", "--model", "sd3.5-medium", "--steps", "-4", "--prompt", "x"], "--steps"),
        (["run", "--config", "BAD", "--prompt", "x", "--simulate"], "stage.draft.stepz"),
        (["run", "--config", "NOMODEL", "--prompt", "x", "--simulate"], "has no model"),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(ws_path: Path, staged: Path, tmp_path: Path, args: list[str],
                                               needle: str) -> None:
    bad = write(tmp_path / "bad.toml", '[pipeline]\nstages = ["draft:ideogram-v1-turbo"]\n[stage.draft]\nstepz = 2\n')
    nomodel = write(tmp_path / "nomodel.toml", '[pipeline]\nstages = ["draft:ideogram-v1-turbo", "final"]\n')
    subst = {"STAGED": str(staged), "BAD": str(bad), "NOMODEL": str(nomodel)}
    args = [subst.get(a, a) for a in args]
    run(ws_path, "run", "--config", str(staged), "--prompt", BRIEFS[0], "--simulate")
    before = db_rows(ws_path)
    files_before = sorted(p for p in ws_path.rglob("*") if p.is_file() and "-wal" not in p.name
                          and "-shm" not in p.name)
    r = run(ws_path, *args)
    assert r.code == 2, (r.stdout, r.stderr)
    assert needle in r.stderr
    assert len([ln for ln in r.stderr.strip().splitlines() if ln.strip()]) <= 3
    assert db_rows(ws_path) == before
    files_after = sorted(p for p in ws_path.rglob("*") if p.is_file() and "-wal" not in p.name
                         and "-shm" not in p.name)
    assert files_after == files_before


def test_unreadable_seed_image_is_bad_input(ws_path: Path, tmp_path: Path) -> None:
    from image_gen import api
    from image_gen.errors import InputError

    broken = write(tmp_path / "composite.png", "not a png")
    with pytest.raises(InputError) as err:
        api.generate_pipeline(seed_image=broken, cfg={"model": "sd3.5-medium", "steps": 40}, simulate=True,
                              workspace=ws_path)
    assert "composite.png" in str(err.value) and "seed_image" in str(err.value)
    assert db_rows(ws_path) == {}


def test_generate_default_command_with_batch_and_out_dir(ws_path: Path, tmp_path: Path) -> None:
    prompts = write(tmp_path / "prompts.txt", BRIEFS[0] + "\n")
    out = tmp_path / "tiles"
    r = run(ws_path, "--model", "ideogram-v2a", "--prompt-file", str(prompts), "--batch", "2",
            "--out-dir", str(out), "--width", "512", "--height", "512", "--simulate", "--json")
    assert r.code == 0, r.stderr
    run_ = r.json()["runs"][0]
    assert run_["status"] == "completed" and run_["stages"][0]["model"] == "sim:ideogram-v2a"
    shown = run(ws_path, "runs", "show", run_["run_id"], "--json").json()
    call = shown["stages"][0]["calls"][0]
    assert call["state"] == "ok"
    outputs = shown["stages"][0]["outputs"]
    assert len(outputs) == 2 and outputs[0] == shown["stages"][0]["artifact_sha256"]
    assert shown["stages"][0]["params"]["num_images"] == 2
    exported = sorted(out.glob("*.png"))
    assert len(exported) == 2
    seeds = []
    for png in exported:
        with Image.open(png) as img:
            assert img.size == (512, 512)
            seeds.append(img.info[PARAMS_CHUNK].split("Seed: ")[1].split(",")[0])
    assert len(set(seeds)) == 2  # each image of the batch carries its own seed


def test_retired_model_real_run_fails_naming_successor(ws_path: Path) -> None:
    r = run(ws_path, "generate", "--model", "imagen4", "--prompt", "x")
    assert r.code == 1 and "retired" in r.stderr and "gemini-3-pro-image" in r.stderr
    assert db_rows(ws_path) == {}


def test_retired_model_dry_run_simulates_and_warns(ws_path: Path) -> None:
    r = run(ws_path, "generate", "--model", "imagen4", "--prompt", 'bottle "AQUA"', "--simulate", "--width", "512",
            "--height", "512", "--json")
    assert r.code == 0, r.stderr
    out = r.json()["runs"][0]
    assert out["stages"][0]["model"] == "sim:imagen-4"
    assert any("real run would fail" in w and "gemini-3-pro-image" in w for w in out["warnings"])


def test_missing_key_is_bad_input(ws_path: Path) -> None:
    r = run(ws_path, "generate", "--model", "ideogram-v2a", "--prompt", "x")
    assert r.code == 2 and "not configured" in r.stderr
    assert db_rows(ws_path) == {}


def test_models_and_config_commands(staged: Path) -> None:
    r = invoke("models", "--all", "--json")
    assert r.code == 0
    ids = {m["id"]: m for m in r.json()["models"]}
    assert ids["imagen-4"]["retired"] and ids["imagen-4"]["successor"]
    chk = invoke("config", "check", str(staged), "--json")
    assert chk.code == 0 and [s["stage"] for s in chk.json()["stages"]] == ["draft", "layout", "final", "hires"]
    assert any("retired" in w for w in chk.json()["warnings"])
    schema = invoke("config", "schema")
    assert schema.code == 0 and "pipeline" in schema.json()["properties"]


def test_main_called_from_python_runs_the_command() -> None:
    """The group lists commands without importing them only for its own help, not when embedded."""
    import json
    import subprocess
    import sys

    code = "from image_gen.cli import main; main(['models', '--json'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert any(m["id"] == "sd3.5-medium" for m in json.loads(out.stdout)["models"])
    helped = subprocess.run([sys.executable, "-m", "image_gen.cli", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "upscale" in helped.stdout


def test_a_final_asset_failing_qa_exits_1_with_the_reason(ws_path: Path, tmp_path: Path) -> None:
    cfg = write(tmp_path / "typo.toml", '[pipeline]\nmodel = "ideogram-v2a"\nwidth = 512\nheight = 512\n'
                                        "[sim]\ntypo_rate = 1.0\nsoft_rate = 0.0\nfail_rate = 0.0\n")
    r = run(ws_path, "run", "--config", str(cfg), "--prompt", BRIEFS[1], "--simulate", "--json")
    assert r.code == 1
    out = r.json()["runs"][0]
    assert out["status"] == "completed" and out["qa_passed"] is False
    shown = run(ws_path, "runs", "show", out["run_id"], "--json").json()
    (reason,) = shown["stages"][0]["qa"]["reasons"]
    assert "HOP STORM IPA" in reason and "read as" in reason


@pytest.mark.parametrize("tiles", [False, True])
def test_asked_size_beyond_native_is_reached_by_upscale(ws_path: Path, tiles: bool) -> None:
    extra = ["--tile-size", "512", "--overlap", "32"] if tiles else []
    r = run(ws_path, "generate", "--model", "ideogram-v2a", "--prompt", BRIEFS[1], "--width", "1920", "--height",
            "1080", "--simulate", "--json", *extra)
    assert r.code in (0, 1), r.stderr
    out = r.json()["runs"][0]
    assert out["status"] == "completed"
    shown = run(ws_path, "runs", "show", out["run_id"], "--json").json()
    stage = shown["stages"][0]
    purposes = [c["purpose"] for c in stage["calls"]]
    # the model renders at its native ~1 megapixel, then the runner upscales to the asked size
    assert purposes[0] == "stage"
    assert purposes[1:] == (["tile"] * (len(purposes) - 1) if tiles else ["upscale"])
    first = stage["calls"][0]
    assert first["state"] == "ok"
    art = ws_path / ".image-gen" / "artifacts" / stage["artifact_sha256"][:2] / f"{stage['artifact_sha256']}.png"
    with Image.open(art) as img:
        assert img.size == (1920, 1080)
        fixes = json.loads(img.info[JSON_CHUNK])["size_fixes"]
    assert any("upscaled 2x" in f for f in fixes)
