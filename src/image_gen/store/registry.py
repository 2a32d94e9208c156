"""The experiment registry: runs, stage runs, calls, artifacts, metrics, approvals and the cache, in SQL.

SQLite (WAL) in the workspace by default; any SQLAlchemy URL (PostgreSQL) by ``registry_url``. The schema is
brought to the latest Alembic revision when the registry is opened, under a lock (a file lock beside the SQLite
file, an advisory lock on PostgreSQL), so processes starting together on a new workspace do not race.

Writes go through ``session()``: on SQLite a ``BEGIN IMMEDIATE`` transaction (the write lock is taken first, so a
read-then-write transaction never fails half-way); status changes are compare-and-set (``transition``).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from image_gen.errors import InputError
from image_gen.store.models import (
    Approval,
    Artifact,
    Base,
    CacheEntry,
    Call,
    LedgerLock,
    Metric,
    Run,
    StageRun,
    utcnow,
)

T = TypeVar("T")

HEAD_REVISION = "0004"
MIGRATIONS = Path(__file__).with_name("migrations")
MIN_PREFIX = 4

__all__ = ["Approval", "Artifact", "Base", "CacheEntry", "Call", "LedgerLock", "Metric", "Registry", "Run",
           "StageRun", "redact_url"]


def redact_url(url: str) -> str:
    """The URL with any password masked: what may be shown, logged or recorded."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun explicitly (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


_TURNS: dict[str, threading.RLock] = {}
_TURNS_LOCK = threading.Lock()


def _writer_turn(db_path: Path | None) -> threading.RLock:
    """The lock this process's writers of one SQLite database take turns on (re-entrant: a write inside a write in
    one thread is SQLite's own business, as before)."""
    key = str(db_path.resolve()) if db_path is not None else f"memory:{id(db_path)}"
    with _TURNS_LOCK:
        return _TURNS.setdefault(key, threading.RLock())


