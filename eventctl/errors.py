"""Domain exceptions: the one table from a refusal to its CLI exit code and HTTP status.

Each class below is a row of that table (SPEC §3 exit codes, §4 statuses); the
edges (CLI, web app) convert an exception once, through ``exit_code`` and
``http_status``, and never invent their own mapping. ``convert_db_error`` is the
one place that turns a database error into one of these.
"""

from __future__ import annotations

from typing import Any


class EventctlError(Exception):
    """Base class: a one-sentence message meant for the user."""

    exit_code = 1
    http_status = 500
    # how to get past this refusal, said in each edge's own terms
    cli_hint = ""
    http_hint = ""

    def __init__(self, message: str, *, cause: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # for operators only (CLI stderr, server log): never sent to an HTTP client
        self.cause = cause

    def cli_message(self) -> str:
        """The sentence the CLI prints (the cause in brackets, for the operator)."""
        text = self.message
        if self.cause:
            text = f"{text.rstrip('.')} ({self.cause})."
        return f"{text} {self.cli_hint}".strip()

    def http_detail(self) -> str:
        return f"{self.message} {self.http_hint}".strip()

    def http_body(self) -> dict[str, Any]:
        return {"detail": self.http_detail()}


class InvalidInput(EventctlError):
    """Invalid input or usage: exit 2, HTTP 422.

    ``loc``: where an HTTP request held the value, as FastAPI says it (``("query", "status")``,
    ``("path", "uid")``); the body unless the web edge says otherwise (``web.errors.located``).
    """

    exit_code = 2
    http_status = 422
    loc: tuple[str, ...] = ("body",)

    def http_body(self) -> dict[str, Any]:
        # FastAPI's own validation-error shape, so every 422 reads alike
        return {"detail": [{"loc": list(self.loc), "msg": self.http_detail(), "type": "value_error"}]}


class MalformedRoute(InvalidInput):
    """A page key that cannot be normalized (in a body or a query: 422)."""


class MalformedPageHeader(MalformedRoute):
    """A malformed ``X-Page-Route`` header on ``/current``: 400."""

    http_status = 400

    def http_body(self) -> dict[str, Any]:
        return {"detail": self.http_detail()}


class Unauthorized(EventctlError):
    exit_code = 2
    http_status = 401


class Conflict(EventctlError):
    """Several live events, or the overlap guard: exit 3, HTTP 409 naming the uids."""

    exit_code = 3
    http_status = 409

    def __init__(self, message: str, uids: list[str], *, cause: str | None = None) -> None:
        super().__init__(message, cause=cause)
        self.uids = uids

    def http_body(self) -> dict[str, Any]:
        return {"detail": self.http_detail(), "conflicting_uids": self.uids}


class OverlapConflict(Conflict):
    """The overlap guard refused a write."""

    cli_hint = "Pass --allow-overlap to allow it."
    http_hint = "Pass ?allow_overlap=true to allow it."


class NotFound(EventctlError):
    exit_code = 4
    http_status = 404


class DatabaseUnavailable(EventctlError):
    """Unreachable, not migrated, or not ours to use: exit 5, HTTP 503 with no details."""

    exit_code = 5
    http_status = 503

    def http_body(self) -> dict[str, Any]:
        return {"detail": "The database is unavailable."}


class ServerUnavailable(DatabaseUnavailable):
    """Remote mode: the server is unreachable, timed out or failed (5xx): exit 5, as a database outage."""


class TokenRefused(EventctlError):
    """Remote mode: the server answered 401/403 to the API token: exit 6 (README "Exit codes")."""

    exit_code = 6
    http_status = 401


class NotContract(EventctlError):
    """Remote mode: the server answered something that is not the events API (HTML from a proxy, a wrong shape)."""

    exit_code = 1
    http_status = 502


class SchemaNotAtHead(DatabaseUnavailable):
    pass


class DatabasePermissionDenied(DatabaseUnavailable):
    pass


class SchemaClash(DatabaseUnavailable):
    """Another application already owns a table eventctl needs."""


def error_table() -> dict[type[EventctlError], tuple[int, int]]:
    """Every domain exception → (exit code, HTTP status); tests walk it."""
    seen: dict[type[EventctlError], tuple[int, int]] = {}
    todo: list[type[EventctlError]] = [EventctlError]
    while todo:
        cls = todo.pop()
        seen[cls] = (cls.exit_code, cls.http_status)
        todo.extend(cls.__subclasses__())
    return seen


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def convert_db_error(exc: BaseException) -> EventctlError:
    """The domain error for a driver/SQLAlchemy error: unavailable, not migrated, denied, clash, …"""
    from sqlalchemy import exc as sa_exc

    orig = getattr(exc, "orig", None) or exc
    cause = _first_line(orig)
    sqlstate = getattr(orig, "sqlstate", None) or ""
    text = cause.lower()
    if sqlstate == "42501" or "readonly database" in text or "permission denied" in text:
        return DatabasePermissionDenied(
            "Permission denied: the database user may not use eventctl's tables.", cause=cause
        )
    if sqlstate == "42P07" or ("already exists" in text and "table" in text):
        return SchemaClash(
            "A table eventctl needs already exists and was not made by eventctl; use another database or schema.",
            cause=cause,
        )
    if sqlstate == "42P01" or "no such table" in text or "no such column" in text or sqlstate == "42703":
        return SchemaNotAtHead("The database schema is not at head; run 'eventctl db upgrade'.", cause=cause)
    if sqlstate.startswith("53") or "out of shared memory" in text:  # insufficient_resources: a server limit
        limit = " (lock slots: its max_locks_per_transaction setting)" if "shared memory" in text else ""
        return DatabaseUnavailable(
            f"The database server ran out of a resource{limit}: {cause[:120]}; nothing was written.", cause=cause
        )
    if isinstance(exc, sa_exc.IntegrityError):
        return Conflict("A concurrent change got there first; nothing was written.", [], cause=cause)
    if isinstance(exc, sa_exc.DataError):
        return InvalidInput("The database refused a value as out of range or malformed.", cause=cause)
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    ):
        return DatabaseUnavailable("The database is unavailable.", cause=cause)
    return EventctlError("The database failed unexpectedly.", cause=cause)
