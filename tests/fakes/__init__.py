"""Loopback fakes of the vendors' image APIs (Ideogram, Google Gemini API, Stability AI, Black Forest Labs, OpenAI
Images, fal's queue, Replicate's predictions) for the tests.

Each fake runs a real HTTP server on 127.0.0.1 (uvicorn, a free port), speaks the vendor's documented wire
format strictly, returns real PNGs drawn with Pillow, logs what it received and what it answered
(``request_log``, ``calls()``), keeps the vendor's own bill (``billed_calls``, ``billed_usd``) and injects faults
(``faults.force("500")``, ``set_faults(rate_5xx=0.2, rate_429=0.1, ..., seed=1)``; see ``tests.fakes._vendor``).
Use them as context managers or through the fixtures in ``tests.fakes.fixtures``.
"""

from tests.fakes._server import FAULTS, FaultPlan, LoopbackServer, Received, oversize_png, render_png
from tests.fakes.bfl import FakeBFL
from tests.fakes.fal import FakeFal
from tests.fakes.google import FakeGoogle
from tests.fakes.ideogram import FakeIdeogram
from tests.fakes.openai import FakeOpenAI
from tests.fakes.replicate import FakeReplicate
from tests.fakes.stability import FakeStability

__all__ = [
    "FAULTS",
    "FakeBFL",
    "FakeFal",
    "FakeGoogle",
    "FakeIdeogram",
    "FakeOpenAI",
    "FakeReplicate",
    "FakeStability",
    "FaultPlan",
    "LoopbackServer",
    "Received",
    "oversize_png",
    "render_png",
]