def _sqlite_begin(conn: Any) -> None:
    # straight to the driver: a BEGIN through SQLAlchemy's statement machinery costs more than the write it guards
    conn.connection.driver_connection.execute(
        "BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


@contextmanager
def _migration_lock(engine: Engine, db_path: Path | None) -> Iterator[None]:
    """Only one process migrates at a time; the others wait, then find the schema in place."""
    if db_path is not None:
        import fcntl

        db_path.parent.mkdir(parents=True, exist_ok=True)
        with open(db_path.with_name(db_path.name + ".lock"), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(727274001)"))
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(727274001)"))
                conn.commit()
        return
    yield


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine, db_path: Path | None = None) -> None:
    """Bring the schema to the head revision (a no-op, without importing Alembic, when it is there already)."""
    if _current_revision(engine) == HEAD_REVISION:
        return
    with _migration_lock(engine, db_path):
        if _current_revision(engine) == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")


class Registry:
    def __init__(self, url: str, *, source: str | None = None) -> None:
        """Open (and migrate) the registry at ``url``; bad input naming ``registry_url`` if it cannot be used."""
        self.url = url
        where = source or "registry_url"
        kwargs: dict[str, Any] = {}
        sqlite = url.startswith("sqlite")
        if sqlite:
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine = create_engine(url, **kwargs)
        except Exception as exc:
            raise InputError(f"not a usable database URL {redact_url(url)!r} ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})", field=where) from None
        self.db_path: Path | None = None
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
            database = self.engine.url.database
            if database and database != ":memory:":
                self.db_path = Path(database)
        try:
            migrate(self.engine, self.db_path)
        except Exception as exc:
            self.engine.dispose()
            first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
            raise InputError(f"cannot open the registry at {redact_url(url)}: {first[:300]}", field=where) from None
        self._turn: contextlib.AbstractContextManager[Any] = (
            _writer_turn(self.db_path) if sqlite else contextlib.nullcontext())
        self._writer = self.engine.execution_options(write=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._writer, expire_on_commit=False)
        self._open = threading.local()  # this thread's open write and read transactions (see ``session``)
        self._stmts: dict[Any, Any] = {}  # the hot path's Core statements, built once (see ``_statement``)

    @classmethod
    def for_path(cls, path: Path) -> Registry:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``), committed when the block ends.

        Inside another ``session()`` block of this thread it joins that transaction: a group of writes (a stage's
        record, a call's settlement with its artifact) commits together, in one turn of the write lock.

        On SQLite the writers of this process take turns on a lock of the database file first: SQLite has one
        writer at a time anyway, and a thread waiting in its busy handler sleeps in steps of up to 25 ms after the
        lock is free, where a thread waiting here wakes at once (other processes still meet the busy handler)."""
        outer = getattr(self._open, "write", None)
        if outer is not None:
            yield outer
            return
        with self._turn, self._write_sessions() as s, s.begin():
            self._open.write = s
            try:
                yield s
            finally:
                self._open.write = None

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read transaction; inside a ``session()`` or ``reading()`` block of this thread, that one (so a group
        of reads sees one snapshot at the cost of one)."""
        outer = getattr(self._open, "write", None) or getattr(self._open, "read", None)
        if outer is not None:
            yield outer
            return
        with self._sessions() as s:
            self._open.read = s
            try:
                yield s
            finally:
                self._open.read = None

    # -- rows -------------------------------------------------------------------------------------------------
    def add(self, obj: Any) -> Any:
        with self.session() as s:
            s.add(obj)
            s.flush()
            s.expunge(obj)
        return obj

    # The hot path (every stage and call reads and writes a few rows) runs Core statements built once, with bound
    # parameters, on the session's connection: building an ORM statement and running it through the ORM costs ~10x
    # the SQL itself. Rows read this way come back as new (transient) model objects, detached from any session.
    def _statement(self, key: Any, build: Callable[[], Any]) -> Any:
        stmt = self._stmts.get(key)
        if stmt is None:
            stmt = self._stmts[key] = build()
        return stmt

    @staticmethod
    def _conn(s: Session) -> Connection:
        """The session's connection, after its pending ORM changes are flushed (so Core sees them, in order)."""
        if s.new or s.dirty or s.deleted:
            s.flush()
        return s.connection()

    def _rows(self, model: type[T], key: Any, build: Callable[[], Any], params: dict[str, Any]) -> list[T]:
        stmt = self._statement(key, build)
        with self.reading() as s:
            rows = self._conn(s).execute(stmt, params).mappings().all()
        return [model(**row) for row in rows]

    def _by_key(self, model: type[T], key: Any) -> T | None:
        table = model.__table__  # type: ignore[attr-defined]
        pk = table.primary_key.columns[0]
        found = self._rows(model, ("get", table.name),
                           lambda: select(table).where(pk == bindparam("_key", type_=pk.type)), {"_key": key})
        return found[0] if found else None

    @staticmethod
    def _row_values(table: Any, obj: Any) -> dict[str, Any]:
        """``obj``'s column values for an INSERT, with the python-side defaults an ORM add would fill (set on the
        object too)."""
        values = {c.key: getattr(obj, c.key) for c in table.columns if getattr(obj, c.key, None) is not None}
        for c in table.columns:
            if c.key not in values and c.default is not None and not c.primary_key:
                arg = getattr(c.default, "arg", None)
                if arg is not None:
                    values[c.key] = arg(None) if callable(arg) else arg
                    setattr(obj, c.key, values[c.key])
        return values

    @staticmethod
    def _bound(table: Any, names: Sequence[str], prefix: str = "v_") -> dict[str, Any]:
        """A bound parameter per column of ``names`` (``prefix`` + name, of the column's type)."""
        return {n: bindparam(prefix + n, type_=table.c[n].type) for n in names}

    def insert(self, obj: Any) -> Any:
        """Insert ``obj``'s row (one Core INSERT; python-side column defaults filled in on the object too) and set
        its generated primary key on it. Joins an open ``session()`` block."""
        table = type(obj).__table__
        values = self._row_values(table, obj)
        names = tuple(values)
        stmt = self._statement(("insert", table.name, names),
                               lambda: insert(table).values(self._bound(table, names)))
        with self.session() as s:
            res = self._conn(s).execute(stmt, {"v_" + n: v for n, v in values.items()})
        pk = table.primary_key.columns[0]
        if getattr(obj, pk.key, None) is None and res.inserted_primary_key is not None:
            setattr(obj, pk.key, res.inserted_primary_key[0])
        return obj

    def first(self, key: Any, build: Callable[[], Any], **params: Any) -> Any:
        """The first row (or None) of a Core statement built once under ``key`` (joins an open block)."""
        stmt = self._statement(key, build)
        with self.reading() as s:
            return self._conn(s).execute(stmt, params).first()

    def update(self, model: type[Any], key: Any, **values: Any) -> None:
        """Set ``values`` on the row with primary key ``key``: one UPDATE statement (column ``onupdate`` defaults
        apply), ``KeyError`` when no such row."""
        if self.update_where(model, key, {}, **values) == 0:
            raise KeyError(f"{model.__tablename__} {key!r} not found")

    def update_where(self, model: type[Any], key: Any, where: dict[str, Any], **values: Any) -> int:
        """Set ``values`` on the row with primary key ``key`` if its columns equal ``where`` (compare-and-set);
        how many rows changed (0 or 1). One UPDATE statement, built once."""
        table = model.__table__
        names, conds = tuple(values), tuple(where)

        def build() -> Any:
            pk = table.primary_key.columns[0]
            return (update(table).where(pk == bindparam("_key", type_=pk.type),
                                        *[table.c[c] == p for c, p in self._bound(table, conds, "w_").items()])
                    .values(self._bound(table, names)))

        stmt = self._statement(("update", table.name, names, conds), build)
        params = {"_key": key, **{"w_" + c: v for c, v in where.items()}, **{"v_" + n: v for n, v in values.items()}}
        with self.session() as s:
            return int(self._conn(s).execute(stmt, params).rowcount)

    def transition(self, run_id: str, expected: Sequence[str], status: str, *, owner: str | None = None,
                   **values: Any) -> bool:
        """Compare-and-set: move the run to ``status`` only if its status is one of ``expected`` (and, with
        ``owner``, only while that owner holds its lease). True when this call made the change."""
        table: Any = Run.__table__
        names = ("status", "updated_at", *values)

        def build() -> Any:
            q = update(table).where(table.c.id == bindparam("_key"),
                                    table.c.status.in_(bindparam("_expected", expanding=True)))
            if owner is not None:
                q = q.where(table.c.lease_owner == bindparam("_owner"))
            return q.values(self._bound(table, names))

        stmt = self._statement(("transition", owner is not None, names), build)
        params = {"_key": run_id, "_expected": list(expected), "_owner": owner,
                  **{"v_" + n: v for n, v in {"status": status, "updated_at": utcnow(), **values}.items()}}
        if owner is None:
            del params["_owner"]
        with self.session() as s:
            res = self._conn(s).execute(stmt, params)
            return bool(res.rowcount == 1)

    def get_run(self, run_id: str) -> Run | None:
        """The run with exactly this id."""
        return self._by_key(Run, run_id)

    def find_run(self, ref: str) -> Run:
        """The run named by its id or a unique prefix of at least four characters; bad input otherwise."""
        ref = ref.strip()
        run = self.get_run(ref) if ref else None
        if run is not None:
            return run
        if len(ref) < MIN_PREFIX or not re.fullmatch(r"[0-9A-Za-z_-]+", ref):
            raise InputError(f"no run {ref!r} (give a run id or a unique prefix of at least {MIN_PREFIX} "
                             "characters)", field="RUN")
        with self.reading() as s:
            # a prefix match with no pattern characters: substr, not LIKE
            rows = list(s.scalars(select(Run.id).where(Run.id.startswith(ref, autoescape=True)).limit(11)))
        if not rows:
            raise InputError(f"no run {ref!r} in this registry", field="RUN")
        if len(rows) > 1:
            shown = ", ".join(rows[:10]) + (", ..." if len(rows) > 10 else "")
            raise InputError(f"{ref!r} matches several runs: {shown}; give more characters", field="RUN")
        found = self.get_run(rows[0])
        assert found is not None
        return found

    def stage_runs(self, run_id: str) -> list[StageRun]:
        t = StageRun.__table__
        return self._rows(StageRun, "stage_runs", lambda: select(t).where(t.c.run_id == bindparam("_run"))
                          .order_by(t.c.idx, t.c.id), {"_run": run_id})

    @staticmethod
    def _of_run_or_stage(build: Callable[[], Any], run_id: str | None,
                         stage_run_id: int | None) -> tuple[Any, Callable[[], Any], dict[str, Any]]:
        """For a statement over calls narrowed to a run and/or a stage run: its cache key's tail, its builder and the
        bound parameters to run it with."""
        t = Call.__table__
        by_run, by_stage = run_id is not None, stage_run_id is not None

        def narrowed() -> Any:
            q = build()
            q = q.where(t.c.run_id == bindparam("_run")) if by_run else q
            return q.where(t.c.stage_run_id == bindparam("_stage")) if by_stage else q

        params = {k: v for k, v in (("_run", run_id), ("_stage", stage_run_id)) if v is not None}
        return (by_run, by_stage), narrowed, params

    def calls(self, run_id: str | None = None, stage_run_id: int | None = None) -> list[Call]:
        t = Call.__table__
        key, build, params = self._of_run_or_stage(lambda: select(t).order_by(t.c.id), run_id, stage_run_id)
        return self._rows(Call, ("calls", key), build, params)

    def call_totals(self, *, run_id: str | None = None, stage_run_id: int | None = None) -> tuple[float, float, int]:
        """The calls' cost, the latency of the ``ok`` ones and their number, for a run or a stage run (one SQL
        aggregate, nothing loaded)."""
        from sqlalchemy import case, func

        t = Call.__table__
        key, build, params = self._of_run_or_stage(
            lambda: select(func.coalesce(func.sum(t.c.cost_usd), 0.0),
                           func.coalesce(func.sum(case((t.c.state == "ok", t.c.latency_s), else_=0.0)), 0.0),
                           func.count(t.c.id)), run_id, stage_run_id)
        row = self.first(("call_totals", key), build, **params)
        return float(row[0] or 0.0), float(row[1] or 0.0), int(row[2] or 0)

    def call_counts(self, run_id: str) -> dict[int | None, int]:
        """How many calls each stage run of ``run_id`` made."""
        from sqlalchemy import func

        t = Call.__table__
        stmt = self._statement("call_counts", lambda: select(t.c.stage_run_id, func.count(t.c.id))
                               .where(t.c.run_id == bindparam("_run")).group_by(t.c.stage_run_id))
        with self.reading() as s:
            return {sid: int(n) for sid, n in self._conn(s).execute(stmt, {"_run": run_id})}

    def ok_call(self, run_id: str, digest: str) -> Call | None:
        """A finished call of this run that asked exactly this (call-level resume)."""
        t = Call.__table__
        found = self._rows(Call, "ok_call", lambda: select(t).where(
            t.c.run_id == bindparam("_run"), t.c.request_digest == bindparam("_digest"), t.c.state == "ok")
            .order_by(t.c.id).limit(1), {"_run": run_id, "_digest": digest})
        return found[0] if found else None

    def approvals(self, run_id: str) -> list[Approval]:
        with self.reading() as s:
            return list(s.scalars(select(Approval).where(Approval.run_id == run_id).order_by(Approval.id)))

    def metrics(self, run_id: str) -> list[Metric]:
        with self.reading() as s:
            return list(s.scalars(select(Metric).where(Metric.run_id == run_id).order_by(Metric.id)))

    def list_runs(self, *, search: str | None = None, status: str | None = None, limit: int = 50,
                  ids: Sequence[str] | None = None, models: Sequence[str] | None = None,
                  pipeline: str | None = None, since: datetime | None = None) -> list[Run]:
        """Runs newest first. ``search``: words all in the prompt or pipeline name; ``models``: a stage ran on one
        of these model ids; ``pipeline``: the pipeline's name or its config file (as given, or a path ending so);
        ``since``: created at or after (naive UTC)."""
        with self.reading() as s:
            q = select(Run).order_by(Run.created_at.desc(), Run.id)
            if search:
                terms = [t for t in search.split() if t]
                for t in terms:
                    q = q.where(or_(Run.prompt.icontains(t, autoescape=True),
                                    Run.pipeline_name.icontains(t, autoescape=True)))
            if status:
                q = q.where(Run.status == status)
            if ids:
                q = q.where(Run.id.in_(list(ids)))
            if models:
                q = q.where(Run.id.in_(select(StageRun.run_id).where(StageRun.model_id.in_(list(models)))))
            if pipeline:
                bare = pipeline[2:] if pipeline.startswith("./") else pipeline
                q = q.where(or_(Run.pipeline_name == pipeline, Run.config_source == pipeline,
                                Run.config_source == bare, Run.config_source.like(f"%/{bare}")))
            if since is not None:
                q = q.where(Run.created_at >= since)
            return list(s.scalars(q.limit(limit)))

    def artifact(self, sha: str) -> Artifact | None:
        return self._by_key(Artifact, sha)

    def add_artifact(self, artifact: Artifact) -> None:
        """Record an artifact; the first writer of a sha wins, others change nothing."""
        self._insert_ignore(Artifact, artifact, "sha256")

    # -- cache --------------------------------------------------------------------------------------------------
    def cache_get(self, key: str) -> CacheEntry | None:
        return self._by_key(CacheEntry, key)

    def cache_put(self, entry: CacheEntry) -> None:
        """Insert the entry unless one with its key exists: the first writer really wins."""
        self._insert_ignore(CacheEntry, entry, "key")

    def _insert_ignore(self, model: type[Any], obj: Any, key: str) -> None:
        table = model.__table__
        values = self._row_values(table, obj)
        names = tuple(values)
        if self.dialect in ("postgresql", "sqlite"):
            def build() -> Any:
                from sqlalchemy.dialects import postgresql, sqlite

                dialect_insert: Any = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
                return (dialect_insert(table).values(self._bound(table, names))
                        .on_conflict_do_nothing(index_elements=[key]))

            stmt = self._statement(("insert_ignore", table.name, names), build)
            with self.session() as s:
                self._conn(s).execute(stmt, {"v_" + n: v for n, v in values.items()})
            return
        from sqlalchemy.exc import IntegrityError  # pragma: no cover - other databases: best effort

        with contextlib.suppress(IntegrityError), self.session() as s:  # pragma: no cover
            s.add(obj)

    def stamp(self) -> datetime:
        return utcnow()
