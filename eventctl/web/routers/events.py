"""Admin CRUD and list of events (``/api/v1/events/``): bearer token required (``AdminAuth``).

Each route translates HTTP to the core (``eventctl.events``) and back; refusals are
domain errors, answered by the handlers in ``web/errors.py``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.convertors import Convertor, register_url_convertor

from eventctl import events as core
from eventctl.models import STATUS_CHOICES, event_to_json
from eventctl.routes import require_route
from eventctl.shapes import EventCreate, EventPublic, EventUpdate
from eventctl.timeparse import utcnow
from eventctl.web.current import EVENTS_PREFIX
from eventctl.web.deps import AdminActor, CurrentServiceDep, ReadSession, WriteSession
from eventctl.web.errors import located, responses

LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT = 200, 50  # as the platform's own list endpoint
UID_PATTERN = r"^[0-9a-fA-F-]{8,36}$"


class _UidConvertor(Convertor[str]):
    """``{uid:uid}`` routes only hex and dashes, so ``/current`` is never taken for a uid."""

    regex = "[0-9a-fA-F-]{1,36}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("uid", _UidConvertor())  # before the routes below compile their paths

router = APIRouter(prefix=EVENTS_PREFIX, tags=["admin"])
Uid = Annotated[
    str,
    Path(
        pattern=UID_PATTERN,
        description="The event's uid, or a unique prefix of it (at least 8 hex digits)",
        examples=["3f2b8c1e-9a4d-4b7e-8f00-1234567890ab", "3f2b8c1e"],
    ),
]
AllowOverlap = Annotated[bool, Query(description="Write even if the window overlaps another active event of the page")]


def _event(event: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(event_to_json(event, utcnow()), status)


def _commit(session: WriteSession, service: CurrentServiceDep) -> None:
    """Commit, then drop from the /current cache every page the core's writes touched (``pages_written``:
    before and after a move), so no route has to know which pages a write can reach."""
    pages, version = core.pages_written(session)
    session.commit()
    service.invalidate(pages, version=version)


@router.post("/", status_code=201, response_model=EventPublic, responses=responses(400, 401, 409, 413, 503))
def create_event(
    data: EventCreate,
    session: WriteSession,
    actor: AdminActor,
    service: CurrentServiceDep,
    allow_overlap: AllowOverlap = False,
) -> JSONResponse:
    event = core.create_event(session, data=data, actor=actor, via="http", allow_overlap=allow_overlap)
    _commit(session, service)
    return _event(event, 201)


@router.get("/", response_model=list[EventPublic], responses=responses(401, 503))
def list_events(
    session: ReadSession,
    _actor: AdminActor,
    page_context: Annotated[str | None, Query(max_length=1000, description="Only this page's events")] = None,
    status: Annotated[
        str, Query(description="Derived status at the time of the request", json_schema_extra={"enum": STATUS_CHOICES})
    ] = "all",
    is_active: Annotated[bool | None, Query(description="Only active (true) or inactive (false) events")] = None,
    skip: Annotated[int, Query(ge=0, le=core.MAX_ROWS, description="Events to skip (newest first)")] = 0,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX, description="Events to return")] = LIST_LIMIT_DEFAULT,
) -> JSONResponse:
    with located("query", "status"):
        status = core.check_status(status)
    if page_context is not None:
        with located("query", "page_context"):
            page_context = require_route(page_context)
    now = utcnow()
    rows = core.list_events(
        session, at=now, page=page_context, status=status, is_active=is_active, offset=skip, limit=limit
    )
    return JSONResponse([event_to_json(event, now) for event in rows])


class ServerInfo(BaseModel):
    """What kind of server this is: how ``eventctl --api`` tells an eventctl serve from the platform's API."""

    server: str
    version: str
    features: list[str]


@router.get("/server", response_model=ServerInfo, responses=responses(401))
def server_info(_actor: AdminActor) -> JSONResponse:
    """``{"server": "eventctl", …}``; the platform's events API has no such route (its ``/{event_id}`` refuses it)."""
    from eventctl import __version__

    features = ["history", "is_default", "overlap_guard", "uid_prefix", "status_filter"]
    return JSONResponse({"server": "eventctl", "version": __version__, "features": features})


class AuditEntryOut(BaseModel):
    """One audit entry (SPEC §8): ``before`` is null on create, ``after`` null on delete."""

    at: datetime
    actor: str
    via: str
    action: str
    uid: uuid.UUID
    page_context: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@router.get("/history", response_model=list[AuditEntryOut], responses=responses(401, 503))
def all_history(
    session: ReadSession,
    _actor: AdminActor,
    page_context: Annotated[str | None, Query(max_length=1000, description="Only this page's entries")] = None,
    since: Annotated[datetime | None, Query(description="Only entries at or after this time")] = None,
    skip: Annotated[int, Query(ge=0, le=core.MAX_ROWS, description="Entries to skip (newest first)")] = 0,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX, description="Entries to return")] = LIST_LIMIT_DEFAULT,
) -> JSONResponse:
    """The whole audit trail, newest first, a page at a time (what ``eventctl --api URL history`` reads)."""
    from eventctl import audit
    from eventctl.errors import InvalidInput
    from eventctl.timeparse import as_utc

    if since is not None and since.tzinfo is None:
        raise InvalidInput("since needs an offset (e.g. Z or +05:30).")
    query = audit.history_query(session, page=page_context, since=as_utc(since)).offset(skip).limit(limit)
    return JSONResponse([audit.entry_to_json(e) for e in session.exec(query)])


@router.get("/{uid:uid}/history", response_model=list[AuditEntryOut], responses=responses(401, 404, 503))
def event_history(uid: Uid, session: ReadSession, _actor: AdminActor) -> JSONResponse:
    """The event's audit trail, newest first (also for a deleted event)."""
    from eventctl import audit

    with located("path", "uid"):
        key = core.resolve_uid_with_history(session, ref=uid)
    return JSONResponse([audit.entry_to_json(e) for e in audit.iter_history(session, uid=key)])


@router.get("/{uid:uid}", response_model=EventPublic, responses=responses(401, 404, 503))
def get_event(uid: Uid, session: ReadSession, _actor: AdminActor) -> JSONResponse:
    with located("path", "uid"):
        return _event(core.get_event(session, ref=uid))


@router.put("/{uid:uid}", response_model=EventPublic, responses=responses(400, 401, 404, 409, 413, 503))
def update_event(
    uid: Uid,
    changes: EventUpdate,
    session: WriteSession,
    actor: AdminActor,
    service: CurrentServiceDep,
    allow_overlap: AllowOverlap = False,
) -> JSONResponse:
    with located("path", "uid"):
        core.uid_key(uid)  # a malformed uid is about the path, not the body
    event = core.update_event(session, ref=uid, changes=changes, actor=actor, via="http", allow_overlap=allow_overlap)
    _commit(session, service)
    return _event(event)


@router.delete("/{uid:uid}", status_code=204, responses=responses(401, 404, 503))
def delete_event(uid: Uid, session: WriteSession, actor: AdminActor, service: CurrentServiceDep) -> Response:
    with located("path", "uid"):  # the uid is all this request gives
        core.delete_event(session, ref=uid, actor=actor, via="http")
    _commit(session, service)
    return Response(status_code=204)
