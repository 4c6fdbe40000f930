"""eventctl schema filters."""

from __future__ import annotations

import typer

from eventctl.cli._common import emit_json, handle_errors

schema_app = typer.Typer(help="JSON Schemas of eventctl's shapes.", no_args_is_help=True)


@schema_app.command("filters")
@handle_errors
def filters(ctx: typer.Context) -> None:  # noqa: ARG001 - the context carries the settings check
    """Print the JSON Schema of RecordReviewFilters."""
    from eventctl.filters import filters_json_schema

    emit_json(filters_json_schema())


def register(app: typer.Typer) -> None:
    app.add_typer(schema_app, name="schema")
