"""eventctl login / logout: a server's API token stored for remote mode (SPEC §10).

The token is read from stdin when it is not a terminal (``pass show eventctl | eventctl login
--api URL``), else asked for without echo; never from argv (argv shows in ``ps``). It is tried
against the server before it is kept, then stored 0600 in the user config directory
(``eventctl.remote.logins``).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from eventctl.cli._common import handle_errors, note, state

ApiOpt = Annotated[
    str | None,
    typer.Option("--api", metavar="URL", help="The server [env: EVENTCTL_API_URL].", show_default=False),
]
NameOpt = Annotated[
    str | None,
    typer.Option(
        "--name",
        metavar="NAME",
        help="Name of the login, for --profile [default: the server's host].",
        show_default=False,
    ),
]


def login(ctx: typer.Context, api: ApiOpt = None, name: NameOpt = None) -> None:
    """Store an API token for a server: read from stdin, or asked for without echo."""
    from eventctl.errors import InvalidInput
    from eventctl.remote.client import EVENTS_PATH, ApiClient, check_token, normalize_api_url
    from eventctl.remote.logins import store_login
    from eventctl.text import for_terminal

    st = state(ctx)
    raw = api or st.settings.api_url
    if not raw:
        raise InvalidInput("Give the server: eventctl login --api URL.")
    url = normalize_api_url(raw, source="--api", insecure_http=st.settings.api_insecure_http)
    asked = _interactive()
    if asked:
        text = typer.prompt(f"API token for {for_terminal(url)}", hide_input=True, err=True)
    else:
        text = sys.stdin.readline(8193)
    token = check_token(text, source="the prompt" if asked else "stdin")
    from eventctl.remote.client import Connection

    conn = Connection(
        url=url,
        token=token,
        token_source="the token given to login",
        ca_file=st.settings.api_ca_file,
        insecure_http=st.settings.api_insecure_http,
        timeout=st.settings.api_timeout,
        connect_timeout=st.settings.api_connect_timeout,
        retries=st.settings.api_retries,
    )
    client = ApiClient(conn)
    try:
        kind = client.kind()
        client.json("GET", EVENTS_PATH, params={"limit": 1}, what="GET /api/v1/events/")
    finally:
        client.close()
    login_name = (name or httpx_host(url)).strip()
    if not login_name or not login_name.isprintable() or len(login_name) > 100:
        raise InvalidInput("--name must be 1-100 printable characters.")
    path = store_login(login_name, url, token)
    what = "an eventctl serve" if kind == "eventctl" else "the platform's events API"
    note(
        f"Logged in to {for_terminal(url)} ({what}) as {for_terminal(login_name)!r}; "
        f"the token is stored in {for_terminal(str(path))} (readable by you only)."
    )


def _interactive() -> bool:
    """A person at a terminal: ask for the token without echo (else read it from stdin)."""
    return sys.stdin.isatty()


def httpx_host(url: str) -> str:
    import httpx

    return httpx.URL(url).host or url


def logout(ctx: typer.Context, api: ApiOpt = None, name: NameOpt = None) -> None:
    """Remove a stored login (by --name, or by --api URL)."""
    from eventctl.errors import InvalidInput, NotFound
    from eventctl.remote.client import normalize_api_url
    from eventctl.remote.logins import remove_login
    from eventctl.text import for_terminal

    st = state(ctx)
    url = None
    raw = api or (None if name else st.settings.api_url)
    if raw:
        url = normalize_api_url(raw, source="--api", insecure_http=True)
    if url is None and name is None:
        raise InvalidInput("Say which login: eventctl logout --api URL, or --name NAME.")
    removed = remove_login(name=name, url=url)
    if removed is None:
        raise NotFound(f"No stored login for {for_terminal(name or url or '')!r}.")
    note(f"Logged out: the login {for_terminal(removed)!r} and its token are removed.")


def register(app: typer.Typer) -> None:
    app.command("login")(handle_errors(login))
    app.command("logout")(handle_errors(logout))
