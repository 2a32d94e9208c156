"""batches and their items, channel renditions, a run's batch and routing decision

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("executor", sa.String(length=50), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_source", sa.Text(), nullable=True),
        sa.Column("simulated", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("brief_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_table(
        "batch_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(length=32), sa.ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("brief", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("batch_id", "idx", name="uq_batch_items_batch_idx"),
    )
    op.create_index("ix_batch_items_batch_id", "batch_items", ["batch_id"])
    op.create_index("ix_batch_items_run_id", "batch_items", ["run_id"])
    op.create_table(
        "renditions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(length=32), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("format", sa.String(length=10), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("max_bytes", sa.Integer(), nullable=True),
        sa.Column("quality", sa.Integer(), nullable=True),
        sa.Column("encodes", sa.Integer(), nullable=True),
        sa.Column("dpi", sa.Integer(), nullable=True),
        sa.Column("fit", sa.JSON(), nullable=True),
        sa.Column("qa", sa.JSON(), nullable=True),
        sa.Column("qa_passed", sa.Boolean(), nullable=True),
        sa.Column("provenance", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_renditions_run_id", "renditions", ["run_id"])
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("batch_id", sa.String(length=32), nullable=True))
        b.add_column(sa.Column("routing", sa.JSON(), nullable=True))
        b.add_column(sa.Column("brief_options", sa.JSON(), nullable=True))
        b.create_index("ix_runs_batch_id", ["batch_id"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as b:
        b.drop_index("ix_runs_batch_id")
        b.drop_column("brief_options")
        b.drop_column("routing")
        b.drop_column("batch_id")
    op.drop_index("ix_renditions_run_id", table_name="renditions")
    op.drop_table("renditions")
    op.drop_index("ix_batch_items_run_id", table_name="batch_items")
    op.drop_index("ix_batch_items_batch_id", table_name="batch_items")
    op.drop_table("batch_items")
    op.drop_index("ix_batches_status", table_name="batches")
    op.drop_table("batches")
