"""Routing decided before a run's first call: latency-SLA routing (staged or single-call) and capability classes.

**History.** Every figure comes from the registry's recorded stages (``History.load``): a stage's *latency* is the
sum of the latencies of every call it made (its re-rolls, its escalation, its retried failures and its upscale or
tile calls included: the stage's whole machine latency); stages answered by the cache, and stages that did not
finish, are not samples. A stage is filed under the model of its first ``stage`` call (the model it was planned on,
even when it escalated) and the size it asked that model for. Simulated twins (``sim:<id>``) have their own history.

**Latency-SLA routing** (``pipeline.sla_s``, ``run --sla``). Each stage's latency is drawn, by a seeded (so
deterministic) Monte Carlo of :data:`DRAWS` draws, from

- its recorded latencies, when its model has at least ``sla_min_samples`` at the stage's asked size (bootstrap:
  re-rolls and escalations are in the samples as often as they happened), else
- the catalog: every call the stage would make (``pipeline/estimate.py``: render, upscale, tiles) takes the model's
  typical latency (``latency_s``, scaled by steps / default steps) times a lognormal spread of sigma
  :data:`CATALOG_SPREAD`; each QA re-roll, then the escalation, happens with the model's recorded QA failure rate
  (its catalog defect rates without history); each call fails and is retried (with its backoff) at the catalog's
  failure rate,

and the stages' draws are summed. ``p_within_sla`` is the share of summed draws within ``sla_s``. Below
``sla_target`` the run goes single-call on ``sla_model`` (default ``largest-available``, resolved as the planner
resolves it), asked for the size the staged pipeline would deliver.

**Approval gates.** A person's wait at a gate is not machine latency: the SLA covers the machine latency of every
stage (the gated ones too) and never the wait. Routing never skips a gate: a single-call run of a gated pipeline
waits for approval before its one call.

**Capability classes** (``model = "class:typography"``). The candidates are the catalog's active models of that
class whose provider is configured (a key is set; every model under ``--simulate``). A candidate qualifies when its
recorded QA pass rate (over at least ``sla_min_samples`` QA-checked stages) is at least the stage's
``min_pass_rate`` and its p95 stage latency (recorded at the asked size, else the catalog's typical latency times
the spread's p95 factor) is at most ``max_latency_s``; a limit left unset is not checked. The cheapest qualifying
model wins (catalog price at the asked size; ties by id); none qualifying is bad input, before anything is written.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from image_gen.catalog import CLASS_PREFIX, Catalog, ModelEntry
from image_gen.errors import InputError

if TYPE_CHECKING:
    from image_gen.config import Config, StageSettings
    from image_gen.pipeline.plan import StagePlan
    from image_gen.pipeline.runner import Runner
    from image_gen.store.registry import Registry

DRAWS = 4000
"""Monte Carlo draws of a pipeline's latency."""
SEED = 20261127
"""The draws' seed: the same history and pipeline always give the same estimate."""
CATALOG_SPREAD = 0.25
"""Lognormal sigma of one call's latency around the catalog's typical latency (where a model has too little
history): p95 = typical x exp(1.645 x 0.25) = typical x 1.51."""
SINGLE_CALL = "single-call"
"""The name of the one stage of a single-call run."""


def percentile(values: Sequence[float], q: float) -> float:
    from image_gen.reporting.metrics import percentile as pct

    return pct(values, q)


# ----------------------------------------------------------------------------------------------------- history


@dataclass
class StageSample:
    latency_s: float
    extra: bool
    """The stage needed a QA re-roll or an escalation."""


