"""A throwaway PostgreSQL server for tests: one cluster per test session (per xdist worker) on loopback, a fresh
database per test.

The server is started with ``initdb``/``pg_ctl`` (as the ``postgres`` user when the tests run as root) and
stopped at the end of the session. ``PgServer.new_database()`` gives each test its own empty database, so the
per-day spend of one test never counts against another's cap.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def _pg_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else in Debian's /usr/lib/postgresql/<version>/bin (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    for version in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name, reverse=True):
        if (version / name).is_file():
            return str(version / name)
    return None


INITDB = _pg_bin("initdb")
PG_CTL = _pg_bin("pg_ctl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres() -> dict[str, int]:
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid}


def _run(cmd: list[str], kw: dict[str, int]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")


def unavailable() -> str | None:
    """Why a server cannot be started here, or None."""
    if not (INITDB and PG_CTL):
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres user to own the cluster"
    return None


@dataclass
class PgServer:
    host: str
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"postgresql://postgres@{self.host}:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def running_server(base: Path, basetemp: Path) -> Iterator[PgServer]:
    """Start a cluster under ``base`` (a fresh folder), yield it, stop it."""
    assert INITDB and PG_CTL
    data = base / "data"
    kw = _as_postgres()
    if kw:
        os.chown(base, kw["user"], kw["group"])
        base.chmod(0o755)
        for parent in base.parents:  # the postgres user must reach its folder
            if str(parent).startswith(("/tmp", str(basetemp))):
                parent.chmod(parent.stat().st_mode | 0o011)
    _run([INITDB, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], kw)
    for attempt in range(3):  # a free port can be taken by another process (an xdist worker) before the server binds it
        port = _free_port()
        try:
            _run([PG_CTL, "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                  f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start"],
                 kw)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    try:
        server = PgServer("127.0.0.1", port)
        _wait_ready(server)
        yield server
    finally:
        subprocess.run([PG_CTL, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       **kw)  # type: ignore[call-overload]


def _wait_ready(server: PgServer, timeout_s: float = 30.0) -> None:
    import psycopg

    deadline = time.time() + timeout_s
    while True:
        try:
            with psycopg.connect(f"postgresql://postgres@{server.host}:{server.port}/postgres", connect_timeout=3):
                return
        except psycopg.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)
