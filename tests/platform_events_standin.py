"""A stand-in of the corpus platform's own events API (``/api/v1/events``), served as a real server.

It follows the platform's endpoint code as the remote-mode issue describes it, and nothing more:

- admin-only CRUD with a bearer token: no or unknown token → 401 ``{"detail": "Not authenticated"}``,
  a signed-in non-admin → 403 ``{"detail": "Not enough permissions"}``;
- ``POST /`` → 201 the event, ``created_by`` the caller's user id; the event has the 12 fields of
  SPEC §1 — no ``is_default``, no ``status``; ``limit`` 1–100, default 20;
- ``GET /`` with ``page_context``, ``is_active``, ``skip`` (≥ 0), ``limit`` (1–200, default 50),
  ordered by ``created_at`` descending;
- ``GET /{event_id}`` (a UUID: anything else is 422) → 404 ``{"detail": "Event not found"}``;
- ``PUT /{event_id}`` changes only the fields sent and sets ``updated_at``;
- ``DELETE /{event_id}`` is a soft delete (``is_active`` false), 204;
- ``GET /current`` needs any signed-in role, reads ``X-Page-Route``: no header → ``null``; more than
  one match → 409 ``{"detail": "Multiple active events found for this page context"}``; the end
  instant counts as live (``start <= now <= end``);
- no history, no overlap guard, no page default.

``Knobs`` lets a test break it the ways a network breaks: every request answers 5xx or a proxy's
HTML page, writes fail after N, a request hangs until released.
"""

# no `from __future__ import annotations`: FastAPI reads the closures' dependency annotations at definition

import itertools
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

PREFIX = "/api/v1/events"


class EventIn(BaseModel):
    name: str
    description: str | None = None
    page_context: str
    filters: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(default=20, ge=1, le=100)
    is_active: bool = True
    start_date: datetime | None = None
    end_date: datetime | None = None


class EventChange(BaseModel):
    name: str | None = None
    description: str | None = None
    page_context: str | None = None
    filters: dict[str, Any] | None = None
    limit: int | None = Field(default=None, ge=1, le=100)
    is_active: bool | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None


@dataclass
class Knobs:
    status: int | None = None  # every request answers this (5xx: an HTML body, as a broken proxy)
    detail: str = "boom"
    html: bool = False  # every request answers a proxy's HTML page, 200
    writes_before_failure: int | None = None  # after this many writes, writes answer 502
    hold: threading.Event | None = None  # GET requests wait for this (a server that does not answer)
    fail: dict[str, int] = field(default_factory=dict)  # method → the status (HTML body) it answers
    list_answer: Any = None  # GET /api/v1/events/ answers this JSON instead (a wrong shape)
    requests: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class PlatformEvents:
    admins: dict[str, str] = field(default_factory=lambda: {"platform-admin-token": str(uuid.uuid4())})
    users: dict[str, str] = field(default_factory=lambda: {"reviewer-token": str(uuid.uuid4())})
    events: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    knobs: Knobs = field(default_factory=Knobs)
    writes: int = 0
    _seq: Any = field(default_factory=itertools.count)

    def add(self, **fields: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        row = {
            "uid": uuid.uuid4(),
            "description": None,
            "filters": {},
            "limit": 20,
            "is_active": True,
            "start_date": None,
            "end_date": None,
            "created_by": next(iter(self.admins.values())),
            "created_at": now,
            "updated_at": now,
            **fields,
            "_seq": next(self._seq),
        }
        self.events[row["uid"]] = row
        return row


def public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if not k.startswith("_")}
    for k, v in out.items():
        if isinstance(v, datetime):
            out[k] = v.isoformat()
        elif isinstance(v, uuid.UUID):
            out[k] = str(v)
    return out


