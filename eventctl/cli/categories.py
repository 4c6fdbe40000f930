"""eventctl categories import | list (SPEC §6)."""

from __future__ import annotations

import sys
from operator import itemgetter
from pathlib import Path
from typing import Annotated

import typer

from eventctl.cli._common import JsonOpt, emit_json, handle_errors, note, print_rows, state

app = typer.Typer(help="Categories that event filters may name.", no_args_is_help=True)


@app.command("import")
@handle_errors
def import_(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE|-", help="JSON array: eventctl's shape or the platform export.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count created/updated/unchanged; write nothing.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Upsert categories (by uid, then by name) from a JSON array."""
    from eventctl import categories as core
    from eventctl.db import write_session
    from eventctl.errors import InvalidInput
    from eventctl.timeparse import utcnow

    if file == "-":
        text, source = sys.stdin.read(), "stdin"
    else:
        try:
            text, source = Path(file).read_text(encoding="utf-8"), repr(file)
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise InvalidInput(f"Cannot read {file!r}: {reason}.") from None
    items = core.parse_category_document(text, source=source)
    with write_session(state(ctx).engine()) as session:
        counts = core.import_categories(session, items=items, dry_run=dry_run, now=utcnow())
    if json_:
        emit_json({**counts, "dry_run": dry_run})
    else:
        note(
            f"{counts['created']} created, {counts['updated']} updated, {counts['unchanged']} unchanged "
            f"({len(items)} in the file{'; dry run, nothing written' if dry_run else ''})."
        )


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
