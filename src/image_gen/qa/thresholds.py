"""The calibrated QA thresholds, stored as data next to this module (``thresholds.json``).

``python tools/calibrate_qa.py`` (in the checkout, not the package) rewrites the file from a generated labelled
set of synthetic images; the figures it measured are stored with the thresholds under ``calibration``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

THRESHOLDS_PATH = Path(__file__).with_name("thresholds.json")


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


def load_thresholds(path: Path | None = None) -> dict[str, Any]:
    """The thresholds as ``{"sharpness": {...}, "text": {...}, "calibration": {...}}``."""
    return _load(str(path or THRESHOLDS_PATH))


def clear_cache() -> None:
    _load.cache_clear()
