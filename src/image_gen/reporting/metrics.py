"""What a pipeline achieves, computed from registry rows when read: render success, latency, cost, calls, cache.

Nothing here is written at the end of a run: every figure is computed from the runs, stage runs, calls and
artifacts the registry already holds, so a report (or ``runs show``) never depends on a metrics row having been
written, and a bug here can never fail a paid run. The records are plain dataclasses so the figures can be
computed (and tested) from any source; ``load_runs`` reads them from the registry.

Definitions (the report prints them):

- a stage **ran** when its row left ``pending``: a row still ``pending``, ``awaiting_approval``, ``rejected`` or
  ``budget_stopped`` that made no provider call did not run and counts nowhere, except as *projected* below;
- a pipeline's **gate** is its first stage with ``gate = "approval"``; the stages before it are what every run
  delivers without anyone deciding anything (**to the gate**), the gated stage and those after it are paid only
  for the runs a person approves. The headline figures are measured **to the gate**, so they never depend on how
  many runs someone approved; the gated part is measured on the runs that went through it, and the runs still
  waiting are **projected** at the catalog price of the waiting stages, shown beside, never added in;
- a run's **delivered asset** (to the gate) is the image of its last stage before the gate; the run is a
  **success** when that stage finished with an image that passed QA (a stage without QA counts by its status);
  the gated part's success is the same test on its last stage;
- **cost** of a stage = what producing its image cost, at the price it had then (a stage answered by the cache
  spent nothing in this run; it counts what producing its image cost, and the cache hit rate is shown beside);
  **cost per image** = cost to the gate / runs; **cost per successful asset** = cost to the gate / successes;
  **spent** = what the runs' own provider calls cost (cache hits spend nothing);
- **latency** of a run = the sum of its stages' latencies to the gate (**end to end**); **iterate** = the latency
  of its first stage, the draft a designer waits on; each stage's **share** of the mean end to end = the sum of
  its latencies / runs, so the shares add up to the mean end to end;
- **cache hit rate** = stages served from the cache / stages that ran (to the gate in the headline);
- **calls** = provider calls that produced the stage's images (for a cache hit: the calls recorded with its
  image); **calls made** = the calls this run sent;
- a run **has an SLA** when it was routed with one (``pipeline.sla_s`` or ``run --sla``, recorded in its routing);
  it **met** it when it completed and its own recorded latency (the machine latency of every stage it ran, gated ones
  included, a cache hit counting 0; a person's wait at a gate is never counted) is within the SLA; the **SLA hit
  rate** = runs that met it / runs with an SLA that ended (completed, failed or budget-stopped; runs still waiting,
  interrupted, rejected or cancelled are not counted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from image_gen.store.registry import Registry

DELIVERED = ("completed", "awaiting_approval")
SLA_ENDED = ("completed", "failed", "budget_stopped")
"""The statuses of a run with an SLA that count in the SLA hit rate."""
NOT_RUN = frozenset({"pending", "awaiting_approval", "rejected", "budget_stopped", "skipped"})
"""Stage statuses that mean the stage did not run (unless it sent calls before it stopped)."""
WAITING = "awaiting_approval"


@dataclass
class StageRecord:
    name: str
    model: str
    status: str
    latency_s: float = 0.0
    cost_usd: float = 0.0
    cache_hit: bool = False
    calls: int = 0
    rerolls: int = 0
    escalated_to: str | None = None
    qa_passed: bool | None = None
    qa_reasons: list[str] = field(default_factory=list)
    artifact: str | None = None
    gated: bool = False
    """The stage waits on a gate (``gate = "approval"``) in the run's config."""
    calls_made: int = 0
    """Provider calls this run sent for the stage (0 for a cache hit)."""
    spent_usd: float = 0.0
    """What this run's own calls for the stage cost (0 for a cache hit)."""
    waiting: bool = False
    """Not yet decided: the run waits at this stage's gate (or at an earlier one)."""
    projected_usd: float = 0.0
    """For a waiting stage: its catalog price (NaN when the catalog has none); 0 otherwise."""
    size: tuple[int, int] | None = None
    """(width, height) of its image."""

    @property
    def ran(self) -> bool:
        return self.status not in NOT_RUN or self.calls_made > 0 or self.spent_usd > 0

    @property
    def finished(self) -> bool:
        return self.status == "done" and self.artifact is not None


