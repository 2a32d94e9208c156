"""A staged pipeline mixing simulated stages with the local diffusers engine, run through the CLI."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.core.helpers import invoke, write
from tests.local._oom import registered_as_local

BRIEF = 'Matte black coffee bag on a counter, label reads "NIGHT OWL"'


def mixed_config(tmp_path: Path, sd3: Path, sd: Path | None, extra: str = "", final: str = "") -> Path:
    # The catalog's sd3.5-medium is routed to the local provider by config; the polish stage names a
    # UNet pipeline folder directly as local:<folder>.
    polish = f', "polish:local:{sd}"' if sd else ""
    polish_settings = "[stage.polish]\nsteps = 4\nstrength = 0.3" if sd else ""
    return write(
        tmp_path / "mixed.toml",
        f"""
name = "mixed-local"
[pipeline]
stages = ["draft:sim:ideogram-v1-turbo", "final:sd3.5-medium"{polish}]
width = 96
height = 64
[pipeline.qa]
enabled = false
[stage.draft]
seed = 42
[stage.final]
provider = "local"
steps = 4
strength = 0.5
tile_size = 64
overlap = 16
{final}
{polish_settings}
[providers.local.options]
device = "cpu"
models = {{ "sd3.5-medium" = "{sd3}" }}
{extra}
""",
    )


def test_staged_run_hands_a_simulated_draft_to_local_stages(
    tmp_path: Path, ws_path: Path, tiny_sd3: Path, tiny_sd: Path
) -> None:
    config = mixed_config(tmp_path, tiny_sd3, tiny_sd)
    out_dir = tmp_path / "out"
    ran = invoke("run", "--config", str(config), "--prompt", BRIEF, "--workspace", str(ws_path),
                 "--out-dir", str(out_dir), "--json")
    assert ran.code == 0, ran.stderr
    run = ran.json()["runs"][0]
    assert run["status"] == "completed" and run["simulated"] is False
    draft, final, polish = run["stages"]
    assert draft["model"] == "sim:ideogram-v1-turbo"
    assert final["model"] == "sd3.5-medium" and polish["model"] == f"local:{tiny_sd}"
    assert all(s["status"] == "done" and s["calls"] == 1 for s in run["stages"])
    assert final["cost_usd"] > 0  # CPU seconds at the local price, not the catalog's per-image price
    assert len({s["artifact"] for s in run["stages"]}) == 3

    shown = invoke("runs", "show", run["run_id"], "--workspace", str(ws_path), "--json").json()
    by_name = {s["stage"]: s for s in shown["stages"]}
    f, p = by_name["final"], by_name["polish"]
    assert f["provider"] == "local" and p["provider"] == "local"
    # Each local stage starts from the stage before it (image-to-image) ...
    assert f["input_artifact"] == draft["artifact"] and p["input_artifact"] == final["artifact"]
    assert [c["operation"] for c in f["calls"]] == ["img2img"]
    # ... and the stage's tile settings reached the engine: tiled SD3, untiled UNet, each rung recorded.
    vendor = f["params"]["vendor"]
    assert vendor["pipeline"] == "StableDiffusion3Img2ImgPipeline" and vendor["tiled"] is True
    assert vendor["tile_plan"]["tile_size"] == 64 and len(vendor["tile_plan"]["tiles"]) == 2
    assert [(e["step"], e["outcome"]) for e in vendor["memory_ladder"]] == [("base", "ok")]
    assert p["params"]["vendor"]["pipeline"] == "StableDiffusionImg2ImgPipeline"
    exported = sorted(out_dir.glob("*.png"))
    assert len(exported) == 3
    assert all(Image.open(x).size == (96, 64) for x in exported)
    # the A1111 parameters name the local engine's real sampler (the pipeline's scheduler)
    from image_gen.store.artifacts import read_metadata

    final_png = ws_path / ".image-gen" / "artifacts" / final["artifact"][:2] / f"{final['artifact']}.png"
    assert f"Sampler: {vendor['sampler']}" in read_metadata(final_png)["parameters"]
    assert vendor["sampler"].endswith("Scheduler")

    # Local renders are seeded per image, so a re-run is served from the cache without a provider call.
    again = invoke("run", "--config", str(config), "--prompt", BRIEF, "--workspace", str(ws_path), "--json")
    assert again.code == 0, again.stderr
    assert again.json()["provider_calls"] == 0


def test_exhausted_memory_ladder_falls_back_to_the_stage_fallback_model(
    tmp_path: Path, ws_path: Path, tiny_sd3: Path
) -> None:
    config = mixed_config(
        tmp_path, tiny_sd3, None,
        extra='tile_batch = 1\noom_inject = ["base", "vae_tiling", "cpu_offload", "tiled", "smaller_batch"]',
        final='fallback_model = "sim:sd3.5-large-turbo"',
    )
    with registered_as_local():  # the test-only provider that injects out-of-memory errors, under "local"
        ran = invoke("run", "--config", str(config), "--prompt", BRIEF, "--workspace", str(ws_path), "--json")
    assert ran.code == 0, ran.stderr
    run = ran.json()["runs"][0]
    final = run["stages"][1]
    assert final["status"] == "done"
    assert final["model"] == "sim:sd3.5-large-turbo"  # the stage records the model that made its image
    shown = invoke("runs", "show", run["run_id"], "--workspace", str(ws_path), "--json").json()
    stage = {s["stage"]: s for s in shown["stages"]}["final"]
    calls = stage["calls"]
    assert calls[0]["cost_usd"] > 0  # the engine's failed attempts are charged at the local rate
    assert [(c["provider"], c["purpose"], c["state"]) for c in calls] == [
        ("local", "stage", "failed"), ("sim", "fallback", "ok")]
    assert calls[0]["error_kind"] == "LocalOutOfMemory"
    assert "every rung of the memory ladder" in calls[0]["error"] and "tiled:oom" in calls[0]["error"]


def test_generate_flags_tile_size_and_overlap_reach_the_local_engine(
    tmp_path: Path, ws_path: Path, tiny_sd3: Path
) -> None:
    out_dir = tmp_path / "out"
    ran = invoke("generate", "-m", f"local:{tiny_sd3}", "--tile-size", "64", "--overlap", "16", "--width", "160",
                 "--height", "112", "--steps", "2", "--seed", "3", "-p", BRIEF, "--workspace", str(ws_path),
                 "--out-dir", str(out_dir), "--no-qa", "--json")  # random tiny weights draw noise
    assert ran.code == 0, ran.stderr
    run = ran.json()["runs"][0]
    assert run["stages"][0]["status"] == "done"
    shown = invoke("runs", "show", run["run_id"], "--workspace", str(ws_path), "--json").json()
    vendor = shown["stages"][0]["params"]["vendor"]
    assert vendor["tiled"] is True
    assert (vendor["tile_plan"]["tile_size"], vendor["tile_plan"]["overlap"]) == (64, 16)
    assert len(vendor["tile_plan"]["tiles"]) == 6  # 3 x 2 tiles of 64 px cover 160 x 112
    assert shown["stages"][0]["seed"] == 3
    (png,) = out_dir.glob("*.png")
    assert Image.open(png).size == (160, 112)
