"""The optional ASGI app (SPEC §4): ``create_app(settings)``; served by ``eventctl serve``.

Routes translate HTTP to the core (``eventctl.events``) and back; they hold no
logic of their own. Domain errors map to statuses through ``errors.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlmodel import Session
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match

from eventctl import __version__
from eventctl.config import Settings, load_settings
from eventctl.db import make_engine, read_session, write_session
from eventctl.errors import EventctlError, Unauthorized
from eventctl.models import event_to_json
from eventctl.routes import MAX_ROUTE_LENGTH, ROUTE_PATTERN
from eventctl.shapes import EventCreate, EventPublic, EventUpdate
from eventctl.timeparse import utcnow
from eventctl.web.current import CURRENT_PATH, CurrentFastPath, CurrentService

log = logging.getLogger("eventctl.web")
API = "/api/v1/events"
StatusQ = Literal["live", "scheduled", "expired", "inactive", "all"]
_bearer = HTTPBearer(auto_error=False, description="A token made by `eventctl token create NAME`.")


def get_session(request: Request) -> Iterator[Session]:
    with write_session(request.app.state.engine) as session:
        yield session


def get_read_session(request: Request) -> Iterator[Session]:
    with read_session(request.app.state.engine) as session:
        yield session


Db = Annotated[Session, Depends(get_session)]  # writes: takes SQLite's write lock first
ReadDb = Annotated[Session, Depends(get_read_session)]


def require_admin(request: Request, _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The token's name, verified by AdminAuth before FastAPI even reads the body."""
    actor = getattr(request.state, "actor", None)
    if not actor:
        raise Unauthorized("Missing bearer token.")
    return str(actor)


Admin = Annotated[str, Depends(require_admin)]
ADMIN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})


class AdminAuth:
    """ASGI middleware: authenticate admin routes first (401 before any 422 about the body)."""

    def __init__(self, app: Any, engine: Any) -> None:
        self.app = app
        self.engine = engine

    def _verify(self, header: str | None) -> str:
        from eventctl.tokens import parse_bearer, verify_token

        token = parse_bearer(header)
        with write_session(self.engine) as session:
            return verify_token(session, token=token, now=utcnow())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] == "http"
            and path.startswith(f"{API}/")
            and path != CURRENT_PATH
            and scope["method"] in ADMIN_METHODS
        ):
            from anyio import to_thread

            from eventctl.errors import convert_db_error

            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
            try:
                actor = await to_thread.run_sync(self._verify, header)
            except EventctlError as exc:
                await _error_response(exc)(scope, receive, send)
                return
            except sa_exc.SQLAlchemyError as exc:
                await _error_response(convert_db_error(exc))(scope, receive, send)
                return
            scope.setdefault("state", {})["actor"] = actor
        await self.app(scope, receive, send)


class ErrorOut(BaseModel):
    detail: str


class ConflictOut(BaseModel):
    detail: str
    conflicting_uids: list[str]


class HealthOut(BaseModel):
    status: str


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described: dict[int, dict[str, Any]] = {
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        400: {"model": ErrorOut, "description": "Malformed request: X-Page-Route, or a body that is not JSON"},
        401: {"model": ErrorOut, "description": "Missing, malformed, unknown or revoked bearer token"},
        404: {"model": ErrorOut, "description": "No such event"},
        409: {"model": ConflictOut, "description": "Several live events, or the overlap guard"},
        503: {"model": ErrorOut, "description": "Database unavailable or schema not at head"},
    }
    return {code: described[code] for code in codes}


def _error_response(exc: EventctlError) -> JSONResponse:
    headers = {}
    if exc.cause:
        log.warning("%s: %s", type(exc).__name__, exc.cause)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if exc.http_status == 503:
        headers["Retry-After"] = "1"
    return JSONResponse(exc.http_body(), exc.http_status, headers=headers)


class _UidConvertor(Convertor[str]):
    """``{uid:uid}``: a uid or a prefix of it (hex and dashes), so /current is never a uid."""

    regex = "[0-9a-fA-F-]{1,36}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


