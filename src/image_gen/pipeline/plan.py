"""Stage plans: every model a stage may call, routed once, before anything is written or paid.

A stage can call more than its own model: an escalation model when QA re-rolls are spent, a lighter fallback on
out of memory, the native upscaler of whichever model made its image, or that model again for tiled upscaling.
``Planner.plan`` resolves each (aliases, ``largest-available``, retired models, ``--simulate`` twins,
``provider = "local"``) into a ``Route``, and ``Planner.check`` verifies them all (provider configured, key
present, capability) so a run never fails for want of a key after its first paid call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from image_gen.catalog import CLASS_PREFIX, LOCAL_PREFIX, Catalog, ModelEntry, missing_price
from image_gen.config import LARGEST, Config, StageSettings
from image_gen.errors import InputError, WorkFailed
from image_gen.providers.base import NotConfigured, Provider, ProviderError

if TYPE_CHECKING:
    from image_gen.pipeline.routing import History


@dataclass(frozen=True)
class Route:
    """A model and the provider that serves it in this run."""

    entry: ModelEntry
    provider: str


@dataclass
class StagePlan:
    idx: int
    name: str
    settings: StageSettings
    entry: ModelEntry
    requested: str
    provider: str
    substitution: str | None = None
    warnings: list[str] = field(default_factory=list)
    class_model: str | None = None
    """``model = "class:..."``: the catalog id chosen for the class (``pipeline/routing.py``)."""
    routes: dict[str, Route] = field(default_factory=dict)
    """``stage``, ``escalation``, ``fallback``, and per model that may make the image ``upscaler:<id>`` (its
    native upscaler) or ``tile:<id>`` (tiled image-to-image through it)."""
    optional: set[str] = field(default_factory=set)
    """Routes used only if a model returns an image well below the asked size: not required up front."""

    @property
    def route(self) -> Route:
        return self.routes["stage"]

    def upscale_route(self, model_id: str) -> tuple[str, Route] | None:
        """How an image made by ``model_id`` is upscaled: ("native", upscaler) or ("tiled", model), or None."""
        if f"upscaler:{model_id}" in self.routes:
            return "native", self.routes[f"upscaler:{model_id}"]
        if f"tile:{model_id}" in self.routes:
            return "tiled", self.routes[f"tile:{model_id}"]
        return None


def render_size(st: StageSettings, prev: tuple[int, int] | None) -> tuple[int, int]:
    """The size a stage asks its model for (as ``stage_params`` sets it; ``prev``: the previous stage's delivered
    size, which a handoff without a size of its own keeps)."""
    from image_gen.pipeline.stage import DEFAULT_SIZE

    if st.width and st.height:
        return st.width, st.height
    if st.aspect_ratio:
        a, b = (int(x) for x in st.aspect_ratio.split(":"))
        scale = (DEFAULT_SIZE * DEFAULT_SIZE / (a * b)) ** 0.5
        return int(round(a * scale / 16) * 16), int(round(b * scale / 16) * 16)
    if prev is not None:
        return st.width or prev[0], st.height or prev[1]
    return st.width or DEFAULT_SIZE, st.height or DEFAULT_SIZE


class Planner:
    def __init__(self, config: Config, catalog: Catalog, simulate: bool,
                 provider: Callable[[str], Provider], configured: Callable[[], list[str]],
                 history: Callable[[], History] | None = None) -> None:
        self.config = config
        self.catalog = catalog
        self.simulate = simulate
        self.provider = provider
        self.configured = configured
        self.history = history

    def _resolve(self, name: str, what: str) -> ModelEntry:
        try:
            return self.catalog.resolve(name)
        except KeyError as exc:
            raise InputError(str(exc).strip("'\""), field=what) from None

    def routed(self, entry: ModelEntry, provider: str | None = None) -> Route:
        """``entry`` served by ``provider`` (default: the catalog's): a catalog model sent to the local engine
        carries its weights as its vendor model; under ``--simulate`` every model runs on its simulated twin."""
        provider = provider or entry.provider
        if (field_path := missing_price(entry)) is not None:  # a hosted model (fal:, replicate:) has no catalog price
            raise InputError(f"{entry.id} has no price: set price_per_image or price_per_megapixel", field=field_path)
        if provider == "local" and not entry.id.startswith(LOCAL_PREFIX) and entry.provider != "local":
            target = self.config.providers.get("local")
            models = (target.options.get("models", {}) if target else {}) or {}
            vendor = models.get(entry.id) or entry.local_repo or entry.vendor_model
            entry = entry.model_copy(update={"provider": "local", "vendor_model": vendor})
        if self.simulate:
            return Route(self.catalog.simulated(entry), "sim")
        return Route(entry, provider)

    def _class_model(self, name: str, st: StageSettings, requested: str, size: tuple[int, int],
                     pinned: dict[str, str] | None) -> tuple[ModelEntry, str]:
        """The model a ``class:...`` stage runs: the one recorded when the run started (resume), else chosen now."""
        from image_gen.pipeline.routing import History, choose_class

        if pinned and name in pinned:
            entry = self._resolve(pinned[name], f"stage.{name}.model")
            return entry, f"{requested} -> {entry.id} (chosen when the run started)"
        history = self.history() if self.history is not None else History()
        entry, reason, _ = choose_class(self.catalog, requested, name, st, size, history,
                                        None if self.simulate else self.configured(), self.simulate,
                                        self.config.pipeline.sla_min_samples)
        return entry, reason

    def plan(self, pinned: dict[str, str] | None = None) -> list[StagePlan]:
        """Resolve every stage's models before anything is written: bad input fails here, changing nothing.
        ``pinned``: stage name -> the model a ``class:...`` stage was given when its run started."""
        plans: list[StagePlan] = []
        prev: tuple[int, int] | None = None
        for idx, (name, st) in enumerate(self.config.stage_specs()):
            requested = st.model or LARGEST
            warnings: list[str] = []
            substitution = None
            class_model = None
            size = render_size(st, prev)
            prev = (size[0] * int(st.upscale.rstrip("x")), size[1] * int(st.upscale.rstrip("x"))) \
                if st.upscale else size
            if requested == LARGEST:
                avail = ["sim"] if self.simulate else self.configured()
                entry = self.catalog.largest_available(avail)
            elif requested.startswith(CLASS_PREFIX):
                entry, substitution = self._class_model(name, st, requested, size, pinned)
                class_model = entry.id
            else:
                entry = self._resolve(requested, f"stage.{name}.model")
            on_retired = st.on_retired or self.config.on_retired
            if entry.retired:
                successor = entry.successor or "(none named)"
                if on_retired == "successor" and entry.successor:
                    substitution = f"{substitution}; " if substitution else ""
                    substitution += f"{entry.id} retired on {entry.retired_on}; ran successor {successor}"
                    entry = self.catalog.resolve(entry.successor)
                    warnings.append(substitution)
                elif self.simulate:
                    warnings.append(
                        f"stage {name}: {entry.id} was retired on {entry.retired_on}; simulating it anyway, but a "
                        f"real run would fail (successor: {successor}; set on_retired = \"successor\")"
                    )
                else:
                    raise WorkFailed(
                        f"stage {name}: model {entry.id} was retired on {entry.retired_on}; use its successor "
                        f"{successor} (or set on_retired = \"successor\")"
                    )
            stage = self.routed(entry, st.provider)
            plan = StagePlan(idx, name, st, stage.entry, requested, stage.provider, substitution, warnings,
                             class_model=class_model)
            plan.routes["stage"] = stage
            makers = [(entry, st.provider)]
            if st.escalate_to:
                esc = self._resolve(st.escalate_to, f"stage.{name}.escalate_to")
                plan.routes["escalation"] = self.routed(esc)
                makers.append((esc, None))
            if st.fallback_model:
                fb = self._resolve(st.fallback_model, f"stage.{name}.fallback_model")
                plan.routes["fallback"] = self.routed(fb, st.provider if fb.provider == "local" else None)
                makers.append((fb, st.provider if fb.provider == "local" else None))
            needs_upscale = bool(st.upscale) or bool(
                st.width and st.height and st.width * st.height >= 2e6 * min(m.native_megapixels for m, _ in makers))
            for maker, prov in makers:
                self._upscale_routes(plan, maker, prov, required=needs_upscale)
            if st.upscale and plan.upscale_route(plan.entry.id) is None:
                raise InputError(f"{entry.id} has neither a native upscaler nor image-to-image to upscale with",
                                 field=f"stage.{name}.upscale")
            plans.append(plan)
        return plans

    def _upscale_routes(self, plan: StagePlan, maker: ModelEntry, provider: str | None, *, required: bool) -> None:
        made_by = self.routed(maker, provider)
        key = made_by.entry.id
        tiles = plan.settings.tile_size is not None
        # a model sent to the local engine has no vendor upscaler there: it upscales through itself, in tiles
        if maker.native_upscaler and not tiles and made_by.provider != "local":
            up = self._resolve(maker.native_upscaler, f"stage.{plan.name}.upscale")
            # a simulated model's upscaler is simulated too
            route = Route(self.catalog.simulated(up), "sim") if made_by.provider == "sim" else self.routed(up)
            name = f"upscaler:{key}"
        elif made_by.entry.can("img2img"):
            route, name = made_by, f"tile:{key}"
        else:
            return
        plan.routes[name] = route
        if not required:
            plan.optional.add(name)

    def check(self, plans: list[StagePlan]) -> None:
        """Every provider any stage may call is configured (key present) before the first paid call."""
        seen: set[str] = set()
        for p in plans:
            for purpose, route in p.routes.items():
                if route.provider in seen or purpose in p.optional:
                    continue
                try:
                    ok = self.provider(route.provider).is_configured()
                except ProviderError:
                    ok = False
                if not ok:
                    what = "" if purpose == "stage" else f" ({purpose.split(':')[0]})"
                    raise NotConfigured(
                        f"stage {p.name}{what}: provider {route.provider!r} for {route.entry.id} is not configured "
                        f"(set its API key in the environment, or run with --simulate)"
                    )
                seen.add(route.provider)
