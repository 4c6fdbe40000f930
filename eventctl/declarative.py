"""Campaigns as files (SPEC §7): ``export`` writes the events, ``apply`` makes the database hold them.

A file is a list of events with the fields a user sets (``models.EVENT_FIELDS``).
``apply`` plans (created / updated field by field / unchanged / deleted with
``prune``), then carries the plan out in one transaction: all or nothing, the
overlap guard judged on the final state, one audit entry per change (via
``apply``). YAML is read with PyYAML's safe loader only, timestamps kept as
text (they are parsed like every other time, strictly, with an offset).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from eventctl.errors import InvalidInput, OverlapConflict
from eventctl.models import EVENT_FIELDS, Event, canonical_filters, event_fields
from eventctl.timeparse import utcnow

MAX_FILE_BYTES = 64 * 1024 * 1024  # ~150,000 exported events; read and bounded before any parsing
_SETTABLE = tuple(k for k in EVENT_FIELDS if k != "uid")
# an entry may also say ``allow_overlap: true``: the overlap guard lets that event overlap (export
# writes it where the database holds an overlap, so export -> apply -> export needs no flag)
_FILE_KEYS = (*EVENT_FIELDS, "allow_overlap")


# ---------------------------------------------------------------- reading files


def parse_document(text: str, *, source: str, name: str | None = None) -> list[dict[str, Any]]:
    """The entries of an ``apply`` file (YAML or JSON, read by ``documents.load``): a list, or
    ``{"events": [...]}``."""
    from eventctl.documents import load

    data = load(text, source=source, name=name)
    if isinstance(data, dict) and set(data) == {"events"}:
        data = data["events"]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise InvalidInput(f"{source} must hold a list of events (or {{events: [...]}}).")
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise InvalidInput(f"{source} entry {i + 1} is not a mapping of event fields.")
    return data


@dataclass(slots=True)
class Desired:
    """One entry of the file, validated: the full state of one event."""

    index: int
    uid: uuid.UUID | None
    fields: dict[str, Any]  # JSON-safe, as event_fields() gives them (without uid)
    allow_overlap: bool = False  # the entry's own ``allow_overlap: true``: an overlap kept on purpose


def validate_entries(entries: list[dict[str, Any]], *, source: str) -> list[Desired]:
    from eventctl.filters import describe_validation_error
    from eventctl.shapes import EventCreate

    out: list[Desired] = []
    seen_uids: dict[uuid.UUID, int] = {}
    for i, entry in enumerate(entries, start=1):
        where = f"{source} entry {i}"
        unknown = [str(k)[:40] for k in entry if k not in _FILE_KEYS]
        if unknown:
            raise InvalidInput(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(_FILE_KEYS)}).")
        raw = {k: v for k, v in entry.items() if k not in ("uid", "allow_overlap")}
        allow = entry.get("allow_overlap", False)
        if not isinstance(allow, bool):
            raise InvalidInput(f"{where}: allow_overlap must be true or false.")
        uid = None
        if entry.get("uid") is not None:
            try:
                if not isinstance(entry["uid"], str):
                    raise ValueError
                uid = uuid.UUID(entry["uid"])
            except ValueError:
                raise InvalidInput(f"{where}: uid {str(entry['uid'])[:40]!r} is not a UUID.") from None
        try:
            data = EventCreate.model_validate(raw)
        except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError
            from pydantic import ValidationError

            if not isinstance(exc, ValidationError):
                raise
            raise InvalidInput(f"{where}: {describe_validation_error(exc, prefix='event')}") from None
        fields = _fields_of(data)
        if uid is not None:
            if uid in seen_uids:
                raise InvalidInput(f"{where}: uid {uid} is already entry {seen_uids[uid]}.")
            seen_uids[uid] = i
        out.append(Desired(index=i, uid=uid, fields=fields, allow_overlap=allow))
    _refuse_ambiguous_names(out, source=source)
    return out


def _refuse_ambiguous_names(entries: list[Desired], *, source: str) -> None:
    """An entry without a uid is matched by (page, name): no other entry may end on that pair, or
    the next apply would match it to the other entry's event (two entries, one event)."""
    first: dict[tuple[str, str], Desired] = {}
    for d in entries:
        first.setdefault((d.fields["page_context"], d.fields["name"]), d)
    for d in entries:
        other = first[(d.fields["page_context"], d.fields["name"])]
        if other is d:
            continue
        nameless = d if d.uid is None else other
        if d.uid is None or other.uid is None:
            raise InvalidInput(
                f"{source} entries {other.index} and {d.index} are both {d.fields['name'][:60]!r} on "
                f"{d.fields['page_context'][:80]}; entry {nameless.index} has no uid, so it is ambiguous: give it "
                "its uid or another name."
            )


