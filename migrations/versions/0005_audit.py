"""audit trail: one entry per write to an event

Revision ID: 0005_audit
Revises: 0004_platform_filters
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from eventctl.db import TZDateTime, json_type

revision: str = "0005_audit"
down_revision: str | None = "0004_platform_filters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eventctl_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", TZDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("uid", sa.Uuid(), nullable=False),
        sa.Column("page_context", sa.String(length=255), nullable=False),
        sa.Column("before", json_type(), nullable=True),
        sa.Column("after", json_type(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_eventctl_audit_at", "eventctl_audit", ["at"])
    op.create_index("ix_eventctl_audit_uid", "eventctl_audit", ["uid"])
    op.create_index("ix_eventctl_audit_page_context", "eventctl_audit", ["page_context"])


def downgrade() -> None:
    op.drop_index("ix_eventctl_audit_page_context", table_name="eventctl_audit")
    op.drop_index("ix_eventctl_audit_uid", table_name="eventctl_audit")
    op.drop_index("ix_eventctl_audit_at", table_name="eventctl_audit")
    op.drop_table("eventctl_audit")
