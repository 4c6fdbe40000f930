"""create / list / show / update / delete / current."""

from __future__ import annotations

import sys
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from eventctl.cli._common import JsonOpt, TzOpt, console, emit_json, handle_errors, note, print_rows, state

if TYPE_CHECKING:
    from datetime import datetime

    from sqlmodel import Session

    from eventctl.models import Event

_F = "Filters"
PageOpt = Annotated[
    str | None, typer.Option("--page", metavar="ROUTE", help="Page route, e.g. /review/audio.", show_default=False)
]
DescOpt = Annotated[
    str | None, typer.Option("--description", metavar="TEXT", help="Up to 2000 characters.", show_default=False)
]
FiltersOpt = Annotated[
    str | None,
    typer.Option(
        "--filters",
        metavar="JSON|@FILE|-",
        help="Filters as JSON, @FILE, or - for stdin.",
        rich_help_panel=_F,
        show_default=False,
    ),
]
CategoryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--category",
        metavar="UID|NAME",
        help="Category uid or name (repeatable).",
        rich_help_panel=_F,
        show_default=False,
    ),
]
MediaOpt = Annotated[
    str | None, typer.Option("--media-type", metavar="TYPE", help="text | audio | video | image.", rich_help_panel=_F)
]
RightsOpt = Annotated[
    str | None,
    typer.Option(
        "--release-rights", metavar="RIGHTS", help="creator | family_or_friend | downloaded.", rich_help_panel=_F
    ),
]
ExtractOpt = Annotated[
    str | None, typer.Option("--extraction-type", metavar="TYPE", help="manual | ocr | asr.", rich_help_panel=_F)
]
PubOpt = Annotated[
    str | None, typer.Option("--published-date", metavar="YYYY-MM-DD", help="ISO date YYYY-MM-DD.", rich_help_panel=_F)
]
LangOpt = Annotated[
    str | None, typer.Option("--language", metavar="CODE", help="ISO 639 code, e.g. te.", rich_help_panel=_F)
]
LimitOpt = Annotated[
    str | None, typer.Option("--limit", metavar="N", help="Records per fetch, 1-500 [default: 20].", show_default=False)
]
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


def _read_filters_source(text: str) -> dict[str, Any]:
    from eventctl.errors import InvalidInput
    from eventctl.filters import parse_filters_json

    source = "--filters"
    if text == "-":
        text, source = sys.stdin.read(), "--filters from stdin"
    elif text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            text, source = path.read_text(encoding="utf-8"), f"--filters file {str(path)!r}"
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise InvalidInput(f"Cannot read --filters file {str(path)!r}: {reason}.") from None
    return parse_filters_json(text, source=source).to_json()


def _flag_filters(**flags: Any) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None}


def _build_filters(session: Session, base: dict[str, Any], categories: list[str] | None, flags: dict[str, Any]) -> Any:
    from eventctl.categories import resolve_category_refs
    from eventctl.filters import parse_filters

    merged = {**base, **flags}
    if categories:
        merged["category_ids"] = resolve_category_refs(session, categories)
    return parse_filters(merged)


def _limit(raw: str | None) -> int | None:
    from eventctl.errors import InvalidInput

    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise InvalidInput(f"--limit must be a whole number from 1 to 500, not {raw!r}.") from None


def _times(ctx: typer.Context, tz: str | None, **raw: str | None) -> dict[str, datetime | None]:
    """Parse --start/--end; an empty string means 'no bound'."""
    from eventctl.timeparse import get_zone, parse_time, utcnow

    zone = get_zone(tz if tz is not None else state(ctx).settings.tz)
    now = utcnow()
    out: dict[str, datetime | None] = {}
    for key, text in raw.items():
        if text is None:
            continue
        out[key] = None if not text.strip() else parse_time(text, zone=zone, now=now, what=key.replace("_date", ""))
    return out


