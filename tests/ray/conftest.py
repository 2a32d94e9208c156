"""Fixtures of the Ray executor tests: the loopback vendors, and one local Ray (2 CPUs) per module whose workers see
the vendors' keys and URLs (a worker's environment is fixed when Ray starts)."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.fakes.fixtures import *  # noqa: E402,F403
