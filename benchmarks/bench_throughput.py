"""Benchmark: a batch of briefs x 3 stages against loopback vendors with a fixed latency and concurrency limits.

    python benchmarks/bench_throughput.py [--briefs 200] [--latency 0.3] [--executor local|ray|both]

The batch goes through the batch service (``api.submit_batch`` / ``api.run_batch``) on the local executor (threads),
twice: as the first batch of this process (modules not yet loaded, as in a fresh ``image-gen batch submit``) and as a
second one; and on Ray (a local Ray, warmed up first by a small batch, as a long-lived cluster would be).

The vendors (Ideogram for draft and layout, Stability for the final stage) run in a process of their own and answer
every generation ``--latency`` seconds after its request arrived; image-gen's per-vendor limits
(``providers.*.max_concurrency``) are the only throttle. The ideal bound is what those limits allow: each vendor can
finish ``limit / latency`` calls a second, so ``briefs x calls-per-brief x latency / limit`` seconds for the busiest
vendor (here both are equally busy; the bound leaves out that the final stage's vendor can only start once a brief's
first two stages are done). Prints the measured time, the ratio ideal/measured (1.0 = the limits are the only cost),
and the orchestration time per stage: a stage's wall time minus its vendor calls' time (a call's time runs from
asking for one of the vendor's places to its answer read and its image downloaded, so waiting for a place is the
vendor's; what is left is the registry, ledger, artifact store and image checks; read back from the registry),
median and p95, plus this process's CPU time per stage and the vendors' process's CPU, and from the vendors' side
each vendor's mean time per generation and how busy its places were during the batch. QA is off (``bench_qa.py``
measures it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = ["draft:ideogram-v2-turbo", "layout:ideogram-v2a", "final:sd3.5-medium"]
CALLS_PER_BRIEF = {"ideogram": 2, "stability": 1}


def config_text(ideogram_url: str, stability_url: str, limits: dict[str, int]) -> str:
    stages = ", ".join(f'"{s}"' for s in STAGES)
    return f"""
