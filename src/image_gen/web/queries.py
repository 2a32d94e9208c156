"""Read-only registry queries the studio's pages need (the gallery's filters and paging, lineage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import defer

from image_gen.store.models import Run, StageRun

if TYPE_CHECKING:
    from image_gen.store.registry import Registry


@dataclass
class GalleryFilter:
    status: str | None = None
    pipeline: str | None = None
    model: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    awaiting: bool = False
    qa_failed: bool = False
    search: str | None = None
    page: int = 1
    per_page: int = 48

    def query_args(self, **override: Any) -> dict[str, str]:
        """The filter as query parameters (for links to other pages of the same filter)."""
        args: dict[str, Any] = {"status": self.status, "pipeline": self.pipeline, "model": self.model,
                                "from": self.date_from, "to": self.date_to, "awaiting": "1" if self.awaiting else None,
                                "qa_failed": "1" if self.qa_failed else None, "q": self.search, "page": self.page}
        args.update(override)
        return {k: str(v) for k, v in args.items() if v not in (None, "") and not (k == "page" and v == 1)}


@dataclass
class GalleryPage:
    runs: list[Run]
    total: int
    thumbs: dict[str, str | None] = field(default_factory=dict)
    """run id -> the final image, or the latest stage image of a run without one."""
    pages: int = 1


def _parse_date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def gallery_filter(params: Any, per_page: int = 48, max_per_page: int = 500) -> GalleryFilter:
    """A filter from query parameters (unknown or malformed values are ignored, never an error page)."""
    def flag(name: str) -> bool:
        return str(params.get(name, "")).lower() in ("1", "true", "yes", "on")

    try:
        page = max(1, int(params.get("page", 1)))
    except ValueError:
        page = 1
    try:
        size = min(max_per_page, max(1, int(params.get("limit", per_page))))
    except ValueError:
        size = per_page
    return GalleryFilter(status=params.get("status") or None, pipeline=params.get("pipeline") or None,
                         model=params.get("model") or None, date_from=_parse_date(params.get("from")),
                         date_to=_parse_date(params.get("to")), awaiting=flag("awaiting"), qa_failed=flag("qa_failed"),
                         search=(params.get("q") or params.get("search") or "").strip() or None, page=page,
                         per_page=size)


def _where(q: Any, f: GalleryFilter) -> Any:
    if f.status:
        q = q.where(Run.status == f.status)
    if f.awaiting:
        q = q.where(Run.status == "awaiting_approval")
    if f.qa_failed:
        q = q.where(Run.qa_passed.is_(False))
    if f.pipeline:
        q = q.where(Run.pipeline_name == f.pipeline)
    if f.model:
        q = q.where(Run.id.in_(select(StageRun.run_id).where(StageRun.model_id == f.model)))
    if f.date_from:
        q = q.where(Run.created_at >= datetime.combine(f.date_from, datetime.min.time()))
    if f.date_to:
        q = q.where(Run.created_at < datetime.combine(f.date_to + timedelta(days=1), datetime.min.time()))
    for t in (f.search or "").split():
        q = q.where(or_(Run.prompt.icontains(t, autoescape=True), Run.pipeline_name.icontains(t, autoescape=True)))
    return q


def gallery(registry: Registry, f: GalleryFilter) -> GalleryPage:
    """One page of runs, newest first, with the image to show for each."""
    with registry.reading() as s:
        total = s.scalar(_where(select(func.count(Run.id)), f)) or 0
        q = _where(select(Run), f).options(defer(Run.config), defer(Run.expect_text))  # the snapshot is large
        runs = list(s.scalars(q.order_by(Run.created_at.desc(), Run.id)
                              .offset((f.page - 1) * f.per_page).limit(f.per_page)))
        thumbs: dict[str, str | None] = {r.id: r.final_artifact for r in runs}
        missing = [r.id for r in runs if not r.final_artifact]
        if missing:
            rows = s.execute(select(StageRun.run_id, StageRun.artifact_sha).where(
                StageRun.run_id.in_(missing), StageRun.artifact_sha.is_not(None)).order_by(StageRun.idx))
            for run_id, sha in rows:
                thumbs[run_id] = sha  # the latest stage with an image wins (ordered by idx)
    pages = max(1, -(-total // f.per_page))
    return GalleryPage(runs, total, thumbs, pages)


def facets(registry: Registry) -> dict[str, list[str]]:
    """The values the gallery's filters offer: statuses, pipelines and models seen in the registry."""
    with registry.reading() as s:
        return {
            "status": sorted(x for x in s.scalars(select(Run.status).distinct()) if x),
            "pipeline": sorted(x for x in s.scalars(select(Run.pipeline_name).distinct()) if x),
            "model": sorted(x for x in s.scalars(select(StageRun.model_id).distinct()) if x),
        }


def awaiting_count(registry: Registry) -> int:
    with registry.reading() as s:
        return s.scalar(select(func.count(Run.id)).where(Run.status == "awaiting_approval")) or 0


def children(registry: Registry, run_id: str) -> list[Run]:
    """Runs re-run from this one (``parent_run_id``), oldest first."""
    with registry.reading() as s:
        return list(s.scalars(select(Run).where(Run.parent_run_id == run_id).order_by(Run.created_at)))


def known_artifact(registry: Registry, sha: str) -> bool:
    """The sha names an artifact the registry recorded (the only files the studio serves)."""
    return registry.artifact(sha) is not None


def config_sources(registry: Registry) -> list[str]:
    """Config files runs were started from, most recent first (the report and brief pages offer them)."""
    with registry.reading() as s:
        rows = s.execute(select(Run.config_source, func.max(Run.created_at)).where(Run.config_source.is_not(None))
                         .group_by(Run.config_source).order_by(func.max(Run.created_at).desc()))
        return [str(r[0]) for r in rows if r[0]]
