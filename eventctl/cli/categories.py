"""eventctl categories import | pull | push | list (SPEC §6)."""

from __future__ import annotations

from operator import itemgetter
from typing import Annotated, Any

import typer

from eventctl.cli._common import JsonOpt, emit_json, handle_errors, note, print_rows, read_bounded, state

app = typer.Typer(help="Categories that event filters may name, by the platform's own ids.", no_args_is_help=True)

MAX_FILE_BYTES = 16 * 1024 * 1024

ApiOpt = Annotated[
    str,
    typer.Option(
        "--api",
        metavar="URL",
        help="The platform's base URL, e.g. https://backend2.swecha.org (/api/v1/categories/ is appended).",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        help="The platform's bearer token [env: EVENTCTL_PLATFORM_TOKEN, preferred: a flag shows in `ps`].",
        show_default=False,
    ),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]


def _counts_line(counts: dict[str, int], total: int, where: str, dry_run: bool) -> str:
    return (
        f"{counts['created']} created, {counts['updated']} updated, {counts['unchanged']} unchanged "
        f"({total} {where}{'; dry run, nothing written' if dry_run else ''})."
    )


@app.command("import")
@handle_errors
def import_(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-",
            help="JSON array (or {\"categories\": [...]}): eventctl's shape (uid) or the platform's export (id).",
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count created/updated/unchanged; write nothing.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Upsert categories by id from a file; every entry needs the platform's id."""
    from eventctl import categories as core

    text = read_bounded(file, limit=MAX_FILE_BYTES, what="categories file")
    items = core.parse_category_document(text, source="stdin" if file == "-" else repr(file))
    _upsert_and_report(state(ctx).engine(), items, dry_run=dry_run, json_=json_, where="in the file")


def _upsert_and_report(engine: Any, items: list[Any], *, dry_run: bool, json_: bool, where: str) -> None:
    """Upsert the categories in one transaction, then print the counts (JSON or one line)."""
    from eventctl import categories as core
    from eventctl.db import write_session
    from eventctl.timeparse import utcnow

    with write_session(engine) as session:
        counts = core.import_categories(session, items=items, dry_run=dry_run, now=utcnow())
    if json_:
        emit_json({**counts, "dry_run": dry_run})
    else:
        note(_counts_line(counts, len(items), where, dry_run))


@app.command("pull")
@handle_errors
def pull(
    ctx: typer.Context,
    api: ApiOpt,
    token: TokenOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count created/updated/unchanged; write nothing.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Read the platform's GET /api/v1/categories/ into the local table, upserting by id."""
    from eventctl import categories as core

    cli_state = state(ctx)
    secret = core.resolve_token(token, cli_state.settings.platform_token, required=False)
    engine = cli_state.engine()  # a database that is not usable stops us before any request
    items = core.fetch_platform_categories(api, token=secret)
    _upsert_and_report(engine, items, dry_run=dry_run, json_=json_, where="on the platform")


@app.command("push")
@handle_errors
def push(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-",
            help='Seed file: {"categories": [{name, title, description, published, rank}]} or a bare array.',
        ),
    ],
    api: ApiOpt,
    token: TokenOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be sent; send nothing.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Create the seed file's categories on the platform (POST /api/v1/categories/ each), as create_categories.py does.

    Exit 1 if any failed. The local table is not changed: run `categories pull` to bring the new ids here.
    """
    import json

    from eventctl import categories as core
    from eventctl.text import for_terminal

    text = read_bounded(file, limit=MAX_FILE_BYTES, what="seed file")
    payloads = core.parse_seed_document(text, source="stdin" if file == "-" else repr(file))
    url = core.categories_url(api)
    if dry_run:
        secret = core.resolve_token(token, state(ctx).settings.platform_token, required=False)
        if json_:
            emit_json({"api": str(url), "dry_run": True, "would_send": payloads, "token": secret is not None})
            return
        typer.echo(f"Would POST {len(payloads)} categor{'y' if len(payloads) == 1 else 'ies'} to {core.shown(url)}:")
        for payload in payloads:
            typer.echo("  " + for_terminal(json.dumps(payload, ensure_ascii=False)))
        if secret is None:
            note(f"No token: a real run needs --token or {core.TOKEN_ENV}.")
        note("Dry run: nothing was sent.")
        return
    secret = core.resolve_token(token, state(ctx).settings.platform_token, required=True)
    assert secret is not None
    if not payloads:
        note(f"No categories in the seed file; nothing sent to {core.shown(url)}.")
    results = []
    for result in core.push_categories(api, payloads, token=secret):
        results.append(result)
        if not json_:
            typer.echo(for_terminal(result.line()))
    successful = sum(r.ok for r in results)
    failed = len(results) - successful
    if json_:
        emit_json(
            {
                "api": str(url),
                "dry_run": False,
                "successful": successful,
                "failed": failed,
                "results": [r.to_json() for r in results],
            }
        )
    else:
        typer.echo(f"Summary: {successful} successful, {failed} failed")
    if failed:
        raise typer.Exit(1)


@app.command("list")
@handle_errors
def list_(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List known categories by name."""
    from eventctl import categories as core
    from eventctl.db import read_session

    with read_session(state(ctx).engine()) as session:
        rows = [core.category_to_json(c) for c in core.list_categories(session)]
    print_rows(
        rows,
        as_json=json_,
        empty="No categories.",
        columns={k: itemgetter(k) for k in ("uid", "name", "title", "description")},
    )
