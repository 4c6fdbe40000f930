"""Dependencies: how a route reaches the app's state (engine, sessions, /current service, acting admin).

``create_app`` puts the state on ``app.state``; routes never close over it, they
declare what they need with the ``Annotated`` aliases below.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlmodel import Session

from eventctl.db import read_session, write_session
from eventctl.errors import Unauthorized
from eventctl.web.current import CurrentService

log = logging.getLogger("eventctl.web")


def get_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def get_current_service(request: Request) -> CurrentService:
    return request.app.state.current  # type: ignore[no-any-return]


EngineDep = Annotated[Engine, Depends(get_engine)]
CurrentServiceDep = Annotated[CurrentService, Depends(get_current_service)]


def get_read_session(engine: EngineDep) -> Iterator[Session]:
    """A read session. Ending it runs after the response may have gone out: a database lost
    meanwhile (a restart) is one warning line, not a traceback from the ASGI server."""
    with ExitStack() as stack:
        session = stack.enter_context(read_session(engine))
        try:
            yield session
        finally:
            try:
                stack.close()
            except sa_exc.DBAPIError as exc:
                log.warning("a read transaction could not be ended: %s", str(exc.orig).splitlines()[0][:300])


def get_write_session(engine: EngineDep) -> Iterator[Session]:
    """A write transaction (on SQLite it holds the write lock from the start)."""
    with write_session(engine) as session:
        yield session


ReadSession = Annotated[Session, Depends(get_read_session)]
WriteSession = Annotated[Session, Depends(get_write_session)]

# Declared for the OpenAPI document (the lock icon); the token is checked by AdminAuth.
_bearer = HTTPBearer(auto_error=False, description="A token made by `eventctl token create NAME`.")


def require_admin(request: Request, _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The token's name, verified by AdminAuth before FastAPI even reads the body."""
    actor = getattr(request.state, "actor", None)
    if not actor:
        raise Unauthorized("Missing bearer token.")
    return str(actor)


AdminActor = Annotated[str, Depends(require_admin)]
