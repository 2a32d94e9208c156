"""ledger, leases and call digests

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("error_kind", sa.String(length=50), nullable=True))
        b.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        b.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))
    with op.batch_alter_table("calls") as b:
        b.add_column(sa.Column("request_digest", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("maybe_billed", sa.Boolean(), nullable=False, server_default=sa.false()))
        b.create_index("ix_calls_request_digest", ["request_digest"])
    with op.batch_alter_table("approvals") as b:
        b.add_column(sa.Column("decided_by", sa.String(length=200), nullable=True))
    op.create_table("ledger_locks", sa.Column("name", sa.String(length=50), nullable=False),
                    sa.PrimaryKeyConstraint("name"))
    op.execute("INSERT INTO ledger_locks (name) VALUES ('spend')")


def downgrade() -> None:
    op.drop_table("ledger_locks")
    with op.batch_alter_table("approvals") as b:
        b.drop_column("decided_by")
    with op.batch_alter_table("calls") as b:
        b.drop_index("ix_calls_request_digest")
        b.drop_column("maybe_billed")
        b.drop_column("request_digest")
    with op.batch_alter_table("runs") as b:
        b.drop_column("lease_until")
        b.drop_column("lease_owner")
        b.drop_column("error_kind")
