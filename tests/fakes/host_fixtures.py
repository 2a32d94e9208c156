"""Fixtures of the loopback OpenAI, fal and Replicate (started once per module, reset before each test), and the
registration of their providers where the installed package's entry points predate them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.fal import FakeFal
from tests.fakes.openai import FakeOpenAI
from tests.fakes.replicate import FakeReplicate

OPENAI_KEY = "sk-proj-openai-test-key-7d41e9"
FAL_KEY = "fal-key-id:fal-test-secret-5b20c8"
REPLICATE_KEY = "r8_replicate-test-token-93aa1f"
HOST_KEYS = (OPENAI_KEY, FAL_KEY, REPLICATE_KEY)
HOST_PROVIDERS = {
    "openai": "image_gen.providers.openai_images:OpenAIImagesProvider",
    "fal": "image_gen.providers.fal:FalProvider",
    "replicate": "image_gen.providers.replicate:ReplicateProvider",
}

__all__ = [
    "FAL_KEY",
    "HOST_KEYS",
    "OPENAI_KEY",
    "REPLICATE_KEY",
    "fake_fal",
    "fake_fal_server",
    "fake_openai",
    "fake_openai_server",
    "fake_replicate",
    "fake_replicate_server",
    "host_env",
    "host_providers",
]


def ensure_registered() -> None:
    """Register the three providers where the installed metadata lacks their entry points (a development install
    made before pyproject named them); ``test_host_providers`` checks that pyproject does."""
    import importlib

    from image_gen.providers import _entry_points, available_providers, register_provider

    installed = set(_entry_points())
    for name, target in HOST_PROVIDERS.items():
        if name not in installed and name not in available_providers():
            module, _, attr = target.partition(":")
            register_provider(name, getattr(importlib.import_module(module), attr))


@pytest.fixture(scope="session")
def host_providers() -> None:
    ensure_registered()


@pytest.fixture(scope="module")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(OPENAI_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def fake_fal_server() -> Iterator[FakeFal]:
    with FakeFal(FAL_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def fake_replicate_server() -> Iterator[FakeReplicate]:
    with FakeReplicate(REPLICATE_KEY) as server:
        yield server


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> FakeOpenAI:
    fake_openai_server.reset()
    return fake_openai_server


@pytest.fixture
def fake_fal(fake_fal_server: FakeFal) -> FakeFal:
    fake_fal_server.reset()
    return fake_fal_server


@pytest.fixture
def fake_replicate(fake_replicate_server: FakeReplicate) -> FakeReplicate:
    fake_replicate_server.reset()
    return fake_replicate_server


@pytest.fixture
def host_env(
    monkeypatch: pytest.MonkeyPatch,
    host_providers: None,
    fake_openai: FakeOpenAI,
    fake_fal: FakeFal,
    fake_replicate: FakeReplicate,
) -> dict[str, str]:
    """Keys and base URLs of the three fakes in the environment, by the names the vendors' own tools use."""
    env = {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": fake_openai.url + "/v1",
        "FAL_KEY": FAL_KEY,
        "FAL_QUEUE_BASE_URL": fake_fal.url,
        "REPLICATE_API_TOKEN": REPLICATE_KEY,
        "REPLICATE_BASE_URL": fake_replicate.url,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env
