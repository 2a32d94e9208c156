"""The experiment registry: runs, stage runs, calls, artifacts, metrics, approvals and the cache, in SQL.

SQLite (WAL) in the workspace by default; any SQLAlchemy URL (PostgreSQL) by ``registry_url``. The schema is
brought to the latest Alembic revision when the registry is opened.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, inspect, or_, select, text
from sqlalchemy.orm import Session, sessionmaker

from image_gen.store.models import Approval, Artifact, Base, CacheEntry, Call, Metric, Run, StageRun, utcnow

HEAD_REVISION = "0001"
MIGRATIONS = Path(__file__).with_name("migrations")

__all__ = ["Approval", "Artifact", "Base", "CacheEntry", "Call", "Metric", "Registry", "Run", "StageRun"]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def migrate(engine: Engine) -> None:
    """Bring the schema to the head revision (a no-op, without importing Alembic, when it is there already)."""
    with engine.connect() as conn:
        if inspect(conn).has_table("alembic_version"):
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if current == HEAD_REVISION:
                return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Registry:
    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def for_path(cls, path: Path) -> Registry:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    # -- runs ---------------------------------------------------------------------------------------------------
    def add(self, obj: Any) -> Any:
        with self.session() as s:
            s.add(obj)
            s.flush()
            s.expunge(obj)
        return obj

    def update(self, model: type[Any], key: Any, **values: Any) -> None:
        with self.session() as s:
            obj = s.get(model, key)
            if obj is None:
                raise KeyError(f"{model.__tablename__} {key!r} not found")
            for k, v in values.items():
                setattr(obj, k, v)

    def get_run(self, run_id: str) -> Run | None:
        with self._sessions() as s:
            run = s.get(Run, run_id)
            if run is None:
                # allow unique prefixes, as with git hashes
                rows = s.scalars(select(Run).where(Run.id.like(f"{run_id}%")).limit(2)).all()
                run = rows[0] if len(rows) == 1 else None
            return run

    def stage_runs(self, run_id: str) -> list[StageRun]:
        with self._sessions() as s:
            return list(s.scalars(select(StageRun).where(StageRun.run_id == run_id).order_by(StageRun.idx,
                                                                                              StageRun.id)))

    def calls(self, run_id: str | None = None, stage_run_id: int | None = None) -> list[Call]:
        with self._sessions() as s:
            q = select(Call).order_by(Call.id)
            if run_id is not None:
                q = q.where(Call.run_id == run_id)
            if stage_run_id is not None:
                q = q.where(Call.stage_run_id == stage_run_id)
            return list(s.scalars(q))

    def approvals(self, run_id: str) -> list[Approval]:
        with self._sessions() as s:
            return list(s.scalars(select(Approval).where(Approval.run_id == run_id).order_by(Approval.id)))

    def metrics(self, run_id: str) -> list[Metric]:
        with self._sessions() as s:
            return list(s.scalars(select(Metric).where(Metric.run_id == run_id).order_by(Metric.id)))

    def list_runs(self, *, search: str | None = None, status: str | None = None, limit: int = 50,
                  ids: Sequence[str] | None = None, models: Sequence[str] | None = None,
                  pipeline: str | None = None, since: datetime | None = None) -> list[Run]:
        """Runs newest first. ``search``: words all in the prompt or pipeline name; ``models``: a stage ran on one
        of these model ids; ``pipeline``: the pipeline's name or its config file (as given, or a path ending so);
        ``since``: created at or after (naive UTC)."""
        with self._sessions() as s:
            q = select(Run).order_by(Run.created_at.desc(), Run.id)
            if search:
                terms = [t for t in search.split() if t]
                for t in terms:
                    q = q.where(or_(Run.prompt.ilike(f"%{t}%"), Run.pipeline_name.ilike(f"%{t}%")))
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
        with self._sessions() as s:
            return s.get(Artifact, sha)

    # -- cache and budget ---------------------------------------------------------------------------------------
    def cache_get(self, key: str) -> CacheEntry | None:
        with self._sessions() as s:
            return s.get(CacheEntry, key)

    def cache_put(self, entry: CacheEntry) -> None:
        from sqlalchemy.exc import IntegrityError

        try:
            with self.session() as s:
                s.merge(entry)
        except IntegrityError:  # the same stage finished at the same time in another run: first writer wins
            pass

    def spent_today(self) -> float:
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        with self._sessions() as s:
            total = s.scalar(select(func.coalesce(func.sum(Call.cost_usd), 0.0)).where(Call.created_at >= start))
            # a call in flight may be billed: count what it is expected to cost
            pending = s.scalar(
                select(func.coalesce(func.sum(Call.expected_cost_usd), 0.0)).where(
                    Call.created_at >= start, Call.state == "sent"
                )
            )
        return float(total or 0.0) + float(pending or 0.0)

    def spent_on_run(self, run_id: str) -> float:
        with self._sessions() as s:
            total = s.scalar(select(func.coalesce(func.sum(Call.cost_usd), 0.0)).where(Call.run_id == run_id))
        return float(total or 0.0)

    def stamp(self) -> datetime:
        return utcnow()
