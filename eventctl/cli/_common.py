"""What every command shares: settings on the context, error conversion, output.

Only typer is imported at module level; the core is imported inside commands,
so ``eventctl --help`` needs no database and imports neither SQLAlchemy nor FastAPI.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from eventctl.backends import Backend
    from eventctl.config import Settings
    from eventctl.errors import EventctlError

F = TypeVar("F", bound=Callable[..., Any])
MAX_ERROR_CHARS = 600

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
OnlyPageOpt = Annotated[
    str | None, typer.Option("--page", metavar="PAGE", help="Only this page key.", show_default=False)
]
StatusOpt = Annotated[
    str, typer.Option("--status", metavar="STATUS", help="live | scheduled | expired | inactive | all.")
]
TzOpt = Annotated[
    str | None,
    typer.Option("--tz", metavar="ZONE", help="IANA zone for times without an offset [env: EVENTCTL_TZ; default UTC]."),
]


@dataclass
class CliContext:
    """What every command of one CLI run shares: the settings (resolved at start) and one engine."""

    settings: Settings  # defaults when settings_error is set: every command raises that error first
    settings_error: EventctlError | None = None
    _engine: Engine | None = None
    _schema_checked: bool = False
    _backend: Backend | None = None

    def backend(self) -> Backend:
        """Where this run's events live: the database, or with --api / EVENTCTL_API_URL / --profile a server."""
        if self._backend is None:
            if self.settings.is_remote:
                from eventctl.remote.backend import RemoteBackend
                from eventctl.remote.client import ApiClient, resolve_connection

                self._backend = RemoteBackend(ApiClient(resolve_connection(self.settings)))
            else:
                from eventctl.backends import LocalBackend

                self._backend = LocalBackend(self.engine())
        return self._backend

    def engine(self, *, check_schema: bool = True, create: bool = False) -> Engine:
        """The engine; by default also stops (exit 5) unless the schema is at head.

        The embedded default is created (0700 directory, 0600 file) and migrated on first
        use; an explicit SQLite path that does not exist is never created by a command
        that only needs an existing database (only ``db upgrade`` passes ``create``).
        """
        from eventctl.db import make_engine, prepare_sqlite_file
        from eventctl.migrate import ensure_schema

        if self.settings.is_remote:
            from eventctl.errors import InvalidInput

            raise InvalidInput(
                "This command works on a database and does not run over --api / EVENTCTL_API_URL / --profile; "
                "unset them to use the database."
            )
        default = self.settings.is_default_database
        if self._engine is None:
            url = self.settings.resolved_database_url()
            engine = make_engine(url)  # validates the URL; connects only when used
            prepare_sqlite_file(url, create=default or create, private=default)
            self._engine = engine
        if check_schema and not self._schema_checked:
            for message in ensure_schema(self._engine, auto_upgrade=default):
                note(f"Note: {message}.")
            self._schema_checked = True
        return self._engine

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
        if self._engine is not None:
            self._engine.dispose()


def state(ctx: typer.Context) -> CliContext:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliContext):  # a command invoked without the root callback (tests, tools)
        from eventctl.config import load_settings

        obj = CliContext(settings=load_settings())
        ctx.find_root().obj = obj
    return obj


def zone_for(ctx: typer.Context, tz: str | None) -> Any:
    """The zone for times without an offset: --tz, else EVENTCTL_TZ, else UTC (errors name the source)."""
    from eventctl.config import override

    return override(state(ctx).settings, tz=("--tz", tz)).tz


def read_bounded(path: str, *, limit: int, what: str) -> str:
    """A UTF-8 text file (or ``-`` for stdin), refused when larger than ``limit`` bytes."""
    from eventctl.errors import InvalidInput

    if not path.strip():  # "" would open the current directory
        said = f"{what}: the file name is empty" if what.startswith("--") else "The file name is empty"
        raise InvalidInput(f"{said}; give a path, or - for standard input.")
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1) if hasattr(sys.stdin, "buffer") else sys.stdin.read(limit + 1)
        else:
            with open(Path(path).expanduser(), "rb") as fh:
                data = fh.read(limit + 1)
    except OSError as exc:
        raise InvalidInput(f"Cannot read {what} {path[:200]!r}: {exc.strerror or type(exc).__name__}.") from None
    if len(data) > limit:
        size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 1024} KiB"
        raise InvalidInput(f"{what} {path[:200]!r} is larger than {size}.")
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} {path[:200]!r} is not UTF-8 text.") from None


def can_ask() -> bool:
    """A person at a terminal can answer a confirmation (``delete``, ``db downgrade``)."""
    return sys.stdin.isatty()


def fail(message: str, code: int) -> typer.Exit:
    from eventctl.text import for_terminal

    text = for_terminal(message)
    if len(text) > MAX_ERROR_CHARS:  # a last guard: an error never echoes a large input back
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    typer.echo(f"Error: {text}", err=True)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Convert domain and database errors into one sentence on stderr and the exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from eventctl.errors import EventctlError

        try:
            for value in (*args, *kwargs.values()):
                if hasattr(value, "find_root") and (error := state(value).settings_error) is not None:
                    raise error
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except EventctlError as exc:
            raise fail(exc.cli_message(), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("Interrupted.", 130) from None
        except Exception as exc:  # noqa: BLE001 - the edge: never a traceback
            converted = _convert(exc)
            if converted is not None:
                raise fail(converted.cli_message(), converted.exit_code) from None
            raise fail(f"Unexpected failure: {type(exc).__name__}: {exc}", 1) from None

    return wrapper  # type: ignore[return-value]


def _convert(exc: BaseException) -> Any:
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.exc import SQLAlchemyError

    from eventctl.errors import convert_db_error

    return convert_db_error(exc) if isinstance(exc, SQLAlchemyError) else None


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def emit_json_list(rows: Iterable[Any]) -> None:
    """A JSON array written item by item: constant memory however many rows there are."""
    out = sys.stdout
    first = True
    for row in rows:
        out.write("[\n  " if first else ",\n  ")
        out.write(json.dumps(row, ensure_ascii=False, indent=2).replace("\n", "\n  "))
        first = False
    out.write("[]\n" if first else "\n]\n")


def console(*, stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def note(message: str) -> None:
    typer.echo(message, err=True)


def print_notes(backend: Any) -> None:
    """What a remote backend had to say (what the server lacks, what apply did before a failure)."""
    for message in getattr(backend, "notes", ()):
        from eventctl.text import for_terminal

        note(for_terminal(message))
    if hasattr(backend, "notes"):
        backend.notes.clear()


def print_rows(
    rows: Iterable[dict[str, Any]],
    *,
    as_json: bool,
    columns: dict[str, Callable[[dict[str, Any]], Any]],
    empty: str,
    no_wrap: tuple[str, ...] = (),
) -> None:
    """A list command's output: the rows as a (streamed) JSON array, or a Rich table for people.

    Text from outside is escaped for the terminal; the first column (an id people copy) and the
    ``no_wrap`` ones (times) never wrap.
    """
    if as_json:
        emit_json_list(rows)
        return
    from rich.table import Table

    from eventctl.text import for_terminal

    table = Table()
    for i, name in enumerate(columns):
        keep = i == 0 or name in no_wrap
        table.add_column(name, overflow="fold", no_wrap=keep, min_width=8 if i == 0 else None)
    for row in rows:
        table.add_row(*("-" if (v := cell(row)) in (None, "") else for_terminal(v) for cell in columns.values()))
    if not table.row_count:
        note(empty)
        return
    console().print(table, markup=False)
