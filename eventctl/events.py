"""The operations on events, shared by the CLI and the web app (SPEC §2).

Every function takes keyword-only arguments and a Session; writes run inside
``db.write_session`` so the overlap guard holds under concurrent writers.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from eventctl.db import time_expr, time_param
from eventctl.errors import Conflict, InvalidInput, NotFound
from eventctl.models import STATUSES, Event, State, status_at
from eventctl.routes import normalize_route
from eventctl.timeparse import as_utc, utcnow

if TYPE_CHECKING:
    from eventctl.shapes import EventCreate, EventUpdate

MIN_PREFIX = 8
# pg_advisory_xact_lock(class, key): our class id keeps clear of other apps' locks.
_LOCK_CLASS = 0x45564E54  # "EVNT"
_HEX = re.compile(r"^[0-9a-f]+$")


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _t(session: Session, column: Any) -> Any:
    return time_expr(column, _dialect(session))


def _p(session: Session, value: datetime) -> Any:
    return time_param(value, _dialect(session))


# ---------------------------------------------------------------- reading


def get_event(session: Session, *, ref: str) -> Event:
    """An event by its full uid or a unique prefix of at least 8 hex digits."""
    key = ref.strip().lower().replace("-", "")
    if not _HEX.match(key) or len(key) > 32:
        raise InvalidInput(f"{ref.strip()!r} is not a uid or uid prefix (hex digits).")
    if len(key) == 32:
        event = session.get(Event, uuid.UUID(key))
        if event is None:
            raise NotFound(f"No event has uid {uuid.UUID(key)}.")
        return event
    if len(key) < MIN_PREFIX:
        raise InvalidInput(f"A uid prefix needs at least {MIN_PREFIX} hex digits; {ref.strip()!r} has {len(key)}.")
    text_uid = sa.func.replace(sa.cast(col(Event.uid), sa.String), "-", "")
    found = session.exec(select(Event).where(text_uid.like(key + "%")).limit(5)).all()
    if not found:
        raise NotFound(f"No event uid starts with {ref.strip()!r}.")
    if len(found) > 1:
        raise InvalidInput(f"The uid prefix {ref.strip()!r} matches several events; give more digits.")
    return found[0]


def _status_clause(session: Session, status: str, at: datetime) -> Any:
    start, end, now = _t(session, Event.start_date), _t(session, Event.end_date), _p(session, at)
    active = col(Event.is_active).is_(True)
    if status == "inactive":
        return col(Event.is_active).is_(False)
    if status == "scheduled":
        return sa.and_(active, col(Event.start_date).is_not(None), start > now)
    started = sa.or_(col(Event.start_date).is_(None), start <= now)
    if status == "expired":
        return sa.and_(active, started, col(Event.end_date).is_not(None), end <= now)
    if status == "live":
        return _live_clause(session, at)
    raise InvalidInput(f"Unknown status {status!r}; use one of {', '.join((*STATUSES, 'all'))}.")


def _live_clause(session: Session, at: datetime) -> Any:
    start, end, now = _t(session, Event.start_date), _t(session, Event.end_date), _p(session, at)
    return sa.and_(
        col(Event.is_active).is_(True),
        sa.or_(col(Event.start_date).is_(None), start <= now),
        sa.or_(col(Event.end_date).is_(None), end > now),
    )


def list_events(session: Session, *, page: str | None = None, status: str = "all", at: datetime) -> list[Event]:
    """Events, newest first, optionally for one page and one derived status."""
    query = select(Event)
    if page is not None:
        route = normalize_route(page)
        if route is None:
            raise InvalidInput("The page route is blank.")
        query = query.where(Event.page_context == route)
    if status != "all":
        query = query.where(_status_clause(session, status, at))
    query = query.order_by(col(Event.created_at).desc(), col(Event.uid))
    return list(session.exec(query).all())


def resolve_current(session: Session, *, route: str | None, at: datetime) -> Event | None:
    """What is live for this page at ``at``: None, the event, or Conflict."""
    normalized = normalize_route(route)
    if normalized is None:
        return None
    live = live_events(session, routes=[normalized], at=at)
    return pick_current(live, normalized)


def live_events(session: Session, *, routes: list[str] | None, at: datetime) -> list[Event]:
    query = select(Event).where(_live_clause(session, at))
    if routes is not None:
        query = query.where(col(Event.page_context).in_(routes))
    return list(session.exec(query.order_by(col(Event.created_at), col(Event.uid))).all())


def pick_current(live: list[Event], route: str) -> Event | None:
    if not live:
        return None
    if len(live) > 1:
        uids = [str(e.uid) for e in live]
        raise Conflict(f"{len(live)} events are live for {route}: {', '.join(uids)}.", uids)
    return live[0]


# ---------------------------------------------------------------- writing


def bump_version(session: Session) -> None:
    """Tell every web worker that events changed (same transaction as the write)."""
    result = session.execute(sa.update(State).where(col(State.id) == 1).values(version=col(State.version) + 1))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        session.add(State(id=1, version=1))


def _lock_page(session: Session, page: str) -> None:
    """Serialize writers per page on PostgreSQL (SQLite already holds the write lock)."""
    if _dialect(session) == "postgresql":
        session.execute(
            sa.text("SELECT pg_advisory_xact_lock(:cls, hashtext(:page))"), {"cls": _LOCK_CLASS, "page": page}
        )


def check_overlap(
    session: Session,
    *,
    page: str,
    start: datetime | None,
    end: datetime | None,
    exclude: uuid.UUID | None,
    now: datetime,
) -> None:
    """Refuse a window that overlaps another active event of the page from now on."""
    if end is not None and end <= now:
        return  # never live again: no overlap can matter
    s2, e2 = _t(session, Event.start_date), _t(session, Event.end_date)
    clauses: list[Any] = [
        Event.page_context == page,
        col(Event.is_active).is_(True),
        sa.or_(col(Event.end_date).is_(None), e2 > _p(session, now)),
    ]
    if end is not None:
        clauses.append(sa.or_(col(Event.start_date).is_(None), s2 < _p(session, end)))
    if start is not None:
        clauses.append(sa.or_(col(Event.end_date).is_(None), e2 > _p(session, start)))
    if exclude is not None:
        clauses.append(Event.uid != exclude)
    others = session.exec(select(Event.uid).where(*clauses).order_by(col(Event.created_at))).all()
    if others:
        uids = [str(u) for u in others]
        raise Conflict(
            f"The window overlaps {len(uids)} active event(s) on {page}: {', '.join(uids)} "
            "(pass --allow-overlap to allow it).",
            uids,
        )


def _validate_categories(session: Session, filters: dict[str, Any]) -> None:
    from eventctl.categories import check_known_categories

    check_known_categories(session, filters.get("category_ids") or [])


def create_event(
    session: Session, *, data: EventCreate, actor: str, allow_overlap: bool = False, now: datetime | None = None
) -> Event:
    now = now or utcnow()
    filters = data.filters.to_json()
    _validate_categories(session, filters)
    _lock_page(session, data.page_context)
    if data.is_active and not allow_overlap:
        check_overlap(
            session, page=data.page_context, start=data.start_date, end=data.end_date, exclude=None, now=now
        )
    event = Event(
        name=data.name,
        description=data.description,
        page_context=data.page_context,
        filters=filters,
        limit=data.limit,
        is_active=data.is_active,
        start_date=as_utc(data.start_date),
        end_date=as_utc(data.end_date),
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(event)
    bump_version(session)
    session.flush()
    return event


def update_event(
    session: Session, *, ref: str, changes: EventUpdate, allow_overlap: bool = False, now: datetime | None = None
) -> Event:
    now = now or utcnow()
    event = get_event(session, ref=ref)
    given = changes.model_fields_set
    values: dict[str, Any] = {k: getattr(changes, k) for k in given}
    if "filters" in values:
        values["filters"] = values["filters"].to_json() if values["filters"] is not None else {}
        _validate_categories(session, values["filters"])
    for key in ("start_date", "end_date"):
        if key in values:
            values[key] = as_utc(values[key])
    start = values.get("start_date", as_utc(event.start_date))
    end = values.get("end_date", as_utc(event.end_date))
    if start is not None and end is not None and end <= start:
        raise InvalidInput("The end must be after the start.")
    page = values.get("page_context", event.page_context)
    active = values.get("is_active", event.is_active)
    # Only a new window, page or re-activation can create an overlap; a rename cannot.
    moves = bool({"start_date", "end_date", "page_context"} & values.keys()) or (active and not event.is_active)
    _lock_page(session, page)
    if active and moves and not allow_overlap:
        check_overlap(session, page=page, start=start, end=end, exclude=event.uid, now=now)
    for key, value in values.items():
        setattr(event, key, value)
    event.updated_at = max(now, as_utc(event.updated_at) or now)
    session.add(event)
    bump_version(session)
    session.flush()
    return event


def delete_event(session: Session, *, ref: str) -> Event:
    event = get_event(session, ref=ref)
    session.delete(event)
    bump_version(session)
    session.flush()
    return event


# ---------------------------------------------------------------- in memory (web cache)


def load_snapshot(session: Session, *, at: datetime) -> dict[str, list[Event]]:
    """Active events that are live at ``at`` or later, grouped by page.

    The web app resolves /current from this in memory (``resolve_in_memory``),
    re-applying each window against the clock, so expired rows can be left out.
    """
    end = _t(session, Event.end_date)
    query = select(Event).where(
        col(Event.is_active).is_(True), sa.or_(col(Event.end_date).is_(None), end > _p(session, at))
    )
    by_route: dict[str, list[Event]] = {}
    for event in session.exec(query.order_by(col(Event.created_at), col(Event.uid))).all():
        session.expunge(event)
        by_route.setdefault(event.page_context, []).append(event)
    return by_route


def resolve_in_memory(events: list[Event], *, route: str, at: datetime) -> Event | None:
    """resolve_current over already-loaded events: same rules (status_at), same conflict."""
    return pick_current([e for e in events if status_at(e, at) == "live"], route)


def next_boundary(events: list[Event], *, at: datetime) -> datetime | None:
    """The next start or end among these events strictly after ``at`` (None: no change ahead)."""
    ahead = [
        t
        for e in events
        if e.is_active
        for t in (as_utc(e.start_date), as_utc(e.end_date))
        if t is not None and t > at
    ]
    return min(ahead) if ahead else None
