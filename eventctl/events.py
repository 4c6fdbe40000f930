"""The operations on events, shared by the CLI and the web app (SPEC §2).

Every function takes a Session and keyword-only arguments; writes run inside
``db.write_session`` (SQLite: the write lock first) and take a per-page advisory
lock on PostgreSQL, so the overlap guard holds under concurrent writers.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from eventctl import audit
from eventctl.db import time_expr, time_param
from eventctl.errors import Conflict, InvalidInput, NotFound, OverlapConflict
from eventctl.models import STATUS_CHOICES, ChangeCounter, Event, W, Window, event_fields, status_at
from eventctl.routes import require_route
from eventctl.text import excerpt
from eventctl.timeparse import as_utc, utcnow

if TYPE_CHECKING:
    from eventctl.shapes import EventCreate, EventUpdate

MIN_PREFIX = 8
MAX_ROWS = 2**62  # any offset or limit beyond this is a typo, and would not fit the databases' integers
# pg_advisory_xact_lock(class, key): our class id keeps clear of other apps' locks.
_LOCK_CLASS = 0x45564E54  # "EVNT"
_ALL_PAGES_CLASS = 0x45564E41  # "EVNA": (class, 0) shared by every writer, exclusive for a bulk writer
_HEX = re.compile(r"^[0-9a-f]+$")


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _stored_time(session: Session, column: Any) -> Any:
    return time_expr(column, _dialect(session))


def _time_value(session: Session, value: datetime) -> Any:
    return time_param(value, _dialect(session))


# ---------------------------------------------------------------- reading


def uid_key(ref: str) -> str:
    """A uid or uid prefix as lower-case hex without dashes, or InvalidInput."""
    key = ref.strip().lower().replace("-", "")
    if not _HEX.match(key) or len(key) > 32:
        raise InvalidInput(f"{excerpt(ref)} is not a uid or uid prefix (hex digits).")
    if len(key) < MIN_PREFIX:
        raise InvalidInput(f"A uid prefix needs at least {MIN_PREFIX} hex digits; {excerpt(ref)} has {len(key)}.")
    return key


def get_event(session: Session, *, ref: str) -> Event:
    """An event by its full uid or a unique prefix of at least 8 hex digits."""
    key = uid_key(ref)
    if len(key) == 32:
        event = session.get(Event, uuid.UUID(key))
        if event is None:
            raise NotFound(f"No event has uid {uuid.UUID(key)}.")
        return event
    text_uid = sa.func.replace(sa.cast(col(Event.uid), sa.String), "-", "")
    found = session.exec(select(Event).where(text_uid.like(key + "%")).limit(5)).all()
    if not found:
        raise NotFound(f"No event uid starts with {excerpt(ref)}.")
    if len(found) > 1:
        raise InvalidInput(f"The uid prefix {excerpt(ref)} matches several events; give more digits.")
    return found[0]


def _status_clause(session: Session, status: str, at: datetime) -> Any:
    start, end, now = (
        _stored_time(session, Event.start_date),
        _stored_time(session, Event.end_date),
        _time_value(session, at),
    )
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
    raise InvalidInput(f"Unknown status {excerpt(status)}; use one of {', '.join(STATUS_CHOICES)}.")


def _live_clause(session: Session, at: datetime) -> Any:
    start, end, now = (
        _stored_time(session, Event.start_date),
        _stored_time(session, Event.end_date),
        _time_value(session, at),
    )
    return sa.and_(
        col(Event.is_active).is_(True),
        sa.or_(col(Event.start_date).is_(None), start <= now),
        sa.or_(col(Event.end_date).is_(None), end > now),
    )


def check_status(status: str) -> str:
    """A status filter (live, scheduled, expired, inactive, all), or InvalidInput."""
    value = status.strip().lower()
    if value not in STATUS_CHOICES:
        raise InvalidInput(f"Unknown status {excerpt(status)}; use one of {', '.join(STATUS_CHOICES)}.")
    return value


def list_query(
    session: Session,
    *,
    page: str | None = None,
    status: str = "all",
    is_active: bool | None = None,
    offset: int = 0,
    limit: int | None = None,
    at: datetime,
) -> Any:
    """The query behind ``list``: newest first, optionally one page, one status, active or not."""
    if not 0 <= offset <= MAX_ROWS or (limit is not None and not 1 <= limit <= MAX_ROWS):
        raise InvalidInput(f"The offset must be 0 to {MAX_ROWS} and the limit 1 to {MAX_ROWS}.")
    query = select(Event)
    if page is not None:
        query = query.where(Event.page_context == require_route(page))
    status = check_status(status)
    if status != "all":
        query = query.where(_status_clause(session, status, at))
    if is_active is not None:
        query = query.where(col(Event.is_active).is_(is_active))
    query = query.order_by(col(Event.created_at).desc(), col(Event.uid).desc()).offset(offset)
    return query.limit(limit) if limit is not None else query


def list_events(session: Session, *, at: datetime, **filters: Any) -> list[Event]:
    """Events, newest first (``list_query``'s filters)."""
    return list(session.exec(list_query(session, at=at, **filters)).all())


def resolve_current(session: Session, *, route: str, at: datetime) -> Event | None:
    """What is live for this (normalized) page at ``at``: None, the event, or Conflict."""
    return pick_current(live_events(session, routes=[route], at=at), route)


def live_events(session: Session, *, routes: list[str] | None, at: datetime) -> list[Event]:
    query = select(Event).where(_live_clause(session, at))
    if routes is not None:
        query = query.where(col(Event.page_context).in_(routes))
    return list(session.exec(query.order_by(col(Event.created_at), col(Event.uid))).all())


def pick_current(live: list[W], route: str) -> W | None:
    """SPEC §2 over the live events of one page: a campaign wins over the page default."""
    campaigns = [e for e in live if not e.is_default]
    candidates = campaigns or [e for e in live if e.is_default]
    if not candidates:
        return None
    if len(candidates) > 1:
        uids = [str(e.uid) for e in candidates]
        kind = "events" if campaigns else "default events"
        raise Conflict(f"{len(candidates)} {kind} are live for {route}: {', '.join(uids)}.", uids)
    return candidates[0]


def resolve_uid_with_history(session: Session, *, ref: str) -> uuid.UUID:
    """A uid or unique prefix, among live events first, else among audited ones (deleted events)."""
    from eventctl.models import AuditEntry

    try:
        return get_event(session, ref=ref).uid
    except NotFound:
        pass
    key = uid_key(ref)
    if len(key) == 32:
        return uuid.UUID(key)
    text_uid = sa.func.replace(sa.cast(col(AuditEntry.uid), sa.String), "-", "")
    found = list(session.exec(select(AuditEntry.uid).where(text_uid.like(key + "%")).distinct().limit(2)))
    if not found:
        raise NotFound(f"No event or audit entry has a uid starting with {excerpt(ref)}.")
    if len(found) > 1:
        raise InvalidInput(f"The uid prefix {excerpt(ref)} matches several events; give more digits.")
    return found[0]


# ---------------------------------------------------------------- writing


NOTIFY_CHANNEL = "eventctl_events"


def bump_version(session: Session, pages: set[str] | frozenset[str] = frozenset()) -> int:
    """Tell every web worker that events changed, in the same transaction as the write; returns the
    change counter this write set.

    The change counter is what pollers read (SQLite always; PostgreSQL as the fallback); on
    PostgreSQL a NOTIFY on ``eventctl_events`` carries the counter and the pages written
    (``{"v": counter, "p": [pages]}``), delivered to listeners when the transaction commits and
    never if it rolls back: a listener (or a replica-backed worker) knows which state reflects it.
    """
    counter = sa.update(ChangeCounter).where(col(ChangeCounter.id) == 1)
    version = session.execute(
        counter.values(version=col(ChangeCounter.version) + 1).returning(col(ChangeCounter.version))
    ).scalar()
    if version is None:
        session.add(ChangeCounter(id=1, version=1))
        version = 1
    if pages and _dialect(session) == "postgresql":
        for payload in _notify_payloads(sorted(pages), version=int(version)):
            session.execute(
                sa.text("SELECT pg_notify(:channel, :payload)"), {"channel": NOTIFY_CHANNEL, "payload": payload}
            )
    return int(version)


def _notify_payloads(pages: list[str], *, version: int, limit: int = 7000) -> list[str]:
    """``{"v": version, "p": [pages]}`` documents, each under PostgreSQL's 8000-byte NOTIFY payload limit."""
    import json

    def doc(batch: list[str]) -> str:
        return json.dumps({"v": version, "p": batch}, ensure_ascii=False, separators=(",", ":"))

    out: list[str] = []
    batch: list[str] = []
    for page in pages:
        if batch and len(doc([*batch, page]).encode()) > limit:
            out.append(doc(batch))
            batch = []
        batch.append(page)
    if batch:
        out.append(doc(batch))
    return out


def lock_pages(session: Session, *pages: str) -> None:
    """Serialize writers per page on PostgreSQL (SQLite already holds the write lock).

    A writer first takes the class-wide lock shared (``lock_all_pages`` takes it exclusive,
    so a bulk writer needs one lock slot, not one per page), then its pages in sorted
    order, so two writers never wait on each other crosswise.
    """
    if _dialect(session) != "postgresql":
        return
    session.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:cls, 0)"), {"cls": _ALL_PAGES_CLASS})
    for page in sorted(set(pages)):
        session.execute(
            sa.text("SELECT pg_advisory_xact_lock(:cls, hashtext(:page))"), {"cls": _LOCK_CLASS, "page": page}
        )


