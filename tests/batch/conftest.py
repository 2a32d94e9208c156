"""Fixtures of the batch tests: the loopback vendors (``tests.fakes``) and small pipeline configs."""

from tests.fakes.fixtures import *  # noqa: F403
