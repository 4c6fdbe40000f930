"""The ``eventctl`` command line (SPEC §3). Commands parse, call the core, print."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from eventctl.cli import categories, cleanup, db, events, files, login, schema, serve, timeline, tokens
from eventctl.cli._common import CliContext

APP_SETTINGS: dict[str, Any] = {
    "name": "eventctl",
    "help": "Page-scoped, time-bound review campaigns (events) for the corpus platform.",
    "no_args_is_help": True,
    "rich_markup_mode": None,
    "pretty_exceptions_enable": False,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}


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
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            metavar="URL",
            help="Remote mode: talk to this server (an eventctl serve or the platform's events API) "
            "instead of a database [env: EVENTCTL_API_URL].",
            show_default=False,
            rich_help_panel="Remote mode",
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            metavar="NAME",
            help="Remote mode with a stored login (eventctl login --name NAME) [env: EVENTCTL_API_PROFILE].",
            show_default=False,
            rich_help_panel="Remote mode",
        ),
    ] = None,
    token_file: Annotated[
        str | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            help="Read the API token from FILE [env: EVENTCTL_API_TOKEN_FILE; else EVENTCTL_API_TOKEN; "
            "else the stored login]. Never give a token on the command line.",
            show_default=False,
            rich_help_panel="Remote mode",
        ),
    ] = None,
    ca_file: Annotated[
        str | None,
        typer.Option(
            "--ca-file",
            metavar="FILE",
            help="Verify the server's HTTPS certificate against this CA bundle [env: EVENTCTL_API_CA_FILE].",
            show_default=False,
            rich_help_panel="Remote mode",
        ),
    ] = None,
    insecure_http: Annotated[
        bool,
        typer.Option(
            "--insecure-http",
            help="Allow plain http:// to a host that is not loopback [env: EVENTCTL_API_INSECURE_HTTP].",
            rich_help_panel="Remote mode",
        ),
    ] = False,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="Read timeout of each request [env: EVENTCTL_API_TIMEOUT; default 30].",
            show_default=False,
            rich_help_panel="Remote mode",
        ),
    ] = None,
    connect_timeout: Annotated[
        str | None,
        typer.Option(
            "--connect-timeout",
            metavar="SECONDS",
            help="Connect timeout [env: EVENTCTL_API_CONNECT_TIMEOUT; default 10].",
            show_default=False,
            rich_help_panel="Remote mode",
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
        ctx.obj = CliContext(
            settings=load_settings(
                database_url=("--database-url", database_url),
                api_url=("--api", api),
                api_profile=("--profile", profile),
                api_token_file=("--token-file", token_file),
                api_ca_file=("--ca-file", ca_file),
                api_insecure_http=True if insecure_http else None,
                api_timeout=("--timeout", timeout),
                api_connect_timeout=("--connect-timeout", connect_timeout),
            )
        )
    except EventctlError as exc:
        from eventctl.config import Settings

        ctx.obj = CliContext(settings=Settings(), settings_error=exc)  # every command raises the error first
    ctx.call_on_close(ctx.obj.close)


def _group(sub: typer.Typer, name: str) -> Any:
    return lambda app: app.add_typer(sub, name=name)


# Who registers which command names: build_app() calls only the registrar of the command it runs.
REGISTRARS: tuple[tuple[tuple[str, ...], Any], ...] = (
    (("create", "list", "show", "update", "delete", "current"), events.register),
    (("apply", "export", "history"), files.register),
    (("schema",), schema.register),
    (("db",), _group(db.app, "db")),
    (("categories",), _group(categories.app, "categories")),
    (("token",), _group(tokens.app, "token")),
    (("cleanup",), cleanup.register),
    (("serve",), serve.register),
    (("timeline",), timeline.register),
    (("login", "logout"), login.register),
)


def build_app(command: str | None = None) -> typer.Typer:
    """The CLI: every command, or (``command``) only the commands of its registrar.

    typer turns every registered command into click's objects before it runs one (a third of
    ``eventctl list``'s own start-up), so the entry point registers only what it runs; the
    command is the same object either way (tests compare the output). Built with Typer's
    public API alone: a new app, the root callback, the registrars.
    """
    app = typer.Typer(**APP_SETTINGS)
    app.callback()(root)
    for names, register in REGISTRARS:
        if command is None or command in names:
            register(app)
    return app


app = build_app()


def main() -> None:
    build_app(_command_name(sys.argv[1:]))(prog_name="eventctl")


ROOT_VALUE_OPTIONS = (
    "--database-url", "--api", "--profile", "--token-file", "--ca-file", "--timeout", "--connect-timeout",
)  # fmt: skip
ROOT_FLAGS = ("--insecure-http",)


def _command_name(args: list[str]) -> str | None:
    """The command ``args`` run, when a registrar has it; None (the whole app) for no command, an
    option before it other than the root's own (``--help``, completion) or an unknown name, so help
    and click's own errors list every command."""
    known = {name for names, _ in REGISTRARS for name in names}
    at = 0
    while at < len(args):
        arg = args[at]
        if arg in ROOT_VALUE_OPTIONS:
            at += 2
        elif arg in ROOT_FLAGS or arg.split("=", 1)[0] in ROOT_VALUE_OPTIONS:
            at += 1
        else:
            return arg if arg in known else None
    return None
