"""The seed's staged pipeline with the real providers, end to end through the CLI, on loopback vendors.

draft:ideogram-v1-turbo -> layout:ideogram-v2a (remix) -> final:sd3.5-medium (image-to-image, native upscale)
-> hires:gemini-3-pro-image (behind an approval gate). The vendors record what they received, so each stage's
handoff image can be checked against the registry's artifact of the stage before.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.fakes import FakeGoogle, FakeIdeogram, FakeStability
from tests.fakes.fixtures import ALL_KEYS
from tests.providers._cli import as_json, assert_no_key_anywhere, image_gen, rows

BRIEF = 'Product hero shot: stainless steel water bottle, studio lighting, label reading "AQUA PURE"'

STAGED = """
name = "staged-real"
[pipeline]
model = "staged-selection"
stages = ["draft:ideogram-v1-turbo", "layout:ideogram-v2a", "final:sd3.5-medium", "hires:{hires}"]
width = 256
height = 256
on_retired = "fail"
{qa}
[stage.draft]
steps = 20
guidance_scale = 6.0
seed = 42

[stage.layout]
strength = 0.6

[stage.final]
steps = 40
strength = 0.35
upscale = "2x"
adapters = ["color-match", "typography-preserve"]

[stage.hires]
{gate}
strength = 0.3

[budget]
per_run_usd = 1.00