@dataclass
class History:
    """Recorded stages per model: latency samples per asked size, and QA outcomes (see the module's doc)."""

    latencies: dict[tuple[str, int, int], list[StageSample]] = field(default_factory=dict)
    qa: dict[str, list[bool]] = field(default_factory=dict)

    @classmethod
    def load(cls, registry: Registry) -> History:
        from sqlalchemy import func, select

        from image_gen.store.models import Call, StageRun

        out = cls()
        with registry.reading() as s:
            spent = dict(s.execute(select(Call.stage_run_id, func.coalesce(func.sum(Call.latency_s), 0.0))
                                   .group_by(Call.stage_run_id)).tuples().all())
            first: dict[int, str] = {}
            for sid, mid in s.execute(select(Call.stage_run_id, Call.model_id).where(Call.purpose == "stage")
                                      .order_by(Call.id)).tuples():
                if sid is not None:
                    first.setdefault(sid, mid)
            rows = s.execute(select(StageRun.id, StageRun.params, StageRun.qa, StageRun.rerolls,
                                    StageRun.escalated_to).where(StageRun.status == "done",
                                                                 StageRun.cache_hit.is_(False))).tuples().all()
        for sid, params, qa, rerolls, escalated in rows:
            model = first.get(sid)
            if model is None:  # no render call (render = false): nothing about a model's latency
                continue
            p = params or {}
            if p.get("width") and p.get("height"):
                key = (model, int(p["width"]), int(p["height"]))
                out.latencies.setdefault(key, []).append(
                    StageSample(float(spent.get(sid) or 0.0), bool(rerolls) or bool(escalated)))
            if qa:
                out.qa.setdefault(model, []).append(bool(qa.get("passed")))
        return out

    def samples(self, model: str, width: int, height: int) -> list[StageSample]:
        return self.latencies.get((model, width, height), [])

    def pass_rate(self, model: str) -> tuple[float, int]:
        seen = self.qa.get(model, [])
        return (sum(seen) / len(seen) if seen else math.nan), len(seen)


# ----------------------------------------------------------------------------------------------- the estimator


@dataclass
class StageModel:
    """How one stage's latency is drawn."""

    stage: str
    model: str
    width: int
    height: int
    source: str
    """``history`` or ``catalog``."""
    samples: list[float] = field(default_factory=list)
    calls: list[tuple[str, float, float]] = field(default_factory=list)
    """Catalog source: (purpose, typical latency, failure rate) of each call it always makes."""
    reroll: tuple[float, float, float] | None = None
    """Catalog source: (typical latency, failure rate, QA failure probability) of each re-roll."""
    rerolls: int = 0
    escalation: tuple[float, float] | None = None
    """Catalog source: (typical latency, failure rate) of the escalation call."""
    retries: int = 3
    p_extra: float = 0.0
    inputs: dict[str, Any] = field(default_factory=dict)

    def draw(self, rng: random.Random, backoff: Callable[[int], float]) -> float:
        if self.source == "history":
            return rng.choice(self.samples)

        def call(typical: float, fail: float) -> float:
            t = typical * math.exp(rng.gauss(0.0, CATALOG_SPREAD))
            n = 0
            while n < self.retries and rng.random() < fail:  # a failed try costs a call and a backoff
                n += 1
                t += typical * math.exp(rng.gauss(0.0, CATALOG_SPREAD)) + backoff(n)
            return t

        total = sum(call(t, f) for _, t, f in self.calls)
        if self.reroll is not None:
            typical, fail, q = self.reroll
            passed = rng.random() >= q
            k = 0
            while not passed and k < self.rerolls:
                k += 1
                total += call(typical, fail)
                passed = rng.random() >= q
            if not passed and self.escalation is not None:
                total += call(*self.escalation)
        return total


def _scaled_latency(entry: ModelEntry, steps: int | None) -> float:
    base = entry.latency_s
    if steps and entry.default_steps:
        base *= steps / entry.default_steps
    return base


def _rates(runner: Runner, entry: ModelEntry) -> tuple[float, float]:
    """(call failure rate, QA defect rate) of a model without history: the catalog's documented rates, or under
    ``--simulate`` the simulator's (``[sim]`` overrides them)."""
    sim = runner.config.sim if runner.simulate else None
    fail = sim.fail_rate if sim is not None and sim.fail_rate is not None else entry.sim_fail_rate
    soft = sim.soft_rate if sim is not None and sim.soft_rate is not None else entry.sim_soft_rate
    typo = sim.typo_rate if sim is not None and sim.typo_rate is not None else entry.sim_typo_rate
    return fail, 1.0 - (1.0 - soft) * (1.0 - typo)