def lock_all_pages(session: Session) -> None:
    """Every page at once, for a writer of many pages (``apply``): one lock, held to the end of the
    transaction; writers of single events wait for it, readers never do."""
    if _dialect(session) == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:cls, 0)"), {"cls": _ALL_PAGES_CLASS})


def windows_overlap(a_start: datetime | None, a_end: datetime | None, b: Window) -> bool:
    """Whether [a_start, a_end) meets b's window (None: unbounded)."""
    b_start, b_end = as_utc(b.start_date), as_utc(b.end_date)
    starts_before_a_ends = a_end is None or b_start is None or b_start < a_end
    return starts_before_a_ends and (a_start is None or b_end is None or b_end > a_start)


def overlapping(
    others: Iterable[W],
    *,
    start: datetime | None,
    end: datetime | None,
    is_default: bool,
    exclude: object | None,
    now: datetime,
) -> list[W]:
    """SPEC §2's overlap rule: the other active events of the page whose window meets this one from
    now on. Campaigns count against campaigns, a page default only against other defaults."""
    if end is not None and end <= now:
        return []  # never live again: no overlap can matter
    return [
        o
        for o in others
        if o.is_active
        and bool(o.is_default) == is_default
        and o.uid != exclude
        and windows_overlap(now, None, o)
        and windows_overlap(start, end, o)
    ]


