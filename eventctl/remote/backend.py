"""``RemoteBackend``: the commands' operations over HTTP, against either kind of server.

- ``eventctl`` (an ``eventctl serve``): everything of SPEC §4 — the server guards overlaps,
  keeps the history, knows page defaults, resolves uid prefixes.
- ``platform`` (the platform's own events API): CRUD only. What it lacks is said, not
  faked: ``is_default`` is refused, ``history`` says it keeps none, ``delete`` deactivates
  (a soft delete), and the overlap guard runs here, on the client, before each write —
  best-effort: two admins writing at once can both pass, since the platform takes no lock.

Lists are read page by page through ``skip``/``limit`` (any number of events); ``current
--at``, ``timeline``, ``export`` and ``apply``'s plan are computed here from the listed
events with the same rules as local mode (``[start, end)``). ``apply`` is not one
transaction over HTTP: each change is one request, and when one fails the notes say which
entries were applied; running the same file again is safe (matched by uid, else by page and
name, so what was applied is ``unchanged`` the second time).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventctl.backends import FilterEdit
from eventctl.errors import EventctlError, InvalidInput, NotFound, OverlapConflict
from eventctl.remote.client import EVENTS_PATH, ApiClient
from eventctl.text import excerpt, for_terminal

if TYPE_CHECKING:
    from eventctl.declarative import Change, Desired, Plan
    from eventctl.models import Event

PAGE_SIZE = 200  # the largest page both servers' list endpoints give
PLATFORM_NO_DEFAULT = (
    "The platform's events API has no is_default (no page default): "
    "a fallback event needs an eventctl serve, or a local database."
)


def _overlaps(
    others: list[Any], *, page: str, start: Any, end: Any, is_default: bool, exclude: object, now: datetime
) -> list[str]:
    """The uids of ``page``'s events that ``events.overlapping`` (SPEC §2's one rule) finds, over events in memory."""
    from eventctl.events import overlapping

    found = overlapping(
        [o for o in others if o.page_context == page],
        start=start,
        end=end,
        is_default=is_default,
        exclude=exclude,
        now=now,
    )
    return [str(o.uid) for o in found]


def overlap_error(uids: list[str], *, page: str, is_default: bool) -> OverlapConflict:
    from eventctl.events import overlap_message

    return OverlapConflict(overlap_message(page, is_default, uids), uids)


@functools.cache
def _wire() -> Any:
    """The event JSON either server sends (built once: pydantic is imported only in remote mode)."""
    from pydantic import BaseModel, ConfigDict

    class Wire(BaseModel):
        model_config = ConfigDict(extra="ignore")
        uid: uuid.UUID
        name: str
        description: str | None = None
        page_context: str
        filters: dict[str, Any] | None = None
        limit: int
        is_active: bool
        is_default: bool = False  # the platform has none
        start_date: datetime | None = None
        end_date: datetime | None = None
        created_by: str | int | uuid.UUID | None = None  # the platform: the caller's user id
        created_at: datetime
        updated_at: datetime | None = None

    return Wire


def event_from_json(data: Any, *, what: str) -> Event:
    """An ``Event`` (never attached to a session) from a server's event JSON; a wrong shape is NotContract."""
    from pydantic import ValidationError

    from eventctl.errors import NotContract
    from eventctl.models import Event
    from eventctl.timeparse import as_utc

    Wire = _wire()
    try:
        wire = Wire.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the body"
        raise NotContract(
            f"The server answered {what} with something that is not an event ({for_terminal(where)}: "
            f"{for_terminal(first['msg'])}): is --api the right address?"
        ) from None
    return Event(
        uid=wire.uid,
        name=wire.name,
        description=wire.description,
        page_context=wire.page_context,
        filters=wire.filters or {},
        limit=wire.limit,
        is_active=wire.is_active,
        is_default=wire.is_default,
        start_date=as_utc(wire.start_date),
        end_date=as_utc(wire.end_date),
        created_by="" if wire.created_by is None else str(wire.created_by),
        created_at=wire.created_at if wire.created_at.tzinfo else wire.created_at.replace(tzinfo=UTC),
        updated_at=as_utc(wire.updated_at) or wire.created_at,
    )


