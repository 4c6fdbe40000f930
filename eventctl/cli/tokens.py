"""eventctl token create | list | revoke (admin API tokens for the web app)."""

from __future__ import annotations

from operator import itemgetter
from typing import Annotated

import typer

from eventctl.cli._common import JsonOpt, emit_json, handle_errors, note, print_rows, state

app = typer.Typer(help="Admin API tokens for the HTTP API.", no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="Token name (letters, digits, . _ -); becomes created_by.")]


@app.command("create")
@handle_errors
def create(ctx: typer.Context, name: NameArg, json_: JsonOpt = False) -> None:
    """Make a token. Prints it alone on stdout, once; it cannot be shown again."""
    from eventctl import tokens as core
    from eventctl.db import read_session, write_session
    from eventctl.timeparse import utcnow

    engine = state(ctx).engine()
    with write_session(engine) as session:
        token = core.create_token(session, name=name, now=utcnow())
    if json_:
        with read_session(engine) as session:
            row = core.get_token(session, name=name)
        emit_json({**core.token_to_json(row), "token": token})
        return
    typer.echo(token)
    note(f"Token {name.strip()!r} created. Store it now: only its hash is kept.")


@app.command("list")
@handle_errors
def list_(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List tokens: names, prefixes, created / last used / revoked times (never the token)."""
    from eventctl import tokens as core
    from eventctl.db import read_session

    with read_session(state(ctx).engine()) as session:
        rows = [core.token_to_json(t) for t in core.list_tokens(session)]
    print_rows(
        rows,
        as_json=json_,
        empty="No tokens.",
        columns={k: itemgetter(k) for k in ("name", "prefix", "created_at", "last_used_at", "revoked_at")},
    )


@app.command("revoke")
@handle_errors
def revoke(ctx: typer.Context, name: NameArg, json_: JsonOpt = False) -> None:
    """Revoke a token; requests with it get 401 from then on."""
    from eventctl import tokens as core
    from eventctl.db import write_session
    from eventctl.timeparse import utcnow

    with write_session(state(ctx).engine()) as session:
        row = core.revoke_token(session, name=name, now=utcnow())
    if json_:
        emit_json(core.token_to_json(row))
    else:
        note(f"Token {name.strip()!r} revoked.")