@dataclass
class RunRecord:
    run_id: str
    pipeline: str
    prompt: str
    status: str
    latency_s: float
    cost_usd: float
    qa_passed: bool | None
    simulated: bool
    stages: list[StageRecord] = field(default_factory=list)
    brief_index: int | None = None
    final_artifact: str | None = None
    sla_s: float | None = None
    """The latency SLA the run was routed with (``Run.routing``), if any."""
    routing_mode: str | None = None
    """``staged`` or ``single-call`` (None when the run recorded no routing)."""
    p_within_sla: float | None = None
    """The estimate the routing decided on (the staged path's probability of meeting the SLA)."""
    own_latency_s: float = 0.0
    """The run's own recorded latency (``Run.latency_s``): its stages' machine latency, cache hits counting 0."""

    @property
    def sla_met(self) -> bool | None:
        """Within its SLA (None: no SLA, or the run has not ended)."""
        if self.sla_s is None or self.status not in SLA_ENDED:
            return None
        return self.status == "completed" and self.own_latency_s <= self.sla_s

    @property
    def succeeded(self) -> bool:
        """The run as a whole delivered an image that passed QA (its last finished stage, gate or not)."""
        return self.status in DELIVERED and self.final_artifact is not None and self.qa_passed is not False

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.stages)

    @property
    def gate_index(self) -> int:
        """Index of the first gated stage (the number of stages when there is none)."""
        return next((i for i, s in enumerate(self.stages) if s.gated or s.status == WAITING), len(self.stages))

    @property
    def to_gate(self) -> list[StageRecord]:
        return self.stages[: self.gate_index]

    @property
    def past_gate(self) -> list[StageRecord]:
        return self.stages[self.gate_index :]

    @property
    def delivered(self) -> bool:
        """An image came out of the last stage before the gate."""
        part = self.to_gate
        return bool(part) and part[-1].finished

    @property
    def success(self) -> bool:
        """The asset delivered to the gate passed QA (the headline's render success)."""
        return self.delivered and self.to_gate[-1].qa_passed is not False

    @property
    def latency_to_gate_s(self) -> float:
        return sum(s.latency_s for s in self.to_gate if s.ran)

    @property
    def cost_to_gate_usd(self) -> float:
        return sum(s.cost_usd for s in self.to_gate if s.ran)

    @property
    def iterate_s(self) -> float:
        """The first stage's latency: what a designer waits for a draft (NaN if it did not run)."""
        first = self.stages[0] if self.stages else None
        return first.latency_s if first is not None and first.ran else math.nan

    @property
    def delivered_size(self) -> tuple[int, int] | None:
        return self.to_gate[-1].size if self.delivered else None

    @property
    def waiting(self) -> bool:
        return any(s.waiting for s in self.stages)


def _gated_names(config: dict[str, Any] | None) -> set[str]:
    cfg = config or {}
    default = (cfg.get("pipeline") or {}).get("gate")
    names = {n for n, s in (cfg.get("stage") or {}).items() if (s or {}).get("gate", default)}
    if default:
        names |= {str(spec).split(":", 1)[0] for spec in (cfg.get("pipeline") or {}).get("stages") or []}
        names.add("main")
    return names


def _catalog_price(catalog: Any, model: str, params: dict[str, Any]) -> float:
    try:
        entry = catalog.resolve(model)
    except Exception:  # an unknown model (a local folder, a removed entry): no price to project
        return math.nan
    if entry.price_per_image is None and entry.price_per_megapixel is None:
        return math.nan
    return float(entry.price_for(params.get("width"), params.get("height"), int(params.get("num_images") or 1)))


