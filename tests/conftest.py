"""Fixtures shared by every test: an isolated workspace and an environment without vendor keys; a throwaway
PostgreSQL server (started once per session, only by tests that ask for it) with a fresh database per test."""

from __future__ import annotations

import importlib.util
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import pg

KEY_VARS = ("IDEOGRAM_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "STABILITY_API_KEY")

# Under pytest-xdist (make test: `pytest -n N --dist loadgroup`) tests are spread one by one over the workers, except
# those that share an expensive module- or session-scoped fixture (a simulated pipeline run, OCR over a labelled set,
# a tiny diffusers model, the studio and its browser): each folder or file below runs whole on one worker, so its
# fixtures are made once. (xdist's own loadgroup, the xdist_group mark, does not group under pytest 9.2: it renames
# item._nodeid, which pytest no longer reads; hence a scheduler of our own.) The vendor fakes and the PostgreSQL and
# S3 servers are cheap to start again and stay spread.
SHARED_FIXTURE_SCOPES = (
    "tests/local/", "tests/web/", "tests/export/",
    "tests/cli/test_cli_contract.py", "tests/finishing/test_finishing_adapters.py",
    "tests/providers/test_e2e_native_hires.py", "tests/qa/test_calibration.py",
    "tests/reliability/test_ledger_properties.py", "tests/reporting/test_demo_report.py",
    "tests/reporting/test_report.py", "tests/routing/test_classes.py", "tests/routing/test_sla_routing.py",
    "tests/sim/test_metadata.py", "tests/sim/test_scene.py", "tests/sim/test_staged_examples.py",
    "tests/store/", "tests/ray/test_ray_executor.py", "tests/delivery/test_ten_briefs.py",
    "tests/delivery/test_deliver.py", "tests/delivery/test_encode.py", "tests/delivery/test_c2pa.py",
)


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under xdist the workers (and the CLIs they start) share CI's two cores: ONNX Runtime's OCR and torch, each with
    # a spinning thread pool of one thread per core by default, then steal each other's CPU (two processes OCRing at
    # once took 6x as long as one; with one thread each, 2.5x less than that). One thread each in a worker; the
    # results are the same, only the work is not split over threads. Set before torch or the OCR engine loads.
    os.environ.setdefault("IMAGE_GEN_OCR_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


if not os.environ.get("PYTEST_XDIST_WORKER") and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # Started in the background of a non-interactive shell (`cmd &`, nohup), this process and every CLI it starts
    # would ignore SIGINT: the Ctrl-C tests (the `timing` phase of make test) would then test nothing but that.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def shared_fixture_scope(nodeid: str) -> str:
    """The work unit of a test under xdist: its folder or file when listed above, else the test alone."""
    path = nodeid.split("::", 1)[0]
    for scope in SHARED_FIXTURE_SCOPES:
        if path == scope or (scope.endswith("/") and path.startswith(scope)):
            return scope
    return nodeid


if importlib.util.find_spec("xdist") is not None:

    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "loadgroup":
            return None
        from xdist.scheduler import LoadScopeScheduling

        class SharedFixtureScheduling(LoadScopeScheduling):  # type: ignore[misc]
            def _split_scope(self, nodeid: str) -> str:
                return shared_fixture_scope(nodeid)

        return SharedFixtureScheduling(config, log)


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