def _category_uids(refs: list[str] | None) -> list[str] | None:
    if not refs:
        return None
    out = []
    for ref in refs:
        try:
            out.append(str(uuid.UUID(ref.strip())))
        except ValueError:
            raise InvalidInput(
                f"--category {excerpt(ref)} is not a UUID: over --api, categories are given by uid "
                "(names are looked up in a local database's table)."
            ) from None
    return out


def _body(model: Any, *, only_set: bool) -> dict[str, Any]:
    """A Create/Update shape as the request body: JSON-safe, filters in the platform's shape."""
    data: dict[str, Any] = model.model_dump(mode="json", exclude_unset=only_set)
    if "filters" in data:
        data["filters"] = model.filters.to_json() if model.filters is not None else {}
    return data


class RemoteBackend:
    """The ``actor`` the commands pass is not sent: a server records the token's owner as the one who
    wrote (SPEC §1: over HTTP, the token's name; the platform: the user id of its JWT)."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.notes: list[str] = []

    @property
    def kind(self) -> str:
        return self.client.kind()

    @property
    def platform(self) -> bool:
        return self.kind == "platform"

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------ reading

    def _list(self, params: dict[str, Any], *, skip: int = 0, size: int = PAGE_SIZE) -> Iterator[Event]:
        """Every event the list endpoint gives for ``params``, page by page (duplicates from rows that
        moved between two pages are dropped)."""
        seen: set[str] = set()
        while True:
            rows = self.client.json(
                "GET", EVENTS_PATH, params={**params, "skip": skip, "limit": size}, what="GET /api/v1/events/"
            )
            if not isinstance(rows, list):
                raise self.client.not_contract_shape("GET /api/v1/events/", "a list of events")
            for row in rows:
                event = event_from_json(row, what="GET /api/v1/events/")
                if str(event.uid) not in seen:
                    seen.add(str(event.uid))
                    yield event
            if len(rows) < size:
                return
            skip += size

    def _page_events(self, page: str, *, active_only: bool = False) -> list[Event]:
        params: dict[str, Any] = {"page_context": page}
        if active_only:
            params["is_active"] = "true"
        return list(self._list(params))

    def get(self, ref: str) -> Event:
        from eventctl.events import uid_key

        key = uid_key(ref)
        if len(key) == 32 or not self.platform:  # an eventctl serve resolves prefixes itself
            data = self.client.json("GET", f"{EVENTS_PATH}{uuid.UUID(key) if len(key) == 32 else key}", what="GET")
            return event_from_json(data, what=f"GET /api/v1/events/{key}")
        found = [e for e in self._list({}) if e.uid.hex.startswith(key)]
        if not found:
            raise NotFound(f"No event uid starts with {excerpt(ref)}.")
        if len(found) > 1:
            raise InvalidInput(f"The uid prefix {excerpt(ref)} matches several events; give more digits.")
        return found[0]

    def iter_events(
        self, *, page: str | None, status: str, offset: int, limit: int | None, at: datetime
    ) -> Iterator[Event]:
        from eventctl.models import status_at
        from eventctl.routes import require_route

        params: dict[str, Any] = {}
        if page is not None:
            params["page_context"] = require_route(page)
        server_side = status == "all" or not self.platform
        if not self.platform:
            params["status"] = status
        elif status != "all":
            params["is_active"] = "false" if status == "inactive" else "true"
        size = min(PAGE_SIZE, limit) if limit is not None and server_side else PAGE_SIZE
        shown = skipped = 0
        for event in self._list(params, skip=offset if server_side else 0, size=size):
            if not server_side:
                if status_at(event, at) != status:
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
            yield event
            shown += 1
            if limit is not None and shown >= limit:
                return

    def current(self, *, route: str, at: datetime | None) -> Event | None:
        from eventctl.events import resolve_in_memory
        from eventctl.timeparse import isoformat

        if at is None:  # the server's own answer: what the review page gets
            response = self.client.request(
                "GET", f"{EVENTS_PATH}current", headers={"X-Page-Route": route.encode("utf-8")}
            )
            data = self.client.decode(response, what="GET /api/v1/events/current")
            return None if data is None else event_from_json(data, what="GET /api/v1/events/current")
        events = self._page_events(route)
        self.notes.append(
            f"Note: resolved here at {isoformat(at)} from the {len(events)} event(s) the server lists for this page, "
            "with eventctl's rule (start inclusive, end exclusive)."
        )
        if self.platform:
            ending = [e for e in events if e.is_active and e.end_date == at]
            if ending:
                self.notes.append(
                    "Note: the platform's own /current counts the end instant as live; at this instant it would "
                    f"still answer {', '.join(str(e.uid) for e in ending)}."
                )
        return resolve_in_memory(events, route=route, at=at)

    def export_rows(self, *, page: str | None, status: str, at: datetime) -> list[dict[str, Any]]:
        from eventctl.models import event_fields
        from eventctl.timeparse import as_utc

        events = list(self.iter_events(page=page, status=status, offset=0, limit=None, at=at))
        events.sort(key=lambda e: (e.page_context, as_utc(e.created_at), str(e.uid)))
        return [event_fields(e) for e in events]

    def history(self, *, uid: str | None, page: str | None, since: datetime | None) -> Iterator[dict[str, Any]]:
        from eventctl.events import uid_key
        from eventctl.routes import require_route
        from eventctl.timeparse import as_utc, isoformat

        if self.platform:
            raise InvalidInput("The platform's events API keeps no history: there is no audit trail to show.")
        route = require_route(page) if page is not None else None
        if uid is None:  # the whole trail, filtered by the server, a page at a time
            params: dict[str, Any] = {}
            if route is not None:
                params["page_context"] = route
            if since is not None:
                params["since"] = isoformat(since)
            skip = 0
            while True:
                rows = self.client.json(
                    "GET", f"{EVENTS_PATH}history", params={**params, "skip": skip, "limit": PAGE_SIZE}, what="GET"
                )
                yield from self._entries(rows)
                if len(rows) < PAGE_SIZE:
                    return
                skip += PAGE_SIZE
        rows = self.client.json("GET", f"{EVENTS_PATH}{uid_key(uid)}/history", what="GET history")
        for row in self._entries(rows):
            if route is not None and row["page_context"] != route:
                continue
            if since is not None and as_utc(datetime.fromisoformat(row["at"])) < since:  # type: ignore[operator]
                continue
            yield row

    def _entries(self, rows: Any) -> list[dict[str, Any]]:
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and {"at", "action", "uid", "page_context", "actor", "via"} <= r.keys() for r in rows
        ):
            raise self.client.not_contract_shape("GET history", "a list of audit entries")
        return rows

    def timeline_events(self, *, pages: list[str] | None, start: datetime, end: datetime, now: datetime) -> list[Event]:
        from eventctl.timeparse import as_utc

        if pages is None:
            events = list(self._list({"is_active": "true"}))
        else:
            events = [e for p in pages for e in self._page_events(p, active_only=True)]

        def shown(e: Event) -> bool:
            s, t = as_utc(e.start_date), as_utc(e.end_date)
            on_axis = (s is None or s < end) and (t is None or t > start)
            live_now = (s is None or s <= now) and (t is None or t > now)
            return bool(e.is_active) and (on_axis or live_now)

        kept = [e for e in events if shown(e)]
        kept.sort(key=lambda e: (e.page_context, as_utc(e.created_at), str(e.uid)))
        return kept

    # ------------------------------------------------------------ writing

    def _guard(self, *, page: str, start: Any, end: Any, exclude: object, now: datetime) -> None:
        """The overlap guard on the client (the platform has none): best-effort, see the module doc."""
        uids = _overlaps(
            self._page_events(page, active_only=True),
            page=page,
            start=start,
            end=end,
            is_default=False,
            exclude=exclude,
            now=now,
        )
        if uids:
            raise overlap_error(uids, page=page, is_default=False)

    def _params(self, allow_overlap: bool) -> dict[str, Any] | None:
        return {"allow_overlap": "true"} if allow_overlap and not self.platform else None

    def create(self, fields: dict[str, Any], *, filters: FilterEdit, actor: str, allow_overlap: bool) -> Event:
        from eventctl.shapes import EventCreate, validate_model
        from eventctl.timeparse import utcnow

        data = validate_model(
            EventCreate, {**fields, "filters": filters.merged(None, _category_uids(filters.categories))}
        )
        body = _body(data, only_set=False)
        if self.platform:
            if data.is_default:
                raise InvalidInput(PLATFORM_NO_DEFAULT)
            del body["is_default"]
            if data.is_active and not allow_overlap:
                self._guard(
                    page=data.page_context, start=data.start_date, end=data.end_date, exclude=None, now=utcnow()
                )
        made = self.client.json("POST", EVENTS_PATH, params=self._params(allow_overlap), body=body, what="POST")
        return event_from_json(made, what="POST /api/v1/events/")

    def update(
        self, ref: str, fields: dict[str, Any], *, filters: FilterEdit, actor: str, allow_overlap: bool
    ) -> Event:
        from eventctl.shapes import EventUpdate, validate_model
        from eventctl.timeparse import as_utc, utcnow

        event = self.get(ref)
        if filters.touches:
            existing = event.filters if filters.base is None else None
            fields = {**fields, "filters": filters.merged(existing, _category_uids(filters.categories))}
        changes = validate_model(EventUpdate, fields)
        if not changes.model_fields_set:
            raise InvalidInput("Nothing to update: give at least one field.")
        body = _body(changes, only_set=True)
        if self.platform:
            if "is_default" in body:
                if body.pop("is_default"):
                    raise InvalidInput(PLATFORM_NO_DEFAULT)
                if not body:
                    raise InvalidInput("Nothing to update: the platform has no is_default to clear.")
            start = changes.start_date if "start_date" in body else as_utc(event.start_date)
            end = changes.end_date if "end_date" in body else as_utc(event.end_date)
            if start is not None and end is not None and end <= start:
                raise InvalidInput("end_date must be after start_date.")
            active = body.get("is_active", event.is_active)
            moves = bool({"start_date", "end_date", "page_context"} & body.keys()) or (active and not event.is_active)
            if active and moves and not allow_overlap:
                page = body.get("page_context", event.page_context)
                self._guard(page=page, start=start, end=end, exclude=event.uid, now=utcnow())
        data = self.client.json(
            "PUT", f"{EVENTS_PATH}{event.uid}", params=self._params(allow_overlap), body=body, what="PUT"
        )
        return event_from_json(data, what="PUT /api/v1/events/{uid}")

    def _delete(self, uid: object) -> None:
        try:
            self.client.json("DELETE", f"{EVENTS_PATH}{uid}", what="DELETE")
        except NotFound:
            if self.client.last_attempts < 2:
                raise
            # a retried DELETE whose first attempt went through: the event is gone, as asked

    def delete(self, event: Event, *, actor: str) -> Event:
        self._delete(event.uid)
        if self.platform:
            event.is_active = False
            self.notes.append(
                f"Note: the platform deactivates rather than deletes: event {event.uid} stays, with is_active false."
            )
        return event

    # ------------------------------------------------------------ apply

    def apply(self, entries: list[Desired], *, prune: bool, dry_run: bool, actor: str, allow_overlap: bool) -> Plan:
        from eventctl.declarative import Change, Plan
        from eventctl.models import EVENT_FIELDS, event_fields
        from eventctl.timeparse import utcnow

        now = utcnow()
        if self.platform:
            for desired in entries:
                if desired.fields["is_default"]:
                    raise InvalidInput(f"Entry {desired.index}: {PLATFORM_NO_DEFAULT}")
        pages = sorted({d.fields["page_context"] for d in entries})
        by_page = {p: self._page_events(p) for p in pages}
        settable = [k for k in EVENT_FIELDS if k != "uid"]
        changes: list[Change] = []
        work: list[tuple[Change, Desired | None, Event | None]] = []
        claimed: dict[str, int] = {}  # each event is matched by at most one entry
        for desired in entries:
            event = self._match(desired, by_page)
            if event is not None:
                if str(event.uid) in claimed:
                    raise InvalidInput(
                        f"Entries {claimed[str(event.uid)]} and {desired.index} both match event {event.uid}; "
                        "give each entry its own uid or name."
                    )
                claimed[str(event.uid)] = desired.index
            name, page = desired.fields["name"], desired.fields["page_context"]
            if event is None:
                change = Change("create", str(desired.uid) if desired.uid else None, page, name)
                work.append((change, desired, None))
            else:
                current = event_fields(event)
                diff = {k: [current[k], desired.fields[k]] for k in settable if current[k] != desired.fields[k]}
                change = Change("update" if diff else "unchanged", str(event.uid), page, name, diff)
                if diff:
                    work.append((change, desired, event))
            changes.append(change)
        if prune:
            named = {c.uid for c in changes if c.uid}
            stale = [e for p in pages for e in by_page[p] if str(e.uid) not in named]
            if self.platform:  # its delete only deactivates: an inactive event is already "deleted"
                stale = [e for e in stale if e.is_active]
            for event in sorted(stale, key=lambda e: (e.created_at, str(e.uid))):
                change = Change("delete", str(event.uid), event.page_context, event.name)
                changes.append(change)
                work.append((change, None, event))
        if not allow_overlap:
            self._guard_final_state(work, by_page, now=now)
        if not dry_run:
            self._carry_out(work, allow_overlap=allow_overlap)
        return Plan(dry_run=dry_run, changes=changes)

    def _match(self, desired: Desired, by_page: dict[str, list[Event]]) -> Event | None:
        if desired.uid is not None:
            try:
                return self.get(str(desired.uid))
            except NotFound:
                pass  # made by an earlier run under a uid the server chose: matched by page and name below
        page, name = desired.fields["page_context"], desired.fields["name"]
        found = [e for e in by_page[page] if e.name == name]
        if len(found) > 1:
            found = [e for e in found if e.is_active] or found
        if len(found) > 1:
            raise InvalidInput(
                f"Entry {desired.index}: several events are named {name[:60]!r} on {page}; give the entry its uid."
            )
        return found[0] if found else None

    def _guard_final_state(
        self, work: list[tuple[Change, Desired | None, Event | None]], by_page: dict[str, list[Event]], *, now: datetime
    ) -> None:
        """The overlap guard on the state the whole file would leave (as local mode judges it)."""
        from types import SimpleNamespace

        final: dict[str, Any] = {str(e.uid): e for events in by_page.values() for e in events}
        touched: list[Any] = []
        for i, (change, desired, event) in enumerate(work):
            if change.action == "delete":
                final.pop(str(event.uid), None)  # type: ignore[union-attr]
                continue
            assert desired is not None
            data = desired.fields
            key = str(event.uid) if event is not None else f"new-{i}"
            state = SimpleNamespace(
                uid=event.uid if event is not None else "a new event",
                name=data["name"],
                page_context=data["page_context"],
                is_active=data["is_active"],
                is_default=data["is_default"],
                start_date=_when(data["start_date"]),
                end_date=_when(data["end_date"]),
            )
            final[key] = state
            touched.append((key, state))
        others = list(final.values())
        for key, state in touched:
            if not state.is_active:
                continue
            uids = _overlaps(
                [o for o in others if o is not state],
                page=state.page_context,
                start=state.start_date,
                end=state.end_date,
                is_default=bool(state.is_default),
                exclude=key,
                now=now,
            )
            if uids:
                err = overlap_error(uids, page=state.page_context, is_default=bool(state.is_default))
                raise OverlapConflict(f"{state.name[:60]!r}: {err.message}", uids)

    def _carry_out(self, work: list[tuple[Change, Desired | None, Event | None]], *, allow_overlap: bool) -> None:
        """One request per change: deletes first, then updates, then creates (so a window freed by the
        file is free before another takes it). A failure says what was applied and what was not."""
        order = {"delete": 0, "update": 1, "create": 2}
        todo = sorted(work, key=lambda w: order[w[0].action])
        done: list[Change] = []
        try:
            for change, desired, event in todo:
                if change.action == "delete":
                    assert event is not None
                    self._delete(event.uid)
                elif change.action == "update":
                    assert event is not None
                    body = {k: new for k, (_old, new) in change.fields.items()}
                    self.client.json(
                        "PUT", f"{EVENTS_PATH}{event.uid}", params=self._params(True), body=body, what="PUT"
                    )
                else:
                    assert desired is not None
                    body = dict(desired.fields)
                    if self.platform:
                        del body["is_default"]
                    made = self.client.json("POST", EVENTS_PATH, params=self._params(True), body=body, what="POST")
                    change.uid = str(event_from_json(made, what="POST /api/v1/events/").uid)
                done.append(change)
        except EventctlError:
            left = [w[0] for w in todo[len(done) :]]
            self.notes.append(
                f"Applied before the failure ({len(done)} of {len(todo)}): "
                + (", ".join(_said(c) for c in done) or "nothing")
                + "."
            )
            self.notes.append(
                f"Not applied: {', '.join(_said(c) for c in left)}. The file can be applied again: "
                "what was applied is then unchanged."
            )
            raise


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _said(change: Change) -> str:
    return f"{change.action} {for_terminal(change.name)!r} on {for_terminal(change.page_context)}" + (
        f" ({change.uid[:8]})" if change.uid else ""
    )
