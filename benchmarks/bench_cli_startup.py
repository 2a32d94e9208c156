"""How fast the commands that do not render answer: `image-gen --help`, `image-gen models`, `config schema`.

Prints the median wall time of several fresh processes for each, and the ratio to a bare `python -c pass`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).with_name("image-gen")
RUNS = 7


def median_time(cmd: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    bare = median_time([sys.executable, "-c", "pass"])
    print(f"python -c pass              {bare * 1000:7.1f} ms")
    for args in (["--help"], ["models"], ["models", "--json"], ["config", "schema"]):
        t = median_time([str(BIN), *args])
        print(f"image-gen {' '.join(args):<17} {t * 1000:7.1f} ms   ({t / bare:4.1f}x bare python)"
              f"   target < 500 ms: {'ok' if t < 0.5 else 'SLOW'}")
    heavy = subprocess.run([sys.executable, "-c", "import sys, image_gen.cli, image_gen.catalog, image_gen.config;"
                            "print(','.join(m for m in ('torch','diffusers','cv2','rapidocr_onnxruntime','skimage',"
                            "'sqlalchemy','matplotlib') if m in sys.modules))"], capture_output=True, text=True)
    print(f"heavy modules imported by the CLI and catalog: {heavy.stdout.strip() or 'none'}")


if __name__ == "__main__":
    main()
