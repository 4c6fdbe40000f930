"""One interface for where events live: a local database, an ``eventctl serve``, or the platform's API.

The commands (``eventctl/cli``) parse their options, call a ``Backend`` and print what it
returns; the output code is the same whichever backend ran (SPEC §10: same output, same
``--json`` shapes, same exit codes). ``LocalBackend`` calls the core on a database session;
``eventctl.remote.backend.RemoteBackend`` speaks HTTP. Both hand back ``Event`` objects
(a remote one is built from the server's JSON and never attached to a session), audit
entries and export rows as JSON, and apply plans as ``declarative.Plan``.

Nothing heavy is imported here at module level.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from eventctl.declarative import Desired, Plan
    from eventctl.models import Event


@dataclass
class FilterEdit:
    """The filters a command line gives: ``--filters`` (None: not given), flags merged over it,
    ``--category`` references, and ``--clear-filters``."""

    base: dict[str, Any] | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    categories: list[str] | None = None
    clear: bool = False

    @property
    def touches(self) -> bool:
        return self.clear or self.base is not None or bool(self.flags) or bool(self.categories)

    def merged(self, existing: dict[str, Any] | None, category_uids: list[str] | None) -> Any:
        """The new filters (a RecordReviewFilters): over ``existing`` when neither --filters nor --clear-filters."""
        from eventctl.filters import parse_filters

        base = self.base if self.base is not None else ({} if self.clear else dict(existing or {}))
        merged = {**base, **self.flags}
        if category_uids:
            merged["category_ids"] = category_uids
        return parse_filters(merged)


class Backend(Protocol):
    """What every command that reads or writes events calls."""

    notes: list[str]  # what the backend has to say besides its answer (printed on stderr by the command)

    @property
    def kind(self) -> str:
        """ "local", "eventctl" (an eventctl serve) or "platform" (the platform's events API)."""
        ...

    def create(self, fields: dict[str, Any], *, filters: FilterEdit, actor: str, allow_overlap: bool) -> Event: ...
    def update(
        self, ref: str, fields: dict[str, Any], *, filters: FilterEdit, actor: str, allow_overlap: bool
    ) -> Event: ...
    def get(self, ref: str) -> Event: ...
    def delete(self, event: Event, *, actor: str) -> Event: ...
    def iter_events(
        self, *, page: str | None, status: str, offset: int, limit: int | None, at: datetime
    ) -> Iterator[Event]: ...
    def current(self, *, route: str, at: datetime | None) -> Event | None: ...
    def apply(self, entries: list[Desired], *, prune: bool, dry_run: bool, actor: str, allow_overlap: bool) -> Plan: ...
    def export_rows(self, *, page: str | None, status: str, at: datetime) -> list[dict[str, Any]]: ...
    def history(self, *, uid: str | None, page: str | None, since: datetime | None) -> Iterator[dict[str, Any]]: ...
    def timeline_events(
        self, *, pages: list[str] | None, start: datetime, end: datetime, now: datetime
    ) -> list[Event]: ...
    def close(self) -> None: ...


class LocalBackend:
    """The database itself (SQLite or PostgreSQL), through the core in one session per operation."""

    kind = "local"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.notes: list[str] = []

    def close(self) -> None:  # the engine belongs to the CLI context
        pass

    def _filters(self, session: Session, edit: FilterEdit, existing: dict[str, Any] | None) -> Any:
        from eventctl.categories import resolve_category_refs

        uids = resolve_category_refs(session, edit.categories) if edit.categories else None
        return edit.merged(existing, uids)

    def create(self, fields: dict[str, Any], *, filters: FilterEdit, actor: str, allow_overlap: bool) -> Event:
        from eventctl import events as core
        from eventctl.db import write_session
        from eventctl.shapes import EventCreate, validate_model

        with write_session(self.engine) as session:
            data = validate_model(EventCreate, {**fields, "filters": self._filters(session, filters, None)})
            return core.create_event(session, data=data, actor=actor, via="cli", allow_overlap=allow_overlap)

    def update(
        self, ref: str, fields: dict[str, Any], *, filters: FilterEdit, actor: str, allow_overlap: bool
    ) -> Event:
        from eventctl import events as core
        from eventctl.db import write_session
        from eventctl.shapes import EventUpdate, validate_model

        with write_session(self.engine) as session:
            if filters.touches:
                existing = core.get_event(session, ref=ref).filters if filters.base is None else None
                fields = {**fields, "filters": self._filters(session, filters, existing)}
            changes = validate_model(EventUpdate, fields)
            return core.update_event(
                session, ref=ref, changes=changes, actor=actor, via="cli", allow_overlap=allow_overlap
            )

    def get(self, ref: str) -> Event:
        from eventctl import events as core
        from eventctl.db import read_session

        with read_session(self.engine) as session:
            return core.get_event(session, ref=ref)

    def delete(self, event: Event, *, actor: str) -> Event:
        from eventctl import events as core
        from eventctl.db import write_session

        with write_session(self.engine) as session:
            return core.delete_event(session, ref=str(event.uid), actor=actor, via="cli")

    def iter_events(
        self, *, page: str | None, status: str, offset: int, limit: int | None, at: datetime
    ) -> Iterator[Event]:
        from eventctl import events as core
        from eventctl.db import read_session

        with read_session(self.engine) as session:
            query = core.list_query(session, page=page, status=status, offset=offset, limit=limit, at=at)
            yield from session.exec(query.execution_options(yield_per=500))

    def current(self, *, route: str, at: datetime | None) -> Event | None:
        from eventctl import events as core
        from eventctl.db import read_session
        from eventctl.timeparse import utcnow

        with read_session(self.engine) as session:
            return core.resolve_current(session, route=route, at=at or utcnow())

    def apply(self, entries: list[Desired], *, prune: bool, dry_run: bool, actor: str, allow_overlap: bool) -> Plan:
        from eventctl import declarative
        from eventctl.db import write_session

        with write_session(self.engine) as session:
            plan = declarative.apply(
                session, entries=entries, prune=prune, dry_run=dry_run, actor=actor, allow_overlap=allow_overlap
            )
            if dry_run:
                session.rollback()
        return plan

    def export_rows(self, *, page: str | None, status: str, at: datetime) -> list[dict[str, Any]]:
        from eventctl import declarative
        from eventctl.db import read_session

        with read_session(self.engine) as session:
            return declarative.export_rows(session, page=page, status=status, at=at)

    def history(self, *, uid: str | None, page: str | None, since: datetime | None) -> Iterator[dict[str, Any]]:
        from eventctl import audit
        from eventctl.db import read_session
        from eventctl.events import resolve_uid_with_history

        with read_session(self.engine) as session:
            key = resolve_uid_with_history(session, ref=uid) if uid else None
            yield from (audit.entry_to_json(e) for e in audit.iter_history(session, uid=key, page=page, since=since))

    def timeline_events(self, *, pages: list[str] | None, start: datetime, end: datetime, now: datetime) -> list[Event]:
        from eventctl.db import read_session
        from eventctl.timeline import fetch_events

        with read_session(self.engine) as session:
            return fetch_events(session, pages=pages, start=start, end=end, now=now)