def load_runs(registry: Registry, run_ids: Iterable[str], pipeline: str | None = None) -> list[RunRecord]:
    """Records of the given runs, with their stages and provider calls, read from the registry."""
    from image_gen.catalog import Catalog

    out = []
    sizes: dict[str, tuple[int, int] | None] = {}

    def size_of(sha: str | None) -> tuple[int, int] | None:
        if not sha:
            return None
        if sha not in sizes:
            art = registry.artifact(sha)
            sizes[sha] = (int(art.width), int(art.height)) if art is not None else None
        return sizes[sha]

    for rid in run_ids:
        run = registry.get_run(rid)
        if run is None:
            raise KeyError(f"run {rid!r} not in the registry")
        calls = registry.calls(run.id)
        gated = _gated_names(run.config)
        gated |= {a.stage_name for a in registry.approvals(run.id)}
        catalog: Any = None
        stages = []
        waiting = False
        for s in registry.stage_runs(run.id):
            qa = s.qa or {}
            params = s.params or {}
            # A stage answered by the cache cost this run nothing; to compare pipelines, count what producing
            # its image cost when it was rendered (recorded with the cache hit), and report the hit rate apart.
            produced = (params.get("from_cache") or {}) if s.cache_hit else {}
            own = [c for c in calls if c.stage_run_id == s.id]
            status = s.status or "pending"
            waiting = waiting or (status == WAITING and run.status == WAITING)
            rec = StageRecord(
                name=s.name,
                model=s.model_id,
                status=status,
                latency_s=float(produced.get("latency_s") or s.latency_s or 0.0),
                cost_usd=float(produced.get("cost_usd") or s.cost_usd or 0.0),
                cache_hit=bool(s.cache_hit),
                calls=int(produced.get("calls") or 0) if s.cache_hit else len(own),
                rerolls=int(produced.get("rerolls") or s.rerolls or 0),
                escalated_to=s.escalated_to,
                qa_passed=None if not qa else bool(qa.get("passed")),
                qa_reasons=list(qa.get("reasons", [])),
                artifact=s.artifact_sha,
                gated=s.name in gated or status == WAITING,
                calls_made=len(own),
                spent_usd=float(sum(c.cost_usd or 0.0 for c in own)),
                size=size_of(s.artifact_sha),
            )
            if waiting and not rec.ran:
                if catalog is None:
                    catalog = Catalog.load((run.config or {}).get("models") or None)
                rec.waiting = True
                rec.projected_usd = _catalog_price(catalog, s.model_id, params)
            stages.append(rec)
        ran = [st for st in stages if st.ran]
        routing = run.routing or {}
        out.append(
            RunRecord(
                run_id=run.id,
                pipeline=pipeline or run.pipeline_name or "?",
                prompt=run.prompt,
                status=run.status,
                latency_s=round(sum(st.latency_s for st in ran), 4),
                cost_usd=round(sum(st.cost_usd for st in ran), 6),
                qa_passed=run.qa_passed,
                simulated=bool(run.simulated),
                stages=stages,
                brief_index=run.brief_index,
                final_artifact=run.final_artifact,
                sla_s=routing.get("sla_s"),
                routing_mode=routing.get("mode"),
                p_within_sla=routing.get("p_within_sla"),
                own_latency_s=float(run.latency_s or 0.0),
            )
        )
    return out


def run_metrics(run: RunRecord) -> dict[str, float]:
    """One run's figures, computed from its record (nothing is stored)."""
    out = {
        "success": float(run.success),
        "delivered": float(run.delivered),
        "latency_s": run.latency_to_gate_s,
        "iterate_s": run.iterate_s,
        "cost_usd": run.cost_to_gate_usd,
        "cost_all_stages_usd": run.cost_usd,
        "spent_usd": sum(s.spent_usd for s in run.stages),
        "projected_usd": sum(s.projected_usd for s in run.stages if s.waiting),
        "calls": float(run.calls),
        "rerolls": float(sum(s.rerolls for s in run.stages)),
        "escalations": float(sum(1 for s in run.stages if s.escalated_to)),
        "cache_hits": float(sum(s.cache_hit for s in run.stages if s.ran)),
        "stages_ran": float(sum(s.ran for s in run.stages)),
    }
    for s in run.stages:
        if s.ran:
            out[f"stage.{s.name}.latency_s"] = s.latency_s
            out[f"stage.{s.name}.cost_usd"] = s.cost_usd
    return out


# ------------------------------------------------------------------------------------------------ figures


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class LatencySummary:
    mean: float
    p50: float
    p95: float
    n: int
    values: list[float] = field(default_factory=list)
    """The samples, in run order (what the plots draw)."""

    @classmethod
    def of(cls, values: Iterable[float]) -> LatencySummary:
        vals = [v for v in values if math.isfinite(v)]
        return cls(
            sum(vals) / len(vals) if vals else math.nan, percentile(vals, 50), percentile(vals, 95), len(vals), vals
        )


@dataclass
class StageMetrics:
    name: str
    models: list[str]
    gated: bool
    """At or past the pipeline's gate (not part of the end to end)."""
    runs: int
    """Runs in which the stage ran (not those that stopped before it or wait at its gate)."""
    of_runs: int
    """Runs of the pipeline."""
    waiting: int
    """Runs waiting at (or before) this stage's gate."""
    latency: LatencySummary
    """Over the runs in which it ran."""
    latency_share: float
    """Sum of its latencies / the pipeline's runs: its part of the mean end to end (stages before the gate)."""
    cost_total: float
    cost_per_run: float
    """Over the runs in which it ran."""
    spent: float
    calls: int
    calls_made: int
    rerolls: int
    escalations: int
    cache_hits: int
    cache_hit_rate: float
    qa_pass_rate: float
    """Share of QA-checked outputs that passed (NaN when none was checked)."""
    projected_total: float
    """Catalog price x the runs waiting (0 when none waits)."""
    projected_price: float
    """Catalog price of one waiting run's stage (NaN when none waits or the catalog has no price)."""


