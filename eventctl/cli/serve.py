"""eventctl serve: the ASGI app under granian or uvicorn (needs the `serve` or `serve-uvicorn` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from eventctl.cli._common import fail, handle_errors, note, state


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(
            "--host", metavar="HOST", help="Bind address [env: EVENTCTL_HOST; default 127.0.0.1].", show_default=False
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            metavar="PORT",
            min=0,
            max=65535,
            help="Port [env: EVENTCTL_PORT; default 8000].",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            metavar="N",
            min=1,
            max=64,
            help="Worker processes [env: EVENTCTL_WORKERS; default 1].",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            metavar="FORMAT",
            help="text | json: one JSON object per log line [env: EVENTCTL_LOG_FORMAT; default text].",
            show_default=False,
        ),
    ] = None,
    server_name: Annotated[
        str | None,
        typer.Option(
            "--server",
            metavar="SERVER",
            help="granian | uvicorn [env: EVENTCTL_SERVER; default granian where installed, else uvicorn].",
            show_default=False,
        ),
    ] = None,
    listen_url: Annotated[
        str | None,
        typer.Option(
            "--listen-url",
            metavar="URL",
            help="A direct (session) PostgreSQL URL used only for LISTEN, when the database URL goes through "
            "a transaction-mode pooler [env: EVENTCTL_LISTEN_URL].",
            show_default=False,
        ),
    ] = None,
    read_database_url: Annotated[
        str | None,
        typer.Option(
            "--read-database-url",
            metavar="URL",
            help="A hot-standby replica for /current loads and the change poll [env: EVENTCTL_READ_DATABASE_URL].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve GET /api/v1/events/current and the admin API."""
    from eventctl.web import server

    if not server.available():
        raise fail("The web app needs the 'serve' extra: pip install 'eventctl[serve]'.", 2)
    from eventctl.config import override

    st = state(ctx)
    settings = override(
        st.settings,
        host=("--host", host),
        port=port,
        workers=workers,
        log_format=("--log-format", log_format),
        server=("--server", server_name),
        listen_url=("--listen-url", listen_url),
        read_database_url=("--read-database-url", read_database_url),
    )
    from eventctl.web.app import listen_url as check_listen_url

    check_listen_url(settings.listen_url)  # a bad URL is exit 2 now, not a worker failing to start
    check_listen_url(settings.read_database_url, "EVENTCTL_READ_DATABASE_URL")
    try:
        chosen = server.pick(settings.server)
    except LookupError as exc:
        raise fail(str(exc), 2) from None
    if settings.is_default_database:
        st.engine()  # the embedded default is created and migrated here
    else:
        from eventctl.errors import DatabaseUnavailable

        try:
            st.engine()
        except DatabaseUnavailable as exc:  # the app starts anyway and recovers by itself
            note(f"Warning: {exc.message} Starting anyway: /readyz answers 503 until the database is ready.")
    import socket

    try:
        socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise fail(f"Cannot bind to --host {settings.host!r}: not a local address or resolvable name.", 2) from None
    st.close()  # the workers open their own connections; none of this process's is handed down
    note(f"eventctl {settings.host}:{settings.port} ({settings.workers} worker(s), {chosen}); Ctrl-C stops.")
    try:
        server.run(settings, chosen)
    except server.StartFailed:  # uvicorn exits 3, granian raises or exits 1; 3 means "conflict" here
        where = f"{settings.host}:{settings.port}"
        raise fail(f"The server could not start on {where} (see the log above).", 1) from None


def register(app: typer.Typer) -> None:
    app.command("serve")(handle_errors(serve))