name = "throughput"
[pipeline]
model = "staged-selection"
stages = [{stages}]
width = 1024
height = 1024
retries = 0
[pipeline.qa]
enabled = false
[providers.ideogram]
base_url = "{ideogram_url}"
max_concurrency = {limits['ideogram']}
[providers.stability]
base_url = "{stability_url}"
max_concurrency = {limits['stability']}
"""


def _cpu_seconds(pid: int) -> float:
    """A process's user + system CPU seconds so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def busy(spans: list[list[float]], limit: int, t0: float, t1: float) -> dict[str, float]:
    """How busy a vendor's places were in one batch (``t0``..``t1``, ``time.monotonic()``): its generations' mean
    time, and the place-seconds they used over what ``limit`` places offer from its first request to its last
    answer."""
    inside = [(a, b) for a, b in spans if t0 <= a and b <= t1]
    if not inside:
        return {}
    first, last = min(a for a, _ in inside), max(b for _, b in inside)
    used = sum(b - a for a, b in inside)
    return {"mean_s": used / len(inside), "busy": used / (limit * (last - first)) if last > first else 0.0}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def orchestration(workspace: Path, registry_url: str | None, since: float) -> list[float]:
    """Per stage finished after ``since`` (epoch seconds): its wall time minus the time its vendor calls took."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from image_gen.store.models import Call, StageRun
    from image_gen.workspace import Workspace

    reg = Workspace(workspace, registry_url=registry_url).registry()
    with reg.session() as s:
        start = datetime.fromtimestamp(since, UTC).replace(tzinfo=None)
        stages = s.execute(select(StageRun.id, StageRun.started_at, StageRun.finished_at)
                           .where(StageRun.status == "done", StageRun.started_at >= start)).all()
        call_time: dict[int, float] = {}
        for sid, lat in s.execute(select(Call.stage_run_id, Call.latency_s)).all():
            call_time[sid] = call_time.get(sid, 0.0) + float(lat or 0.0)
    return [max(0.0, (fin - start).total_seconds() - call_time.get(sid, 0.0))
            for sid, start, fin in stages if start and fin]


def run_batch(ws: Path, cfg_path: Path, briefs: int, concurrency: int, executor: str,
              label: str = "AQUA") -> tuple[float, float, float, int]:
    """``briefs`` submitted as a batch and run on ``executor``: (start and end, ``time.monotonic()``; this process's
    CPU s; completed)."""
    from image_gen import api

    prompts = [f'a studio photo of a water bottle with a label that says "{label} {executor} {i}"'
               for i in range(briefs)]
    batch_id = api.submit_batch(cfg_path, prompts, workspace=ws)
    cpu0, t0 = time.process_time(), time.monotonic()
    status = api.run_batch(batch_id, workspace=ws, executor=executor, concurrency=concurrency)
    t1 = time.monotonic()
    return t0, t1, time.process_time() - cpu0, int(status.counts.get("completed", 0))


def run_once(executor: str, briefs: int, concurrency: int, urls: dict[str, str], limits: dict[str, int],
             latency: float, *, warm: bool) -> dict[str, float]:
    """One measured batch in a new workspace; ``warm``: after a small batch in it first (a long-lived cluster's
    workers are started and have image-gen imported; a process that ran a batch before has its modules loaded)."""
    ws = Path(tempfile.mkdtemp(prefix=f"bench-tp-{executor}-"))
    cfg_path = ws / "throughput.toml"
    cfg_path.write_text(config_text(urls["ideogram"], urls["stability"], limits))
    if warm:
        # other prompts than the measured batch's: none of its stages may come from the cache
        run_batch(ws, cfg_path, concurrency, concurrency, executor, label="WARM-UP")
    since = time.time()
    t0, t1, cpu, ok = run_batch(ws, cfg_path, briefs, concurrency, executor)
    wall = t1 - t0
    ideal = max(briefs * n * latency / limits[v] for v, n in CALLS_PER_BRIEF.items())
    orch = orchestration(ws, None, since)
    stages = briefs * len(STAGES)
    return {"briefs": briefs, "completed": ok, "wall_s": wall, "t0": t0, "t1": t1, "ideal_s": ideal,
            "ratio": ideal / wall,
            "orch_median_ms": statistics.median(orch) * 1000 if orch else float("nan"),
            "orch_p95_ms": percentile(orch, 0.95) * 1000 if orch else float("nan"),
            "cpu_per_stage_ms": cpu / stages * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--briefs", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.3)
    ap.add_argument("--ideogram-limit", type=int, default=4)
    ap.add_argument("--stability-limit", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=16, help="briefs in flight")
    ap.add_argument("--executor", choices=["local", "ray", "both"], default="both")
    ap.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray")
    args = ap.parse_args()
    limits = {"ideogram": args.ideogram_limit, "stability": args.stability_limit}
    server = subprocess.Popen(
        [sys.executable, str(HERE / "_loopback_vendors.py"), "--latency", str(args.latency),
         "--ideogram-limit", str(args.ideogram_limit)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdin is not None
    urls = json.loads(server.stdout.readline())
    os.environ["IDEOGRAM_API_KEY"] = urls["IDEOGRAM_API_KEY"]
    os.environ["STABILITY_API_KEY"] = urls["STABILITY_API_KEY"]
    executors = ["local", "ray"] if args.executor == "both" else [args.executor]
    results = {}
    try:
        for ex in executors:
            if ex == "ray":
                import ray

                t0 = time.perf_counter()
                keys = {k: urls[k] for k in ("IDEOGRAM_API_KEY", "STABILITY_API_KEY")}
                ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": keys})
                print(f"ray.init (local Ray, {args.ray_cpus} CPUs): {time.perf_counter() - t0:.1f} s")
            if ex == "local":  # the first batch of a fresh process (the CLI's case), then a second one
                results["local, cold"] = run_once(ex, args.briefs, args.concurrency, urls, limits, args.latency,
                                                  warm=False)
                results["local, warm"] = run_once(ex, args.briefs, args.concurrency, urls, limits, args.latency,
                                                  warm=True)
            else:
                results[ex] = run_once(ex, args.briefs, args.concurrency, urls, limits, args.latency, warm=True)
    finally:
        vendor_cpu = _cpu_seconds(server.pid)
        server.stdin.close()
        tail = server.stdout.read().strip().splitlines()
        server.wait(timeout=30)
    vendor = json.loads(tail[-1]) if tail else {}
    print(f"{args.briefs} briefs x {len(STAGES)} stages, vendor latency {args.latency * 1000:.0f} ms, limits "
          f"ideogram {limits['ideogram']} / stability {limits['stability']}, {args.concurrency} briefs in flight")
    for ex, r in results.items():
        print(f"  {ex:11s}: {r['completed']}/{r['briefs']} completed in {r['wall_s']:.1f} s, ideal {r['ideal_s']:.1f} s"
              f" -> ratio {r['ratio']:.3f}; orchestration per stage median {r['orch_median_ms']:.1f} ms,"
              f" p95 {r['orch_p95_ms']:.1f} ms; driver CPU per stage {r['cpu_per_stage_ms']:.1f} ms")
    print(f"  vendor side: ideogram peak in flight {vendor.get('ideogram_peak_inflight')} (limit {limits['ideogram']}),"
          f" billed ideogram {vendor.get('ideogram_billed')} / stability {vendor.get('stability_billed')};"
          f" the vendors' process used {vendor_cpu:.1f} s of CPU")
    spans = vendor.get("spans") or {}
    for ex, r in results.items():
        shown = []
        for v, limit in limits.items():
            b = busy(spans.get(v, []), limit, r["t0"], r["t1"])
            if b:
                shown.append(f"{v} {b['mean_s'] * 1000:.1f} ms a generation, places busy {b['busy']:.1%}")
        print(f"  {ex:11s}: vendors' side: " + "; ".join(shown))
    bad = [ex for ex, r in results.items() if r["ratio"] < 0.9 or r["orch_median_ms"] >= 30]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
