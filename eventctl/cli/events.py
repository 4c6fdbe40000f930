"""create / list / show / update / delete / current."""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Annotated, Any

import typer

from eventctl.cli import _common
from eventctl.cli._common import (
    JsonOpt,
    OnlyPageOpt,
    StatusOpt,
    TzOpt,
    console,
    emit_json,
    handle_errors,
    note,
    print_notes,
    print_rows,
    state,
    zone_for,
)

if TYPE_CHECKING:
    from datetime import datetime

    from eventctl.models import Event

_F = "Filters (the platform's RecordReviewFilters; list flags repeat)"


def _filter_opt(flag: str, metavar: str, help: str) -> Any:
    return typer.Option(flag, metavar=metavar, help=help, rich_help_panel=_F, show_default=False)


def _switch(flags: str, help: str) -> Any:
    return typer.Option(flags, help=help, rich_help_panel=_F, show_default=False)


PageOpt = Annotated[
    str | None,
    typer.Option(
        "--page",
        metavar="PAGE",
        help="Page key: a route (/review/audio) or a key (doc_digitization).",
        show_default=False,
    ),
]
DescOpt = Annotated[
    str | None, typer.Option("--description", metavar="TEXT", help="Up to 2000 characters.", show_default=False)
]
FiltersOpt = Annotated[str | None, _filter_opt("--filters", "JSON|@FILE|-", "Filters as JSON, @FILE, or - for stdin.")]
CategoryOpt = Annotated[list[str] | None, _filter_opt("--category", "UID|NAME", "category_ids: a uid or a known name.")]
StartOpt = Annotated[
    str | None,
    typer.Option("--start", metavar="TIME", help="ISO 8601, 'now', or +2h/-30m/+7d (empty = no lower bound)."),
]
EndOpt = Annotated[
    str | None, typer.Option("--end", metavar="TIME", help="ISO 8601, 'now', or +2h/-30m/+7d (exclusive).")
]
ByOpt = Annotated[
    str | None,
    typer.Option(
        "--created-by",
        metavar="NAME",
        help="Acting admin [env: EVENTCTL_ACTOR; default: the OS user].",
        show_default=False,
    ),
]
OverlapOpt = Annotated[
    bool, typer.Option("--allow-overlap", help="Allow a window that overlaps another active event of the page.")
]
UidArg = Annotated[str, typer.Argument(metavar="UID", help="Full uid or a unique prefix of at least 8 hex digits.")]


# One option per RecordReviewFilters key (category_ids is --category, which also takes names), declared
# once: the parameter's name is the filter key, so no option can be renamed away from its key.
FILTER_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("media_type", Annotated[list[str] | None, _filter_opt(
        "--media-type", "TYPE", "media_type: text audio video image document.")]),
    ("language", Annotated[list[str] | None, _filter_opt(
        "--language", "LANGUAGE", "language, as the platform names it (Telugu).")]),
    ("source_label", Annotated[str | None, _filter_opt(
        "--source-label", "TEXT", "source_label (up to 200 characters).")]),
    ("release_rights", Annotated[str | None, _filter_opt(
        "--release-rights", "RIGHTS", "release_rights: creator others downloaded NA.")]),
    ("published_date", Annotated[str | None, _filter_opt("--published-date", "YYYY-MM-DD", "published_date.")]),
    ("is_fully_proofread", Annotated[bool | None, _switch(
        "--proofread/--not-proofread", "is_fully_proofread: true / false.")]),
    ("is_fully_validated", Annotated[bool | None, _switch(
        "--validated/--not-validated", "is_fully_validated: true / false.")]),
    ("extraction_type", Annotated[str | None, _filter_opt(
        "--extraction-type", "TYPE", "extraction_type: ocr asr caption manual.")]),
    ("model_name", Annotated[str | None, _filter_opt("--model-name", "TEXT", "model_name (up to 100 characters).")]),
    ("version", Annotated[str | None, _filter_opt("--version", "VERSION", "version: initial | latest.")]),
    ("lock", Annotated[bool | None, _switch("--lock/--no-lock", "lock: true / false.")]),
    ("extration", Annotated[bool | None, _switch(
        "--extration/--no-extration", "extration (the platform's spelling): true / false.")]),
)  # fmt: skip


