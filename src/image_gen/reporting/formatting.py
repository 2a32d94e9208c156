"""One formatting for every figure, tables and pictures alike: dollars to four places, seconds to the tenth."""

from __future__ import annotations

import math


def money(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"${v:.4f}"


def pct(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.0%}"


def secs(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.1f} s"
