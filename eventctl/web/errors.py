"""The one place where an error becomes an HTTP answer.

Domain errors answer with their own ``http_status`` and ``http_body()`` (the table in
``eventctl.errors``); database errors go through ``convert_db_error`` first. The
cause of an error (host, user, driver message) goes to the server log only.
``render_error`` is shared by the exception handlers, the admin-auth middleware and
the /current fast path, so every edge of the app answers an error the same way.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from eventctl.errors import DatabaseUnavailable, EventctlError, InvalidInput, Unauthorized, convert_db_error

log = logging.getLogger("eventctl.web")
RawHeaders = list[tuple[bytes, bytes]]
JSON_TYPE = (b"content-type", b"application/json")
MAX_ECHO = 80  # characters of the input a 422 may quote back


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as Starlette's JSONResponse writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def render_error(exc: EventctlError) -> tuple[int, RawHeaders, bytes]:
    """Status, extra headers and JSON body of a domain error; its cause is logged, never sent."""
    if exc.cause:
        log.warning("%s: %s", type(exc).__name__, exc.cause)
    headers: RawHeaders = []
    if isinstance(exc, Unauthorized):
        headers.append((b"www-authenticate", b"Bearer"))
    if isinstance(exc, DatabaseUnavailable):
        headers.append((b"retry-after", b"1"))
    return exc.http_status, headers, dumps(exc.http_body())


class ErrorResponse(Response):
    media_type = "application/json"

    def __init__(self, exc: EventctlError) -> None:
        status, headers, body = render_error(exc)
        super().__init__(body, status)
        self.raw_headers.extend(headers)


@contextmanager
def located(*loc: str) -> Iterator[None]:
    """An InvalidInput raised inside is about this request value (``"query", "status"``), not the body."""
    try:
        yield
    except InvalidInput as exc:
        exc.loc = loc
        raise


# ---------------------------------------------------------------- handlers


async def _domain_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EventctlError)
    return ErrorResponse(exc)


async def _database_error(_request: Request, exc: Exception) -> Response:
    return ErrorResponse(convert_db_error(exc))


async def _validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own 422, quoting no more than a short excerpt of the input."""
    assert isinstance(exc, RequestValidationError)
    trimmed = [_trim(error) if isinstance(error, dict) else error for error in exc.errors()]
    return await request_validation_exception_handler(request, RequestValidationError(trimmed))


def _trim(error: dict[str, Any]) -> dict[str, Any]:
    error = {**error, "loc": [_excerpt(part) for part in error.get("loc", ())]}
    if "input" in error:
        error["input"] = _excerpt(error["input"])
    return _json_safe(error)


def _excerpt(value: Any) -> Any:
    text = value if isinstance(value, str) else repr(value)
    return value if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "…"


def _json_safe(value: Any) -> Any:
    """What a 422 may echo, made encodable: lone surrogates escaped, NaN/∞ and objects as short text."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_json_safe(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return _json_safe(_excerpt(repr(value)))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's errors as FastAPI answers them; a 405 names every method of the path."""
    assert isinstance(exc, StarletteHTTPException)
    response = await http_exception_handler(request, exc)
    if exc.status_code == 405:
        routes = request.app.router.routes
        allowed = [m for m in _METHODS if any(_matches(route, request.scope, m) for route in routes)]
        response.headers["Allow"] = ", ".join(allowed)
    return response


def _matches(route: Any, scope: Any, method: str) -> bool:
    return bool(route.matches({**scope, "method": method})[0] == Match.FULL)


def install_error_handlers(api: FastAPI) -> None:
    api.add_exception_handler(EventctlError, _domain_error)
    api.add_exception_handler(SQLAlchemyError, _database_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)


# ---------------------------------------------------------------- OpenAPI


class ErrorOut(BaseModel):
    detail: str


class ConflictOut(BaseModel):
    detail: str
    conflicting_uids: list[str]


_DESCRIBED: dict[int, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    400: {"model": ErrorOut, "description": "Malformed request: X-Page-Route, or a body that is not JSON"},
    401: {"model": ErrorOut, "description": "Missing, malformed, unknown or revoked bearer token"},
    404: {"model": ErrorOut, "description": "No such event"},
    409: {"model": ConflictOut, "description": "Several live events, or the overlap guard"},
    413: {"model": ErrorOut, "description": "Request body over 1 MiB"},
    503: {"model": ErrorOut, "description": "Database unavailable or schema not at head"},
}


def responses(*codes: int, bodies: bool = True) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of an operation (``bodies=False``: headers only, for HEAD)."""
    if not bodies:
        return {code: {"description": _DESCRIBED[code]["description"]} for code in codes}
    return {code: _DESCRIBED[code] for code in codes}
