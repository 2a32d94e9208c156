"""Pytest fixtures for the loopback vendors; a conftest imports them (``from tests.fakes.fixtures import *``).

Servers are started once per module and reset (records and faults cleared) before each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeBFL, FakeGoogle, FakeIdeogram, FakeStability

IDEOGRAM_KEY = "ideo-test-key-5f1c9a7e"
STABILITY_KEY = "sk-stab-test-key-83b2d4"
GEMINI_KEY = "AIza-gemini-test-key-0c6e"
BFL_KEY = "bfl-test-key-2a9d61c4"
ALL_KEYS = (IDEOGRAM_KEY, STABILITY_KEY, GEMINI_KEY, BFL_KEY)

__all__ = [
    "ALL_KEYS",
    "BFL_KEY",
    "GEMINI_KEY",
    "IDEOGRAM_KEY",
    "STABILITY_KEY",
    "fake_bfl",
    "fake_bfl_server",
    "fake_google",
    "fake_google_server",
    "fake_ideogram",
    "fake_ideogram_server",
    "fake_stability",
    "fake_stability_server",
    "vendor_env",
]


@pytest.fixture(scope="module")
def fake_ideogram_server() -> Iterator[FakeIdeogram]:
    with FakeIdeogram(IDEOGRAM_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def fake_stability_server() -> Iterator[FakeStability]:
    with FakeStability(STABILITY_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def fake_google_server() -> Iterator[FakeGoogle]:
    with FakeGoogle(GEMINI_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def fake_bfl_server() -> Iterator[FakeBFL]:
    with FakeBFL(BFL_KEY) as server:
        yield server


@pytest.fixture
def fake_bfl(fake_bfl_server: FakeBFL) -> FakeBFL:
    fake_bfl_server.reset()
    fake_bfl_server.hang_s = 2.0
    return fake_bfl_server


@pytest.fixture
def fake_ideogram(fake_ideogram_server: FakeIdeogram) -> FakeIdeogram:
    fake_ideogram_server.reset()
    fake_ideogram_server.hang_s = 2.0
    fake_ideogram_server.max_inflight = 10
    fake_ideogram_server.latency_s = 0.0
    return fake_ideogram_server


@pytest.fixture
def fake_stability(fake_stability_server: FakeStability) -> FakeStability:
    fake_stability_server.reset()
    fake_stability_server.creative_polls = 2
    fake_stability_server.hang_s = 2.0
    return fake_stability_server


@pytest.fixture
def fake_google(fake_google_server: FakeGoogle) -> FakeGoogle:
    fake_google_server.reset()
    fake_google_server.serve_imagen = False
    fake_google_server.hang_s = 2.0
    return fake_google_server


@pytest.fixture
def vendor_env(
    monkeypatch: pytest.MonkeyPatch,
    fake_ideogram: FakeIdeogram,
    fake_stability: FakeStability,
    fake_google: FakeGoogle,
    fake_bfl: FakeBFL,
) -> dict[str, str]:
    """Keys and base URLs of all the fakes in the environment (as a user would set them)."""
    env = {
        "IDEOGRAM_API_KEY": IDEOGRAM_KEY,
        "IDEOGRAM_BASE_URL": fake_ideogram.url,
        "STABILITY_API_KEY": STABILITY_KEY,
        "STABILITY_BASE_URL": fake_stability.url,
        "GEMINI_API_KEY": GEMINI_KEY,
        "GOOGLE_GEMINI_BASE_URL": fake_google.url,
        "BFL_API_KEY": BFL_KEY,
        "BFL_BASE_URL": fake_bfl.url,
    }
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env