def stage_models(runner: Runner, plans: list[StagePlan], history: History, min_samples: int,
                 seed_size: tuple[int, int] | None = None) -> tuple[list[StageModel], tuple[int, int] | None]:
    """How each stage's latency is drawn, and the size the pipeline delivers."""
    from image_gen.pipeline.estimate import estimate_runner

    est = estimate_runner(runner, plans=plans, seed_size=seed_size)
    out = []
    for plan, se in zip(plans, est.stages, strict=True):
        st = plan.settings
        model = plan.entry.id
        samples = history.samples(model, se.width, se.height) if st.render is not False else []
        retries = st.retries if st.retries is not None else 3
        size = f"{se.width}x{se.height}"
        if len(samples) >= min_samples:
            lat = [s.latency_s for s in samples]
            p_extra = sum(s.extra for s in samples) / len(samples)
            out.append(StageModel(plan.name, model, se.width, se.height, "history", samples=lat, p_extra=p_extra,
                                  inputs={"stage": plan.name, "model": model, "size": size, "source": "history",
                                          "samples": len(lat), "p50_s": round(percentile(lat, 50), 3),
                                          "p95_s": round(percentile(lat, 95), 3),
                                          "p_reroll_or_escalation": round(p_extra, 4)}))
            continue
        sm = StageModel(plan.name, model, se.width, se.height, "catalog", retries=retries)
        for g in se.groups:
            entry = runner.catalog.resolve(g.model)
            typical = _scaled_latency(entry, st.steps if g.purpose in ("render", "reroll", "escalation") else None)
            fail = _rates(runner, entry)[0]
            if g.purpose in ("render", "upscale", "tile"):
                sm.calls += [(g.purpose, typical, fail)] * g.calls
            elif g.purpose == "reroll":
                sm.rerolls = g.calls
            elif g.purpose == "escalation":
                sm.escalation = (typical, fail)
        qa_on = st.qa is None or st.qa.enabled
        rate, n_qa = history.pass_rate(model)
        if not qa_on:
            q, q_from = 0.0, "QA off"
        elif n_qa >= min_samples:
            q, q_from = 1.0 - rate, f"recorded QA pass rate over {n_qa} stages"
        else:
            q, q_from = _rates(runner, plan.entry)[1], "catalog defect rates (soft, typo)"
        render = next((c for c in sm.calls if c[0] == "render"), None)
        if render is not None and (sm.rerolls or sm.escalation):
            sm.reroll = (render[1], render[2], q)
        sm.p_extra = q if (sm.rerolls or sm.escalation) else 0.0
        sm.inputs = {"stage": plan.name, "model": model, "size": size, "source": "catalog",
                     "samples": len(samples), "min_samples": min_samples,
                     "typical_s": round(_scaled_latency(plan.entry, st.steps), 3),
                     "spread": f"lognormal sigma {CATALOG_SPREAD} per call",
                     "calls": len(sm.calls), "max_rerolls": sm.rerolls, "escalation": sm.escalation is not None,
                     "p_reroll_or_escalation": round(sm.p_extra, 4), "qa_failure_from": q_from,
                     "why": f"{len(samples)} recorded samples at {size} (fewer than {min_samples}): the catalog's "
                            "typical latency with a stated spread"}
        out.append(sm)
    return out, (est.stages[-1].delivered if est.stages else None)


@dataclass
class PathEstimate:
    p_within: float
    p50_s: float
    p95_s: float
    stages: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"p_within_sla": round(self.p_within, 4), "p50_s": round(self.p50_s, 3),
                "p95_s": round(self.p95_s, 3), "stages": self.stages}


def simulate_path(models: list[StageModel], sla_s: float, backoff: Callable[[int], float],
                  draws: int = DRAWS, seed: int = SEED) -> PathEstimate:
    """The Monte Carlo sum of the stages' draws: P(total <= sla_s), p50 and p95 of the total."""
    rng = random.Random(seed)
    totals = [sum(m.draw(rng, backoff) for m in models) for _ in range(draws)]
    within = sum(t <= sla_s for t in totals) / draws
    return PathEstimate(within, percentile(totals, 50), percentile(totals, 95), [m.inputs for m in models])