@dataclass
class GateMetrics:
    """The gated part of a pipeline (its first gated stage and those after it)."""

    stages: list[str]
    runs: int
    """Runs that went through the gated part (approved, or served from the cache)."""
    of_runs: int
    waiting: int
    """Runs waiting for a decision: their gated part is projected."""
    decided_not_run: int
    """Runs whose gated part did not run for a decided reason (rejected, budget, an earlier failure)."""
    cost_total: float
    cost_per_run: float
    cost_per_asset: float
    """Mean over the runs that went through the gate of every stage's cost (the asset it delivered)."""
    latency: LatencySummary
    successes: int
    sizes: dict[str, int]
    projected_total: float
    projected_per_run: float
    cost_per_image_all_approved: float
    """(cost to the gate + measured gated cost + projected) / runs: a projection, labelled so."""


@dataclass
class SlaMetrics:
    """Runs routed with a latency SLA (see the module's definitions)."""

    slas: list[float]
    """The SLAs the runs were routed with, in seconds."""
    runs: int
    staged: int
    single_call: int
    ended: int
    """Runs with an SLA that count in the hit rate."""
    met: int
    hit_rate: float
    """met / ended (NaN when none ended)."""
    mean_p_within: float
    """Mean of the routing's estimated P(staged path within the SLA)."""
    latency: LatencySummary
    """The runs' own latencies (the ones that ended)."""


def sla_metrics(runs: Sequence[RunRecord]) -> SlaMetrics | None:
    with_sla = [r for r in runs if r.sla_s is not None]
    if not with_sla:
        return None
    ended = [r for r in with_sla if r.sla_met is not None]
    met = sum(bool(r.sla_met) for r in ended)
    est = [r.p_within_sla for r in with_sla if r.p_within_sla is not None]
    return SlaMetrics(
        slas=sorted({float(r.sla_s) for r in with_sla if r.sla_s is not None}),
        runs=len(with_sla),
        staged=sum(r.routing_mode == "staged" for r in with_sla),
        single_call=sum(r.routing_mode == "single-call" for r in with_sla),
        ended=len(ended),
        met=met,
        hit_rate=met / len(ended) if ended else math.nan,
        mean_p_within=sum(est) / len(est) if est else math.nan,
        latency=LatencySummary.of(r.own_latency_s for r in ended),
    )


@dataclass
class PipelineMetrics:
    pipeline: str
    runs: int
    delivered: int
    successes: int
    success_rate: float
    latency: LatencySummary
    """End to end, to the gate."""
    iterate: LatencySummary
    """First stage (the draft a designer waits on)."""
    cost_total: float
    """To the gate."""
    cost_per_image: float
    cost_per_success: float
    calls: int
    calls_per_asset: float
    rerolls: int
    escalations: int
    cache_hit_rate: float
    spent: float
    """What the runs' own calls cost, every stage (cache hits spend nothing)."""
    simulated: bool
    statuses: dict[str, int]
    sizes: dict[str, int]
    """Delivered size (to the gate) -> runs."""
    stages: list[StageMetrics]
    gate: GateMetrics | None
    sla: SlaMetrics | None = None
    """Runs routed with a latency SLA: how many met it (None when no run had one)."""

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


def _size(wh: tuple[int, int] | None) -> str:
    return f"{wh[0]}x{wh[1]}" if wh else "none"


def stage_metrics(name: str, stages: Sequence[StageRecord], of_runs: int, gated: bool = False) -> StageMetrics:
    """One stage's figures over its rows; ``gated``: the stage is at or past the pipeline's gate."""
    ran = [s for s in stages if s.ran]
    waiting = [s for s in stages if s.waiting]
    checked = [s for s in ran if s.qa_passed is not None]
    hits = sum(s.cache_hit for s in ran)
    cost = sum(s.cost_usd for s in ran)
    lat = [s.latency_s for s in ran]
    projected = [s.projected_usd for s in waiting]
    return StageMetrics(
        name=name,
        models=sorted({s.model for s in ran} or {s.model for s in stages}),
        gated=gated or any(s.gated or s.status == WAITING for s in stages),
        runs=len(ran),
        of_runs=of_runs,
        waiting=len(waiting),
        latency=LatencySummary.of(lat),
        latency_share=sum(lat) / of_runs if of_runs else math.nan,
        cost_total=cost,
        cost_per_run=cost / len(ran) if ran else math.nan,
        spent=sum(s.spent_usd for s in stages),
        calls=sum(s.calls for s in ran),
        calls_made=sum(s.calls_made for s in stages),
        rerolls=sum(s.rerolls for s in ran),
        escalations=sum(1 for s in ran if s.escalated_to),
        cache_hits=hits,
        cache_hit_rate=hits / len(ran) if ran else math.nan,
        qa_pass_rate=sum(bool(s.qa_passed) for s in checked) / len(checked) if checked else math.nan,
        projected_total=sum(projected),
        projected_price=projected[0] if projected and len(set(projected)) == 1 else (
            sum(projected) / len(projected) if projected else math.nan
        ),
    )


