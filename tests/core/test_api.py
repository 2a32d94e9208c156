"""The seed's snippets work as written through the Python API."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from image_gen import api
from image_gen.errors import WorkFailed


def test_generate_snippet(ws_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGE_GEN_SIMULATE", "1")
    prompt = "Product hero shot: stainless steel water bottle, studio lighting, sharp text logo on label"
    result = api.generate(model="imagen4", prompt=prompt, width=1024, height=1024, guidance_scale=7.5,
                          workspace=ws_path)
    img = result.image
    assert img.size == (1024, 1024)
    img.save(tmp_path / "imagen4_test.png")
    rec = result.record
    assert rec.status == "completed" and rec.simulated
    assert rec.stages[0].model == "sim:imagen-4"
    assert any("retired" in w for w in rec.warnings)


def test_generate_without_simulation_fails_for_a_retired_model(ws_path: Path) -> None:
    with pytest.raises(WorkFailed, match="gemini-3-pro-image"):
        api.generate(model="imagen4", prompt="x", workspace=ws_path)


def test_generate_pipeline_snippet(ws_path: Path, tmp_path: Path) -> None:
    seed = api.generate(model="ideogram-v2a", prompt='Glass jar of honey, label "BEE GOLD"', width=512, height=512,
                        simulate=True, workspace=ws_path)
    composite = seed.save(tmp_path / "composite.png")
    final_cfg = {
        "model": "sd3.5-medium",
        "steps": 40,
        "upscale": "2x",
        "adapters": ["color-match", "typography-preserve"],
    }
    final_image = api.generate_pipeline(seed_image=str(composite), cfg=final_cfg, simulate=True, workspace=ws_path)
    out = final_image.save(tmp_path / "final_asset.png")
    with Image.open(out) as img:
        assert img.size == (1024, 1024)  # the finishing stage keeps the seed image's size, then upscales 2x
        assert "BEE GOLD" in img.info["parameters"]  # the prompt came from the seed image's metadata
    rec = final_image.record
    assert rec.status == "completed"
    (stage,) = rec.stages
    shown = final_image.workspace.registry().stage_runs(rec.run_id)[0]
    assert shown.input_artifact is not None and shown.params["operation"] == "img2img"
    assert [a["adapter"] for a in shown.adapters or []] == ["color-match", "typography-preserve"]


def test_run_pipeline_many_briefs(ws_path: Path) -> None:
    cfg = {"pipeline": {"stages": ["draft:ideogram-v1-turbo"], "width": 256, "height": 256}}
    outs = api.run_pipeline(cfg, ['can "FIZZ"', 'tin "OLIVE"'], simulate=True, workspace=ws_path)
    assert isinstance(outs, list) and [o.prompt for o in outs] == ['can "FIZZ"', 'tin "OLIVE"']