def with_filter_options(fn: Any) -> Any:
    """Add the FILTER_OPTIONS to a command where its ``filter_flags`` parameter stands, and hand the command
    the filter keys given (list flags only when repeated at least once) as ``filter_flags``: one option
    group shared by ``create`` and ``update``, as sqlite-utils shares its option decorators."""
    import functools
    import inspect
    import typing

    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)  # the module's string annotations, resolved here
    params = [p.replace(annotation=hints[p.name]) for p in signature.parameters.values()]
    at = [p.name for p in params].index("filter_flags")
    added = [
        inspect.Parameter(key, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=kind)
        for key, kind in FILTER_OPTIONS
    ]

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        given = {key: kwargs.pop(key) for key, _ in FILTER_OPTIONS}
        kwargs["filter_flags"] = {k: v for k, v in given.items() if v not in (None, [])}
        return fn(*args, **kwargs)

    merged = [*params[:at], *added, *params[at + 1 :]]
    command.__signature__ = signature.replace(parameters=merged, return_annotation=None)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in merged}
    return command


def _read_filters_source(text: str) -> dict[str, Any]:
    """``--filters`` JSON, @FILE or - (stdin), read with a size bound."""
    from eventctl.cli._common import read_bounded
    from eventctl.filters import MAX_FILTERS_BYTES, parse_filters_json

    source = "--filters"
    if text == "-" or text.startswith("@"):
        where = "-" if text == "-" else text[1:]
        text = read_bounded(where, limit=MAX_FILTERS_BYTES, what="--filters")
        source = "--filters from stdin" if where == "-" else f"--filters file {where!r}"
    return parse_filters_json(text, source=source).to_json()


def _limit(raw: str | None) -> int | None:
    from eventctl.errors import InvalidInput
    from eventctl.models import LIMIT_MAX, LIMIT_MIN

    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise InvalidInput(
            f"--limit must be a whole number from {LIMIT_MIN} to {LIMIT_MAX}, not {raw[:40]!r}."
        ) from None


def _times(ctx: typer.Context, tz: str | None, **raw: str | None) -> dict[str, datetime | None]:
    """Parse --start/--end/--at; an empty string means 'no bound'."""
    from eventctl.timeparse import parse_time, utcnow

    zone = zone_for(ctx, tz)
    now = utcnow()
    out: dict[str, datetime | None] = {}
    for key, text in raw.items():
        if text is None:
            continue
        out[key] = None if not text.strip() else parse_time(text, zone=zone, now=now, what=key.replace("_date", ""))
    return out


def _filters_text(filters: dict[str, Any]) -> str:
    return ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in filters.items())


