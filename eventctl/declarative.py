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

from sqlmodel import Session, col, select

from eventctl.errors import InvalidInput, OverlapConflict
from eventctl.models import EVENT_FIELDS, Event, event_fields
from eventctl.timeparse import utcnow

MAX_FILE_BYTES = 16 * 1024 * 1024
_SETTABLE = tuple(k for k in EVENT_FIELDS if k != "uid")


# ---------------------------------------------------------------- reading files


def _yaml_loader() -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        """The safe loader, with timestamps left as strings (validated as ISO 8601 later)."""

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return Loader


def parse_document(text: str, *, source: str) -> list[dict[str, Any]]:
    """The entries of an ``apply`` file (YAML or JSON): a list, or ``{"events": [...]}``."""
    import yaml

    try:
        data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not YAML or JSON"
        raise InvalidInput(f"{source} is not valid YAML or JSON{where} ({str(problem)[:80]}).") from None
    except RecursionError:
        raise InvalidInput(f"{source} is nested too deeply.") from None
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


@dataclass
class Desired:
    """One entry of the file, validated: the full state of one event."""

    index: int
    uid: uuid.UUID | None
    fields: dict[str, Any]  # JSON-safe, as event_fields() gives them (without uid)
    data: Any  # shapes.EventCreate


def validate_entries(entries: list[dict[str, Any]], *, source: str) -> list[Desired]:
    from eventctl.filters import describe_validation_error
    from eventctl.shapes import EventCreate

    out: list[Desired] = []
    seen_uids: dict[uuid.UUID, int] = {}
    seen_names: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(entries, start=1):
        where = f"{source} entry {i}"
        unknown = [str(k)[:40] for k in entry if k not in EVENT_FIELDS]
        if unknown:
            raise InvalidInput(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(EVENT_FIELDS)}).")
        raw = {k: v for k, v in entry.items() if k != "uid"}
        uid = None
        if entry.get("uid") is not None:
            try:
                uid = uuid.UUID(str(entry["uid"]))
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
        else:
            key = (fields["page_context"], fields["name"])
            if key in seen_names:
                raise InvalidInput(f"{where}: {key[1]!r} on {key[0]} is already entry {seen_names[key]}.")
            seen_names[key] = i
        out.append(Desired(index=i, uid=uid, fields=fields, data=data))
    return out


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


def _match(session: Session, desired: Desired) -> Event | None:
    if desired.uid is not None:
        return session.get(Event, desired.uid)
    page, name = desired.fields["page_context"], desired.fields["name"]
    found = list(session.exec(select(Event).where(Event.page_context == page, Event.name == name).limit(2)))
    if len(found) > 1:
        raise InvalidInput(
            f"Entry {desired.index}: several events are named {name[:60]!r} on {page}; give the entry its uid."
        )
    return found[0] if found else None


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
    """Plan and (unless ``dry_run``) carry out, in the caller's transaction (all or nothing)."""
    from eventctl import events as core
    from eventctl.shapes import EventUpdate

    now = now or utcnow()
    pages = {d.fields["page_context"] for d in entries}
    matched = [(d, _match(session, d)) for d in entries]
    core.lock_pages(session, *pages, *(e.page_context for _, e in matched if e is not None))
    changes: list[Change] = []
    touched: list[Event] = []
    for desired, event in matched:
        name, page = desired.fields["name"], desired.fields["page_context"]
        if event is None:
            changes.append(Change("create", str(desired.uid) if desired.uid else None, page, name))
            if not dry_run:
                made = core.create_event(
                    session, data=desired.data, actor=actor, via="apply", allow_overlap=True, uid=desired.uid, now=now
                )
                changes[-1].uid = str(made.uid)
                touched.append(made)
            continue
        current = event_fields(event)
        diff = {k: [current[k], desired.fields[k]] for k in _SETTABLE if current[k] != desired.fields[k]}
        if not diff:
            changes.append(Change("unchanged", str(event.uid), page, name))
            continue
        changes.append(Change("update", str(event.uid), page, name, diff))
        if not dry_run:
            values = {k: getattr(desired.data, k) for k in diff}
            update = EventUpdate.model_validate({k: _as_input(v) for k, v in values.items()})
            touched.append(
                core.update_event(
                    session, ref=str(event.uid), changes=update, actor=actor, via="apply", allow_overlap=True, now=now
                )
            )
    if prune:
        named = {c.uid for c in changes if c.uid}
        stale = session.exec(
            select(Event).where(col(Event.page_context).in_(sorted(pages))).order_by(col(Event.created_at))
        ).all()
        for event in stale:
            if str(event.uid) in named:
                continue
            changes.append(Change("delete", str(event.uid), event.page_context, event.name))
            if not dry_run:
                core.delete_event(session, ref=str(event.uid), actor=actor, via="apply", now=now)
    if not dry_run and not allow_overlap:
        _guard_final_state(session, touched, now=now)
    return Plan(dry_run=dry_run, changes=changes)


def _as_input(value: Any) -> Any:
    """EventCreate values back into EventUpdate's input (filters as their JSON)."""
    from eventctl.filters import RecordReviewFilters

    return value.to_json() if isinstance(value, RecordReviewFilters) else value


def _guard_final_state(session: Session, touched: list[Event], *, now: datetime) -> None:
    """The overlap guard over the state the whole file leaves, for each event it created or changed."""
    from eventctl.errors import Conflict
    from eventctl.events import check_overlap
    from eventctl.timeparse import as_utc

    for event in touched:
        if not event.is_active:
            continue
        try:
            check_overlap(
                session,
                page=event.page_context,
                start=as_utc(event.start_date),
                end=as_utc(event.end_date),
                is_default=event.is_default,
                exclude=event.uid,
                now=now,
            )
        except Conflict as exc:
            raise OverlapConflict(f"{event.name[:60]!r}: {exc.message}", exc.uids) from None


# ---------------------------------------------------------------- export


def export_rows(session: Session, *, page: str | None, status: str, at: datetime) -> list[dict[str, Any]]:
    """The events as ``apply`` reads them back, oldest first (a stable order for diffs)."""
    from eventctl.events import list_query

    query = list_query(session, page=page, status=status, at=at).order_by(None)
    query = query.order_by(col(Event.page_context), col(Event.created_at), col(Event.uid))
    return [event_fields(e) for e in session.exec(query)]


def dump(rows: list[dict[str, Any]], *, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    import yaml

    return yaml.safe_dump(rows, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