def _fields_of(data: Any) -> dict[str, Any]:
    from eventctl.timeparse import isoformat

    dumped = data.model_dump()
    dumped["filters"] = data.filters.to_json()
    dumped["start_date"] = isoformat(data.start_date)
    dumped["end_date"] = isoformat(data.end_date)
    return {k: dumped[k] for k in _SETTABLE}


# ---------------------------------------------------------------- planning and applying


@dataclass
class Change:
    action: str  # create, update, unchanged, delete
    uid: str | None
    page_context: str
    name: str
    fields: dict[str, list[Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "uid": self.uid,
            "page_context": self.page_context,
            "name": self.name,
            "fields": self.fields,
        }


@dataclass
class Plan:
    dry_run: bool
    changes: list[Change]

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "created": self.count("create"),
            "updated": self.count("update"),
            "unchanged": self.count("unchanged"),
            "deleted": self.count("delete"),
            "changes": [c.to_json() for c in self.changes],
        }


_CHUNK = 500  # keys per IN (...)


@dataclass
class _Final:
    """One event as the file leaves it: what the overlap guard and the writes read."""

    uid: uuid.UUID
    fields: dict[str, Any]  # event_fields() form
    entry: int | None  # the file's entry (None: an event the file does not name)
    created_at: Any = None
    provisional: bool = False  # a uid made up for an entry without one: never named in a refusal
    updated_at: datetime | None = None
    allow_overlap: bool = False
    is_active: bool = field(init=False)
    is_default: bool = field(init=False)
    start_date: datetime | None = field(init=False)
    end_date: datetime | None = field(init=False)

    def __post_init__(self) -> None:
        self.is_active = bool(self.fields["is_active"])
        self.is_default = bool(self.fields["is_default"])
        self.start_date = _when(self.fields["start_date"])
        self.end_date = _when(self.fields["end_date"])

    def label(self) -> str:
        name = repr(self.fields["name"][:60])
        if self.entry is None:
            return f"event {self.uid} ({name})"
        return f"entry {self.entry} ({name})"


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _load_current(session: Session, *, pages: set[str], uids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """The events the file can touch, as plain rows: those it names by uid and every event of its pages."""
    table: sa.Table = Event.__table__  # type: ignore[attr-defined]
    rows: dict[uuid.UUID, Any] = {}
    for column, keys in ((table.c.uid, uids), (table.c.page_context, sorted(pages))):
        for i in range(0, len(keys), _CHUNK):
            query = sa.select(*table.columns).where(column.in_(keys[i : i + _CHUNK]))
            for row in session.execute(query.order_by(table.c.created_at, table.c.uid)):
                rows[row.uid] = row
    return rows


def _match_all(entries: list[Desired], current: dict[uuid.UUID, Any]) -> list[Any]:
    """For each entry the event it describes (or None: to create), decided for the whole file before any
    write, against the state before the file; an event is described by at most one entry."""
    by_name: dict[tuple[str, str], list[Any]] = {}
    for row in current.values():
        by_name.setdefault((row.page_context, row.name), []).append(row)
    claimed: dict[uuid.UUID, Desired] = {}
    out: list[Any] = []
    for d in entries:
        if d.uid is not None:
            row = current.get(d.uid)
        else:
            page, name = d.fields["page_context"], d.fields["name"]
            found = by_name.get((page, name), [])
            if len(found) > 1:
                raise InvalidInput(
                    f"Entry {d.index}: several events are named {name[:60]!r} on {page[:80]}; give the entry its uid."
                )
            row = found[0] if found else None
        if row is not None:
            other = claimed.get(row.uid)
            if other is not None:
                how = {True: "by uid", False: "by page and name"}
                raise InvalidInput(
                    f"Entries {other.index} ({how[other.uid is not None]}) and {d.index} "
                    f"({how[d.uid is not None]}) both describe event {row.uid}; give entry "
                    f"{(d if d.uid is None else other).index} its own uid or another name."
                )
            claimed[row.uid] = d
        out.append(row)
    return out


def _check_categories(session: Session, entries: list[Desired]) -> None:
    from eventctl.categories import check_known_categories

    ids = [c for d in entries for c in d.fields["filters"].get("category_ids", [])]
    try:
        check_known_categories(session, ids)
    except InvalidInput:
        for d in entries:  # name the first entry that holds an unknown one
            try:
                check_known_categories(session, d.fields["filters"].get("category_ids", []))
            except InvalidInput as exc:
                raise InvalidInput(f"Entry {d.index}: {exc.message}") from None
        raise


def apply(
    session: Session,
    *,
    entries: list[Desired],
    prune: bool,
    dry_run: bool,
    actor: str,
    allow_overlap: bool = False,
    now: datetime | None = None,
) -> Plan:
    """Plan, check and (unless ``dry_run``) carry out, in the caller's transaction (all or nothing).

    The plan and every check (matching, categories, the overlap guard on the final state) are made
    in memory from one read of the events the file can touch, under one lock on every page; a dry
    run stops just before the writes, so it refuses exactly what the real run refuses. The writes
    are bulk statements (linear in the file), one audit entry per change, one counter bump.
    """
    from eventctl import events as core

    now = now or utcnow()
    core.lock_all_pages(session)  # one lock slot, however many pages (max_locks_per_transaction)
    pages = {d.fields["page_context"] for d in entries}
    current = _load_current(session, pages=pages, uids=[d.uid for d in entries if d.uid is not None])
    matched = _match_all(entries, current)
    changes: list[Change] = []
    final: dict[uuid.UUID, _Final] = {
        uid: _Final(uid, event_fields(row), None, row.created_at) for uid, row in current.items()
    }
    writes: list[tuple[str, _Final, dict[str, Any] | None]] = []  # action, final state, before
    for desired, row in zip(entries, matched, strict=True):
        name, page = desired.fields["name"], desired.fields["page_context"]
        if row is None:
            uid = desired.uid or uuid.uuid4()
            made = _Final(
                uid,
                {"uid": str(uid), **desired.fields},
                desired.index,
                now,
                desired.uid is None,
                now,
                desired.allow_overlap,
            )
            final[uid] = made
            writes.append(("create", made, None))
            shown = str(uid) if desired.uid is not None or not dry_run else None
            changes.append(Change("create", shown, page, name))
            continue
        before = event_fields(row)
        after = {**before, **desired.fields}
        final[row.uid] = _Final(
            row.uid,
            after,
            desired.index,
            row.created_at,
            updated_at=max(now, row.updated_at),
            allow_overlap=desired.allow_overlap,
        )
        diff = {k: [before[k], after[k]] for k in _SETTABLE if before[k] != after[k]}
        if not diff:
            changes.append(Change("unchanged", str(row.uid), page, name))
            continue
        changes.append(Change("update", str(row.uid), page, name, diff))
        writes.append(("update", final[row.uid], before))
    if prune:
        named = {row.uid for row in matched if row is not None}
        for uid, row in current.items():
            if row.page_context in pages and uid not in named:
                changes.append(Change("delete", str(uid), row.page_context, row.name))
                writes.append(("delete", final.pop(uid), event_fields(row)))
    _check_categories(session, [d for d, row in zip(entries, matched, strict=True) if _writes_filters(d, row)])
    if not allow_overlap:
        _guard_final_state([w for a, w, _ in writes if a != "delete"], final, now=now)
    if not dry_run and writes:
        _write(session, writes, actor=actor, now=now)
    return Plan(dry_run=dry_run, changes=changes)


def _writes_filters(desired: Desired, row: Any) -> bool:
    return row is None or canonical_filters(row.filters) != desired.fields["filters"]


def _guard_final_state(touched: list[_Final], final: dict[uuid.UUID, _Final], *, now: datetime) -> None:
    """The overlap guard (``events.overlapping``) over the state the whole file leaves, for each event it
    creates or changes; a refusal names the file's entries (and the uids of events it does not name)."""
    from eventctl.events import overlap_message, overlapping

    by_page: dict[str, list[_Final]] = {}
    # oldest first; the file's new events in the file's order (their uids are made up: no order)
    for event in sorted(final.values(), key=lambda e: (e.created_at, e.entry or 0, str(e.uid))):
        by_page.setdefault(event.fields["page_context"], []).append(event)
    for event in touched:
        if not event.is_active or event.allow_overlap:
            continue
        page = event.fields["page_context"]
        others = overlapping(
            by_page.get(page, []),
            start=event.start_date,
            end=event.end_date,
            is_default=event.is_default,
            exclude=event.uid,
            now=now,
        )
        if others:
            uids = [str(o.uid) for o in others if not o.provisional]
            message = overlap_message(page, event.is_default, [o.label() for o in others])
            raise OverlapConflict(f"{event.label()[0].upper()}{event.label()[1:]}: {message}", uids)


def _row(event: _Final) -> dict[str, Any]:
    """Column values of an event's final state."""
    out = {k: event.fields[k] for k in _SETTABLE}
    out.update(start_date=event.start_date, end_date=event.end_date, updated_at=event.updated_at)
    return out


def _write(
    session: Session, writes: list[tuple[str, _Final, dict[str, Any] | None]], *, actor: str, now: datetime
) -> None:
    """The plan as bulk statements: deletes, updates by primary key, inserts; then ``record_writes``
    (the audit entries in plan order, one change-counter bump and NOTIFY naming every page)."""
    from eventctl.audit import Write
    from eventctl.events import record_writes

    table: sa.Table = Event.__table__  # type: ignore[attr-defined]
    gone = [w.uid for action, w, _ in writes if action == "delete"]
    for i in range(0, len(gone), _CHUNK):
        session.execute(sa.delete(table).where(table.c.uid.in_(gone[i : i + _CHUNK])))
    updates = [_row(w) | {"b_uid": w.uid} for action, w, _ in writes if action == "update"]
    if updates:
        settable: dict[str, Any] = {k: sa.bindparam(k) for k in (*_SETTABLE, "updated_at")}
        session.execute(sa.update(table).where(table.c.uid == sa.bindparam("b_uid")).values(settable), updates)
    created = [_row(w) | {"uid": w.uid, "created_by": actor, "created_at": now} for a, w, _ in writes if a == "create"]
    if created:
        session.execute(sa.insert(table), created)
    changes = [Write(action, w.uid, before, w.fields if action != "delete" else None) for action, w, before in writes]
    record_writes(session, changes, actor=actor, via="apply", at=now)


# ---------------------------------------------------------------- export


def export_rows(session: Session, *, page: str | None, status: str, at: datetime) -> list[dict[str, Any]]:
    """The events as ``apply`` reads them back, in a stable order (page, start — none first —, name,
    uid), so export -> apply -> export is byte-identical; an event that overlaps another active event of
    its page (kept on purpose, with --allow-overlap) says ``allow_overlap: true``."""
    from eventctl.events import list_query, overlapping

    query = list_query(session, page=page, status=status, at=at).order_by(None)
    query = query.order_by(
        col(Event.page_context), col(Event.start_date).nulls_first(), col(Event.name), col(Event.uid)
    )
    rows = [event_fields(e) for e in session.exec(query)]
    windows = _active_windows(session, sorted({r["page_context"] for r in rows}))
    for row in rows:
        mine = _Final(uuid.UUID(row["uid"]), row, None)
        if mine.is_active and overlapping(
            windows.get(row["page_context"], []),
            start=mine.start_date,
            end=mine.end_date,
            is_default=mine.is_default,
            exclude=mine.uid,
            now=at,
        ):
            row["allow_overlap"] = True
    return rows


def _active_windows(session: Session, pages: list[str]) -> dict[str, list[Any]]:
    table: sa.Table = Event.__table__  # type: ignore[attr-defined]
    out: dict[str, list[Any]] = {}
    for i in range(0, len(pages), _CHUNK):
        query = sa.select(
            table.c.uid,
            table.c.page_context,
            table.c.is_active,
            table.c.is_default,
            table.c.start_date,
            table.c.end_date,
        ).where(table.c.page_context.in_(pages[i : i + _CHUNK]), table.c.is_active.is_(True))
        for row in session.execute(query):
            out.setdefault(row.page_context, []).append(row)
    return out


def dump(rows: list[dict[str, Any]], *, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    import yaml

    return yaml.safe_dump(rows, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
