"""Benchmark: assemble a large canvas from overlapping tiles, against one plain full-canvas copy.

Run: ``python benchmarks/bench_tiling.py [--size 8192] [--tile-size 512] [--overlap 32] [--repeat 3]``

Prints, measured in this one run:
- the time of one plain copy of the float32 canvas (allocation included, best of ``--repeat``);
- the time to assemble the same canvas from uint8 tiles with cosine blend weights, for the normalised plan
  (no weight-sum canvas) and for the generic weight-sum accumulator, and each one's ratio to the copy;
- the peak memory allocated while assembling (tracemalloc, which numpy reports to), as a ratio to the canvas's
  size. The tiles are views of a uint8 source made beforehand (a model hands tiles over one at a time), so
  the source is not counted; the tile-to-float conversion and weighting are.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from image_gen.imaging.tiling import TileAccumulator, TilePlan


def assemble(source: np.ndarray, plan: TilePlan, *, normalised: bool, kind: str = "cosine") -> np.ndarray:
    height, width, channels = source.shape
    acc = TileAccumulator(width, height, channels, normalised=normalised)
    pairs = plan.normalised_weights(kind) if normalised else ((t, plan.raw_weights(t, kind)) for t in plan)
    for tile, weights in pairs:
        acc.add(tile, source[tile.rows, tile.cols], weights, core=plan.core(tile))
    return acc.result()


def best_time(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        del out
    return best


def peak_bytes(fn: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
        del out
    finally:
        tracemalloc.stop()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--tile-size", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    size, channels = args.size, 3
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, size=(size, size, channels), dtype=np.uint8)
    plan = TilePlan(size, size, args.tile_size, args.overlap)
    canvas = np.ones((size, size, channels), dtype=np.float32)
    canvas_bytes = canvas.nbytes

    print(f"canvas {size}x{size}x{channels} float32 = {canvas_bytes / 2**20:.0f} MiB; "
          f"{len(plan)} tiles of {args.tile_size} px, overlap {args.overlap}")

    t_copy = best_time(canvas.copy, args.repeat)
    print(f"plain full-canvas copy:            {t_copy:7.3f} s")
    del canvas

    # Correctness check in the same run: the assembled canvas reproduces the source.
    out = assemble(source, plan, normalised=True)
    err = float(np.abs(out[::97, ::89] - source[::97, ::89]).max())
    del out
    print(f"max reconstruction error (sampled): {err:.2e}")

    results = {}
    for label, normalised in (("normalised plan (default)", True), ("weight-sum accumulator", False)):
        t = best_time(lambda n=normalised: assemble(source, plan, normalised=n), args.repeat)
        peak = peak_bytes(lambda n=normalised: assemble(source, plan, normalised=n))
        results[label] = (t, peak)
        print(f"assemble, {label:27s} {t:7.3f} s  time ratio {t / t_copy:5.2f}x  "
              f"peak {peak / 2**20:6.0f} MiB  memory ratio {peak / canvas_bytes:5.2f}x")

    t, peak = results["normalised plan (default)"]
    ok = t <= 3 * t_copy and peak <= 3 * canvas_bytes
    print(f"target (time <= 3x copy, peak <= 3x canvas): {'met' if ok else 'NOT met'} "
          f"(time {t / t_copy:.2f}x, memory {peak / canvas_bytes:.2f}x)")


if __name__ == "__main__":
    main()