def _print_event(event: Event, *, as_json: bool, at: datetime, title: str | None = None) -> None:
    from eventctl.models import event_to_json

    data = event_to_json(event, at)
    if as_json:
        emit_json(data)
        return
    from rich.table import Table

    table = Table(show_header=False, title=title, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in data.items():
        if key == "filters":
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "(none)"
        table.add_row(key, "" if value is None else str(value))
    console().print(table)


def _print_list(events: list[Event], *, as_json: bool, at: datetime) -> None:
    from eventctl.models import event_to_json

    print_rows(
        [event_to_json(e, at) for e in events],
        as_json=as_json,
        empty="No events.",
        columns={
            "uid": lambda r: r["uid"][:8],
            "name": itemgetter("name"),
            "page": itemgetter("page_context"),
            "status": itemgetter("status"),
            "start": itemgetter("start_date"),
            "end": itemgetter("end_date"),
            "limit": itemgetter("limit"),
            "filters": lambda r: ", ".join(f"{k}={v}" for k, v in r["filters"].items()),
        },
    )


def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", metavar="TEXT", help="1-200 characters.", show_default=False)],
    page: Annotated[
        str, typer.Option("--page", metavar="ROUTE", help="Page route, e.g. /review/audio.", show_default=False)
    ],
    description: DescOpt = None,
    filters: FiltersOpt = None,
    category: CategoryOpt = None,
    media_type: MediaOpt = None,
    release_rights: RightsOpt = None,
    extraction_type: ExtractOpt = None,
    published_date: PubOpt = None,
    language: LangOpt = None,
    limit: LimitOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it switched off.")] = False,
    created_by: ByOpt = None,
    allow_overlap: OverlapOpt = False,
    tz: TzOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Create an event. Flag filters merge over --filters."""
    from eventctl import events as core
    from eventctl.config import default_actor
    from eventctl.db import write_session
    from eventctl.shapes import EventCreate, validate_model
    from eventctl.timeparse import utcnow

    st = state(ctx)
    base = _read_filters_source(filters) if filters is not None else {}
    flags = _flag_filters(
        media_type=media_type,
        release_rights=release_rights,
        extraction_type=extraction_type,
        published_date=published_date,
        language=language,
    )
    times = _times(ctx, tz, start_date=start, end_date=end)
    fields: dict[str, Any] = {"name": name, "page_context": page, "description": description, **times}
    if (n := _limit(limit)) is not None:
        fields["limit"] = n
    fields["is_active"] = not inactive
    actor = (created_by or "").strip() or default_actor(st.settings)
    validate_model(EventCreate, fields)  # refuse bad input before touching the database
    engine = st.engine()
    with write_session(engine) as session:
        fields["filters"] = _build_filters(session, base, category, flags)
        data = validate_model(EventCreate, fields)
        event = core.create_event(session, data=data, actor=actor, allow_overlap=allow_overlap)
    _print_event(event, as_json=json_, at=utcnow(), title="Created")


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
    media_type: MediaOpt = None,
    release_rights: RightsOpt = None,
    extraction_type: ExtractOpt = None,
    published_date: PubOpt = None,
    language: LangOpt = None,
    limit: LimitOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive", help="Switch on or off.")] = None,
    clear_start: Annotated[bool, typer.Option("--clear-start", help="Remove the lower bound.")] = False,
    clear_end: Annotated[bool, typer.Option("--clear-end", help="Remove the upper bound.")] = False,
    clear_filters: Annotated[bool, typer.Option("--clear-filters", help="Start from empty filters.")] = False,
    allow_overlap: OverlapOpt = False,
    tz: TzOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Change the fields given; refreshes updated_at.

    --filters replaces the stored filters; filter flags alone merge over them.
    """
    from eventctl import events as core
    from eventctl.db import write_session
    from eventctl.errors import InvalidInput
    from eventctl.shapes import EventUpdate, validate_model
    from eventctl.timeparse import utcnow

    if clear_start and start is not None:
        raise InvalidInput("Give --start or --clear-start, not both.")
    if clear_end and end is not None:
        raise InvalidInput("Give --end or --clear-end, not both.")
    base = _read_filters_source(filters) if filters is not None else None
    flags = _flag_filters(
        media_type=media_type,
        release_rights=release_rights,
        extraction_type=extraction_type,
        published_date=published_date,
        language=language,
    )
    fields: dict[str, Any] = {
        k: v
        for k, v in {"name": name, "page_context": page, "description": description, "is_active": active}.items()
        if v is not None
    }
    fields.update(_times(ctx, tz, start_date=start, end_date=end))
    if clear_start:
        fields["start_date"] = None
    if clear_end:
        fields["end_date"] = None
    if (n := _limit(limit)) is not None:
        fields["limit"] = n
    validate_model(EventUpdate, fields)
    engine = state(ctx).engine()
    with write_session(engine) as session:
        if clear_filters or base is not None or flags or category:
            if base is None:
                base = {} if clear_filters else dict(core.get_event(session, ref=uid).filters or {})
            fields["filters"] = _build_filters(session, base, category, flags)
        if not fields:
            raise InvalidInput("Nothing to update: give at least one option.")
        changes = validate_model(EventUpdate, fields)
        event = core.update_event(session, ref=uid, changes=changes, allow_overlap=allow_overlap)
    _print_event(event, as_json=json_, at=utcnow(), title="Updated")


def show(ctx: typer.Context, uid: UidArg, json_: JsonOpt = False) -> None:
    """Show one event."""
    from eventctl import events as core
    from eventctl.db import read_session
    from eventctl.timeparse import utcnow

    with read_session(state(ctx).engine()) as session:
        event = core.get_event(session, ref=uid)
    _print_event(event, as_json=json_, at=utcnow())


def list_(
    ctx: typer.Context,
    page: Annotated[
        str | None, typer.Option("--page", metavar="ROUTE", help="Only this page route.", show_default=False)
    ] = None,
    status: Annotated[
        str, typer.Option("--status", metavar="STATUS", help="live | scheduled | expired | inactive | all.")
    ] = "all",
    json_: JsonOpt = False,
) -> None:
    """List events, newest first."""
    from eventctl import events as core
    from eventctl.db import read_session
    from eventctl.errors import InvalidInput
    from eventctl.models import STATUSES
    from eventctl.timeparse import utcnow

    status = status.strip().lower()
    if status not in (*STATUSES, "all"):
        raise InvalidInput(f"Unknown --status {status!r}; use one of {', '.join((*STATUSES, 'all'))}.")
    if page is not None:
        from eventctl.routes import require_route

        page = require_route(page)
    now = utcnow()
    with read_session(state(ctx).engine()) as session:
        events = core.list_events(session, page=page, status=status, at=now)
    _print_list(events, as_json=json_, at=now)


def delete(
    ctx: typer.Context,
    uid: UidArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Delete an event (asks first; --yes skips the question)."""
    from eventctl import events as core
    from eventctl.db import read_session, write_session
    from eventctl.errors import InvalidInput
    from eventctl.models import event_to_json
    from eventctl.timeparse import utcnow

    engine = state(ctx).engine()
    with read_session(engine) as session:
        event = core.get_event(session, ref=uid)
    if not yes:
        if not _can_ask():
            raise InvalidInput("Refusing to delete without confirmation: no terminal to ask; pass --yes.")
        if not typer.confirm(f"Delete event {event.uid} ({event.name!r} on {event.page_context})?", err=True):
            raise typer.Exit(1)
    with write_session(engine) as session:
        deleted = core.delete_event(session, ref=str(event.uid))
    if json_:
        emit_json(event_to_json(deleted, utcnow()))
    else:
        note(f"Deleted event {deleted.uid}.")


def _can_ask() -> bool:
    """A person at a terminal can answer the confirmation."""
    return sys.stdin.isatty()


def current(
    ctx: typer.Context,
    page: Annotated[str, typer.Option("--page", metavar="ROUTE", help="Page route to resolve.", show_default=False)],
    at: Annotated[str | None, typer.Option("--at", metavar="TIME", help="Resolve at this time instead of now.")] = None,
    tz: TzOpt = None,
    json_: JsonOpt = False,
) -> None:
    """What is live for this page (exit 0 with null when nothing is)."""
    from eventctl import events as core
    from eventctl.db import read_session
    from eventctl.routes import normalize_route
    from eventctl.timeparse import utcnow

    now = utcnow()
    when = (_times(ctx, tz, at=at).get("at") or now) if at is not None else now
    route = normalize_route(page)  # malformed → exit 2 before any database work
    if route is None:
        if json_:
            emit_json(None)
        else:
            note("No page route given: nothing is live.")
        return
    with read_session(state(ctx).engine()) as session:
        event = core.resolve_current(session, route=route, at=when)
    if event is None:
        if json_:
            emit_json(None)
        else:
            note(f"No live event for {route}.")
        return
    _print_event(event, as_json=json_, at=when)


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
