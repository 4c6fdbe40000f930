"""Engine and sessions, and the column types that hide SQLite/PostgreSQL differences (aware UTC, JSONB)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlmodel import Session

from eventctl.errors import InvalidInput

CONNECT_TIMEOUT = 5
SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "eventctl_write"  # execution option: BEGIN IMMEDIATE on SQLite
NOWAIT_OPTION = "eventctl_nowait"  # execution option: on SQLite, fail at once rather than wait for a writer


class TZDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamp with time zone that refuses naive values and returns aware UTC.

    SQLite stores naive UTC text; PostgreSQL stores ``timestamptz``. Naive values
    found in the database (raw inserts) are taken as UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError("TZDateTime needs a datetime")
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: eventctl stores aware UTC values only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONDocument(sa.types.TypeDecorator[Any]):
    """JSON, stored as JSONB on PostgreSQL.

    A TypeDecorator rather than ``JSON().with_variant(JSONB)`` so that importing
    the models does not import the PostgreSQL dialect (keeps SQLite start-up fast).
    """

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.JSON())


def json_type() -> sa.types.TypeEngine[Any]:
    return JSONDocument()


def time_expr(column: Any, dialect_name: str) -> Any:
    """A comparable form of a stored timestamp.

    SQLite keeps timestamps as text. eventctl writes the fixed-width form
    ``YYYY-MM-DD HH:MM:SS.ffffff`` (naive UTC), which compares exactly as text;
    a value written by someone else ('T' separator, no fraction, an offset) is
    brought to that form through strftime(), which also applies any offset.
    """
    if dialect_name != "sqlite":
        return column
    text = sa.type_coerce(column, sa.String)
    canonical = sa.and_(sa.func.length(text) == 26, sa.func.substr(text, 11, 1) == " ")
    return sa.case((canonical, text), else_=sa.func.strftime("%Y-%m-%d %H:%M:%f", text).concat("000"))


def time_param(value: datetime, dialect_name: str) -> Any:
    if dialect_name == "sqlite":
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return sa.literal(naive.isoformat(sep=" ", timespec="microseconds"), sa.String)
    return sa.literal(value, TZDateTime())


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with a short connect timeout, UTC sessions and SQLite write locks."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001
        raise InvalidInput("The database URL could not be parsed.") from None
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        if parsed.get_driver_name() not in ("pysqlite", "sqlite"):
            raise InvalidInput(f"Unsupported SQLite driver {parsed.get_driver_name()[:40]!r}; use sqlite:///PATH.")
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_MS / 1000
    elif backend == "postgresql":
        if parsed.drivername not in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
            raise InvalidInput(
                f"Unsupported PostgreSQL driver {parsed.get_driver_name()[:40]!r}; use postgresql+psycopg://."
            )
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, whatever the URL's default
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
        # Pooler-safe (PgBouncer in transaction mode, managed poolers): no startup ``options`` (poolers
        # refuse them; times are aware values whatever the session's TimeZone, see TZDateTime) and no
        # server-side prepared statements (each transaction may run on another server connection).
        connect_args["prepare_threshold"] = None
        kwargs = {"pool_size": 5, "max_overflow": 5, **kwargs}
    else:
        raise InvalidInput(f"Unsupported database {backend!r}; use sqlite:/// or postgresql+psycopg://.")
    try:
        engine = sa.create_engine(
            parsed,
            connect_args=connect_args,
            json_serializer=lambda obj: json.dumps(obj, separators=(",", ":")),
            pool_pre_ping=backend == "postgresql",
            **kwargs,
        )
    except (ModuleNotFoundError, sa.exc.NoSuchModuleError) as exc:
        raise InvalidInput(f"The database driver is not installed ({str(exc)[:80]}).") from None
    if backend == "sqlite":
        _install_sqlite_hooks(engine)
    return engine


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None: not SQLite, or in memory)."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - make_engine says what is wrong with it
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def prepare_sqlite_file(url: str, *, create: bool, private: bool) -> None:
    """Make sure an SQLite file exists before use, or refuse without creating anything.

    ``create``: make the directory and an empty file (``private``: directory 0700, file
    0600, as for the embedded default). Otherwise a missing file is "no database here"
    (exit 5) and nothing is created — a mistyped path leaves no trace.
    """
    from eventctl.errors import SchemaNotAtHead

    path = sqlite_path(url)
    if path is None or path.exists():
        return
    if not create:
        raise SchemaNotAtHead(f"There is no database at {str(path)[:200]!r}; run 'eventctl db upgrade' to create it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o777)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600 if private else 0o666)
        os.close(fd)
    except OSError as exc:
        from eventctl.errors import DatabasePermissionDenied

        raise DatabasePermissionDenied(
            f"Cannot create the database file {str(path)[:200]!r}.", cause=exc.strerror
        ) from None


def _use_wal(cur: Any) -> None:
    """Write-ahead logging, so readers (``list``, ``/readyz``, uncached ``/current`` pages) never wait for a
    writer, however long its transaction (a large ``apply``). The mode is kept in the file: this switches
    a database once, without waiting (a database busy or read-only now is switched by a later process)."""
    import sqlite3

    if cur.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    cur.execute("PRAGMA busy_timeout = 0")  # the caller sets the real timeout afterwards
    try:
        cur.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError:
        pass


def _install_sqlite_hooks(engine: Engine) -> None:
    """Let SQLAlchemy own transactions so writers can BEGIN IMMEDIATE (take the lock first)."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys = ON")
        _use_wal(cur)
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        if options.get(NOWAIT_OPTION):
            conn.exec_driver_sql("PRAGMA busy_timeout = 0")  # set back when the connection returns to the pool
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")

    @sa.event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@contextmanager
def write_session(engine: Engine, *, wait: bool = True) -> Iterator[Session]:
    """A transaction that holds the database write lock on SQLite from its first statement.

    ``wait=False``: for a write that may be skipped (a token's last use), fail at once with
    OperationalError when another writer holds SQLite, instead of waiting the busy timeout.
    """
    with Session(engine, expire_on_commit=False) as session:
        session.connection(execution_options={WRITE_OPTION: True, NOWAIT_OPTION: not wait})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
