"""The registry's tables (SQLAlchemy 2 declarative). Schema changes go through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    status: Mapped[str] = mapped_column(String(32), index=True)
    """running | awaiting_approval | completed | failed | rejected | budget_stopped | interrupted | cancelled"""
    error_kind: Mapped[str | None] = mapped_column(String(50))
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    """The process that runs it now (``host:pid:token``); ``resume`` never takes a run whose lease is live."""
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    pipeline_name: Mapped[str | None] = mapped_column(String(200))
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str | None] = mapped_column(Text)
    expect_text: Mapped[list[Any] | None] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_source: Mapped[str | None] = mapped_column(Text)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    final_artifact: Mapped[str | None] = mapped_column(String(64))
    qa_passed: Mapped[bool | None] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    brief_index: Mapped[int | None] = mapped_column(Integer)
    input_artifact: Mapped[str | None] = mapped_column(String(64))
    """The seed image a finishing run started from, if any."""
    parent_run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    """The run this one re-ran with a tweak (``api.rerun``), if any."""
    batch_id: Mapped[str | None] = mapped_column(String(32), index=True)
    """The batch this run belongs to, if any."""
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """How the run was routed before it started (latency-SLA routing): mode, estimate and its inputs."""
    brief_options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """A prompt file brief's own ``width``/``height``/``seed`` (they override every stage's) and ``channel``."""


class StageRun(Base):
    __tablename__ = "stage_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    model_id: Mapped[str] = mapped_column(String(200))
    requested_model: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(50))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32))
    """pending | running | done | failed | awaiting_approval | rejected | budget_stopped"""
    cache_key: Mapped[str | None] = mapped_column(String(64), index=True)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    input_artifact: Mapped[str | None] = mapped_column(String(64))
    artifact_sha: Mapped[str | None] = mapped_column(String(64))
    outputs: Mapped[list[Any] | None] = mapped_column(JSON)
    substitution: Mapped[str | None] = mapped_column(Text)
    qa: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    adapters: Mapped[list[Any] | None] = mapped_column(JSON)
    rerolls: Mapped[int] = mapped_column(Integer, default=0)
    escalated_to: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Call(Base):
    __tablename__ = "calls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    stage_run_id: Mapped[int | None] = mapped_column(ForeignKey("stage_runs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    model_id: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(50))
    operation: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(30), default="stage")
    """stage | reroll | escalation | tile | fallback"""
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    """sent | ok | failed | interrupted"""
    request_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    """What was asked (model, operation, every parameter, input bytes, tile): an ``ok`` call with the same digest in
    the same run is reused, never sent again."""
    maybe_billed: Mapped[bool] = mapped_column(Boolean, default=False)
    """The request reached the vendor and the answer was lost: charged its expected cost."""
    error_kind: Mapped[str | None] = mapped_column(String(50))
    error: Mapped[str | None] = mapped_column(Text)
    expected_cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    """What the call counts against the caps: its expected cost while ``sent`` (reserved), then what it cost."""
    billed: Mapped[bool] = mapped_column(Boolean, default=False)
    latency_s: Mapped[float | None] = mapped_column(Float)
    vendor_request_id: Mapped[str | None] = mapped_column(String(200))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Artifact(Base):
    __tablename__ = "artifacts"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(10))
    size_bytes: Mapped[int] = mapped_column(Integer)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Metric(Base):
    __tablename__ = "metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    stage_run_id: Mapped[int | None] = mapped_column(ForeignKey("stage_runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)


class Approval(Base):
    __tablename__ = "approvals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    stage_name: Mapped[str] = mapped_column(String(100))
    decision: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class CacheEntry(Base):
    __tablename__ = "cache_entries"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(200))
    artifacts: Mapped[list[Any]] = mapped_column(JSON)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LedgerLock(Base):
    """One row per lock name: PostgreSQL writers of the ledger take ``SELECT ... FOR UPDATE`` on it."""

    __tablename__ = "ledger_locks"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)


class Batch(Base):
    """A batch of briefs submitted together (``image-gen batch submit``), run by an executor."""

    __tablename__ = "batches"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32), index=True)
    executor: Mapped[str | None] = mapped_column(String(50))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_source: Mapped[str | None] = mapped_column(Text)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    brief_count: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class BatchItem(Base):
    """One brief of a batch; ``run_id`` is set (compare-and-set, before any paid call) when its run starts."""

    __tablename__ = "batch_items"
    __table_args__ = (UniqueConstraint("batch_id", "idx", name="uq_batch_items_batch_idx"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    brief: Mapped[dict[str, Any]] = mapped_column(JSON)
    run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Rendition(Base):
    """A channel rendition of a run's final asset (``image-gen deliver``): crop, format, byte budget, QA."""

    __tablename__ = "renditions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(10))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    max_bytes: Mapped[int | None] = mapped_column(Integer)
    quality: Mapped[int | None] = mapped_column(Integer)
    encodes: Mapped[int | None] = mapped_column(Integer)
    dpi: Mapped[int | None] = mapped_column(Integer)
    fit: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    qa: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    qa_passed: Mapped[bool | None] = mapped_column(Boolean)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


Index("ix_stage_runs_run_idx", StageRun.run_id, StageRun.idx)
