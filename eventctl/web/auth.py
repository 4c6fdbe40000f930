"""Admin authentication, before routing: a bad token is 401 before any 422 about the body.

``AdminAuth`` verifies ``Authorization: Bearer <token>`` for every admin route (and
``/metrics`` unless ``EVENTCTL_METRICS_PUBLIC`` is set) and
puts the token's name in the request state, where ``deps.require_admin`` reads it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

from eventctl.db import read_session, write_session
from eventctl.errors import EventctlError, convert_db_error
from eventctl.timeparse import utcnow
from eventctl.web.current import CURRENT_PATH, EVENTS_PREFIX
from eventctl.web.errors import ErrorResponse

log = logging.getLogger("eventctl.web")
ADMIN_PREFIX = f"{EVENTS_PREFIX}/"
METRICS_PATH = "/metrics"
ADMIN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})


def _touch(engine: Engine, name: str, now: datetime) -> None:
    """Record the token's use (to the minute); skipped, not waited for, while another writer holds the database."""
    from eventctl.tokens import touch_token

    try:
        with write_session(engine, wait=False) as session:
            touch_token(session, name=name, now=now)
    except SQLAlchemyError as exc:
        log.info("Token use not recorded this time (%s).", convert_db_error(exc).message)


class AdminAuth:
    """ASGI middleware: authenticate admin routes first (401 before any 422 about the body)."""

    def __init__(self, app: ASGIApp, engine: Engine, *, metrics_public: bool = False) -> None:
        self.app = app
        self.engine = engine
        self.metrics_public = metrics_public

    def _is_admin(self, scope: Scope) -> bool:
        path = scope["path"]
        if path == METRICS_PATH:
            return not self.metrics_public and scope["method"] in ("GET", "HEAD")
        return path.startswith(ADMIN_PREFIX) and path != CURRENT_PATH and scope["method"] in ADMIN_METHODS

    def _verify(self, header: str | None) -> str:
        from eventctl.tokens import parse_bearer, verify_token

        token = parse_bearer(header)
        now = utcnow()
        with read_session(self.engine) as session:  # a read: a writer holding the database does not block it
            name, stale = verify_token(session, token=token, now=now)
        if stale:
            _touch(self.engine, name, now)
        return name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._is_admin(scope):
            from anyio import to_thread

            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
            try:
                actor = await to_thread.run_sync(self._verify, header)
            except (EventctlError, SQLAlchemyError) as exc:
                error = exc if isinstance(exc, EventctlError) else convert_db_error(exc)
                await ErrorResponse(error)(scope, receive, send)
                return
            scope.setdefault("state", {})["actor"] = actor
        await self.app(scope, receive, send)
