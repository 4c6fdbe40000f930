"""The audit trail (SPEC §8): one entry per write, in the same transaction as the write."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from eventctl.models import VIAS, AuditEntry
from eventctl.timeparse import isoformat


@dataclass(frozen=True, slots=True)
class Write:
    """One change to one event: its fields (``event_fields``) before (None: created) and after (None: deleted)."""

    action: str  # create, update, delete
    uid: uuid.UUID
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def pages(self) -> set[str]:
        return {d["page_context"] for d in (self.before, self.after) if d is not None}


def insert(session: Session, writes: list[Write], *, actor: str, via: str, at: datetime) -> None:
    """One entry per write, in one statement (an executemany: no ORM object per entry)."""
    if via not in VIAS:
        raise ValueError(f"unknown via {via!r}")
    if not writes:
        return
    session.execute(
        sa.insert(AuditEntry.__table__),  # type: ignore[attr-defined]
        [
            {
                "at": at,
                "actor": actor,
                "via": via,
                "action": w.action,
                "uid": w.uid,
                "page_context": (w.after or w.before or {})["page_context"],
                "before": w.before,
                "after": w.after,
            }
            for w in writes
        ],
    )


def history_query(
    session: Session, *, uid: uuid.UUID | None = None, page: str | None = None, since: datetime | None = None
) -> Any:
    """Entries newest first, optionally of one event, one page, or since a time."""
    from eventctl.db import time_expr, time_param

    dialect = session.get_bind().dialect.name
    query = select(AuditEntry)
    if uid is not None:
        query = query.where(AuditEntry.uid == uid)
    if page is not None:
        from eventctl.routes import require_route

        query = query.where(AuditEntry.page_context == require_route(page))
    if since is not None:
        query = query.where(time_expr(AuditEntry.at, dialect) >= time_param(since, dialect))
    return query.order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc())


def iter_history(session: Session, **filters: Any) -> Iterator[AuditEntry]:
    return iter(session.exec(history_query(session, **filters).execution_options(yield_per=500)))


def entry_to_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "at": isoformat(entry.at),
        "actor": entry.actor,
        "via": entry.via,
        "action": entry.action,
        "uid": str(entry.uid),
        "page_context": entry.page_context,
        "before": entry.before,
        "after": entry.after,
    }


def changed_fields(entry: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Field by field, what an entry changed: {key: (old, new)}."""
    before, after = entry["before"] or {}, entry["after"] or {}
    keys = [k for k in (*before, *after) if k != "uid"]
    return {k: (before.get(k), after.get(k)) for k in dict.fromkeys(keys) if before.get(k) != after.get(k)}
