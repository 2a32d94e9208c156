"""The verdict of automatic QA on one image: passed or not, with human-readable reasons and scores."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Verdict:
    """What QA decided about one image.

    ``reasons`` lists every failed check in words a reviewer understands; ``scores`` holds the numeric
    measures (all JSON-safe floats); ``details`` holds per-check structured data (expected strings,
    what OCR read, thresholds used).
    """

    passed: bool
    reasons: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed_checks(self) -> list[str]:
        """Names of the checks that failed (``text``, ``sharpness``, ``size``, ``format``, ``safety``)."""
        return list(self.details.get("failed_checks", []))

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "scores": {k: _json_float(v) for k, v in self.scores.items()},
            "details": _json_safe(self.details),
        }


def _json_float(v: float) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return _json_float(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return _json_safe(obj.item())
    return str(obj)
