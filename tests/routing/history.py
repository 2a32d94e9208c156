"""Simulated history for the routing tests, recorded through the registry API (running the simulator for dozens of
runs would take minutes on CI's two cores): each recorded stage's latency is drawn from its model's latency profile
exactly as the simulator draws it (``SimProvider._latency``: the catalog's typical latency, scaled by steps, times a
seeded lognormal), and its calls, stage row and run row are written as the runner writes them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np

from image_gen.catalog import Catalog
from image_gen.providers.base import ImageRequest
from image_gen.providers.sim import SimProvider
from image_gen.store.models import Call, Run, StageRun
from image_gen.store.registry import Registry

FAST = """
name = "fast"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "final:sd3.5-medium"]
width = 256
height = 256
qa = {{ enabled = false }}
{extra}
[sim]
fail_rate = 0.0
[retry]
initial_s = 0.0
max_s = 0.0
"""
"""Two stages whose simulated latencies (3.5 s and 4 s typical) sum to a p95 of about 9 s."""


def write_config(tmp_path: Path, extra: str = "", name: str = "fast.toml") -> Path:
    p = tmp_path / name
    p.write_text(FAST.format(extra=extra), encoding="utf-8")
    return p


def record_runs(registry: Registry, stages: list[tuple[str, str]], n: int, *, size: tuple[int, int] = (256, 256),
                seed: int = 2, qa_pass: dict[str, float] | None = None, pipeline: str = "fast",
                routing: dict[str, Any] | None = None) -> list[str]:
    """Record ``n`` completed simulated runs of ``stages`` [(stage name, catalog id)]; returns their ids.
    ``qa_pass``: model id -> the share of its stages recorded as passing QA (QA not recorded where absent).
    With the default seed, 30 runs of the fast pipeline have a staged (end to end) p95 of 9.0 s."""
    catalog = Catalog.load()
    rng = np.random.default_rng(seed)
    qa_rng = np.random.default_rng(seed + 1)
    ids = []
    with registry.session() as s:  # one transaction: fast
        for i in range(n):
            run_id = uuid.uuid4().hex[:12]
            total = 0.0
            run = Run(id=run_id, status="completed", pipeline_name=pipeline, prompt=f"recorded brief {i}", config={},
                      simulated=True, routing=routing)
            s.add(run)
            s.flush()
            for idx, (name, model) in enumerate(stages):
                entry = catalog.simulated(catalog.resolve(model))
                request = ImageRequest(model=entry.id, vendor_model=entry.vendor_model, prompt="p",
                                       width=size[0], height=size[1])
                latency = SimProvider._latency(entry, request, rng)
                total += latency
                qa = None
                if qa_pass and model in qa_pass:
                    qa = {"passed": bool(qa_rng.random() < qa_pass[model]), "reasons": []}
                row = StageRun(run_id=run_id, idx=idx, name=name, model_id=entry.id, requested_model=model,
                               provider="sim", params={"width": size[0], "height": size[1]}, status="done",
                               latency_s=latency, qa=qa)
                s.add(row)
                s.flush()
                s.add(Call(run_id=run_id, stage_run_id=row.id, model_id=entry.id, provider="sim",
                           operation="generate", purpose="stage", request={}, state="ok", latency_s=latency,
                           simulated=True))
            run.latency_s = round(total, 4)
            ids.append(run_id)
    return ids
