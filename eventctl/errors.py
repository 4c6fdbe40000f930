"""Domain exceptions. Each knows its CLI exit code and HTTP status (SPEC §3, §4).

The edges (CLI, web app) convert these once; no edge invents its own mapping.
"""

from __future__ import annotations


class EventctlError(Exception):
    """Base class: a one-sentence message meant for the user."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(EventctlError):
    exit_code = 2
    http_status = 422


class MalformedRoute(InvalidInput):
    """A page route that cannot be normalized (HTTP 400 on /current, 422 in bodies)."""


class Conflict(EventctlError):
    exit_code = 3
    http_status = 409

    def __init__(self, message: str, uids: list[str]) -> None:
        super().__init__(message)
        self.uids = uids


class NotFound(EventctlError):
    exit_code = 4
    http_status = 404


class DatabaseUnavailable(EventctlError):
    exit_code = 5
    http_status = 503


class SchemaNotAtHead(DatabaseUnavailable):
    pass


class Unauthorized(EventctlError):
    exit_code = 2
    http_status = 401


def convert_db_error(exc: BaseException) -> EventctlError | None:
    """Map a driver/SQLAlchemy error to a domain error, or None if it is not one."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        orig = getattr(exc, "orig", None) or exc
        text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return DatabaseUnavailable(f"The database is unavailable ({text}).")
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailable("The database connection was lost.")
    return None
