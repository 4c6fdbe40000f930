"""The schema: its revision, the "at head?" check, and Alembic driven from eventctl.

eventctl keeps its own version table, so it can share a database with another
Alembic-managed application. Alembic itself is imported only by ``db`` commands
and upgrades; checking the revision is one query.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from eventctl.errors import EventctlError, InvalidInput, SchemaNotAtHead

VERSION_TABLE = "eventctl_alembic_version"
# The newest migration. tests/test_migrations.py checks it equals Alembic's head,
# so commands can check the schema with one query and without importing Alembic.
SCHEMA_HEAD = "0007_drop_page_context_index"
_MIGRATION_LOCK = 0x45564E544D4947  # "EVNTMIG": serializes concurrent `db upgrade`s on PostgreSQL


def current_revision(engine: Engine) -> str | None:
    """The eventctl schema revision, or None when eventctl was never installed there."""
    from eventctl.errors import convert_db_error

    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(VERSION_TABLE):
                return None
            return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise convert_db_error(exc) from None


def ensure_schema(engine: Engine, *, auto_upgrade: bool) -> list[str]:
    """Stop (exit 5) unless the schema is at head; the embedded default upgrades itself.

    Returns what an automatic upgrade's migrations reported (for the edge to show).
    """
    revision = current_revision(engine)
    if revision == SCHEMA_HEAD:
        return []
    if auto_upgrade:
        return upgrade(engine, "head")
    where = "not initialised" if revision is None else f"at revision {revision}, not {SCHEMA_HEAD}"
    raise SchemaNotAtHead(f"The database schema is {where}; run 'eventctl db upgrade'.")


def migrations_dir() -> Path:
    """Inside the wheel: eventctl/_migrations; in a checkout: the top-level migrations/."""
    here = Path(__file__).resolve().parent
    packaged = here / "_migrations"
    if (packaged / "env.py").is_file():
        return packaged
    return here.parent / "migrations"


def _config(connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _run(engine: Engine, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[str]:
    """Run an Alembic command in one transaction; return what the migrations reported."""
    from alembic.util import CommandError

    from eventctl.db import WRITE_OPTION
    from eventctl.errors import convert_db_error

    try:
        # one migrator at a time: SQLite's write lock taken first (BEGIN IMMEDIATE), a
        # transaction-level advisory lock on PostgreSQL; the next one then finds it done
        with engine.connect() as plain, plain.execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            cfg = _config(conn)
            fn(cfg, *args, **kwargs)
            return list(cfg.attributes.get("eventctl_reports", []))
    except CommandError as exc:
        raise InvalidInput(f"{str(exc).rstrip('.')}.") from None
    except sa.exc.SQLAlchemyError as exc:
        raise convert_db_error(exc) from None


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(_config()).get_heads()
    if len(heads) != 1:
        raise EventctlError(f"The migrations have {len(heads)} heads; expected one.")
    return heads[0]


def upgrade(engine: Engine, revision: str = "head") -> list[str]:
    """Upgrade; returns the notes the migrations reported (e.g. capped limits)."""
    from alembic import command

    return _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> list[str]:
    from alembic import command

    return _run(engine, command.downgrade, revision)


def history() -> list[dict[str, Any]]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    return [
        {"revision": rev.revision, "down_revision": rev.down_revision, "message": rev.doc}
        for rev in script.walk_revisions()
    ]


def check(engine: Engine) -> list[str]:
    """Differences between the models and the database at head (empty = in sync)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    import eventctl.models  # noqa: F401 - every table

    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, _p: type_ != "table" or name in SQLModel.metadata.tables,
                "version_table": VERSION_TABLE,
            },
        )
        return [str(d) for d in compare_metadata(ctx, SQLModel.metadata)]
