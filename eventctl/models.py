"""Every table (SQLModel), the derived status and the one JSON form of an event.

All tables live here, so ``SQLModel.metadata`` is complete once this module is
imported (``db check``, ``migrations/env.py``) and no operation module has to be
imported for its tables. The request/response shapes (Create / Update / Public)
are in ``eventctl.shapes``, kept apart so the read path never builds them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from eventctl.db import TZDateTime, json_type
from eventctl.routes import MAX_ROUTE_LENGTH
from eventctl.timeparse import as_utc, isoformat

NAME_MAX = 200
DESCRIPTION_MAX = 2000
# the platform's record-review endpoint takes 1-100 records per request
LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 100, 20
Status = Literal["live", "scheduled", "expired", "inactive"]
STATUSES: tuple[str, ...] = ("live", "scheduled", "expired", "inactive")
STATUS_CHOICES: tuple[str, ...] = (*STATUSES, "all")


class Event(SQLModel, table=True):
    __tablename__ = "events"
    # /current's per-page query: WHERE page_context = :p AND is_active AND (end_date IS NULL OR end_date > :now)
    __table_args__ = (sa.Index("ix_events_current", "page_context", "is_active", "end_date"),)

    uid: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=NAME_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    page_context: str = Field(max_length=MAX_ROUTE_LENGTH)  # indexed by ix_events_current (first column)
    filters: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(json_type(), nullable=False))
    limit: int = Field(default=LIMIT_DEFAULT)
    is_active: bool = Field(default=True)
    is_default: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    start_date: datetime | None = Field(default=None, sa_type=TZDateTime)
    end_date: datetime | None = Field(default=None, sa_type=TZDateTime)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=TZDateTime)
    updated_at: datetime = Field(sa_type=TZDateTime)


class ChangeCounter(SQLModel, table=True):
    """One row: a counter bumped in the same transaction as every event write.

    Web workers poll it (at most once a second) to drop their /current cache.
    """

    __tablename__ = "eventctl_state"

    id: int = Field(default=1, primary_key=True)
    version: int = Field(default=0, sa_type=sa.BigInteger)


class Category(SQLModel, table=True):
    """A category of the platform, by the platform's own id (SPEC §6)."""

    __tablename__ = "categories"

    uid: uuid.UUID = Field(primary_key=True)
    name: str = Field(max_length=200, unique=True)
    title: str = Field(default="", max_length=500)
    description: str | None = Field(default=None)
    created_at: datetime = Field(sa_type=TZDateTime)
    updated_at: datetime = Field(sa_type=TZDateTime)


class ApiToken(SQLModel, table=True):
    """An admin API token: only its prefix and SHA-256 hash are stored."""

    __tablename__ = "api_tokens"

    name: str = Field(primary_key=True, max_length=100)
    prefix: str = Field(max_length=32)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(sa_type=TZDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=TZDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=TZDateTime)


class AuditEntry(SQLModel, table=True):
    """One write to an event (SPEC §8), appended in the same transaction as the write.

    No foreign key to ``events``: entries outlive the events they describe.
    """

    __tablename__ = "eventctl_audit"

    id: int | None = Field(default=None, primary_key=True, sa_type=sa.BigInteger().with_variant(sa.Integer, "sqlite"))
    at: datetime = Field(sa_type=TZDateTime, index=True)
    actor: str = Field(max_length=200)
    via: str = Field(max_length=16)  # cli, http, apply, cleanup
    action: str = Field(max_length=16)  # create, update, delete
    uid: uuid.UUID = Field(index=True)
    page_context: str = Field(max_length=MAX_ROUTE_LENGTH, index=True)
    before: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(json_type(), nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(json_type(), nullable=True))


VIAS = ("cli", "http", "apply", "cleanup")
ACTIONS = ("create", "update", "delete")
# the fields a user sets: what `export` writes, `apply` reads, and the audit trail records
EVENT_FIELDS = (
    "uid", "name", "description", "page_context", "filters", "limit", "is_active", "is_default",
    "start_date", "end_date",
)  # fmt: skip


def event_fields(event: Event) -> dict[str, Any]:
    """The fields a user sets, JSON-safe (datetimes ISO 8601 UTC)."""
    data = event_to_json(event, None)
    return {key: data[key] for key in EVENT_FIELDS}


class Window(Protocol):
    """What the rules of SPEC §2 read of an event: an ``Event``, a row, or what /current holds."""

    @property
    def uid(self) -> object: ...
    @property
    def is_active(self) -> bool: ...
    @property
    def is_default(self) -> bool: ...
    @property
    def start_date(self) -> datetime | None: ...
    @property
    def end_date(self) -> datetime | None: ...


W = TypeVar("W", bound=Window)


def status_at(event: Window, at: datetime) -> Status:
    if not event.is_active:
        return "inactive"
    start, end = as_utc(event.start_date), as_utc(event.end_date)
    if start is not None and start > at:
        return "scheduled"
    if end is not None and end <= at:
        return "expired"
    return "live"


def canonical_filters(stored: dict[str, Any] | None) -> dict[str, Any]:
    """Filters in the platform's key order, whatever order the database kept (JSONB sorts keys)."""
    from eventctl.filters import FILTER_KEYS

    stored = stored or {}
    return {k: stored[k] for k in (*FILTER_KEYS, *sorted(set(stored) - set(FILTER_KEYS))) if k in stored}


def event_to_json(event: Event, at: datetime | None) -> dict[str, Any]:
    """The one JSON shape of an event, used by the CLI's --json and by HTTP (status at ``at``)."""
    return {
        "uid": str(event.uid),
        "name": event.name,
        "description": event.description,
        "page_context": event.page_context,
        "filters": canonical_filters(event.filters),
        "limit": event.limit,
        "is_active": event.is_active,
        "is_default": bool(event.is_default),
        "start_date": isoformat(event.start_date),
        "end_date": isoformat(event.end_date),
        "created_by": event.created_by,
        "created_at": isoformat(event.created_at),
        "updated_at": isoformat(event.updated_at),
        "status": status_at(event, at) if at is not None else None,
    }
