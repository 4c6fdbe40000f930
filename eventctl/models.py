"""Tables (SQLModel), derived status and the one JSON form of an event.

The request/response shapes (Create / Update / Public) are in ``eventctl.shapes``,
kept apart so the read path (``eventctl current``) never builds them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from eventctl.db import TZDateTime, json_type
from eventctl.routes import MAX_ROUTE_LENGTH
from eventctl.timeparse import as_utc, isoformat

NAME_MAX = 200
DESCRIPTION_MAX = 2000
LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 500, 20
Status = Literal["live", "scheduled", "expired", "inactive"]
STATUSES: tuple[str, ...] = ("live", "scheduled", "expired", "inactive")


class Event(SQLModel, table=True):
    __tablename__ = "events"

    uid: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=NAME_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    page_context: str = Field(max_length=MAX_ROUTE_LENGTH, index=True)
    filters: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(json_type(), nullable=False))
    limit: int = Field(default=LIMIT_DEFAULT)
    is_active: bool = Field(default=True)
    start_date: datetime | None = Field(default=None, sa_type=TZDateTime)
    end_date: datetime | None = Field(default=None, sa_type=TZDateTime)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=TZDateTime)
    updated_at: datetime = Field(sa_type=TZDateTime)


class State(SQLModel, table=True):
    """One row: a counter bumped in the same transaction as every event write.

    Web workers poll it (at most once a second) to drop their /current cache.
    """

    __tablename__ = "eventctl_state"

    id: int = Field(default=1, primary_key=True)
    version: int = Field(default=0, sa_type=sa.BigInteger)


def status_at(event: Event, at: datetime) -> Status:
    if not event.is_active:
        return "inactive"
    start, end = as_utc(event.start_date), as_utc(event.end_date)
    if start is not None and start > at:
        return "scheduled"
    if end is not None and end <= at:
        return "expired"
    return "live"


def event_to_json(event: Event, at: datetime) -> dict[str, Any]:
    """The one JSON shape of an event, used by the CLI's --json and by HTTP."""
    return {
        "uid": str(event.uid),
        "name": event.name,
        "description": event.description,
        "page_context": event.page_context,
        "filters": dict(event.filters or {}),
        "limit": event.limit,
        "is_active": event.is_active,
        "start_date": isoformat(event.start_date),
        "end_date": isoformat(event.end_date),
        "created_by": event.created_by,
        "created_at": isoformat(event.created_at),
        "updated_at": isoformat(event.updated_at),
        "status": status_at(event, at),
    }



def load_all_tables() -> type[SQLModel]:
    """Import every module that defines a table, so SQLModel.metadata is complete.

    Kept out of the import of this module so the read path only builds the tables it uses.
    """
    import eventctl.categories  # noqa: F401
    import eventctl.tokens  # noqa: F401

    return SQLModel
