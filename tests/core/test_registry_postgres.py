"""The registry on a real PostgreSQL server (a throwaway cluster on loopback), and on a blank SQLite file."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from image_gen import api
from image_gen.store.registry import HEAD_REVISION, Registry

INITDB = shutil.which("initdb")
PG_CTL = shutil.which("pg_ctl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres() -> dict[str, object]:
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid}


def _run(cmd: list[str], kw: dict[str, object]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (INITDB and PG_CTL):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a postgres user to own the cluster")
    base = tmp_path_factory.mktemp("pg")
    data = base / "data"
    kw = _as_postgres()
    if kw:
        os.chown(base, kw["user"], kw["group"])  # type: ignore[arg-type]
        base.chmod(0o755)
        for parent in base.parents:
            if str(parent).startswith(("/tmp", str(tmp_path_factory.getbasetemp()))):
                parent.chmod(parent.stat().st_mode | 0o011)
    _run([INITDB, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
         kw)
    port = _free_port()
    _run([PG_CTL, "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                    f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"], kw)
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                Registry(url).close()
                break
            except Exception:
                time.sleep(0.3)
        yield url
    finally:
        subprocess.run([PG_CTL, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       **kw)  # type: ignore[call-overload]


def test_staged_run_on_postgres(postgres_url: str, ws_path: Path) -> None:
    from sqlalchemy import text

    cfg = {"registry_url": postgres_url, "pipeline": {"stages": ["draft:ideogram-v1-turbo", "final:sd3.5-medium"],
                                                      "width": 256, "height": 256},
           "stage": {"draft": {"seed": 3000000000}}}
    out = api.run_pipeline(cfg, 'Sparkling water can, label "FIZZ LIME"', simulate=True, workspace=ws_path)
    assert not isinstance(out, list)
    assert out.status == "completed"
    reg = Registry(postgres_url)
    try:
        run = reg.get_run(out.run_id)
        assert run is not None and run.status == "completed"
        stages = reg.stage_runs(out.run_id)
        assert stages[0].seed == 3000000000  # seeds beyond 2**31 fit (BIGINT)
        with reg.engine.connect() as conn:
            assert conn.execute(text("select version_num from alembic_version")).scalar() == HEAD_REVISION
        assert reg.list_runs(search="fizz")[0].id == out.run_id
    finally:
        reg.close()
    assert not (ws_path / ".image-gen" / "registry.db").exists()


def test_blank_sqlite_is_migrated_to_head(tmp_path: Path) -> None:
    from sqlalchemy import inspect, text

    reg = Registry.for_path(tmp_path / "r.db")
    try:
        with reg.engine.connect() as conn:
            assert conn.execute(text("select version_num from alembic_version")).scalar() == HEAD_REVISION
            assert conn.execute(text("pragma journal_mode")).scalar() == "wal"
        names = set(inspect(reg.engine).get_table_names())
        assert {"runs", "stage_runs", "calls", "artifacts", "metrics", "approvals", "cache_entries"} <= names
    finally:
        reg.close()
