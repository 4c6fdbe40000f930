"""Alembic, driven from eventctl (``eventctl db ...``) with its own version table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from eventctl.errors import EventctlError, InvalidInput


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


def _run(engine: Engine, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from alembic.util import CommandError

    try:
        with engine.begin() as conn:
            return fn(_config(conn), *args, **kwargs)
    except CommandError as exc:
        raise InvalidInput(f"{str(exc).rstrip('.')}.") from None


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(_config()).get_heads()
    if len(heads) != 1:
        raise EventctlError(f"The migrations have {len(heads)} heads; expected one.")
    return heads[0]


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    _run(engine, command.downgrade, revision)


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

    from eventctl.models import load_all_tables

    SQLModel = load_all_tables()  # noqa: N806
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, _p: type_ != "table" or name in SQLModel.metadata.tables,
                "version_table": "eventctl_alembic_version",
            },
        )
        return [str(d) for d in compare_metadata(ctx, SQLModel.metadata)]