def gate_metrics(runs: Sequence[RunRecord], cost_to_gate: float) -> GateMetrics | None:
    parts = [(r, r.past_gate) for r in runs if r.past_gate]
    if not parts:
        return None
    names: list[str] = []
    for _, part in parts:
        for s in part:
            if s.name not in names:
                names.append(s.name)
    went = [(r, p) for r, p in parts if any(s.ran for s in p)]
    waiting = [(r, p) for r, p in parts if not any(s.ran for s in p) and any(s.waiting for s in p)]
    cost = sum(s.cost_usd for _, p in went for s in p if s.ran)
    projected = sum(s.projected_usd for _, p in waiting for s in p if s.waiting)
    sizes: dict[str, int] = {}
    successes = 0
    for _, p in went:
        if p[-1].finished:
            sizes[_size(p[-1].size)] = sizes.get(_size(p[-1].size), 0) + 1
            successes += p[-1].qa_passed is not False
    n = len(runs)
    return GateMetrics(
        stages=names,
        runs=len(went),
        of_runs=n,
        waiting=len(waiting),
        decided_not_run=len(parts) - len(went) - len(waiting),
        cost_total=cost,
        cost_per_run=cost / len(went) if went else math.nan,
        cost_per_asset=sum(r.cost_usd for r, _ in went) / len(went) if went else math.nan,
        latency=LatencySummary.of(sum(s.latency_s for s in p if s.ran) for _, p in went),
        successes=successes,
        sizes=sizes,
        projected_total=projected,
        projected_per_run=projected / len(waiting) if waiting else math.nan,
        cost_per_image_all_approved=(cost_to_gate + cost + projected) / n if n else math.nan,
    )


def pipeline_metrics(runs: Sequence[RunRecord], pipeline: str | None = None) -> PipelineMetrics:
    """The figures of one pipeline over its runs (one run per brief)."""
    n = len(runs)
    successes = sum(r.success for r in runs)
    cost = sum(r.cost_to_gate_usd for r in runs)
    to_gate = [s for r in runs for s in r.to_gate if s.ran]
    calls = sum(s.calls for s in to_gate)
    by_stage: dict[str, list[StageRecord]] = {}
    for r in runs:
        for s in r.stages:
            by_stage.setdefault(s.name, []).append(s)
    past = {s.name for r in runs for s in r.past_gate}
    statuses: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for r in runs:
        statuses[r.status] = statuses.get(r.status, 0) + 1
        if r.delivered:
            sizes[_size(r.delivered_size)] = sizes.get(_size(r.delivered_size), 0) + 1
    return PipelineMetrics(
        pipeline=pipeline or (runs[0].pipeline if runs else "?"),
        runs=n,
        delivered=sum(r.delivered for r in runs),
        successes=successes,
        success_rate=successes / n if n else math.nan,
        latency=LatencySummary.of(r.latency_to_gate_s for r in runs),
        iterate=LatencySummary.of(r.iterate_s for r in runs),
        cost_total=cost,
        cost_per_image=cost / n if n else math.nan,
        cost_per_success=cost / successes if successes else math.inf,
        calls=calls,
        calls_per_asset=calls / n if n else math.nan,
        rerolls=sum(s.rerolls for s in to_gate),
        escalations=sum(1 for s in to_gate if s.escalated_to),
        cache_hit_rate=sum(s.cache_hit for s in to_gate) / len(to_gate) if to_gate else math.nan,
        spent=sum(s.spent_usd for r in runs for s in r.stages),
        simulated=any(r.simulated for r in runs),
        statuses=statuses,
        sizes=sizes,
        stages=[stage_metrics(name, recs, n, name in past) for name, recs in by_stage.items()],
        gate=gate_metrics(runs, cost),
        sla=sla_metrics(runs),
    )


def _finite(obj: Any) -> Any:
    """JSON-safe: NaN and infinity become None."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
