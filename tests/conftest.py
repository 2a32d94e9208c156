"""Fixtures shared by every test: an isolated workspace and an environment without vendor keys; a throwaway
PostgreSQL server (started once per session, only by tests that ask for it) with a fresh database per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pg

KEY_VARS = ("IDEOGRAM_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "STABILITY_API_KEY")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in (*KEY_VARS, "IMAGE_GEN_SIMULATE", "IMAGE_GEN_REGISTRY_URL", "IMAGE_GEN_ARTIFACTS_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("IMAGE_GEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IMAGE_GEN_KEYS_FILE", str(tmp_path / "no-keys.toml"))  # never the user's keys file
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def ws_path(tmp_path: Path) -> Path:
    p = tmp_path / "ws"
    p.mkdir()
    return p


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pg.PgServer]:
    """A PostgreSQL server on loopback for the whole session (skips the test where none can be started)."""
    why = pg.unavailable()
    if why:
        pytest.skip(why)
    with pg.running_server(tmp_path_factory.mktemp("pg"), tmp_path_factory.getbasetemp()) as server:
        yield server


@pytest.fixture
def postgres_url(pg_server: pg.PgServer) -> str:
    """The SQLAlchemy URL of a fresh, empty database on the session's PostgreSQL server."""
    return pg_server.new_database()