def create_app(state: PlatformEvents) -> FastAPI:
    app = FastAPI()
    bearer = HTTPBearer(auto_error=False)

    @app.middleware("http")
    async def knobs(request: Request, call_next: Any) -> Any:
        k = state.knobs
        k.requests.append((request.method, request.url.path))
        if k.html:
            return HTMLResponse("<html><body><h1>Sign in</h1></body></html>")
        if k.status is not None:
            return HTMLResponse(f"<html><body>{k.detail}</body></html>", status_code=k.status)
        if request.method in k.fail:
            return HTMLResponse("<html><body>Service Unavailable</body></html>", status_code=k.fail[request.method])
        if k.list_answer is not None and request.method == "GET" and request.url.path == PREFIX + "/":
            return JSONResponse(k.list_answer)
        if request.method in ("POST", "PUT", "DELETE") and k.writes_before_failure is not None:
            if state.writes >= k.writes_before_failure:
                return HTMLResponse("<html><body>502 Bad Gateway</body></html>", status_code=502)
        if request.method == "GET" and k.hold is not None:
            import anyio

            await anyio.to_thread.run_sync(k.hold.wait, 30)
        return await call_next(request)

    def user(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> tuple[str, bool]:
        token = creds.credentials if creds else None
        if token in state.admins:
            return state.admins[token], True
        if token in state.users:
            return state.users[token], False
        raise HTTPException(401, "Not authenticated")

    def admin(who: Annotated[tuple[str, bool], Depends(user)]) -> str:
        if not who[1]:
            raise HTTPException(403, "Not enough permissions")
        return who[0]

    def find(event_id: uuid.UUID) -> dict[str, Any]:
        row = state.events.get(event_id)
        if row is None:
            raise HTTPException(404, "Event not found")
        return row

    @app.get(f"{PREFIX}/current")
    def current(
        _who: Annotated[tuple[str, bool], Depends(user)],
        x_page_route: Annotated[str | None, Header()] = None,
    ) -> Any:
        if not x_page_route:
            return None
        now = datetime.now(UTC)
        live = [
            r
            for r in state.events.values()
            if r["is_active"]
            and r["page_context"] == x_page_route
            and (r["start_date"] is None or r["start_date"] <= now)
            and (r["end_date"] is None or now <= r["end_date"])  # the platform counts the end instant as live
        ]
        if len(live) > 1:
            raise HTTPException(409, "Multiple active events found for this page context")
        return public(live[0]) if live else None

    @app.post(f"{PREFIX}/", status_code=201)
    def create(body: EventIn, who: Annotated[str, Depends(admin)]) -> Any:
        state.writes += 1
        return public(state.add(**body.model_dump(), created_by=who))

    @app.get(f"{PREFIX}/")
    def list_events(
        _who: Annotated[str, Depends(admin)],
        page_context: str | None = None,
        is_active: bool | None = None,
        skip: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Any:
        rows = [
            r
            for r in state.events.values()
            if (page_context is None or r["page_context"] == page_context)
            and (is_active is None or r["is_active"] == is_active)
        ]
        rows.sort(key=lambda r: (r["created_at"], r["_seq"]), reverse=True)
        return [public(r) for r in rows[skip : skip + limit]]

    @app.get(PREFIX + "/{event_id}")
    def get_event(event_id: uuid.UUID, _who: Annotated[str, Depends(admin)]) -> Any:
        return public(find(event_id))

    @app.put(PREFIX + "/{event_id}")
    def update(event_id: uuid.UUID, body: EventChange, _who: Annotated[str, Depends(admin)]) -> Any:
        row = find(event_id)
        state.writes += 1
        row.update(body.model_dump(exclude_unset=True))
        row["updated_at"] = datetime.now(UTC)
        return public(row)

    @app.delete(PREFIX + "/{event_id}", status_code=204)
    def delete(event_id: uuid.UUID, _who: Annotated[str, Depends(admin)]) -> Response:
        row = find(event_id)
        state.writes += 1
        row["is_active"] = False
        row["updated_at"] = datetime.now(UTC)
        return Response(status_code=204)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    return app


class ServedApp:
    """An ASGI app served by uvicorn on a free loopback port, in a thread (a real HTTP server)."""

    def __init__(self, app: Any, **config: Any) -> None:
        import uvicorn

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        scheme = "https" if "ssl_certfile" in config else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> "ServedApp":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:  # uvicorn's own marker: listening and lifespan done
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
