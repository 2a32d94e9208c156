"""``api.rerun``'s tweak: the run's recorded config with exactly one change."""

from __future__ import annotations

import pytest

from image_gen.errors import InputError
from image_gen.pipeline.rerun import MAX_SEED, tweaked_config

SNAP = {"name": "s", "pipeline": {"model": "staged-selection", "stages": ["draft:a", "final:b"]},
        "stage": {"draft": {"seed": 42, "steps": 20}}, "simulate": True, "registry_url": "postgresql://u:***@h/db"}
NAMES = ["draft", "final"]


def test_a_stage_tweak_changes_that_stage_only() -> None:
    cfg = tweaked_config(SNAP, NAMES, stage="final", seed=7, model="sd3.5-large", strength=0.4, steps=30)
    assert cfg["stage"]["final"] == {"seed": 7, "model": "sd3.5-large", "strength": 0.4, "steps": 30}
    assert cfg["stage"]["draft"] == {"seed": 42, "steps": 20} and cfg["pipeline"] == SNAP["pipeline"]
    assert "registry_url" not in cfg and SNAP["stage"] == {"draft": {"seed": 42, "steps": 20}}  # not mutated


def test_a_new_seed_without_a_stage_goes_to_every_stage() -> None:
    cfg = tweaked_config(SNAP, NAMES, seed="new")
    seeds = [cfg["stage"][n]["seed"] for n in NAMES]
    assert all(0 <= s <= MAX_SEED for s in seeds) and seeds[0] != 42 and cfg["stage"]["draft"]["steps"] == 20
    assert tweaked_config(SNAP, NAMES)["stage"] == SNAP["stage"]  # a prompt-only re-run changes no setting


@pytest.mark.parametrize("kwargs", [{"stage": "hires"}, {"model": "x"}, {"steps": 3}, {"seed": "old"}])
def test_a_tweak_that_names_nothing_real_is_bad_input(kwargs: dict[str, object]) -> None:
    with pytest.raises(InputError):
        tweaked_config(SNAP, NAMES, **kwargs)  # type: ignore[arg-type]
