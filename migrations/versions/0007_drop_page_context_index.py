"""drop ix_events_page_context: ix_events_current (page_context, is_active, end_date) covers it

Every query that used the single-column index (a page's events, the per-page locks of
writers, ``list --page``) is served by the composite index's first column; keeping both
cost every write an index update and the table its space.

Revision ID: 0007_drop_page_context_index
Revises: 0006_current_indexes
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_drop_page_context_index"
down_revision: str | None = "0006_current_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_events_page_context", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_page_context", "events", ["page_context"], unique=False)
