"""Properties of the config parser: any mapping either loads into a Config or raises ConfigError naming a field
(never another exception), and a loaded Config round-trips through ``model_dump``."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from image_gen.config import STAGE_FIELDS, Config, parse_config
from image_gen.errors import ConfigError

MODELS = ["sd3.5-medium", "ideogram-v2a", "ideogram-v1-turbo", "imagen4", "sim:sd3.5-medium", "largest-available",
          "no-such-model", ""]
NAMES = ["draft", "final", "a", "my stage", "", "x.y"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 5000), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "16:9", "16:0", "0:0", "1:100", "2x", "approval", "UTC", "Mars/Base", "fail", "successor",
                     "color-match", "http://localhost:1", "ftp://x", *MODELS]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["a", "enabled", "x"]), inner, max_size=2), max_leaves=6)

stage_keys = sorted(STAGE_FIELDS)
stage = st.dictionaries(st.sampled_from([*stage_keys, "stepz"]), values, max_size=5)
stage_spec = st.builds(lambda n, m: f"{n}:{m}", st.sampled_from(NAMES), st.sampled_from(MODELS)) | st.text(max_size=8)
pipeline = st.fixed_dictionaries(
    {}, optional={"model": st.sampled_from([*MODELS, "staged-selection"]) | values,
                  "stages": st.lists(stage_spec, max_size=4) | values,
                  **{k: values for k in ("steps", "tile_size", "overlap", "aspect_ratio", "width", "strength")}},
)
configs = st.fixed_dictionaries(
    {},
    optional={
        "pipeline": pipeline | values,
        "stage": st.dictionaries(st.sampled_from(NAMES), stage | values, max_size=3),
        "budget": st.dictionaries(st.sampled_from(["per_run_usd", "per_day_usd", "timezone", "cap"]), values,
                                  max_size=3),
        "retry": st.dictionaries(st.sampled_from(["initial_s", "max_s", "max_retry_after_s"]), values, max_size=3),
        "models": st.dictionaries(st.sampled_from(["sd3.5-medium", "new-model"]),
                                  st.dictionaries(st.sampled_from(["price_per_image", "aspect_ratios", "provider",
                                                                   "default_steps"]), values, max_size=2),
                                  max_size=2),
        "concurrency": values,
        "simulate": values,
        "unknown_top": values,
    },
)
# The flat per-stage form: a model plus stage fields at the top level.
flat = st.builds(lambda m, rest: {"model": m, **rest}, st.sampled_from(MODELS) | values, stage)


# Mostly valid configs, so that loading and the round trip are exercised often, not only the errors.
GOOD_MODELS = ["sd3.5-medium", "ideogram-v2a", "ideogram-v1-turbo", "sim:sd3.5-medium"]
good_stage = st.fixed_dictionaries({}, optional={
    "steps": st.integers(1, 500), "guidance_scale": st.floats(0, 50), "seed": st.integers(0, 2**32 - 2),
    "width": st.integers(1, 4096), "height": st.integers(1, 4096), "strength": st.floats(0, 1),
    "aspect_ratio": st.sampled_from(["16:9", "1:1", "4:3", "9:16"]), "num_images": st.integers(1, 8),
    "tile_size": st.integers(128, 4096), "overlap": st.integers(0, 63), "upscale": st.sampled_from(["2x", "4x"]),
    "adapters": st.lists(st.sampled_from(["color-match", "typography-preserve"]), max_size=2),
    "retries": st.integers(0, 20), "gate": st.just("approval"), "qa": st.fixed_dictionaries(
        {}, optional={"enabled": st.booleans(), "text_min_similarity": st.floats(0, 1)}),
    "fallback_model": st.sampled_from(GOOD_MODELS), "options": st.dictionaries(st.sampled_from(["a", "b"]),
                                                                                 st.integers() | st.text(max_size=3)),
})
good_configs = st.builds(
    lambda names, models, stages, budget, retry: {
        "pipeline": {"stages": [f"{n}:{m}" for n, m in zip(names, models, strict=False)]},
        "stage": {n: s for n, s in zip(names, stages, strict=False)}, "budget": budget, "retry": retry},
    st.lists(st.sampled_from(["draft", "layout", "final", "hires"]), min_size=1, max_size=4, unique=True),
    st.lists(st.sampled_from(GOOD_MODELS), min_size=4, max_size=4),
    st.lists(good_stage, min_size=4, max_size=4),
    st.fixed_dictionaries({}, optional={"per_run_usd": st.floats(0, 1e6), "per_day_usd": st.floats(0, 1e6),
                                        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])}),
    st.fixed_dictionaries({}, optional={"initial_s": st.floats(0.01, 10), "max_s": st.floats(10, 3600)}),
)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs | flat | good_configs)
def test_any_mapping_loads_or_raises_config_error_naming_a_field(data: dict[str, Any]) -> None:
    try:
        cfg = parse_config(data, source="prop.toml")
    except ConfigError as exc:
        assert exc.file == "prop.toml"
        assert exc.field, f"no field named: {exc}"
        assert str(exc).startswith(f"prop.toml: {exc.field}: ")
        assert "\n" not in str(exc)
        return
    assert isinstance(cfg, Config)
    dumped = cfg.model_dump()
    assert _finite(dumped)
    again = parse_config(dumped, source="dump")
    assert again == cfg and again.model_dump() == dumped
    assert [(n, s) for n, s in again.stage_specs()] == [(n, s) for n, s in cfg.stage_specs()]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["16:9", "4:3", "1:1", "9:16", "21:9"]), st.integers(64, 4096), st.integers(0, 2047))
def test_valid_stage_settings_always_load(ratio: str, tile: int, overlap: int) -> None:
    data = {"pipeline": {"stages": ["a:sd3.5-medium"], "aspect_ratio": ratio, "tile_size": tile, "overlap": overlap}}
    if 2 * overlap >= tile or overlap > 1024:
        try:
            parse_config(data)
        except ConfigError as exc:
            assert exc.field == "pipeline.overlap"
        else:
            raise AssertionError("overlap of half the tile or more was accepted")
    else:
        st_ = parse_config(data).stage_specs()[0][1]
        assert (st_.aspect_ratio, st_.tile_size, st_.overlap) == (ratio, tile, overlap)


@settings(max_examples=200, deadline=None)
@given(good_configs)
def test_configs_within_the_documented_ranges_load(data: dict[str, Any]) -> None:
    cfg = parse_config(data)
    assert [n for n, _ in cfg.stage_specs()] == [s.partition(":")[0] for s in data["pipeline"]["stages"]]