# ----------------------------------------------------------------------------------------------- the decision


@dataclass
class Routing:
    """What a run was routed to, and why: recorded on the run (``Run.routing``)."""

    mode: str
    plans: list[StagePlan]
    record: dict[str, Any] | None


def single_call_config(cfg: Config, model: str, size: tuple[int, int] | None, gated: bool) -> Config:
    """The one-stage config of the single-call path: ``model`` asked for ``size``, the gate kept."""
    from image_gen.config import PipelineSettings, StageSettings

    specs = cfg.stage_specs()
    last = specs[-1][1] if specs else StageSettings()
    stage: dict[str, Any] = {"model": model}
    if size:
        stage.update(width=size[0], height=size[1])
    if gated:
        stage["gate"] = "approval"
    if last.qa is not None:
        stage["qa"] = last.qa
    keep = {k: v for k, v in cfg.pipeline.model_dump(exclude_none=True).items()
            if k in ("seed", "negative_prompt", "retries", "sla_s", "sla_target", "sla_model", "sla_min_samples")}
    return cfg.model_copy(update={"pipeline": PipelineSettings(model=model, **keep),
                                  "stage": {SINGLE_CALL: StageSettings(**stage)}})


def decide(runner: Runner, plans: list[StagePlan], *, seed_size: tuple[int, int] | None = None,
           history: History | None = None) -> Routing:
    """Staged or single-call, from the registry's history (see the module's doc). Writes nothing."""
    cfg = runner.config
    p = cfg.pipeline
    classes = {pl.name: pl.substitution for pl in plans if pl.requested.startswith(CLASS_PREFIX)}
    class_models = {pl.name: pl.class_model for pl in plans if pl.class_model}
    base: dict[str, Any] = {"classes": {n: {"model": class_models.get(n), "reason": r} for n, r in classes.items()}
                            } if classes else {}
    if p.sla_s is None:
        return Routing("staged", plans, {"mode": "staged", "p_within_sla": None, "reason": "no latency SLA set",
                                         **base} if classes else None)
    history = history if history is not None else runner.history()
    backoff = _backoff(cfg)
    models, delivered = stage_models(runner, plans, history, p.sla_min_samples, seed_size)
    staged = simulate_path(models, p.sla_s, backoff)
    gated = [pl.name for pl in plans if pl.settings.gate == "approval"]
    record: dict[str, Any] = {
        "mode": "staged", "p_within_sla": round(staged.p_within, 4), "sla_s": p.sla_s, "sla_target": p.sla_target,
        "sla_model": p.sla_model, "draws": DRAWS, "seed": SEED, "min_samples": p.sla_min_samples,
        "staged": staged.to_dict(),
        "gate": (f"approval wait at {', '.join(gated)} not counted (machine latency only); the gate is kept"
                 if gated else None),
        **base,
    }
    if staged.p_within >= p.sla_target:
        record["reason"] = (f"staged path: P(within {p.sla_s:g} s) = {staged.p_within:.3f} >= target "
                            f"{p.sla_target:g} (staged p95 {staged.p95_s:.2f} s)")
        return Routing("staged", plans, record)
    single_plans = runner.single_call_plans(p.sla_model, delivered, bool(gated))
    entry = single_plans[0].entry
    single_models, _ = stage_models(runner, single_plans, history, p.sla_min_samples, seed_size)
    single = simulate_path(single_models, p.sla_s, backoff)
    record.update(
        mode="single-call", single_call=single.to_dict(),
        single_call_model=_catalog_id(entry), size=list(delivered) if delivered else None,
        reason=(f"staged path: P(within {p.sla_s:g} s) = {staged.p_within:.3f} < target {p.sla_target:g} "
                f"(staged p95 {staged.p95_s:.2f} s): one call on {entry.id} ({p.sla_model}; its own "
                f"P(within) = {single.p_within:.3f}, p95 {single.p95_s:.2f} s)"
                + (f"; still waits for approval ({', '.join(gated)} gated)" if gated else "")),
    )
    return Routing("single-call", single_plans, record)


