"""Benchmark: renditions per second for a 2048x2048 final into four channels in WebP within their byte budgets,
and the budget search's encodes per rendition.

    python benchmarks/bench_delivery.py [--repeat 3] [--budget-scales 1.0 0.25] [--qa]

The final asset is the simulator's render (defects off) of the first demo brief at 2048x2048, rendered once
and not timed. The channels are the presets web-hero, square, portrait and story with their byte budgets (times
each of --budget-scales: 1.0 is the presets' budgets, which WebP meets at its first quality; 0.25 makes the bisection
work), all in WebP. Timed per rendition: the smart crop (saliency once per delivery), Lanczos resample, the encode
with the bisection on quality, the file write and its registry row; --qa adds QA on every rendition (OCR, softness).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

CHANNELS = ["web-hero", "square", "portrait", "story"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--budget-scales", type=float, nargs="+", default=[1.0, 0.25])
    p.add_argument("--qa", action="store_true", help="include QA (OCR) on every rendition")
    args = p.parse_args()

    from image_gen import api
    from image_gen.channels import PRESETS
    from image_gen.config import load_config
    from image_gen.delivery.deliver import Deliverer
    from image_gen.workspace import Workspace

    def channels(scale: float) -> dict[str, dict[str, object]]:
        out = {}
        for name in CHANNELS:
            preset = PRESETS[name].model_dump()
            preset.update(format="webp", max_bytes=int((preset["max_bytes"] or 400_000) * scale))
            out[name] = preset
        return out

    tmp = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    brief = Path(__file__).resolve().parents[1].joinpath("examples", "prompts.txt").read_text().splitlines()[1]
    cfg = {"model": "sd3.5-medium", "width": 2048, "height": 2048, "seed": 1, "simulate": True,
           "sim": {"typo_rate": 0.0, "soft_rate": 0.0, "fail_rate": 0.0}}  # a clean final: QA judges the renditions
    t0 = time.perf_counter()
    outcome = api.run_pipeline(cfg, brief, workspace=str(tmp))
    print(f"final asset: run {outcome.run_id} {outcome.status}, 2048x2048, rendered in "
          f"{time.perf_counter() - t0:.1f} s (not timed below)")
    ws = Workspace.resolve(tmp)
    for scale in args.budget_scales:
        deliverer = Deliverer(ws, config=load_config({**cfg, "channels": channels(scale)}), qa=args.qa)
        deliverer.deliver(outcome.run_id, CHANNELS, tmp / "warm")  # imports, ICC profile, OCR model load
        per: list[float] = []
        rows = []
        for i in range(args.repeat):
            t = time.perf_counter()
            res = deliverer.deliver(outcome.run_id, CHANNELS, tmp / f"out-{scale}-{i}")
            per.append((time.perf_counter() - t) / len(CHANNELS))
            rows.extend(res.renditions)
        bad = [r for r in rows if r.error or (r.max_bytes and (r.size_bytes or 0) > r.max_bytes)]
        print(f"\nrenditions: {len(rows)} ({args.repeat} x {len(CHANNELS)} channels, WebP, budget scale {scale}, "
              f"QA {'on' if args.qa else 'off'})")
        print(f"renditions/s: {1 / statistics.mean(per):.2f}  (mean {statistics.mean(per) * 1000:.0f} ms per "
              f"rendition, best run {min(per) * 1000:.0f} ms)")
        print(f"encodes per rendition: mean {statistics.mean(r.encodes or 0 for r in rows):.2f}, "
              f"max {max(r.encodes or 0 for r in rows)}")
        for name in CHANNELS:
            r = [x for x in rows if x.channel == name][-1]
            print(f"  {name:9} {r.width}x{r.height}  {r.size_bytes} / {r.max_bytes} B  quality {r.quality}  "
                  f"{r.encodes} encodes  {(r.fit or {}).get('mode')}  QA {r.qa_passed}")
        if bad:
            raise SystemExit(f"{len(bad)} renditions failed or missed their budget")


if __name__ == "__main__":
    main()