def overlap_message(page: str, is_default: bool, names: list[str]) -> str:
    kind = "default event(s)" if is_default else "event(s)"
    return f"The window overlaps {len(names)} active {kind} on {page}: {', '.join(names)}."


def check_overlap(
    session: Session,
    *,
    page: str,
    start: datetime | None,
    end: datetime | None,
    is_default: bool,
    exclude: uuid.UUID | None,
    now: datetime,
) -> None:
    """Refuse a window that overlaps another active event of the page from now on (``overlapping``)."""
    if end is not None and end <= now:
        return
    table: sa.Table = Event.__table__  # type: ignore[attr-defined]
    candidates = session.execute(
        sa.select(table.c.uid, table.c.is_active, table.c.is_default, table.c.start_date, table.c.end_date)
        .where(
            col(Event.page_context) == page,
            col(Event.is_active).is_(True),
            col(Event.is_default).is_(is_default),
            sa.or_(col(Event.end_date).is_(None), _stored_time(session, Event.end_date) > _time_value(session, now)),
        )
        .order_by(col(Event.created_at), col(Event.uid))
    ).all()
    others = overlapping(candidates, start=start, end=end, is_default=is_default, exclude=exclude, now=now)
    if others:
        uids = [str(o.uid) for o in others]
        raise OverlapConflict(overlap_message(page, is_default, uids), uids)


def _validate_categories(session: Session, filters: dict[str, Any]) -> None:
    from eventctl.categories import check_known_categories

    check_known_categories(session, filters.get("category_ids") or [])


