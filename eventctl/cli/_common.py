"""What every command shares: settings on the context, error conversion, output.

Only typer is imported at module level; the core is imported inside commands,
so ``eventctl --help`` needs no database and imports neither SQLAlchemy nor FastAPI.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from eventctl.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
TzOpt = Annotated[
    str | None,
    typer.Option("--tz", metavar="ZONE", help="IANA zone for times without an offset [env: EVENTCTL_TZ; default UTC]."),
]


@dataclass
class State:
    database_url: str | None = None
    _settings: Settings | None = None
    _engine: Engine | None = None
    _schema_checked: bool = False

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from eventctl.config import load_settings

            self._settings = load_settings(database_url=self.database_url)
        return self._settings

    def engine(self, *, check_schema: bool = True) -> Engine:
        """The engine; by default also stops (exit 5) unless the schema is at head."""
        from eventctl.db import ensure_schema, make_engine

        if self._engine is None:
            self._engine = make_engine(self.settings.resolved_database_url())
        if check_schema and not self._schema_checked:
            ensure_schema(self._engine, auto_upgrade=self.settings.is_default_database)
            self._schema_checked = True
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Convert domain and database errors into one sentence on stderr and the exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from eventctl.errors import EventctlError

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except EventctlError as exc:
            raise fail(exc.message, exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("Interrupted.", 130) from None
        except Exception as exc:  # noqa: BLE001 - the edge: never a traceback
            converted = _convert(exc)
            if converted is not None:
                raise fail(converted.message, converted.exit_code) from None
            raise fail(f"Unexpected failure: {type(exc).__name__}: {exc}", 1) from None

    return wrapper  # type: ignore[return-value]


def _convert(exc: BaseException) -> Any:
    if "sqlalchemy" not in sys.modules:
        return None
    from eventctl.errors import convert_db_error

    return convert_db_error(exc)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def console(*, stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def note(message: str) -> None:
    typer.echo(message, err=True)


def print_rows(
    rows: list[dict[str, Any]],
    *,
    as_json: bool,
    columns: dict[str, Callable[[dict[str, Any]], Any]],
    empty: str,
) -> None:
    """A list command's output: the rows as JSON, or a Rich table of ``columns`` for people."""
    if as_json:
        emit_json(rows)
        return
    if not rows:
        note(empty)
        return
    from rich.table import Table

    table = Table()
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*("-" if (v := cell(row)) in (None, "") else str(v) for cell in columns.values()))
    console().print(table)
