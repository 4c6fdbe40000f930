"""The ``eventctl`` command line (SPEC §3). Commands parse, call the core, print."""

from __future__ import annotations

from typing import Annotated

import typer

from eventctl.cli import categories, cleanup, db, events, misc, serve, tokens
from eventctl.cli._common import State

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
    """Settings are resolved here, when the CLI starts (flags > env > .env)."""
    ctx.obj = State(database_url=database_url)
    ctx.call_on_close(ctx.obj.close)


events.register(app)
misc.register(app)
app.add_typer(db.app, name="db")
app.add_typer(categories.app, name="categories")
app.add_typer(tokens.app, name="token")
cleanup.register(app)
serve.register(app)


def main() -> None:
    app(prog_name="eventctl")
