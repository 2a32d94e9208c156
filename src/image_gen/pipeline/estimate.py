"""What a pipeline would spend, before it spends anything: calls and catalog cost per stage and in total.

The estimate follows the runner's own plan (:meth:`Runner.plan`, :meth:`Runner.stage_params`) and its size
rules: a model renders at most its native area; a stage that asks for well over that (twice the area or more)
is upscaled with the model family's native upscaler, or in tiles (the tile planner's count) when the stage sets
``tile_size`` or the model has no native upscaler; ``upscale = "2x"|"4x"`` does the same on the delivered image.
Prices are the catalog's (:meth:`ModelEntry.price_for`).

``calls``/``cost_usd`` assume every call succeeds first time and passes QA; ``max_calls``/``max_cost_usd`` add
every QA re-roll (``max_rerolls``) and the escalation model (``escalate_to``). Retries of transient errors and
the cache (an unchanged re-run costs nothing) are not counted. Nothing is written: no registry, no file, no call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from image_gen.catalog import ModelEntry
    from image_gen.config import Config
    from image_gen.pipeline.runner import Runner, StagePlan

NATIVE_SLACK = 1.1
"""A model renders the asked size up to this factor above its native area (as the simulator and vendors do)."""


def _plan_tiles() -> Any:
    from image_gen.imaging.tiling import plan_tiles

    return plan_tiles


@dataclass
class CallGroup:
    """Calls of one kind in a stage: ``purpose`` is render, reroll, escalation, upscale or tile."""

    purpose: str
    model: str
    calls: int
    unit_cost_usd: float
    width: int
    height: int
    worst_case_only: bool = False

    @property
    def cost_usd(self) -> float:
        return round(self.calls * self.unit_cost_usd, 6)

    def to_dict(self) -> dict[str, Any]:
        return {"purpose": self.purpose, "model": self.model, "calls": self.calls,
                "unit_cost_usd": self.unit_cost_usd, "cost_usd": self.cost_usd, "width": self.width,
                "height": self.height, "worst_case_only": self.worst_case_only}


@dataclass
class StageEstimate:
    stage: str
    model: str
    provider: str
    width: int
    height: int
    gate: str | None = None
    delivered: tuple[int, int] | None = None
    groups: list[CallGroup] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(g.calls for g in self.groups if not g.worst_case_only)

    @property
    def cost_usd(self) -> float:
        return round(sum(g.cost_usd for g in self.groups if not g.worst_case_only), 6)

    @property
    def max_calls(self) -> int:
        return sum(g.calls for g in self.groups)

    @property
    def max_cost_usd(self) -> float:
        return round(sum(g.cost_usd for g in self.groups), 6)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "model": self.model, "provider": self.provider, "width": self.width,
                "height": self.height, "delivered": list(self.delivered or (self.width, self.height)),
                "gate": self.gate, "calls": self.calls, "cost_usd": self.cost_usd,
                "max_calls": self.max_calls, "max_cost_usd": self.max_cost_usd,
                "groups": [g.to_dict() for g in self.groups], "notes": list(self.notes)}


@dataclass
class Estimate:
    """Calls and cost of running ``briefs`` briefs through a pipeline (every brief costs the same)."""

    briefs: int
    simulated: bool
    stages: list[StageEstimate]
    warnings: list[str] = field(default_factory=list)

    @property
    def calls_per_brief(self) -> int:
        return sum(s.calls for s in self.stages)

    @property
    def cost_per_brief_usd(self) -> float:
        return round(sum(s.cost_usd for s in self.stages), 6)

    @property
    def calls(self) -> int:
        return self.calls_per_brief * self.briefs

    @property
    def cost_usd(self) -> float:
        return round(self.cost_per_brief_usd * self.briefs, 6)

    @property
    def max_calls(self) -> int:
        return sum(s.max_calls for s in self.stages) * self.briefs

    @property
    def max_cost_usd(self) -> float:
        return round(sum(s.max_cost_usd for s in self.stages) * self.briefs, 6)

    @property
    def gated_cost_usd(self) -> float:
        """Cost per brief of the stages from the first approval gate on (spent only after an approval)."""
        gated = False
        total = 0.0
        for s in self.stages:
            gated = gated or s.gate == "approval"
            total += s.cost_usd if gated else 0.0
        return round(total * self.briefs, 6)

    def to_dict(self) -> dict[str, Any]:
        return {"briefs": self.briefs, "simulated": self.simulated, "calls": self.calls,
                "cost_usd": self.cost_usd, "max_calls": self.max_calls, "max_cost_usd": self.max_cost_usd,
                "calls_per_brief": self.calls_per_brief, "cost_per_brief_usd": self.cost_per_brief_usd,
                "after_gate_cost_usd": self.gated_cost_usd,
                "stages": [s.to_dict() for s in self.stages], "warnings": list(self.warnings)}


def rendered_size(entry: ModelEntry, width: int, height: int) -> tuple[int, int]:
    """The size a model returns for an asked size: the asked one, at most its native area."""
    native = entry.native_megapixels
    if native and width * height > native * 1e6 * NATIVE_SLACK:
        scale = (native * 1e6 / (width * height)) ** 0.5
        return max(16, int(width * scale) // 16 * 16), max(16, int(height * scale) // 16 * 16)
    return width, height


def _upscale_groups(runner: Runner, plan: StagePlan, params: dict[str, Any], size: tuple[int, int],
                    factor: int, purpose: str, notes: list[str]) -> list[CallGroup]:
    """The calls of one upscale of an image of ``size`` by ``factor`` (as ``Runner._upscale`` makes them)."""
    w, h = size[0] * factor, size[1] * factor
    how = plan.upscale_route(plan.entry.id)  # the route the stage itself takes (pipeline/plan.py)
    if how is None:
        notes.append(f"{purpose}: {plan.entry.id} has neither a native upscaler nor image-to-image; the stage "
                     "would fail")
        return []
    kind, route = how
    entry = route.entry
    if kind == "native":
        notes.append(f"{purpose}: {factor}x to {w}x{h} with {entry.id}")
        return [CallGroup("upscale", entry.id, 1, entry.price_for(w, h, 1), w, h)]
    tile_size = params["tile_size"] or 512
    overlap = params["overlap"] if params["overlap"] is not None else 32
    tiles = _plan_tiles()(w, h, tile_size, overlap)
    groups: dict[tuple[int, int], int] = {}
    for t in tiles:
        key = (t.width, t.height)
        groups[key] = groups.get(key, 0) + 1
    notes.append(f"{purpose}: {factor}x to {w}x{h} in {len(tiles)} tiles of {tile_size} (overlap {overlap})")
    return [CallGroup("tile", entry.id, n, entry.price_for(tw, th, 1), tw, th) for (tw, th), n in groups.items()]


def estimate_runner(runner: Runner, *, briefs: int = 1, seed_size: tuple[int, int] | None = None,
                    plans: list[StagePlan] | None = None) -> Estimate:
    """The estimate of ``runner``'s pipeline (or of ``plans``) on ``briefs`` briefs; ``seed_size`` is the size of
    an existing image handed to the first stage (``finish``, ``upscale``). Writes nothing; reads the registry only
    to choose the model of a stage that names a class (``model = "class:..."``)."""
    from image_gen.pipeline.runner import Brief

    plans = plans if plans is not None else runner.plan()
    stages: list[StageEstimate] = []
    warnings = [w for p in plans for w in p.warnings]
    prev = seed_size
    for plan in plans:
        st = plan.settings
        params = runner.stage_params(plan, Brief(""), None)  # no input artifact: the registry is not read
        w, h = params["width"], params["height"]
        if prev is not None and not (st.width and st.height) and not st.aspect_ratio:
            w, h = st.width or prev[0], st.height or prev[1]  # a handoff keeps the incoming image's size
            params.update(width=w, height=h)
        entry = plan.entry
        est = StageEstimate(plan.name, entry.id, plan.provider, w, h, gate=st.gate)
        n = params["num_images"]
        if st.render is False:
            if prev is None:
                est.notes.append("render = false without an input image: the stage would fail")
            size = (w, h)
        else:
            est.groups.append(CallGroup("render", entry.id, 1, entry.price_for(w, h, n), w, h))
            if params["max_rerolls"]:
                est.groups.append(CallGroup("reroll", entry.id, params["max_rerolls"], entry.price_for(w, h, n),
                                            w, h, worst_case_only=True))
            if params["escalate_to"]:
                esc = runner.catalog.resolve(params["escalate_to"])
                if runner.simulate:
                    esc = runner.catalog.simulated(esc)
                est.groups.append(CallGroup("escalation", esc.id, 1, esc.price_for(w, h, n), w, h,
                                            worst_case_only=True))
            size = rendered_size(entry, w, h)
            if size != (w, h) and size[0] * size[1] * 2 <= w * h:
                linear = (w * h / (size[0] * size[1])) ** 0.5
                factor = 2 if linear <= 2.0 + 1e-6 else 4
                est.groups += _upscale_groups(runner, plan, params, size, factor, "size upscale", est.notes)
            size = (w, h)
        if params["upscale"]:
            est.groups += _upscale_groups(runner, plan, params, size, int(params["upscale"].rstrip("x")),
                                          "upscale", est.notes)
        if entry.price_per_image is None and entry.price_per_megapixel is None:
            est.notes.append(f"{entry.id} has no catalog price (local models cost their GPU/CPU time): "
                             "counted as $0")
        if st.gate == "approval":
            est.notes.append("waits for approval before it spends anything")
        prev = runner.asked_size(params)
        est.delivered = prev
        stages.append(est)
    return Estimate(briefs, bool(runner.simulate), stages, warnings)


def estimate(config: Config | Mapping[str, Any] | str | os.PathLike[str], *, briefs: int = 1,
             simulate: bool | None = None, seed_size: tuple[int, int] | None = None) -> Estimate:
    """Calls and cost of running ``config`` on ``briefs`` briefs (see the module's doc); spends and writes nothing."""
    from image_gen.config import Config, load_config
    from image_gen.pipeline.runner import Runner
    from image_gen.workspace import Workspace

    cfg = config if isinstance(config, Config) else load_config(
        config if isinstance(config, Mapping) else Path(config))
    runner = Runner(Workspace.resolve(None, cfg.registry_url), cfg, simulate=simulate)
    return estimate_runner(runner, briefs=briefs, seed_size=seed_size)


def _calls(n: int) -> str:
    return f"{n} call" if n == 1 else f"{n} calls"


def format_estimate(est: Estimate) -> list[str]:
    """Plain lines for people: one per stage, then the total."""
    sim = " (simulated: the real models' catalog prices)" if est.simulated else ""
    lines = [f"estimate for {est.briefs} brief{'s' if est.briefs != 1 else ''}{sim}; nothing was spent"]
    for s in est.stages:
        worst = f" (up to {_calls(s.max_calls)} ${s.max_cost_usd:.4f})" if s.max_calls != s.calls else ""
        size = f"{s.width}x{s.height}"
        if s.delivered and s.delivered != (s.width, s.height):
            size += f" -> {s.delivered[0]}x{s.delivered[1]}"
        lines.append(f"  {s.stage}: {s.model} {size}  {_calls(s.calls)}  ${s.cost_usd:.4f}{worst}")
        lines += [f"    {n}" for n in s.notes]
    worst = f" (up to {_calls(est.max_calls)} ${est.max_cost_usd:.4f} with every re-roll and escalation)" \
        if est.max_calls != est.calls else ""
    lines.append(f"  total: {_calls(est.calls)}  ${est.cost_usd:.4f}{worst}")
    if est.gated_cost_usd:
        lines.append(f"  of which ${est.gated_cost_usd:.4f} only after an approval")
    lines += [f"  warning: {w}" for w in est.warnings]
    return lines


def upscale_stage(width: int, height: int, factor: int, model: str, tile_size: int | None,
                  overlap: int) -> dict[str, Any]:
    """The one-stage config of ``api.upscale_image``: no render, the image upscaled ``factor`` times."""
    stage: dict[str, Any] = {"model": model, "upscale": f"{factor}x", "render": False, "width": width,
                             "height": height, "stage_name": "upscale"}
    if tile_size:
        stage.update(tile_size=tile_size, overlap=overlap)
    return stage