def create_event(
    session: Session,
    *,
    data: EventCreate,
    actor: str,
    via: str,
    allow_overlap: bool = False,
    uid: uuid.UUID | None = None,
    now: datetime | None = None,
) -> Event:
    """Create an event (``uid``: the one an ``apply`` file names; else a new one)."""
    now = now or utcnow()
    filters = data.filters.to_json()
    _validate_categories(session, filters)
    lock_pages(session, data.page_context)
    if data.is_active and not allow_overlap:
        check_overlap(
            session,
            page=data.page_context,
            start=data.start_date,
            end=data.end_date,
            is_default=data.is_default,
            exclude=None,
            now=now,
        )
    event = Event(
        **data.model_dump(exclude={"filters", "start_date", "end_date"}),
        filters=filters,
        start_date=as_utc(data.start_date),
        end_date=as_utc(data.end_date),
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    if uid is not None:
        if session.get(Event, uid) is not None:
            raise Conflict(f"An event with uid {uid} already exists.", [str(uid)])
        event.uid = uid
    session.add(event)
    _record_write(session, action="create", actor=actor, via=via, before=None, after=event, at=now)
    return event


_WRITTEN = "eventctl.pages_written"  # Session.info key: the pages this session's writes touched


def record_writes(session: Session, writes: list[audit.Write], *, actor: str, via: str, at: datetime) -> frozenset[str]:
    """What every write does in its transaction, for every writer (CLI, HTTP, apply, cleanup): one audit
    entry per change, one change-counter bump and NOTIFY naming the pages. Returns the pages touched
    (also kept for ``pages_written``, so the web layer invalidates exactly what the core wrote)."""
    if not writes:
        return frozenset()
    audit.insert(session, writes, actor=actor, via=via, at=at)
    pages = frozenset(p for w in writes for p in w.pages())
    version = bump_version(session, pages)
    written = session.info.setdefault(_WRITTEN, {"pages": set(), "version": None})
    written["pages"].update(pages)
    written["version"] = version
    return pages


def pages_written(session: Session) -> tuple[frozenset[str], int | None]:
    """Every page a write in this session touched (before and after a move), and the change counter its
    last write set (None: no write): once committed, the state that counter names reflects them all."""
    written = session.info.get(_WRITTEN) or {"pages": (), "version": None}
    return frozenset(written["pages"]), written["version"]


def _record_write(
    session: Session,
    *,
    action: str,
    actor: str,
    via: str,
    before: dict[str, Any] | None,
    after: Event | None,
    at: datetime,
) -> None:
    session.flush()
    subject = after.uid if after is not None else uuid.UUID(before["uid"])  # type: ignore[index]
    write = audit.Write(action, subject, before, event_fields(after) if after is not None else None)
    record_writes(session, [write], actor=actor, via=via, at=at)


def _lock_event(session: Session, ref: str, pages: set[str]) -> Event:
    """The event as committed, with every page it is on locked (before and after a concurrent move).

    On PostgreSQL the row is read FOR UPDATE after its page locks are held; if another
    writer moved it meanwhile, its new page is locked too and the row read again.
    """
    event = get_event(session, ref=ref)
    if _dialect(session) != "postgresql":
        return event
    locked: set[str] = set()
    while True:
        wanted = pages | {event.page_context}
        lock_pages(session, *(wanted - locked))
        locked |= wanted
        fresh = session.exec(
            select(Event).where(Event.uid == event.uid).with_for_update().execution_options(populate_existing=True)
        ).first()
        if fresh is None:
            raise NotFound(f"No event has uid {event.uid}.")
        if fresh.page_context in locked:
            return fresh
        event = fresh


def update_event(
    session: Session,
    *,
    ref: str,
    changes: EventUpdate,
    actor: str,
    via: str,
    allow_overlap: bool = False,
    now: datetime | None = None,
) -> Event:
    """Change the fields given (``changes.model_fields_set``); an empty change is refused."""
    now = now or utcnow()
    given = changes.model_fields_set
    if not given:
        raise InvalidInput("Nothing to update: give at least one field.")
    values: dict[str, Any] = {k: getattr(changes, k) for k in given}
    new_page = {values["page_context"]} if "page_context" in values else set()
    event = _lock_event(session, ref, new_page)
    if "filters" in values:
        values["filters"] = values["filters"].to_json() if values["filters"] is not None else {}
        _validate_categories(session, values["filters"])
    for key in ("start_date", "end_date"):
        if key in values:
            values[key] = as_utc(values[key])
    start = values.get("start_date", as_utc(event.start_date))
    end = values.get("end_date", as_utc(event.end_date))
    if start is not None and end is not None and end <= start:
        raise InvalidInput("end_date must be after start_date.")
    page = values.get("page_context", event.page_context)
    active = values.get("is_active", event.is_active)
    is_default = values.get("is_default", event.is_default)
    # Only a new window, page, role or re-activation can create an overlap; a rename cannot.
    moves = bool({"start_date", "end_date", "page_context", "is_default"} & values.keys()) or (
        active and not event.is_active
    )
    if active and moves and not allow_overlap:
        check_overlap(session, page=page, start=start, end=end, is_default=is_default, exclude=event.uid, now=now)
    before = event_fields(event)
    for key, value in values.items():
        setattr(event, key, value)
    event.updated_at = max(now, as_utc(event.updated_at) or now)
    session.add(event)
    _record_write(session, action="update", actor=actor, via=via, before=before, after=event, at=now)
    return event


def delete_event(session: Session, *, ref: str, actor: str, via: str, now: datetime | None = None) -> Event:
    event = _lock_event(session, ref, set())
    before = event_fields(event)
    session.delete(event)
    _record_write(session, action="delete", actor=actor, via=via, before=before, after=None, at=now or utcnow())
    return event


# ---------------------------------------------------------------- in memory (web cache)

PAGES_PER_QUERY = 500  # pages per IN (...) when several pages are loaded at once


def load_snapshot(
    session: Session,
    *,
    at: datetime,
    pages: list[str] | tuple[str, ...] | set[str] | None = None,
    horizon: datetime | None = None,
) -> dict[str, list[Event]]:
    """Active events that are live at ``at`` or later, grouped by page (oldest first).

    ``horizon``: only those starting before it (what happens after it is not loaded).

    ``pages``: only these pages (one indexed query per ``PAGES_PER_QUERY`` pages, on
    ``ix_events_current``); None: every page (tools and tests; the web app never loads
    the whole table). The web app resolves /current from this in memory
    (``resolve_in_memory``), re-applying each window against the clock, so expired rows
    can be left out and upcoming ones make the next boundary known without a query.
    """
    if pages is not None and not pages:
        return {}
    end = _stored_time(session, Event.end_date)
    # plain rows, not ORM objects: a cached page costs a tuple per event, not an identity-mapped instance
    table: sa.Table = Event.__table__  # type: ignore[attr-defined]
    base = sa.select(*table.columns).where(
        col(Event.is_active) == sa.true(), sa.or_(col(Event.end_date).is_(None), end > _time_value(session, at))
    )
    if horizon is not None:
        start = _stored_time(session, Event.start_date)
        base = base.where(sa.or_(col(Event.start_date).is_(None), start < _time_value(session, horizon)))
    queries = [base]
    if pages is not None:
        wanted = sorted(set(pages))
        if len(wanted) == 1:
            queries = [base.where(col(Event.page_context) == wanted[0])]
        else:
            queries = [
                base.where(col(Event.page_context).in_(wanted[i : i + PAGES_PER_QUERY]))
                for i in range(0, len(wanted), PAGES_PER_QUERY)
            ]
    by_route: dict[str, list[Event]] = {}
    for query in queries:
        # Row objects read like events (status_at, pick_current and event_to_json use the attributes)
        for event in session.execute(query.order_by(col(Event.created_at), col(Event.uid))).all():
            by_route.setdefault(event.page_context, []).append(event)  # type: ignore[arg-type]
    return by_route


def load_page(session: Session, *, page: str, at: datetime) -> list[Event]:
    """One page's live and upcoming active events (one indexed query): what a /current cache miss loads."""
    return load_snapshot(session, at=at, pages=[page]).get(page, [])


def resolve_in_memory(events: list[W], *, route: str, at: datetime) -> W | None:
    """resolve_current over already-loaded events: same rules (status_at), same conflict."""
    return pick_current([e for e in events if status_at(e, at) == "live"], route)


def next_boundary(events: list[W], *, at: datetime) -> datetime | None:
    """The next start or end among these events strictly after ``at`` (None: no change ahead)."""
    ahead = [
        t for e in events if e.is_active for t in (as_utc(e.start_date), as_utc(e.end_date)) if t is not None and t > at
    ]
    return min(ahead) if ahead else None
