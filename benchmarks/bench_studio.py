"""Benchmark: the studio's gallery with 500 simulated runs, against a plain static file from the same server.

    python benchmarks/bench_studio.py [--runs 500] [--requests 30] [--workspace DIR]

Makes the runs with the offline simulator (two small pipelines, QA off to keep it quick; half wait at an approval
gate), starts ``image-gen serve``'s app under uvicorn on loopback, and times over real HTTP, each after a warm-up:
``GET /`` (the first page, 48 tiles), ``GET /?limit=500`` (every run on one page), a filtered search, a
``/static/studio.css`` request (the reference), and the 48 thumbnails of the first page cold (made once, WebP) and
cached. Prints median and p95 in ms and the gallery/static ratio; exits 1 if the gallery's median is 300 ms or more.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

BASE = """\
[pipeline]
model = "staged-selection"
width = 128
height = 128
[pipeline.qa]
enabled = false
[sim]
latency_scale = 0
fail_rate = 0
"""
GATED = 'name = "gated"\n' + BASE + '[stage.final]\ngate = "approval"\n'
PRODUCTS = ["water bottle", "coffee bag", "serum bottle", "beer can", "sneaker box", "olive oil tin", "cereal box",
            "sparkling water can", "chocolate bar", "sunscreen tube"]
WORDS = ["AQUA", "NIGHT", "GLOW", "HOP", "STRIDE", "GOLDEN", "CRUNCH", "FIZZ", "CACAO", "SUN"]


def _config(text: str) -> str:
    head, _, rest = text.partition("[pipeline]\n")
    return head + '[pipeline]\nstages = ["draft:ideogram-v1-turbo", "final:sd3.5-medium"]\n' + rest


def make_runs(root: Path, n: int) -> float:
    from image_gen import api

    t0 = time.perf_counter()
    plain, gated = root / "plain.toml", root / "gated.toml"
    plain.write_text(_config('name = "plain"\n' + BASE), encoding="utf-8")
    gated.write_text(_config(GATED), encoding="utf-8")
    briefs = [f'{PRODUCTS[i % 10]} #{i}, label reads "{WORDS[i % 10]} {i}"' for i in range(n)]
    half = n // 2
    api.run_pipeline(plain, briefs[:half], workspace=root, simulate=True, concurrency=4)
    api.run_pipeline(gated, briefs[half:], workspace=root, simulate=True, concurrency=4)
    return time.perf_counter() - t0


def timed(client: object, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(url)  # type: ignore[attr-defined]
        r.raise_for_status()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> str:
    s = sorted(ms)
    return f"median {statistics.median(s):7.1f} ms  p95 {s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]:7.1f} ms"


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--requests", type=int, default=30)
    p.add_argument("--workspace", type=Path, help="Reuse (or fill) this workspace instead of a temporary one.")
    args = p.parse_args()

    import httpx
    import uvicorn

    from image_gen.web.app import create_app

    tmp = None
    root = args.workspace
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-studio-")
        root = Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    from image_gen.workspace import Workspace

    have = len(Workspace.resolve(root).registry().list_runs(limit=100_000)) if (root / ".image-gen").is_dir() else 0
    if have < args.runs:
        secs = make_runs(root, args.runs - have)
        print(f"made {args.runs - have} simulated runs in {secs:.1f} s")
    app = create_app(root, token="bench-token-0123456789abcdef")
    sock_port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=sock_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    total = len(app.state.studio.registry.list_runs(limit=100_000))
    results: dict[str, list[float]] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock_port}", timeout=60) as c:
            first = c.get("/").text
            thumbs = re.findall(r'src="(/artifacts/[0-9a-f]{64}/thumb)"', first)
            for url in ("/", "/?limit=500", "/?q=serum&awaiting=1", "/static/studio.css"):
                timed(c, url, 3)  # warm-up
            # round robin, so the static file and the pages see the same load on a shared machine
            urls = {"static file /static/studio.css": "/static/studio.css", "gallery / (48 tiles)": "/",
                    "gallery search+filter": "/?q=serum&awaiting=1"}
            for name in urls:
                results[name] = []
            for _ in range(args.requests):
                for name, u in urls.items():
                    results[name] += timed(c, u, 1)
            results["gallery /?limit=500 (all tiles)"] = timed(c, "/?limit=500", max(5, args.requests // 3))
            import shutil

            shutil.rmtree(app.state.studio.thumb_dir, ignore_errors=True)  # cold: none made yet
            t = time.perf_counter()
            for u in thumbs:
                c.get(u).raise_for_status()
            cold = (time.perf_counter() - t) * 1000
            results["one cached thumbnail (WebP)"] = timed(c, thumbs[0], args.requests)
            t = time.perf_counter()
            for u in thumbs:
                c.get(u).raise_for_status()
            warm = (time.perf_counter() - t) * 1000
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if tmp is not None:
            tmp.cleanup()
    print(f"studio gallery benchmark: {total} runs in the registry, {args.requests} requests each, loopback HTTP")
    for name, ms in results.items():
        print(f"  {name:36s} {summary(ms)}")
    static = statistics.median(results["static file /static/studio.css"])
    gallery = statistics.median(results["gallery / (48 tiles)"])
    print(f"  ratio gallery / static (medians)      {gallery / static:7.1f}x")
    print(f"  {len(thumbs)} thumbnails of page 1: cold (made once, WebP) {cold:.0f} ms, cached {warm:.0f} ms")
    ok = gallery < 300
    print(f"gallery median {gallery:.1f} ms {'<' if ok else '>='} 300 ms: {'OK' if ok else 'TOO SLOW'}")
    return 0 if ok else 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
