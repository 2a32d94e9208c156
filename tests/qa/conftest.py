"""Fixtures for the QA tests: product renders with known label text, made by the calibration generator."""

from __future__ import annotations

import random

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "heavy: slow test (OCR over a few hundred images); deselect with -m 'not heavy'"
    )


@pytest.fixture(scope="session")
def render():
    """render(texts, size=(640, 640), seed=0, corner=None) -> a sharp product shot whose label carries ``texts``
    (one line each), with ``corner`` set small in a corner of the image."""
    from tools.calibrate_qa import render as _render

    def make(texts: list[str], size: tuple[int, int] = (640, 640), seed: int = 0, corner: str | None = None):
        rng = random.Random(seed)
        # Plain studio backdrops only: a photo backdrop could carry text of its own.
        return _render(size[0], size[1], texts, rng, photos=(), corner=corner)

    return make
