"""Alembic environment for eventctl.

eventctl keeps its own version table (``eventctl_alembic_version``) and only
looks at its own tables, so it can share a database with another
Alembic-managed application without touching that application's tables.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import eventctl.models  # noqa: F401 - every table is declared there
from eventctl.db import make_engine
from eventctl.migrate import VERSION_TABLE

config = context.config
target_metadata = SQLModel.metadata


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    if type_ == "table":
        return name in target_metadata.tables
    return True


def _configure(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        render_as_batch=connection.dialect.name == "sqlite",  # type: ignore[attr-defined]
        compare_type=True,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """A Connection (``eventctl db``) or an Engine (pytest-alembic) may be handed in."""
    connectable = config.attributes.get("connection")
    if isinstance(connectable, Connection):
        _run(connectable)
        return
    if connectable is None:
        url = os.environ.get("EVENTCTL_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
        if not url:
            raise SystemExit("Set EVENTCTL_DATABASE_URL, or use 'eventctl db ...'.")
        connectable = make_engine(url)
    with connectable.connect() as connection:
        _run(connection)


if context.is_offline_mode():
    raise SystemExit("Offline (--sql) migrations are not supported; run against a database.")
run_migrations_online()