[retry]
initial_s = 0
max_s = 0
"""


def write_config(
    tmp_path: Path,
    *,
    hires: str = "gemini-3-pro-image",
    gate: bool = False,
    qa: bool = False,
    extra: str = "",
) -> Path:
    text = STAGED.format(
        hires=hires,
        gate='gate = "approval"' if gate else "",
        qa="" if qa else "[pipeline.qa]\nenabled = false",
    )
    path = tmp_path / "staged.toml"
    path.write_text(text + extra)
    (tmp_path / "prompts.txt").write_text(BRIEF + "\n")
    return path


def sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def test_staged_pipeline_hands_each_image_to_the_next_stage(
    tmp_path: Path,
    vendor_env: dict[str, str],
    fake_ideogram: FakeIdeogram,
    fake_stability: FakeStability,
    fake_google: FakeGoogle,
) -> None:
    ws = tmp_path / "ws"
    cfg = write_config(tmp_path, gate=True)

    first = image_gen(
        "run",
        "--config",
        str(cfg),
        "--prompt-file",
        str(tmp_path / "prompts.txt"),
        "--workspace",
        str(ws),
        "--json",
    )
    assert first.returncode == 0, first.stderr
    (run,) = as_json(first)["runs"]
    assert [s["status"] for s in run["stages"]][:3] == ["done", "done", "done"]
    assert fake_google.records == []  # the gate holds the expensive stage: nothing sent yet

    approved = image_gen("approve", run["run_id"], "--workspace", str(ws), "--json")
    assert approved.returncode == 0, approved.stderr

    stages = {r["name"]: r for r in rows(ws, "SELECT * FROM stage_runs WHERE run_id = ?", run["run_id"])}
    assert all(s["status"] == "done" for s in stages.values()), stages
    (gen,) = fake_ideogram.calls("/generate")
    assert gen.json["image_request"]["model"] == "V_1_TURBO" and gen.json["image_request"]["seed"] == 42
    (remix,) = fake_ideogram.calls("/remix")
    assert remix.json["model"] == "V_2A" and remix.json["image_weight"] == 40  # strength 0.6
    assert remix.file_sha("image_file") == stages["draft"]["artifact_sha"]
    (sd3,) = fake_stability.calls("/generate/sd3")
    assert sd3.form["mode"] == "image-to-image" and sd3.form["strength"] == "0.35"
    assert sd3.file_sha("image") == stages["layout"]["artifact_sha"]
    (gemini,) = fake_google.calls(":generateContent")
    assert gemini.file_sha("inline_image") == stages["final"]["artifact_sha"]
    assert all(r.auth_ok for v in (fake_ideogram, fake_stability, fake_google) for r in v.records)

    calls = rows(
        ws,
        "SELECT provider, model_id, state, cost_usd, billed, meta FROM calls WHERE run_id = ?",
        run["run_id"],
    )
    assert {c["state"] for c in calls} == {"ok"}
    by_model = {c["model_id"]: c for c in calls}
    assert by_model["ideogram-v1-turbo"]["cost_usd"] == pytest.approx(0.02)
    assert by_model["sd3.5-medium"]["cost_usd"] == pytest.approx(0.035)
    assert '"actual_size"' in by_model["gemini-3-pro-image"]["meta"]

    # Re-running the unchanged pipeline is served from the cache: no vendor sees a new request.
    seen = len(fake_ideogram.records) + len(fake_stability.records) + len(fake_google.records)
    again = image_gen(
        "run",
        "--config",
        str(cfg),
        "--prompt-file",
        str(tmp_path / "prompts.txt"),
        "--workspace",
        str(ws),
        "--json",
    )
    assert again.returncode == 0, again.stderr
    assert len(fake_ideogram.records) + len(fake_stability.records) + len(fake_google.records) == seen

    assert_no_key_anywhere(ws, [first, approved, again], ALL_KEYS)


def test_content_filter_gives_one_clear_message_and_exit_1(
    tmp_path: Path, vendor_env: dict[str, str], fake_ideogram: FakeIdeogram
) -> None:
    fake_ideogram.faults.force("filter")
    cfg = write_config(tmp_path)
    proc = image_gen(
        "run",
        "--config",
        str(cfg),
        "--prompt-file",
        str(tmp_path / "prompts.txt"),
        "--workspace",
        str(tmp_path / "ws"),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert out.count("is_image_safe=false") == 1 and "Traceback" not in out
    (call,) = rows(tmp_path / "ws", "SELECT state, billed, cost_usd, error_kind FROM calls")
    assert call == {
        "state": "failed",
        "billed": 1,
        "cost_usd": pytest.approx(0.02),
        "error_kind": "ContentFiltered",
    }


def test_bad_key_gives_one_clear_message_and_exit_2(
    tmp_path: Path, vendor_env: dict[str, str], fake_stability: FakeStability
) -> None:
    cfg = write_config(tmp_path)
    proc = image_gen(
        "run",
        "--config",
        str(cfg),
        "--prompt-file",
        str(tmp_path / "prompts.txt"),
        "--workspace",
        str(tmp_path / "ws"),
        env={"STABILITY_API_KEY": "sk-not-the-right-key"},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert out.count("the API key was refused") == 1 and "Traceback" not in out
    assert "sk-not-the-right-key" not in out
    assert len(fake_stability.calls("/generate/sd3")) == 1  # not retried


def test_retired_model_gives_one_message_naming_the_successor(
    tmp_path: Path, vendor_env: dict[str, str], fake_ideogram: FakeIdeogram
) -> None:
    cfg = write_config(tmp_path, hires="imagen4")
    proc = image_gen(
        "run",
        "--config",
        str(cfg),
        "--prompt-file",
        str(tmp_path / "prompts.txt"),
        "--workspace",
        str(tmp_path / "ws"),
    )
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert out.count("gemini-3-pro-image") == 1 and "retired" in out
    assert fake_ideogram.records == []  # refused before anything was paid for


def test_vendor_404_for_a_retired_model_names_the_successor(
    tmp_path: Path, vendor_env: dict[str, str], fake_google: FakeGoogle
) -> None:
    """A catalog that still lists Imagen 4 as active: the vendor's 404 becomes one message naming it."""
    cfg = write_config(tmp_path, hires="imagen4", extra='\n[models.imagen-4]\nlifecycle = "active"\n')
    proc = image_gen(
        "run",
        "--config",
        str(cfg),
        "--prompt-file",
        str(tmp_path / "prompts.txt"),
        "--workspace",
        str(tmp_path / "ws"),
    )
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert out.count("use its successor gemini-3-pro-image") == 1
    assert [r.status for r in fake_google.records] == [404]
