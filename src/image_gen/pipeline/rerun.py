"""Re-run a recorded run with a tweak: its config snapshot with one change, as a new run that records its parent.

The tweak is the prompt, or one stage's seed (or a new random seed), model, strength or steps. Every stage before
the changed one asks exactly what the parent asked, so its cache key is the same and it costs nothing.
"""

from __future__ import annotations

import copy
import secrets
from typing import TYPE_CHECKING, Any, Literal

from image_gen.config import load_config
from image_gen.errors import InputError

if TYPE_CHECKING:
    from image_gen.pipeline.runner import Events, RunOutcome
    from image_gen.workspace import Workspace

MAX_SEED = 2**32 - 2

__all__ = ["MAX_SEED", "rerun", "tweaked_config"]


def _new_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def tweaked_config(snapshot: dict[str, Any], stage_names: list[str], *, stage: str | None = None,
                   seed: int | Literal["new"] | None = None, model: str | None = None,
                   strength: float | None = None, steps: int | None = None) -> dict[str, Any]:
    """The snapshot with the tweak applied: per stage under ``stage.<name>``; a seed without a stage goes to every
    stage (``"new"``: a fresh random seed per stage)."""
    cfg = copy.deepcopy(snapshot)
    cfg.pop("registry_url", None)  # recorded redacted; the workspace already chose the registry
    if stage is not None and stage not in stage_names:
        raise InputError(f"no stage {stage!r} in this run (stages: {', '.join(stage_names)})", field="stage")
    if stage is None and (model is not None or strength is not None or steps is not None):
        raise InputError("name the stage whose model, strength or steps change", field="stage")
    if isinstance(seed, str) and seed != "new":
        raise InputError(f"expected an integer or 'new', got {seed!r}", field="seed")
    targets = [stage] if stage is not None else (stage_names if seed is not None else [])
    stages_cfg: dict[str, Any] = cfg.setdefault("stage", {})
    for name in targets:
        own: dict[str, Any] = stages_cfg.setdefault(name, {})
        if seed is not None:
            own["seed"] = _new_seed() if seed == "new" else int(seed)
        if model is not None:
            own["model"] = model
        if strength is not None:
            own["strength"] = float(strength)
        if steps is not None:
            own["steps"] = int(steps)
    return cfg


def rerun(run_id: str, *, stage: str | None = None, prompt: str | None = None,
          seed: int | Literal["new"] | None = None, model: str | None = None, strength: float | None = None,
          steps: int | None = None, workspace: Workspace | str | None = None, registry_url: str | None = None,
          events: Events | None = None) -> RunOutcome:
    """Start a new run from ``run_id``'s recorded config and brief with the tweak; it records ``parent_run_id``.

    Returns when the new run stops (completed, at a gate, failed). ``events`` sees ``run_start`` (with the new
    run's id) before any stage runs, so a caller in another thread can follow it.
    """
    from image_gen.api import open_workspace
    from image_gen.pipeline.runner import Brief, Runner
    from image_gen.store.models import Run

    ws = open_workspace(workspace, registry_url)
    registry = ws.existing_registry()
    parent = registry.find_run(run_id)
    names = [s.name for s in registry.stage_runs(parent.id)]
    cfg = load_config(tweaked_config(dict(parent.config), names, stage=stage, seed=seed, model=model,
                                     strength=strength, steps=steps))
    text = parent.prompt if prompt is None else prompt.strip()
    if not text:
        raise InputError("the prompt is empty", field="prompt")
    expect = parent.expect_text if prompt is None else None
    outer = events

    def record_parent(kind: str, data: dict[str, Any]) -> None:
        if kind == "run_start" and data.get("run_id") and data["run_id"] != parent.id:
            registry.update(Run, data["run_id"], parent_run_id=parent.id)
        if outer is not None:
            outer(kind, data)

    runner = Runner(ws, cfg, simulate=bool(parent.config.get("simulate")), config_source=parent.config_source,
                    events=record_parent)
    seed_image = ws.artifacts().open(parent.input_artifact) if parent.input_artifact else None
    return runner.start(Brief(text, parent.negative_prompt, expect, parent.brief_index), seed_image=seed_image)
