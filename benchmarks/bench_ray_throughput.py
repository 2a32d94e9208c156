"""Batch throughput on Ray against the ideal bound, on the loopback vendors (a fixed latency per request).

A batch of N briefs through S vendor stages, C at once, every request taking L seconds at the vendor, can finish no
sooner than ceil(N / C) * S * L (the ideal bound: no overhead at all). This runs the same batch with the local
executor (threads) and with the Ray executor on a local Ray (warmed up first: worker processes started and image-gen
imported, as on a long-lived cluster), and prints each one's time and its fraction of the ideal bound
(ideal / measured; 1.0 is perfect). Ray's start time is printed separately.

    python benchmarks/bench_ray_throughput.py [--briefs 16] [--concurrency 4] [--latency 1.0] [--cpus 4]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIG = """
name = "bench-ray"
[pipeline]
stages = ["draft:ideogram-v1-turbo", "final:sd3.5-medium", "hires:gemini-3-pro-image"]
width = 256
height = 256
[pipeline.qa]
enabled = false
[retry]
initial_s = 0
max_s = 0
[providers.ideogram]
max_concurrency = 64
options = { max_inflight = 64 }
[providers.stability]
max_concurrency = 64
[providers.google]
max_concurrency = 64
"""
STAGES = 3


def batch(root: Path, n: int, concurrency: int, tag: str) -> tuple[Any, str]:
    from image_gen.api import make_runner
    from image_gen.config import load_config
    from image_gen.pipeline.batch import submit
    from image_gen.pipeline.runner import Brief

    cfg = root / f"{tag}.toml"
    cfg.write_text(CONFIG)
    runner = make_runner(load_config(cfg), workspace=root / tag, simulate=False, config_source=str(cfg))
    briefs = [Brief(f'Bottle number {i} on a table, label reads "BATCH {tag.upper()} {i}"', index=i) for i in range(n)]
    return runner, submit(runner, briefs)


def timed(root: Path, n: int, concurrency: int, tag: str, executor: str) -> float:
    from image_gen.pipeline.batch import run_batch

    runner, batch_id = batch(root, n, concurrency, tag)
    started = time.perf_counter()
    st = run_batch(runner.workspace, batch_id, executor=executor, concurrency=concurrency)
    took = time.perf_counter() - started
    assert st.status == "completed", st
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--briefs", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--latency", type=float, default=1.0, help="seconds the fake vendors take per request")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray")
    args = ap.parse_args()

    from tests.fakes import FakeGoogle, FakeIdeogram, FakeStability
    from tests.fakes.fixtures import GEMINI_KEY, IDEOGRAM_KEY, STABILITY_KEY

    with FakeIdeogram(IDEOGRAM_KEY) as ideo, FakeStability(STABILITY_KEY) as stab, FakeGoogle(GEMINI_KEY) as goog, \
            tempfile.TemporaryDirectory() as tmp:
        for server in (ideo, stab, goog):
            server.latency_s = args.latency
        root = Path(tmp)
        env = {"IDEOGRAM_API_KEY": IDEOGRAM_KEY, "IDEOGRAM_BASE_URL": ideo.url, "STABILITY_API_KEY": STABILITY_KEY,
               "STABILITY_BASE_URL": stab.url, "GEMINI_API_KEY": GEMINI_KEY, "GOOGLE_GEMINI_BASE_URL": goog.url,
               "IMAGE_GEN_HOME": str(root / "home"), "IMAGE_GEN_KEYS_FILE": str(root / "no-keys.toml")}
        os.environ.update(env)
        ideal = math.ceil(args.briefs / args.concurrency) * STAGES * args.latency
        print(f"{args.briefs} briefs x {STAGES} vendor stages, {args.concurrency} at once, {args.latency:g} s per "
              f"request: ideal bound {ideal:.2f} s")

        local = timed(root, args.briefs, args.concurrency, "local", "local")
        print(f"local executor (threads)   {local:7.2f} s   {ideal / local:5.2f} of the ideal bound")

        import ray

        started = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
        print(f"ray.init (local Ray, {args.cpus} CPUs)  {time.perf_counter() - started:5.2f} s")
        try:
            warm = timed(root, args.concurrency, args.concurrency, "warmup", "ray")
            print(f"ray warm-up batch ({args.concurrency} briefs: workers start, import image-gen)  {warm:5.2f} s")
            on_ray = timed(root, args.briefs, args.concurrency, "ray", "ray")
            print(f"ray executor (tasks)       {on_ray:7.2f} s   {ideal / on_ray:5.2f} of the ideal bound   "
                  f"target >= 0.90: {'ok' if ideal / on_ray >= 0.9 else 'BELOW'}")
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
