"""index for /current's per-page query (live and upcoming active events of one page)

Revision ID: 0006_current_indexes
Revises: 0005_audit
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_current_indexes"
down_revision: str | None = "0005_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_events_current", "events", ["page_context", "is_active", "end_date"])


def downgrade() -> None:
    op.drop_index("ix_events_current", table_name="events")
