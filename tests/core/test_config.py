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
