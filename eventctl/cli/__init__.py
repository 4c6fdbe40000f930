"""The ``eventctl`` command line (SPEC §3). Commands parse, call the core, print."""

from __future__ import annotations

from typing import Annotated

import typer

from eventctl.cli import categories, cleanup, db, events, files, schema, serve, timeline, tokens
from eventctl.cli._common import CliContext

app = typer.Typer(
    name="eventctl",
    help="Page-scoped, time-bound review campaigns (events) for the corpus platform.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db "
            "[env: EVENTCTL_DATABASE_URL; default: an SQLite file in the user data directory].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Settings are resolved and validated here, once, when the CLI starts (flags > env > .env).

    A bad setting is reported by whichever command runs (exit 2, naming the variable
    or flag), so that ``--help`` of every command still works.
    """
    from eventctl.config import load_settings
    from eventctl.errors import EventctlError

    try:
        ctx.obj = CliContext(settings=load_settings(database_url=("--database-url", database_url)))
    except EventctlError as exc:
        from eventctl.config import Settings

        ctx.obj = CliContext(settings=Settings(), settings_error=exc)  # every command raises the error first
    ctx.call_on_close(ctx.obj.close)


events.register(app)
files.register(app)
schema.register(app)
app.add_typer(db.app, name="db")
app.add_typer(categories.app, name="categories")
app.add_typer(tokens.app, name="token")
cleanup.register(app)
serve.register(app)
timeline.register(app)


def main() -> None:
    app(prog_name="eventctl")
