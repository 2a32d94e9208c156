"""Loopback fakes of the vendors' image APIs (Ideogram, Google Gemini API, Stability AI) for the tests.

Each fake runs a real HTTP server on 127.0.0.1 (uvicorn, a free port), speaks the vendor's documented wire
format strictly, returns real PNGs drawn with Pillow, records what it received (``records``, ``calls()``) and
injects faults (``faults.force("500")``, ``faults.rates = {"500": 0.2}``). Use them as context managers or
through the fixtures in ``tests.fakes.fixtures``.
"""

from tests.fakes._server import FAULTS, FaultPlan, LoopbackServer, Received, render_png
from tests.fakes.google import FakeGoogle
from tests.fakes.ideogram import FakeIdeogram
from tests.fakes.stability import FakeStability

__all__ = [
    "FAULTS",
    "FakeGoogle",
    "FakeIdeogram",
    "FakeStability",
    "FaultPlan",
    "LoopbackServer",
    "Received",
    "render_png",
]
