"""eventctl apply / export (SPEC §7) and history (SPEC §8)."""

from __future__ import annotations

import itertools
from typing import Annotated, Any

import typer

from eventctl.cli._common import (
    JsonOpt,
    OnlyPageOpt,
    StatusOpt,
    console,
    emit_json,
    emit_json_list,
    handle_errors,
    note,
    print_notes,
    read_bounded,
    state,
    zone_for,
)


def apply(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE|-", help="YAML or JSON: a list of events (as export writes).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Also delete events of the file's pages that the file does not name.")
    ] = False,
    allow_overlap: Annotated[
        bool, typer.Option("--allow-overlap", help="Allow windows that overlap on the final state.")
    ] = False,
    created_by: Annotated[
        str | None,
        typer.Option("--created-by", metavar="NAME", help="Acting admin [env: EVENTCTL_ACTOR].", show_default=False),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Make the database hold the events of FILE: plan, then all or nothing."""
    from eventctl import declarative
    from eventctl.config import default_actor

    st = state(ctx)
    actor = default_actor(st.settings, created_by)
    source = "stdin" if file == "-" else repr(file[:200])
    text = read_bounded(file, limit=declarative.MAX_FILE_BYTES, what="the file")
    entries = declarative.validate_entries(
        declarative.parse_document(text, source=source, name=None if file == "-" else file), source=source
    )
    del text  # the entries are all that is needed from here on (a 64 MiB file is not kept twice)
    backend = st.backend()
    try:
        plan = backend.apply(entries, prune=prune, dry_run=dry_run, actor=actor, allow_overlap=allow_overlap)
    finally:
        print_notes(backend)
    if json_:
        emit_json(plan.to_json())
    else:
        _print_plan(plan)


def _print_plan(plan: Any) -> None:
    from eventctl.text import for_terminal

    out = console()
    for change in plan.changes:
        if change.action == "unchanged":
            continue
        who = f"{(change.uid or 'new')[:8]} {for_terminal(change.name)!r} on {for_terminal(change.page_context)}"
        out.print(f"{change.action:<7} {who}", markup=False, highlight=False)
        for key, (old, new) in change.fields.items():
            out.print(f"          {key}: {for_terminal(_short(old))} -> {for_terminal(_short(new))}", markup=False)
    counts = plan.to_json()
    verb = "would be" if plan.dry_run else "were"
    note(
        f"{counts['created']} created, {counts['updated']} updated, {counts['unchanged']} unchanged, "
        f"{counts['deleted']} deleted{f' ({verb} applied: dry run, nothing changed)' if plan.dry_run else ''}."
    )


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:117] + "..."


def export(
    ctx: typer.Context,
    page: OnlyPageOpt = None,
    status: StatusOpt = "all",
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="yaml | json.")] = "yaml",
) -> None:
    """Write the events as one YAML (or JSON) document that apply reads back."""
    import sys

    from eventctl import declarative
    from eventctl.errors import InvalidInput
    from eventctl.events import check_status
    from eventctl.timeparse import utcnow

    fmt = fmt.strip().lower()
    if fmt not in ("yaml", "json"):
        raise InvalidInput(f"Unknown --format {fmt[:20]!r}; use yaml or json.")
    status = check_status(status)
    rows = state(ctx).backend().export_rows(page=page, status=status, at=utcnow())
    sys.stdout.write(declarative.dump(rows, fmt=fmt))


def history(
    ctx: typer.Context,
    uid: Annotated[
        str | None,
        typer.Argument(metavar="[UID]", help="One event (also a deleted one): full uid or 8+ hex digits."),
    ] = None,
    page: OnlyPageOpt = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="TIME", help="Only entries at or after TIME (ISO 8601, now, -7d).", show_default=False
        ),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option("--tz", metavar="ZONE", help="IANA zone for --since without an offset [env: EVENTCTL_TZ]."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """The audit trail, newest first: who changed what, when, and how."""
    from eventctl.timeparse import parse_time

    st = state(ctx)
    when = parse_time(since, zone=zone_for(ctx, tz), what="--since") if since else None
    rows = st.backend().history(uid=uid, page=page, since=when)
    first = next(rows, None)  # a refusal (unknown uid, no history over there) before anything is printed
    rows = itertools.chain([first], rows) if first is not None else iter(())
    if json_:
        emit_json_list(rows)
    else:
        _print_history(rows)


def _print_history(rows: Any) -> None:
    """One line per entry (when, what, which event, who, how), then what changed field by field."""
    from eventctl import audit
    from eventctl.text import for_terminal

    out = console()
    shown = 0
    for row in rows:
        shown += 1
        at = row["at"][:19].replace("T", " ") + "Z"
        subject = row["after"] or row["before"] or {}
        head = (
            f"{at}  {row['action']:<6}  {row['uid'][:8]}  {for_terminal(subject.get('name', ''))!r} "
            f"on {for_terminal(row['page_context'])}  by {for_terminal(row['actor'])} via {row['via']}"
        )
        out.print(head, markup=False, highlight=False, soft_wrap=True)
        if row["action"] == "update":
            for key, (old, new) in audit.changed_fields(row).items():
                line = f"    {key}: {for_terminal(_short(old))} -> {for_terminal(_short(new))}"
                out.print(line, markup=False, highlight=False, soft_wrap=True)
    if not shown:
        note("No history.")


def register(app: typer.Typer) -> None:
    app.command("apply")(handle_errors(apply))
    app.command("export")(handle_errors(export))
    app.command("history")(handle_errors(history))
