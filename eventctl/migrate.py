"""The schema: its revision, the "at head?" check, and Alembic driven from eventctl.

eventctl keeps its own version table, so it can share a database with another
Alembic-managed application. Alembic itself is imported only by ``db`` commands
and upgrades; checking the revision is one query.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from eventctl.errors import Conflict, EventctlError, InvalidInput, SchemaNotAtHead

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


def _run(
    engine: Engine,
    fn: Callable[..., Any],
    *args: Any,
    before: Callable[[sa.Connection], None] | None = None,
    **kwargs: Any,
) -> list[str]:
    """Run an Alembic command in one transaction; return what the migrations reported.

    ``before`` runs in that transaction once the migration lock is held, before the command."""
    from alembic.util import CommandError

    from eventctl.db import WRITE_OPTION
    from eventctl.errors import convert_db_error

    try:
        # one migrator at a time: SQLite's write lock taken first (BEGIN IMMEDIATE), a
        # transaction-level advisory lock on PostgreSQL; the next one then finds it done
        with engine.connect() as plain, plain.execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            if before is not None:
                before(conn)
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


# What undoing each revision removes: the tables its downgrade drops, each with what one of its
# rows is (None: eventctl's own bookkeeping, not counted), and a word on anything else it does.
# tests/test_migrations.py checks these against the tables each downgrade really drops.
DOWNGRADE_DROPS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "0001_events": (("events", "event"), ("eventctl_state", None)),
    "0002_api_tokens": (("api_tokens", "API token"),),
    "0003_categories": (("categories", "category"),),
    "0005_audit": (("eventctl_audit", "audit entry"),),
}
_ALSO = {
    "0004_platform_filters": "converts every event's filters back to the first release's shape and drops the "
    "page-default column (refused, changing nothing, when an event would lose something)",
    "0006_current_indexes": "drops an index",
    "0007_drop_page_context_index": "restores an index",
}
_PLURAL = {"category": "categories", "audit entry": "audit entries"}


def plural(count: int, what: str) -> str:
    return f"{count} {what if count == 1 else _PLURAL.get(what, what + 's')}"


@dataclass(frozen=True)
class DowngradeStep:
    """Undoing one revision: ``removes`` is ``(table, what one row is, rows)`` for each table it drops."""

    revision: str
    down_to: str | None
    removes: tuple[tuple[str, str, int], ...]
    also: str | None

    def describe(self) -> str:
        dropped = [plural(n, what) for _table, what, n in self.removes]
        said = f"removes {', '.join(dropped)}" if dropped else "removes no rows"
        return f"{self.revision} -> {self.down_to or 'base'}: {said}" + (f"; {self.also}" if self.also else "")

    def to_json(self) -> dict[str, Any]:
        removes = {table: n for table, _what, n in self.removes}
        return {"revision": self.revision, "to": self.down_to, "removes": removes, "also": self.also}


def removed_in_all(plan: list[DowngradeStep]) -> str:
    """What the whole plan removes, for people ("3 audit entries, 1 API token"; "" when nothing)."""
    totals: dict[str, int] = {}
    for step in plan:
        for _table, what, n in step.removes:
            totals[what] = totals.get(what, 0) + n
    return ", ".join(plural(n, what) for what, n in totals.items() if n)


def downgrade_plan(engine: Engine | sa.Connection, revision: str) -> list[DowngradeStep]:
    """Each step of ``db downgrade REVISION`` from the current revision, newest first, with the
    rows it would remove counted now; InvalidInput for a revision that is not below the current one."""
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    from eventctl.errors import convert_db_error

    current = current_revision(engine) if isinstance(engine, Engine) else _revision_on(engine)
    if current is None:
        return []
    script = ScriptDirectory.from_config(_config())
    try:
        steps = list(script.iterate_revisions(current, revision))
    except (RevisionError, CommandError) as exc:
        raise InvalidInput(f"Cannot downgrade to {revision[:60]!r}: {str(exc).rstrip('.')[:200]}.") from None
    try:
        with engine.connect() if isinstance(engine, Engine) else nullcontext(engine) as conn:
            tables = set(sa.inspect(conn).get_table_names())
            return [
                DowngradeStep(
                    revision=step.revision,
                    down_to=step.down_revision if isinstance(step.down_revision, str | None) else None,
                    removes=tuple(
                        (table, what, int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()))
                        for table, what in DOWNGRADE_DROPS.get(step.revision, ())
                        if what is not None and table in tables
                    ),
                    also=_ALSO.get(step.revision),
                )
                for step in steps
            ]
    except sa.exc.SQLAlchemyError as exc:
        raise convert_db_error(exc) from None


def _revision_on(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def downgrade(engine: Engine, revision: str, *, announced: list[DowngradeStep] | None = None) -> list[str]:
    """Downgrade. ``announced``: the plan people were shown; when what the downgrade would remove
    differs once it holds the migration lock (a write in between), Conflict and nothing is done."""
    from alembic import command

    def check(conn: sa.Connection) -> None:
        if announced is None:
            return
        if conn.dialect.name == "postgresql":  # no writer adds a row to what is counted, then dropped
            tables = set(sa.inspect(conn).get_table_names())
            for step in announced:
                for table, _what in DOWNGRADE_DROPS.get(step.revision, ()):
                    if table in tables:
                        conn.execute(sa.text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        if downgrade_plan(conn, revision) != announced:
            raise Conflict(
                "The database changed after the downgrade was announced (what it would remove is no longer "
                "what was shown); nothing was removed, run it again.",
                [],
            )

    return _run(engine, command.downgrade, revision, before=check)


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
