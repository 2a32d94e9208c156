"""Tiny, randomly initialised diffusers pipelines saved to a temporary folder once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest.importorskip("torch")
pytest.importorskip("diffusers")


@pytest.fixture(scope="session")
def tiny_sd3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SD3-style pipeline folder (transformer, two CLIP encoders, flow-matching scheduler, VAE x8)."""
    from tests.local._tiny import save_tiny_sd3

    return save_tiny_sd3(tmp_path_factory.mktemp("tiny-sd3"))


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SD 1.x-style pipeline folder (UNet, one CLIP encoder, Euler scheduler, VAE x8)."""
    from tests.local._tiny import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(autouse=True)
def _fresh_ladder_memory() -> Iterator[None]:
    from image_gen.providers.diffusers_local import forget_memory_ladder

    forget_memory_ladder()
    yield
    forget_memory_ladder()


@pytest.fixture
def request_fixture(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    """The pytest request, to pick a pipeline fixture by name in parametrised tests."""
    return request