def create_app(settings: Settings | None = None) -> Any:
    """Build the ASGI app. Nothing connects to the database until a request or the poller does."""
    settings = settings or load_settings()
    register_url_convertor("uid", _UidConvertor())
    engine = make_engine(settings.resolved_database_url())
    service = CurrentService(
        engine, cache_ttl=settings.cache_ttl, stale_grace=settings.stale_grace, poll_interval=settings.poll_interval
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        await service.stop()
        engine.dispose()

    api = FastAPI(
        title="eventctl",
        version=__version__,
        summary="Page-scoped, time-bound review campaigns.",
        lifespan=lifespan,
    )
    api.state.settings = settings
    api.state.engine = engine
    api.state.current = service

    @api.exception_handler(EventctlError)
    async def _domain_error(_request: Request, exc: EventctlError) -> JSONResponse:
        return _error_response(exc)

    @api.exception_handler(sa_exc.OperationalError)
    @api.exception_handler(sa_exc.InterfaceError)
    @api.exception_handler(sa_exc.ProgrammingError)
    async def _db_error(_request: Request, exc: Exception) -> JSONResponse:
        from eventctl.errors import convert_db_error

        return _error_response(convert_db_error(exc))

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code != 405:
            return await http_exception_handler(request, exc)
        # Starlette names only the first matching route's methods; list every one for this path.
        methods: set[str] = set()
        for route in api.router.routes:
            match, _ = route.matches({**request.scope, "method": "GET"})
            route_methods = getattr(route, "methods", None)
            if match != Match.NONE and route_methods:
                methods |= set(route_methods)
        allow = ", ".join(sorted(methods - {"HEAD"} or methods))
        return JSONResponse({"detail": exc.detail}, 405, headers={"Allow": allow})

    def _event(event: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(event_to_json(event, utcnow()), status)

    # ---------------------------------------------------------------- frontend

    @api.get(
        CURRENT_PATH,
        response_model=EventPublic | None,
        responses=_responses(304, 400, 409, 503),
        summary="The event live for the page named by X-Page-Route (null if none)",
        tags=["frontend"],
    )
    async def current(
        # optional headers, documented as strings (not nullable: a header is absent, never null)
        x_page_route: Annotated[
            str,
            Header(
                description="The page route, e.g. /review/audio", pattern=ROUTE_PATTERN, max_length=MAX_ROUTE_LENGTH
            ),
        ] = None,  # type: ignore[assignment]
        if_none_match: Annotated[str, Header(description="ETags from an earlier answer")] = None,  # type: ignore[assignment]
    ) -> Response:
        # Served by CurrentFastPath before routing; this route documents it and answers
        # with the same service if the app is mounted without the fast path.
        route = x_page_route.encode("latin-1") if x_page_route is not None else None
        inm = if_none_match.encode("latin-1") if if_none_match is not None else None
        status, headers, body = await service.respond(route, inm)
        return Response(body, status, headers={k.decode(): v.decode() for k, v in headers})

    @api.get("/healthz", response_model=HealthOut, tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", response_model=HealthOut, responses=_responses(503), tags=["ops"])
    def readyz() -> JSONResponse:
        from eventctl.migrate import ensure_schema

        ensure_schema(engine, auto_upgrade=False)
        return JSONResponse({"status": "ok"})

    # ---------------------------------------------------------------- admin

    @api.post(
        f"{API}/", status_code=201, response_model=EventPublic, responses=_responses(400, 401, 409, 503), tags=["admin"]
    )
    def create_event(data: EventCreate, session: Db, actor: Admin, allow_overlap: bool = False) -> JSONResponse:
        from eventctl import events as core

        event = core.create_event(session, data=data, actor=actor, allow_overlap=allow_overlap)
        session.commit()
        service.invalidate()
        return _event(event, 201)

    @api.get(f"{API}/", response_model=list[EventPublic], responses=_responses(401, 503), tags=["admin"])
    def list_events(
        session: ReadDb,
        _actor: Admin,
        page_context: Annotated[str | None, Query(max_length=1000)] = None,
        status: StatusQ = "all",
    ) -> JSONResponse:
        from eventctl import events as core

        now = utcnow()
        events = core.list_events(session, page=page_context, status=status, at=now)  # TODO skip/limit
        return JSONResponse([event_to_json(e, now) for e in events])

    @api.get(f"{API}/{{uid:uid}}", response_model=EventPublic, responses=_responses(401, 404, 503), tags=["admin"])
    def get_event(uid: str, session: ReadDb, _actor: Admin) -> JSONResponse:
        from eventctl import events as core

        return _event(core.get_event(session, ref=uid))

    @api.put(
        f"{API}/{{uid:uid}}", response_model=EventPublic, responses=_responses(400, 401, 404, 409, 503), tags=["admin"]
    )
    def update_event(
        uid: str, changes: EventUpdate, session: Db, _actor: Admin, allow_overlap: bool = False
    ) -> JSONResponse:
        from eventctl import events as core

        event = core.update_event(session, ref=uid, changes=changes, allow_overlap=allow_overlap)
        session.commit()
        service.invalidate()
        return _event(event)

    @api.delete(f"{API}/{{uid:uid}}", status_code=204, responses=_responses(401, 404, 503), tags=["admin"])
    def delete_event(uid: str, session: Db, _actor: Admin) -> Response:
        from eventctl import events as core

        core.delete_event(session, ref=uid)
        session.commit()
        service.invalidate()
        return Response(status_code=204)

    app: Any = CurrentFastPath(AdminAuth(api, engine), service)
    app = CORSMiddleware(
        app,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["X-Page-Route", "If-None-Match", "Authorization", "Content-Type"],
        expose_headers=["ETag", "X-Eventctl-Stale"],
        allow_credentials=False,
        max_age=600,
    )
    app.fastapi = api  # for tests and tooling (openapi, state)
    return app


def app_from_env() -> Any:
    """uvicorn factory: settings resolved now, in each worker (``eventctl serve``)."""
    import os

    from eventctl.config import SERVE_SETTINGS_VAR

    handed = os.environ.get(SERVE_SETTINGS_VAR)
    return create_app(Settings.from_json(handed) if handed else load_settings())
