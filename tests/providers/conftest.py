"""Fixtures of the provider tests: the loopback vendors (``tests.fakes``)."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.fakes.fixtures import *  # noqa: E402,F403
from tests.fakes.host_fixtures import *  # noqa: E402,F403