def _print_event(event: Event, *, as_json: bool, at: datetime, title: str | None = None) -> None:
    from eventctl.models import event_to_json
    from eventctl.text import for_terminal

    data = event_to_json(event, at)
    if as_json:
        emit_json(data)
        return
    from rich.table import Table

    table = Table(show_header=False, title=title, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in data.items():
        if key == "filters":
            value = _filters_text(value) or "(none)"
        table.add_row(key, "" if value is None else for_terminal(value), end_section=False)
    console().print(table, markup=False)


def _short_time(value: str | None) -> str | None:
    """``2026-12-07T03:30:00.123Z`` → ``2026-12-07 03:30Z``: a table cell that never wraps (UTC, minutes)."""
    return None if value is None else f"{value[:10]} {value[11:16]}Z"


def _list_columns() -> dict[str, Any]:
    return {
        "uid": lambda r: r["uid"][:8],
        "name": itemgetter("name"),
        "page": itemgetter("page_context"),
        "status": lambda r: r["status"] + (" (default)" if r["is_default"] else ""),
        "start": lambda r: _short_time(r["start_date"]),
        "end": lambda r: _short_time(r["end_date"]),
        "limit": itemgetter("limit"),
        "filters": lambda r: _filters_text(r["filters"]),
    }


def _event_fields(
    name: str | None, page: str | None, description: str | None, limit: str | None, **flags: bool | None
) -> dict[str, Any]:
    """The event fields given on the command line (None = not given)."""
    fields: dict[str, Any] = {"name": name, "page_context": page, "description": description, **flags}
    fields["limit"] = _limit(limit)
    return {k: v for k, v in fields.items() if v is not None}


@with_filter_options
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", metavar="TEXT", help="1-200 characters.", show_default=False)],
    page: Annotated[
        str,
        typer.Option(
            "--page",
            metavar="PAGE",
            help="Page key: a route (/review/audio) or a key (doc_digitization).",
            show_default=False,
        ),
    ],
    description: DescOpt = None,
    filters: FiltersOpt = None,
    category: CategoryOpt = None,
    filter_flags: dict[str, Any] | None = None,  # with_filter_options: one option per filter key
    limit: Annotated[
        str | None, typer.Option("--limit", metavar="N", help="Records per review request, 1-100 [default: 20].")
    ] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it switched off.")] = False,
    default: Annotated[
        bool, typer.Option("--default", help="The page's fallback event, answered when no campaign is live.")
    ] = False,
    created_by: ByOpt = None,
    allow_overlap: OverlapOpt = False,
    tz: TzOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Create an event. Flag filters merge over --filters."""
    from eventctl.backends import FilterEdit
    from eventctl.config import default_actor
    from eventctl.shapes import EventCreate, validate_model
    from eventctl.timeparse import utcnow

    st = state(ctx)
    base = _read_filters_source(filters) if filters is not None else {}
    flags = filter_flags or {}
    fields = _event_fields(name, page, description, limit, is_active=not inactive, is_default=default)
    fields.update(_times(ctx, tz, start_date=start, end_date=end))
    actor = default_actor(st.settings, created_by)
    validate_model(EventCreate, {**fields, "filters": {**base, **flags}})  # refuse bad input before the database
    backend = st.backend()
    try:
        event = backend.create(
            fields,
            filters=FilterEdit(base=base, flags=flags, categories=category),
            actor=actor,
            allow_overlap=allow_overlap,
        )
    finally:
        print_notes(backend)
    _print_event(event, as_json=json_, at=utcnow(), title="Created")


@with_filter_options
def update(
    ctx: typer.Context,
    uid: UidArg,
    name: Annotated[
        str | None, typer.Option("--name", metavar="TEXT", help="1-200 characters.", show_default=False)
    ] = None,
    page: PageOpt = None,
    description: DescOpt = None,
    filters: FiltersOpt = None,
    category: CategoryOpt = None,
    filter_flags: dict[str, Any] | None = None,  # with_filter_options: one option per filter key
    limit: Annotated[
        str | None, typer.Option("--limit", metavar="N", help="Records per review request, 1-100.", show_default=False)
    ] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive", help="Switch on or off.")] = None,
    default: Annotated[
        bool | None, typer.Option("--default/--not-default", help="Make it the page's fallback event, or not.")
    ] = None,
    clear_start: Annotated[bool, typer.Option("--clear-start", help="Remove the lower bound.")] = False,
    clear_end: Annotated[bool, typer.Option("--clear-end", help="Remove the upper bound.")] = False,
    clear_filters: Annotated[bool, typer.Option("--clear-filters", help="Start from empty filters.")] = False,
    created_by: Annotated[
        str | None,
        typer.Option(
            "--created-by",
            metavar="NAME",
            help="Acting admin, for the audit trail (created_by is kept) [env: EVENTCTL_ACTOR].",
            show_default=False,
        ),
    ] = None,
    allow_overlap: OverlapOpt = False,
    tz: TzOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Change the fields given; refreshes updated_at.

    --filters replaces the stored filters; filter flags alone merge over them.
    """
    from eventctl.backends import FilterEdit
    from eventctl.config import default_actor
    from eventctl.errors import InvalidInput
    from eventctl.shapes import EventUpdate, validate_model
    from eventctl.timeparse import utcnow

    actor = default_actor(state(ctx).settings, created_by)
    if clear_start and start is not None:
        raise InvalidInput("Give --start or --clear-start, not both.")
    if clear_end and end is not None:
        raise InvalidInput("Give --end or --clear-end, not both.")
    base = _read_filters_source(filters) if filters is not None else None
    flags = filter_flags or {}
    fields = _event_fields(name, page, description, limit, is_active=active, is_default=default)
    fields.update(_times(ctx, tz, start_date=start, end_date=end))
    if clear_start:
        fields["start_date"] = None
    if clear_end:
        fields["end_date"] = None
    edit = FilterEdit(base=base, flags=flags, categories=category, clear=clear_filters)
    validate_model(EventUpdate, {**fields, **({"filters": {**(base or {}), **flags}} if edit.touches else {})})
    backend = state(ctx).backend()
    try:
        event = backend.update(uid, fields, filters=edit, actor=actor, allow_overlap=allow_overlap)
    finally:
        print_notes(backend)
    _print_event(event, as_json=json_, at=utcnow(), title="Updated")


def show(ctx: typer.Context, uid: UidArg, json_: JsonOpt = False) -> None:
    """Show one event."""
    from eventctl.timeparse import utcnow

    event = state(ctx).backend().get(uid)
    _print_event(event, as_json=json_, at=utcnow())


def list_(
    ctx: typer.Context,
    page: OnlyPageOpt = None,
    status: StatusOpt = "all",
    limit: Annotated[
        int | None, typer.Option("--limit", metavar="N", min=1, help="At most N events.", show_default=False)
    ] = None,
    offset: Annotated[int, typer.Option("--offset", metavar="N", min=0, help="Skip the first N events.")] = 0,
    json_: JsonOpt = False,
) -> None:
    """List events, newest first (--json streams, in constant memory)."""
    from eventctl.events import check_status
    from eventctl.models import event_to_json
    from eventctl.timeparse import utcnow

    status = check_status(status)
    now = utcnow()
    events = state(ctx).backend().iter_events(page=page, status=status, offset=offset, limit=limit, at=now)
    rows = (event_to_json(e, now) for e in events)
    print_rows(rows, as_json=json_, empty="No events.", columns=_list_columns(), no_wrap=("status", "start", "end"))


def delete(
    ctx: typer.Context,
    uid: UidArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    created_by: ByOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Delete an event (asks first; --yes skips the question)."""
    from eventctl.config import default_actor
    from eventctl.errors import InvalidInput
    from eventctl.models import event_to_json
    from eventctl.text import for_terminal
    from eventctl.timeparse import utcnow

    actor = default_actor(state(ctx).settings, created_by)
    backend = state(ctx).backend()
    event = backend.get(uid)
    if not yes:
        if not _common.can_ask():
            raise InvalidInput("Refusing to delete without confirmation: no terminal to ask; pass --yes.")
        question = f"Delete event {event.uid} ({for_terminal(event.name)!r} on {for_terminal(event.page_context)})?"
        if not typer.confirm(question, err=True):
            note("Not deleted.")
            raise typer.Exit(0)
    try:
        deleted = backend.delete(event, actor=actor)
    finally:
        print_notes(backend)
    if json_:
        emit_json(event_to_json(deleted, utcnow()))
    else:
        note(f"Deleted event {deleted.uid}.")


def current(
    ctx: typer.Context,
    page: Annotated[str, typer.Option("--page", metavar="PAGE", help="Page key to resolve.", show_default=False)],
    at: Annotated[str | None, typer.Option("--at", metavar="TIME", help="Resolve at this time instead of now.")] = None,
    tz: TzOpt = None,
    json_: JsonOpt = False,
) -> None:
    """What is live for this page (exit 0 with null when nothing is)."""
    from eventctl.routes import normalize_route
    from eventctl.text import for_terminal
    from eventctl.timeparse import utcnow

    now = utcnow()
    when = (_times(ctx, tz, at=at).get("at") or now) if at is not None else now
    route = normalize_route(page)  # malformed → exit 2 before any database work
    event = None
    if route is not None:
        backend = state(ctx).backend()
        try:
            # without --at: the backend's own "now" (a server answers as it does the review page)
            event = backend.current(route=route, at=when if at is not None else None)
        finally:
            print_notes(backend)
    if event is not None:
        _print_event(event, as_json=json_, at=when)
    elif json_:
        emit_json(None)
    else:
        note(f"No live event for {for_terminal(route)}." if route else "No page key given: nothing is live.")


def register(app: typer.Typer) -> None:
    for fn, name in (
        (create, "create"),
        (list_, "list"),
        (show, "show"),
        (update, "update"),
        (delete, "delete"),
        (current, "current"),
    ):
        app.command(name)(handle_errors(fn))
