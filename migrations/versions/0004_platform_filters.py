"""the platform's RecordReviewFilters shape, page defaults, limit at most 100

Revision ID: 0004_platform_filters
Revises: 0003_categories
Create Date: 2026-11-26

Filters stored by an earlier eventctl are converted to the platform's shape:
scalar ``media_type`` / ``language`` become one-item lists, ``release_rights:
family_or_friend`` becomes ``others``, and a ``limit`` above 100 (the platform's
review endpoint takes at most 100) becomes 100; each cap is reported by
``eventctl db upgrade``. The downgrade converts back what the earlier shape can
hold and refuses, naming the events, when an event uses something it cannot.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from eventctl.db import json_type
from eventctl.errors import InvalidInput

revision: str = "0004_platform_filters"
down_revision: str | None = "0003_categories"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_LIMIT_MAX, NEW_LIMIT_MAX = 500, 100
_OLD_KEYS = {"category_ids", "media_type", "release_rights", "extraction_type", "published_date", "language"}
_OLD_ENUMS = {
    "media_type": {"text", "audio", "video", "image"},
    "release_rights": {"creator", "family_or_friend", "downloaded"},
    "extraction_type": {"manual", "ocr", "asr"},
}
_events = sa.table(
    "events",
    sa.column("uid", sa.Uuid()),
    sa.column("filters", json_type()),
    sa.column("limit", sa.Integer()),
    sa.column("is_default", sa.Boolean()),
)
BATCH = 1000


def report(message: str) -> None:
    """Collected by eventctl.migrate and printed by ``eventctl db upgrade``."""
    context.config.attributes.setdefault("eventctl_reports", []).append(message)


def _rows(bind: sa.Connection) -> Iterator[Any]:
    """Every event, in uid order, in bounded batches (keyset pagination)."""
    last = None
    while True:
        query = sa.select(_events.c.uid, _events.c.filters, _events.c.limit).order_by(_events.c.uid).limit(BATCH)
        if last is not None:
            query = query.where(_events.c.uid > last)
        rows = bind.execute(query).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].uid


def _upgrade_filters(filters: dict[str, Any]) -> dict[str, Any]:
    out = dict(filters)
    for key in ("media_type", "language"):
        if isinstance(out.get(key), str):
            out[key] = [out[key]]
    if out.get("release_rights") == "family_or_friend":
        out["release_rights"] = "others"
    return out


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("is_default", sa.Boolean(), server_default=sa.false(), nullable=False))
    bind = op.get_bind()
    for row in _rows(bind):
        values: dict[str, Any] = {}
        filters = _upgrade_filters(row.filters or {})
        if filters != (row.filters or {}):
            values["filters"] = filters
        if row.limit > NEW_LIMIT_MAX:
            values["limit"] = NEW_LIMIT_MAX
            report(f"event {row.uid}: limit {row.limit} capped to {NEW_LIMIT_MAX} (the platform's maximum)")
        if values:
            bind.execute(sa.update(_events).where(_events.c.uid == row.uid).values(**values))


def _downgrade_filters(filters: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The earlier shape of ``filters``, and what it cannot hold."""
    out, problems = dict(filters), []
    for key in sorted(set(out) - _OLD_KEYS):
        problems.append(f"key {key!r}")
    for key in ("media_type", "language"):
        value = out.get(key)
        if isinstance(value, list):
            if len(value) > 1:
                problems.append(f"{len(value)} values of {key}")
            elif value:
                out[key] = value[0]
            else:
                out.pop(key)
    if out.get("release_rights") == "others":
        out["release_rights"] = "family_or_friend"
    for key, allowed in _OLD_ENUMS.items():
        if key in out and not isinstance(out[key], list) and out[key] not in allowed:
            problems.append(f"{key} {out[key]!r}")
    return out, problems


def downgrade() -> None:
    bind = op.get_bind()
    defaults = bind.execute(sa.select(sa.func.count()).select_from(_events).where(_events.c.is_default)).scalar()
    refused: list[str] = []
    if defaults:
        refused.append(f"{defaults} page default event(s) (is_default), which the earlier schema has no column for")
    updates: list[tuple[Any, dict[str, Any]]] = []
    for row in _rows(bind):
        filters, problems = _downgrade_filters(row.filters or {})
        if problems:
            refused.append(f"event {row.uid} uses {', '.join(problems)}")
        elif filters != (row.filters or {}):
            updates.append((row.uid, filters))
        if len(refused) > 20:
            break
    if refused:
        shown = "; ".join(refused[:5]) + ("; …" if len(refused) > 5 else "")
        raise InvalidInput(f"Cannot downgrade below 0004: the earlier filter shape cannot hold {shown}.")
    for uid, filters in updates:
        bind.execute(sa.update(_events).where(_events.c.uid == uid).values(filters=filters))
    with op.batch_alter_table("events") as batch:
        batch.drop_column("is_default")
