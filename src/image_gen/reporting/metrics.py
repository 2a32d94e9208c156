"""What a pipeline achieves, computed from registry rows: render success, latency, cost, calls, re-rolls, cache.

The records here are plain dataclasses so the figures can be computed (and tested) from any source;
``load_runs`` reads them from the registry.

Definitions:

- a run's asset is **successful** when the run delivered an image (status ``completed``, or
  ``awaiting_approval`` with its last finished stage's image) and that image passed QA (a run whose QA was
  switched off counts by its status alone);
- **render success rate** = successful runs / runs;
- **latency** of a run = the sum of its stages' latencies (end to end), of a stage = its recorded latency,
  cache hits included (they are what a re-run costs);
- **cost per image** = total cost / runs; **cost per successful asset** = total cost / successful runs (what
  a usable asset costs once failures are paid for);
- **calls per asset** = provider calls / runs (for a stage answered by the cache: the calls that produced its
  image; the cache hit rate is reported beside);
- **re-rolls** and **escalations** = the stage runs' counts; **cache hit rate** = stage runs served from the
  cache / finished stage runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from image_gen.store.registry import Registry

DELIVERED = ("completed", "awaiting_approval")


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

    @property
    def succeeded(self) -> bool:
        return self.status in DELIVERED and self.final_artifact is not None and self.qa_passed is not False

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.stages)


def load_runs(registry: Registry, run_ids: Iterable[str], pipeline: str | None = None) -> list[RunRecord]:
    """Records of the given runs, with their stages and provider calls (calls answered by the cache excluded)."""
    out = []
    for rid in run_ids:
        run = registry.get_run(rid)
        if run is None:
            raise KeyError(f"run {rid!r} not in the registry")
        calls = registry.calls(run.id)
        stages = []
        for s in registry.stage_runs(run.id):
            qa = s.qa or {}
            # A stage answered by the cache cost this run nothing; to compare pipelines, count what producing
            # its image cost when it was rendered (recorded with the cache hit), and report the hit rate apart.
            produced = (s.params or {}).get("from_cache") or {} if s.cache_hit else {}
            own_calls = sum(1 for c in calls if c.stage_run_id == s.id)
            stages.append(
                StageRecord(
                    name=s.name,
                    model=s.model_id,
                    status=s.status,
                    latency_s=float(produced.get("latency_s") or s.latency_s or 0.0),
                    cost_usd=float(produced.get("cost_usd") or s.cost_usd or 0.0),
                    cache_hit=bool(s.cache_hit),
                    calls=int(produced.get("calls") or 0) if s.cache_hit else own_calls,
                    rerolls=int(produced.get("rerolls") or s.rerolls or 0),
                    escalated_to=s.escalated_to,
                    qa_passed=None if not qa else bool(qa.get("passed")),
                    qa_reasons=list(qa.get("reasons", [])),
                    artifact=s.artifact_sha,
                )
            )
        out.append(
            RunRecord(
                run_id=run.id,
                pipeline=pipeline or run.pipeline_name or "?",
                prompt=run.prompt,
                status=run.status,
                latency_s=round(sum(st.latency_s for st in stages), 4),
                cost_usd=round(sum(st.cost_usd for st in stages), 6),
                qa_passed=run.qa_passed,
                simulated=bool(run.simulated),
                stages=stages,
                brief_index=run.brief_index,
                final_artifact=run.final_artifact,
            )
        )
    return out


def run_metrics(run: RunRecord) -> dict[str, float]:
    """One run's figures, as (name, value) pairs fit for the registry's ``metrics`` table."""
    finished = [s for s in run.stages if s.status == "done"]
    out = {
        "success": float(run.succeeded),
        "latency_s": run.latency_s,
        "cost_usd": run.cost_usd,
        "calls": float(run.calls),
        "rerolls": float(sum(s.rerolls for s in run.stages)),
        "escalations": float(sum(1 for s in run.stages if s.escalated_to)),
        "cache_hits": float(sum(s.cache_hit for s in finished)),
        "stages_done": float(len(finished)),
    }
    for s in finished:
        out[f"stage.{s.name}.latency_s"] = s.latency_s
        out[f"stage.{s.name}.cost_usd"] = s.cost_usd
    return out


def record_run_metrics(registry: Registry, run_id: str) -> dict[str, float]:
    """Compute a finished run's figures and store them in the ``metrics`` table (replacing earlier ones)."""
    from sqlalchemy import delete

    from image_gen.store.models import Metric

    (record,) = load_runs(registry, [run_id])
    values = run_metrics(record)
    with registry.session() as s:
        s.execute(delete(Metric).where(Metric.run_id == record.run_id, Metric.stage_run_id.is_(None)))
        s.add_all(Metric(run_id=record.run_id, name=k, value=float(v)) for k, v in values.items())
    return values


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

    @classmethod
    def of(cls, values: Sequence[float]) -> LatencySummary:
        vals = list(values)
        return cls(sum(vals) / len(vals) if vals else math.nan, percentile(vals, 50), percentile(vals, 95), len(vals))


