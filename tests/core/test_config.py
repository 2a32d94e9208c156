"""The config schema accepts every form users already write and rejects bad input naming file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from image_gen.config import LARGEST, STAGED, load_config
from image_gen.errors import ConfigError
from tests.core.helpers import write

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_staged_shorthand_with_stage_sections() -> None:
    cfg = load_config(EXAMPLES / "staged.toml")
    specs = cfg.stage_specs()
    assert [n for n, _ in specs] == ["draft", "layout", "final", "hires"]
    models = {n: s.model for n, s in specs}
    assert models == {"draft": "ideogram-v1-turbo", "layout": "ideogram-v2a", "final": "sd3.5-medium",
                      "hires": "imagen4"}
    draft = dict(specs)["draft"]
    assert (draft.steps, draft.guidance_scale, draft.seed) == (20, 6.0, 42)
    final = dict(specs)["final"]
    assert final.upscale == "2x" and final.adapters == ["color-match", "typography-preserve"]
    assert dict(specs)["hires"].gate == "approval"


def test_baseline_pipeline_steps_apply_to_the_single_stage() -> None:
    cfg = load_config(EXAMPLES / "baseline.toml")
    ((name, st),) = cfg.stage_specs()
    assert cfg.pipeline.model == LARGEST and st.model == LARGEST and st.steps == 80


def test_single_model_id(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "c.toml", '[pipeline]\nmodel = "ideogram-v2a"\n'))
    ((name, st),) = cfg.stage_specs()
    assert st.model == "ideogram-v2a"


@pytest.mark.parametrize("name", ["draft.json", "final.json"])
def test_flat_per_stage_json(name: str) -> None:
    raw = json.loads((EXAMPLES / name).read_text())
    cfg = load_config(EXAMPLES / name)
    ((stage, st),) = cfg.stage_specs()
    for key, value in raw.items():
        assert getattr(st, key) == value
    assert cfg.pipeline.model == raw["model"]


def test_yaml_is_read(tmp_path: Path) -> None:
    p = write(tmp_path / "c.yaml", "pipeline:\n  model: staged-selection\n  stages: ['a:sd3.5-medium']\n")
    assert load_config(p).stage_specs()[0][1].model == "sd3.5-medium"


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ('[pipeline]\nmodel = "no-such-model"\n', "pipeline.model", "unknown model"),
        ('[pipeline]\nstages = ["draft:ideogram-v1-turbo"]\n[stage.draft]\nstepz = 20\n', "stage.draft.stepz",
         "unknown field"),
        ('[pipeline]\nstages = ["draft:"]\n', "pipeline.stages", "has no model"),
        ('[pipeline]\nstages = ["draft:ideogram-v1-turbo"]\n[stage.draft]\nsteps = -5\n', "stage.draft.steps",
         "greater than 0"),
        ('[pipeline]\nstages = ["f:sd3.5-medium"]\n[stage.f]\nadapters = ["colour-match"]\n', "stage.f.adapters",
         "unknown adapter"),
        ('[pipeline]\nstages = ["f:sd3.5-medium"]\n[stage.f]\nupscale = "3x"\n', "stage.f.upscale", "2x"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, text: str, field: str, expected: str) -> None:
    p = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert str(p) in msg and field in msg and expected in msg, msg


def test_unparseable_file_names_the_file(tmp_path: Path) -> None:
    p = write(tmp_path / "broken.toml", "[pipeline\nmodel = 1\n")
    with pytest.raises(ConfigError, match="broken.toml: cannot parse"):
        load_config(p)


def test_default_is_staged() -> None:
    assert load_config({"pipeline": {"stages": ["a:sd3.5-medium"]}}).pipeline.model == STAGED


def test_schema_is_json_schema() -> None:
    from image_gen.config import config_schema

    schema = config_schema()
    assert schema["type"] == "object" and "pipeline" in schema["properties"]
    assert schema["additionalProperties"] is False


def test_budget_timezone_defaults_to_utc_and_takes_iana_names() -> None:
    base = {"pipeline": {"stages": ["a:sd3.5-medium"]}}
    assert load_config(base).budget.timezone == "UTC"
    assert load_config({**base, "budget": {"timezone": "Asia/Kolkata"}}).budget.timezone == "Asia/Kolkata"
    with pytest.raises(ConfigError) as err:
        load_config({**base, "budget": {"timezone": "Europe/Atlantis"}})
    assert err.value.field == "budget.timezone" and "IANA" in str(err.value)


@pytest.mark.parametrize(("pipeline", "stage", "field"), [
    ({"tile_size": 128}, {"overlap": 64}, "stage.a.overlap"),      # the pair comes from two sections
    ({"overlap": 100}, {"tile_size": 160}, "pipeline.overlap"),
    ({"tile_size": 64}, {}, "pipeline.tile_size"),                   # with the default overlap (32)
    ({}, {"tile_size": 64, "overlap": 40}, "stage.a.overlap"),
])
def test_tile_overlap_is_checked_on_the_merged_stage(pipeline: dict, stage: dict, field: str) -> None:
    data = {"pipeline": {"stages": ["a:sd3.5-medium"], **pipeline}, "stage": {"a": stage}}
    with pytest.raises(ConfigError) as err:
        load_config(data)
    assert err.value.field == field and "half of tile_size" in str(err.value)


def test_aspect_ratio_terms_are_positive_and_normalised() -> None:
    cfg = load_config({"model": "sd3.5-medium", "aspect_ratio": " 16 : 9 "})
    assert cfg.stage_specs()[0][1].aspect_ratio == "16:9"
    for bad in ("16:0", "0:9", "0:0", "-16:9", "16:9:1", "1:17"):
        with pytest.raises(ConfigError) as err:
            load_config({"model": "sd3.5-medium", "aspect_ratio": bad})
        assert err.value.field == "aspect_ratio", bad  # the flat form names the field as written


def test_every_error_is_reported_in_one_message_naming_the_first_field() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"pipeline": {"stages": ["a:sd3.5-medium"], "steps": 0, "strength": 2}})
    msg = str(err.value)
    assert err.value.field == "pipeline.steps"
    assert "pipeline.strength" in msg and "\n" not in msg


def test_single_model_pipeline_takes_at_most_one_stage_section() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"pipeline": {"model": "sd3.5-medium"}, "stage": {"a": {"steps": 4}, "b": {"steps": 8}}})
    assert err.value.field == "stage"


def test_config_imports_no_pipeline_module() -> None:
    import subprocess
    import sys

    code = ("import sys, image_gen.config; bad = sorted(m for m in sys.modules if m.startswith("
            "('image_gen.pipeline', 'image_gen.providers', 'image_gen.store'))); print(bad); assert not bad")
    src = str(Path(__file__).resolve().parents[2] / "src")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": src})
    assert proc.returncode == 0, proc.stdout + proc.stderr
