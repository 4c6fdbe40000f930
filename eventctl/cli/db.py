"""eventctl db upgrade | downgrade | current | history | check (Alembic)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from eventctl.cli import _common
from eventctl.cli._common import JsonOpt, emit_json, handle_errors, note, state

app = typer.Typer(help="Schema migrations (Alembic, version table eventctl_alembic_version).", no_args_is_help=True)


@app.command("upgrade")
@handle_errors
def upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    json_: JsonOpt = False,
) -> None:
    """Upgrade the schema (default: to head)."""
    from eventctl import migrate

    _migrate(ctx, migrate.upgrade, revision, "upgraded", json_)


def _migrate(ctx: typer.Context, fn: Callable[..., list[str]], revision: str, verb: str, json_: bool) -> None:
    from eventctl import migrate
    from eventctl.migrate import current_revision

    engine = state(ctx).engine(check_schema=False, create=fn is migrate.upgrade)
    before = current_revision(engine)
    notes = fn(engine, revision)
    after = current_revision(engine)
    if json_:
        emit_json({"from": before, "to": after, "notes": notes})
        return
    for message in notes:
        note(f"Note: {message}.")
    note(f"Schema {verb}: {before or 'empty'} -> {after or 'base'}.")


@app.command("downgrade")
@handle_errors
def downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' (no eventctl tables left).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Downgrade the schema to REV: says what each step removes, then asks (--yes skips the question)."""
    from eventctl import migrate
    from eventctl.errors import InvalidInput
    from eventctl.migrate import current_revision

    engine = state(ctx).engine(check_schema=False)
    before = current_revision(engine)
    plan = migrate.downgrade_plan(engine, revision)
    if not plan:
        if json_:
            emit_json({"from": before, "to": before, "notes": [], "steps": []})
        else:
            note(f"Nothing to downgrade: {f'the schema is at {before}' if before else 'eventctl has no schema here'}.")
        return
    lost = migrate.removed_in_all(plan)
    target = plan[-1].down_to or "base"
    if not yes and not _common.can_ask():
        removes = f"it would remove {lost}" if lost else "it would remove no rows"
        raise InvalidInput(
            f"Refusing to downgrade to {target} without confirmation ({removes}): no terminal to ask; pass --yes."
        )
    note(f"Downgrading the schema from {before} to {target}:")
    for step in plan:
        note(f"  {step.describe()}")
    gone = (
        f"This removes {lost} for good (upgrading again does not bring them back)." if lost else "No rows are removed."
    )
    note(f"{gone} Until 'eventctl db upgrade', eventctl refuses this database (exit 5).")
    if not yes and not typer.confirm("Downgrade?", err=True):
        note("Not downgraded; nothing changed.")
        raise typer.Exit(0)
    notes = migrate.downgrade(engine, revision, announced=plan)
    after = current_revision(engine)
    if json_:
        emit_json({"from": before, "to": after, "notes": notes, "steps": [step.to_json() for step in plan]})
        return
    for message in notes:
        note(f"Note: {message}.")
    note(f"Schema downgraded: {before} -> {after or 'base'}.")


@app.command("current")
@handle_errors
def current(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Print the schema revision of the database."""
    from eventctl.migrate import SCHEMA_HEAD, current_revision

    revision = current_revision(state(ctx).engine(check_schema=False))
    if json_:
        emit_json({"revision": revision, "head": SCHEMA_HEAD, "at_head": revision == SCHEMA_HEAD})
    else:
        typer.echo(f"{revision or '(none)'}{' (head)' if revision == SCHEMA_HEAD else ''}")


@app.command("history")
@handle_errors
def history(json_: JsonOpt = False) -> None:
    """List the migrations, newest first."""
    from eventctl import migrate

    revs = migrate.history()
    if json_:
        emit_json(revs)
        return
    for rev in revs:
        typer.echo(f"{rev['down_revision'] or '<base>'} -> {rev['revision']}: {rev['message']}")


@app.command("check")
@handle_errors
def check(ctx: typer.Context) -> None:
    """Fail (exit 1) when the models and the migrations differ."""
    from eventctl import migrate
    from eventctl.errors import EventctlError

    engine = state(ctx).engine()
    diffs = migrate.check(engine)
    if diffs:
        raise EventctlError(f"The models and the migrations differ: {'; '.join(diffs)}.")
    note("No differences between the models and the migrations.")