@dataclass
class StageMetrics:
    name: str
    models: list[str]
    runs: int
    latency: LatencySummary
    cost_total: float
    cost_mean: float
    calls: int
    rerolls: int
    escalations: int
    cache_hits: int
    cache_hit_rate: float
    qa_pass_rate: float
    """Share of QA-checked stage outputs that passed (NaN when none was checked)."""


@dataclass
class PipelineMetrics:
    pipeline: str
    runs: int
    successes: int
    success_rate: float
    latency: LatencySummary
    cost_total: float
    cost_per_image: float
    cost_per_success: float
    calls: int
    calls_per_asset: float
    rerolls: int
    escalations: int
    cache_hit_rate: float
    simulated: bool
    statuses: dict[str, int]
    stages: list[StageMetrics]

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


def stage_metrics(name: str, stages: Sequence[StageRecord]) -> StageMetrics:
    ran = [s for s in stages if s.status not in ("pending",)]
    finished = [s for s in stages if s.status == "done"]
    checked = [s for s in finished if s.qa_passed is not None]
    hits = sum(s.cache_hit for s in finished)
    cost = sum(s.cost_usd for s in ran)
    return StageMetrics(
        name=name,
        models=sorted({s.model for s in ran}),
        runs=len(ran),
        latency=LatencySummary.of([s.latency_s for s in finished]),
        cost_total=cost,
        cost_mean=cost / len(ran) if ran else math.nan,
        calls=sum(s.calls for s in ran),
        rerolls=sum(s.rerolls for s in ran),
        escalations=sum(1 for s in ran if s.escalated_to),
        cache_hits=hits,
        cache_hit_rate=hits / len(finished) if finished else math.nan,
        qa_pass_rate=sum(bool(s.qa_passed) for s in checked) / len(checked) if checked else math.nan,
    )


def pipeline_metrics(runs: Sequence[RunRecord], pipeline: str | None = None) -> PipelineMetrics:
    """The figures of one pipeline over its runs (one run per brief)."""
    n = len(runs)
    successes = sum(r.succeeded for r in runs)
    cost = sum(r.cost_usd for r in runs)
    calls = sum(r.calls for r in runs)
    by_stage: dict[str, list[StageRecord]] = {}
    for r in runs:
        for s in r.stages:
            by_stage.setdefault(s.name, []).append(s)
    stages = [stage_metrics(name, recs) for name, recs in by_stage.items()]
    finished = [s for recs in by_stage.values() for s in recs if s.status == "done"]
    statuses: dict[str, int] = {}
    for r in runs:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    return PipelineMetrics(
        pipeline=pipeline or (runs[0].pipeline if runs else "?"),
        runs=n,
        successes=successes,
        success_rate=successes / n if n else math.nan,
        latency=LatencySummary.of([r.latency_s for r in runs]),
        cost_total=cost,
        cost_per_image=cost / n if n else math.nan,
        cost_per_success=cost / successes if successes else math.inf,
        calls=calls,
        calls_per_asset=calls / n if n else math.nan,
        rerolls=sum(s.rerolls for recs in by_stage.values() for s in recs),
        escalations=sum(1 for recs in by_stage.values() for s in recs if s.escalated_to),
        cache_hit_rate=sum(s.cache_hit for s in finished) / len(finished) if finished else math.nan,
        simulated=any(r.simulated for r in runs),
        statuses=statuses,
        stages=stages,
    )


def _finite(obj: Any) -> Any:
    """JSON-safe: NaN and infinity become None."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
