"""Benchmark: peak memory and time of untiled against tiled (MultiDiffusion) local generation as the area grows.

Run: ``python benchmarks/bench_local_tiling.py [--base 256] [--tile-size 272] [--overlap 16] [--steps 3]``
(about 2 minutes on 2 CPU cores).

A small, randomly initialised SD3-style pipeline (``tests.local._tiny``; nothing is downloaded) is
written to a temporary folder. Each measurement runs in a fresh process through the local provider, on CPU:

- it loads the pipeline and renders one small warm-up image (so lazy initialisation is not counted), then
  resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), renders the measured image and reads the peak
  (``VmHWM``) minus the resident size before the render: the memory the generation itself needed. The process
  runs with ``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensors go back to the kernel and RSS follows live memory;
- it then renders the same image ``--repeat`` more times and keeps the best wall-clock time.

Sizes are ``base``, ``2 x base`` and ``4 x base`` on a side (area 1x, 4x, 16x). Prints each figure and the ratios
measured in this run: peak memory against the 1x figure of the same mode, and tiled time per pixel against
untiled at the largest size both ran. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FACTORS = (1, 2, 4)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(args: argparse.Namespace) -> None:
    """Measure one (size, mode) in this process and print one JSON line."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    torch.set_num_threads(args.threads)
    from image_gen.providers.base import ImageRequest, ProviderSettings
    from image_gen.providers.diffusers_local import DiffusersLocalProvider

    provider = DiffusersLocalProvider(ProviderSettings(options={"device": "cpu", "dtype": "float32"}))
    options: dict[str, object] = {}
    if args.mode == "tiled":
        options = {"tile_size": args.tile_size, "overlap": args.overlap, "tile_batch": args.tile_batch}

    def render(size: int, steps: int) -> float:
        req = ImageRequest(model="local:bench", vendor_model=args.folder, prompt='a tin can labelled "HELLO"',
                           width=size, height=size, seed=1, steps=steps, guidance_scale=4.0, options=options)
        t0 = time.perf_counter()
        res = provider.generate(req)
        elapsed = time.perf_counter() - t0
        assert (res.images[0].width, res.images[0].height) == (size, size)
        assert res.metadata["tiled"] is (args.mode == "tiled")
        return elapsed

    render(64, 1)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    try:
        first = render(args.size, args.steps)
    except Exception as exc:  # an out-of-memory here is a result, not a crash
        print(json.dumps({"size": args.size, "mode": args.mode, "error": f"{type(exc).__name__}: {exc}"[:200]}))
        return
    peak = _status_kib("VmHWM") - before
    times = [first] + [render(args.size, args.steps) for _ in range(args.repeat)]
    print(json.dumps({"size": args.size, "mode": args.mode, "peak_mib": peak / 1024, "seconds": min(times)}))


def measure(folder: Path, size: int, mode: str, args: argparse.Namespace) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--worker", "--folder", str(folder), "--size", str(size), "--mode", mode,
           "--tile-size", str(args.tile_size), "--overlap", str(args.overlap), "--steps", str(args.steps),
           "--repeat", str(args.repeat), "--threads", str(args.threads), "--vae-width", str(args.vae_width),
           "--tile-batch", str(args.tile_batch)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"size": size, "mode": mode, "error": (out.stderr.strip().splitlines() or ["?"])[-1][:200]}
    result: dict[str, object] = json.loads(lines[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=int, default=256, help="side of the 1x image in pixels")
    # 272 px tiles with 16 px overlap (the 512/32 ratio of the CLI example) cover 512 and 1024 px in 2 and 4
    # tiles a side with 6% overlap work, so time per pixel compares like with like.
    ap.add_argument("--tile-size", type=int, default=272, help="tile side in pixels")
    ap.add_argument("--overlap", type=int, default=16, help="tile overlap in pixels")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1, help="timed renders after the measured one (best kept)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1 keeps timings steady on a shared machine)")
    ap.add_argument("--vae-width", type=int, default=48, help="channels of the tiny VAE")
    ap.add_argument("--tile-batch", type=int, default=1, help="latent tiles per denoiser forward pass")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=("untiled", "tiled"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/ holds the pipeline
    from tests.local._tiny import save_tiny_sd3

    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        folder = save_tiny_sd3(Path(tmp) / "sd3", heads=4, head_dim=16, layers=2, vae_width=args.vae_width)
        print(f"tiny SD3-style pipeline (2 transformer blocks, 64 wide; VAE {args.vae_width} wide, x8), "
              f"{args.steps} steps, CFG on, CPU float32, {args.threads} thread(s); tiles {args.tile_size} px, "
              f"overlap {args.overlap} px, {args.tile_batch} tile(s) per pass")
        rows: dict[tuple[int, str], dict[str, object]] = {}
        for f in FACTORS:
            size = args.base * f
            for mode in ("untiled", "tiled"):
                rows[(f, mode)] = measure(folder, size, mode, args)

    peak = {k: float(r["peak_mib"]) for k, r in rows.items() if "peak_mib" in r}  # type: ignore[arg-type]
    secs = {k: float(r["seconds"]) for k, r in rows.items() if "seconds" in r}  # type: ignore[arg-type]
    print(f"\n{'area':>5} {'size':>10} | {'untiled MiB':>11} {'x 1x':>6} {'s':>7} {'us/px':>7} | "
          f"{'tiled MiB':>9} {'x 1x':>6} {'s':>7} {'us/px':>7} | {'tiled/untiled us/px':>19}")
    both: list[int] = []
    for f in FACTORS:
        size = args.base * f
        cells = []
        for mode, width in (("untiled", 11), ("tiled", 9)):
            if (f, mode) not in peak:
                cells.append(f"{'failed':>{width}} {'':>6} {'':>7} {'':>7}")
                continue
            ratio = peak[(f, mode)] / peak[(1, mode)] if (1, mode) in peak else float("nan")
            per_px = secs[(f, mode)] / (size * size) * 1e6
            cells.append(f"{peak[(f, mode)]:>{width}.1f} {ratio:>6.2f} {secs[(f, mode)]:>7.2f} {per_px:>7.2f}")
        if (f, "tiled") in secs and (f, "untiled") in secs:
            both.append(f)
            tp = f"{secs[(f, 'tiled')] / secs[(f, 'untiled')]:>19.2f}"
        else:
            tp = f"{'-':>19}"
        print(f"{f * f:>4}x {f'{size}x{size}':>10} | {cells[0]} | {cells[1]} | {tp}")
    for (f, mode), r in rows.items():
        if "error" in r:
            print(f"  {mode} {args.base * f}px failed: {r['error']}")

    top = FACTORS[-1]
    if both and all(k in peak for k in ((1, "tiled"), (top, "tiled"), (1, "untiled"))):
        big = both[-1]
        tiled_growth = peak[(top, "tiled")] / peak[(1, "tiled")]
        untiled_growth = peak[(big, "untiled")] / peak[(1, "untiled")]
        t_ratio = secs[(big, "tiled")] / secs[(big, "untiled")]
        print(f"\ntiled peak at {top * top}x area / tiled peak at 1x: {tiled_growth:.2f} "
              f"({'within' if tiled_growth <= 1.5 else 'OVER'} 1.5x)")
        print(f"untiled peak at {big * big}x area / untiled peak at 1x: {untiled_growth:.2f}")
        print(f"tiled / untiled time per pixel at {args.base * big}x{args.base * big} (largest size both ran): "
              f"{t_ratio:.2f} ({'within' if t_ratio <= 1.5 else 'OVER'} 1.5x)")


if __name__ == "__main__":
    main()
