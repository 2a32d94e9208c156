"""Fixtures shared by every test: an isolated workspace and an environment without vendor keys; a throwaway
PostgreSQL server (started once per session, only by tests that ask for it) with a fresh database per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pg

KEY_VARS = ("IDEOGRAM_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "STABILITY_API_KEY")

# Module- and session-scoped fixtures that are cheap to make again (a server on loopback, a function; the vendor
# fakes of tests/fakes): under pytest-xdist their tests may be spread over the workers. Every other shared fixture
# (a pipeline run, OCR over a labelled set, a tiny diffusers model) keeps all the tests that use it on one worker,
# so it is made once.
CHEAP_SHARED_FIXTURES = frozenset({"pg_server", "s3_server", "repo_root", "render", "worker_id", "testrun_uid",
                                   "tmp_path_factory", "suite_dir"})
# Folders whose tests all share session fixtures (some taken by request.getfixturevalue, which the hook cannot see):
# the tiny diffusers pipelines; the studio's simulated workspace and the browser.
GROUPED_FOLDERS = ("tests/local/", "tests/web/")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each test that uses an expensive module- or session-scoped fixture an ``xdist_group`` named after that
    fixture, so that ``pytest -n N --dist loadgroup`` (make test) runs those tests on one worker and makes the fixture
    once; without xdist the marks do nothing."""
    root = Path(str(config.rootpath))
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        where = Path(str(item.path)).relative_to(root).as_posix() if Path(str(item.path)).is_relative_to(root) else ""
        folder = next((f for f in GROUPED_FOLDERS if where.startswith(f)), None)
        if folder:
            item.add_marker(pytest.mark.xdist_group(folder.rstrip("/")))
            continue
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        for name in info.names_closure:
            defs = info.name2fixturedefs.get(name)
            if not defs or name in CHEAP_SHARED_FIXTURES:
                continue
            fixturedef = defs[-1]
            if getattr(fixturedef.func, "__module__", "").startswith("tests.fakes"):
                continue
            if fixturedef.scope in ("module", "session", "package"):
                owner = fixturedef.baseid or "root"
                item.add_marker(pytest.mark.xdist_group(f"{owner}::{name}"))
                break


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
