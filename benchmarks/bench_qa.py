"""Benchmark: QA time per 1024x1024 image on this machine, with the OCR model load excluded and included.

    python benchmarks/bench_qa.py [--images 10] [--size 1024]

Prints the OCR engine's load time, the first verdict in a fresh process (load included), and the mean, p50
and p95 of later verdicts (load excluded), with the time spent in each check.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/ (the synthetic renders) from the checkout


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def prompt(texts: list[str]) -> str:
    return "a product shot, label " + " and ".join(f'"{t}"' for t in texts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--size", type=int, default=1024)
    args = p.parse_args()

    from image_gen.qa import evaluate
    from image_gen.qa.ocr import get_engine
    from image_gen.qa.sharpness import measure
    from image_gen.qa.text import read_for_qa
    from tools.calibrate_qa import blur, make_label, render

    rng = random.Random(0)
    images = []
    for i in range(args.images + 1):
        texts = make_label(rng)
        img = render(args.size, args.size, texts, rng, photos=())
        images.append((blur(img, 2.0) if i % 4 == 3 else img, texts))

    t0 = time.perf_counter()
    first_img, first_texts = images[0]
    engine_t0 = time.perf_counter()
    get_engine()
    load = time.perf_counter() - engine_t0
    evaluate(first_img, prompt=prompt(first_texts), asked_size=first_img.size)
    cold = time.perf_counter() - t0

    totals, ocr, sharp = [], [], []
    for img, texts in images[1:]:
        t = time.perf_counter()
        evaluate(img, prompt=prompt(texts), asked_size=img.size)
        totals.append(time.perf_counter() - t)
        t = time.perf_counter()
        read_for_qa(img)
        ocr.append(time.perf_counter() - t)
        t = time.perf_counter()
        measure(img)
        sharp.append(time.perf_counter() - t)

    print(f"QA benchmark: {args.images} images of {args.size}x{args.size}, {os.cpu_count()} CPU cores")
    print(f"  OCR model load (RapidOCR, once per process): {load:.2f} s")
    print(f"  first verdict, model load included:        {cold:.2f} s")
    print(
        f"  verdict, model load excluded:  mean {statistics.mean(totals):.3f} s  "
        f"p50 {_pct(totals, 0.5):.3f} s  p95 {_pct(totals, 0.95):.3f} s"
    )
    print(f"    of which OCR (text fidelity): mean {statistics.mean(ocr):.3f} s")
    print(f"    of which sharpness (both measures): mean {statistics.mean(sharp) * 1000:.1f} ms")
    print(f"  throughput: {1 / statistics.mean(totals):.2f} images/s")


if __name__ == "__main__":
    main()