def _catalog_id(entry: ModelEntry) -> str:
    from image_gen.catalog import SIM_PREFIX

    return entry.id.removeprefix(SIM_PREFIX)


def _backoff(cfg: Config) -> Callable[[int], float]:
    rs = cfg.retry

    def wait(n: int) -> float:  # the mean of the runner's jittered backoff (pipeline/calls.py)
        return 0.75 * min(rs.max_s, rs.initial_s * 2 ** (n - 1))

    return wait


# ----------------------------------------------------------------------------------------------- capability classes


def choose_class(catalog: Catalog, requested: str, stage: str, st: StageSettings, size: tuple[int, int],
                 history: History, configured: list[str] | None, simulate: bool,
                 min_samples: int) -> tuple[ModelEntry, str, dict[str, Any]]:
    """The cheapest configured model of the class that meets the stage's limits: (entry, reason, record)."""
    cls = requested[len(CLASS_PREFIX):]
    width, height = size
    n_images = st.num_images or 1
    considered: list[tuple[float, str, ModelEntry, str]] = []
    passed_over: list[str] = []
    for entry in catalog.of_class(cls):
        if not simulate and (configured is None or entry.provider not in configured):
            passed_over.append(f"{entry.id}: provider {entry.provider} not configured")
            continue
        key = catalog.simulated(entry).id if simulate else entry.id
        meets: list[str] = []
        fails: list[str] = []
        if st.min_pass_rate is not None:
            rate, n = history.pass_rate(key)
            if n < min_samples:
                fails.append(f"QA pass rate unknown ({n} QA-checked stages, fewer than {min_samples})")
            elif rate < st.min_pass_rate:
                fails.append(f"QA pass rate {rate:.2f} over {n} < {st.min_pass_rate:g}")
            else:
                meets.append(f"QA pass rate {rate:.2f} over {n} >= {st.min_pass_rate:g}")
        if st.max_latency_s is not None:
            samples = [s.latency_s for s in history.samples(key, width, height)]
            if len(samples) >= min_samples:
                p95, src = percentile(samples, 95), f"recorded over {len(samples)} at {width}x{height}"
            else:
                p95 = _scaled_latency(entry, st.steps) * math.exp(1.645 * CATALOG_SPREAD)
                src = f"catalog {entry.latency_s:g} s x {math.exp(1.645 * CATALOG_SPREAD):.2f}"
            if p95 > st.max_latency_s:
                fails.append(f"p95 {p95:.2f} s ({src}) > {st.max_latency_s:g} s")
            else:
                meets.append(f"p95 {p95:.2f} s ({src}) <= {st.max_latency_s:g} s")
        if fails:
            passed_over.append(f"{entry.id}: {'; '.join(fails)}")
            continue
        considered.append((entry.price_for(width, height, n_images), entry.id, entry, "; ".join(meets)))
    if not considered:
        limits = ", ".join(x for x in (f"min_pass_rate {st.min_pass_rate:g}" if st.min_pass_rate is not None
                                       else "", f"max_latency_s {st.max_latency_s:g}"
                                       if st.max_latency_s is not None else "") if x)
        detail = "; ".join(passed_over) if passed_over else "the catalog has no active model of that class"
        raise InputError(f"stage {stage}: no configured model of {requested} qualifies"
                         + (f" ({limits})" if limits else "") + f": {detail}", field=f"stage.{stage}.model")
    considered.sort(key=lambda c: (c[0], c[1]))
    cost, _, entry, met = considered[0]
    reason = (f"{requested} -> {entry.id}: the cheapest (${cost:.4f} at {width}x{height}) of "
              f"{len(considered)} qualifying configured model{'s' if len(considered) != 1 else ''}"
              + (f" ({met})" if met else " (no min_pass_rate / max_latency_s set)")
              + (f"; passed over: {'; '.join(passed_over)}" if passed_over else ""))
    record = {"class": cls, "model": entry.id, "cost_usd": cost, "qualifying": [c[1] for c in considered],
              "passed_over": passed_over}
    return entry, reason, record
