"""eventctl timeline (SPEC §9): each page's events as bars on a time axis.

The intervals and their columns come from ``eventctl.timeline`` (pure, testable at a
fixed clock and width); this module parses the options and draws them with Rich.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from eventctl.cli._common import JsonOpt, TzOpt, console, emit_json, handle_errors, note, state, zone_for

if TYPE_CHECKING:
    from datetime import datetime, tzinfo
    from pathlib import Path

    from rich.text import Text

    from eventctl.timeline import Timeline

# Styles and glyphs of the picture (tests read them from here).
STYLE_BAR = "blue"
STYLE_LIVE = "bold green"
STYLE_CONFLICT = "bold red"
STYLE_DEFAULT = "yellow"
STYLE_NOW = "magenta"
STYLE_AXIS = "dim"
GLYPH_BAR = "█"
GLYPH_CONFLICT = "▓"
GLYPH_DEFAULT = "▁"
GLYPH_NOW = "│"
GLYPH_NOW_AXIS = "▼"
GLYPH_TICK = "┬"
GLYPH_AXIS = "─"
LIVE_MARK = "● "
MIN_AXIS = 10
UID_CHARS = 8
SVG_TITLE = "eventctl timeline"


# ---------------------------------------------------------------- drawing


def label_width(timeline: Timeline, total: int) -> int:
    """The label column: as wide as the longest label, at most a third of the line (at least 12)."""
    from rich.cells import cell_len

    from eventctl.text import for_terminal

    longest = max(
        (cell_len(for_terminal(iv.name)) for lane in timeline.pages for iv in lane.intervals),
        default=0,
    )
    natural = len(LIVE_MARK) + longest + 1 + UID_CHARS
    return max(len(LIVE_MARK) + UID_CHARS + 2, min(natural, total // 3))


def axis_width(timeline: Timeline, total: int) -> tuple[int, int]:
    """(label column, axis columns) for a line ``total`` cells wide."""
    labels = label_width(timeline, total)
    return labels, max(MIN_AXIS, total - labels - 1)


def _fmt(t: datetime, zone: tzinfo) -> str:
    """``YYYY-MM-DD HH:MM`` in ``zone`` (in UTC, marked ``Z``, where the zone would leave the calendar)."""
    from datetime import UTC

    try:
        shown, mark = t.astimezone(zone), ""
    except (OverflowError, ValueError):
        shown, mark = t.astimezone(UTC), "Z"
    return f"{shown.year:04d}-{shown:%m-%d %H:%M}{mark}"


def _line(*parts: tuple[str, str | None]) -> Text:
    from rich.text import Text

    text = Text(no_wrap=True, overflow="ellipsis", end="\n")
    for chars, style in parts:
        text.append(chars, style=style)
    return text


def _cells(cells: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """Runs of equally styled cells, as ``Text.append`` takes them."""
    runs: list[tuple[str, str | None]] = []
    for char, style in cells:
        if runs and runs[-1][1] == style:
            runs[-1] = (runs[-1][0] + char, style)
        else:
            runs.append((char, style))
    return runs


def _label(name: str, uid: str, *, current: bool, width: int) -> list[tuple[str, str | None]]:
    from rich.text import Text

    from eventctl.text import for_terminal

    room = width - len(LIVE_MARK) - 1 - UID_CHARS
    shown = Text(for_terminal(name))
    shown.truncate(room, overflow="ellipsis", pad=True)
    style = STYLE_LIVE if current else None
    return [
        (LIVE_MARK if current else " " * len(LIVE_MARK), style),
        (shown.plain, style),
        (" ", None),
        (uid[:UID_CHARS], STYLE_AXIS),
    ]


def render(timeline: Timeline, *, total: int, zone: tzinfo) -> list[Text]:
    """The picture, one Rich ``Text`` per line, for a line ``total`` cells wide.

    Deterministic for a given timeline (its window and clock), width and zone.
    """
    from eventctl.text import for_terminal
    from eventctl.timeline import bars, now_column, ticks, zone_name

    labels, width = axis_width(timeline, total)
    pad = (" " * (labels + 1), None)
    now_col = now_column(timeline.now, start=timeline.start, end=timeline.end, width=width)
    tick_cols = ticks(start=timeline.start, end=timeline.end, width=width, zone=zone)

    lines = [
        _line(
            ("Timeline ", "bold"),
            (f"{_fmt(timeline.start, zone)} → {_fmt(timeline.end, zone)} ({zone_name(zone)})", None),
            (f"   now {_fmt(timeline.now, zone)}", STYLE_NOW),
        )
    ]
    tick_labels = [" "] * width
    free = 0
    for col, text in tick_cols:
        if col >= free and col + len(text) <= width:
            tick_labels[col : col + len(text)] = list(text)
            free = col + len(text) + 1
    lines.append(_line(pad, ("".join(tick_labels), STYLE_AXIS)))
    axis: list[tuple[str, str | None]] = [(GLYPH_AXIS, STYLE_AXIS)] * width
    for col, _ in tick_cols:
        axis[col] = (GLYPH_TICK, STYLE_AXIS)
    if now_col is not None:
        axis[now_col] = (GLYPH_NOW_AXIS, STYLE_NOW)
    lines.append(_line(pad, *_cells(axis)))

    for page, page_bars in bars(timeline, width=width):
        lines.append(_line((for_terminal(page), "bold")))
        if not page_bars:
            lines.append(_line(("  (no active events in this window)", STYLE_AXIS)))
        for bar in page_bars:
            iv = bar.interval
            row: list[tuple[str, str | None]] = [(" ", None)] * width
            if now_col is not None:
                row[now_col] = (GLYPH_NOW, STYLE_NOW)
            glyph = GLYPH_DEFAULT if iv.is_default else GLYPH_BAR
            style = STYLE_DEFAULT if iv.is_default else (STYLE_LIVE if iv.current else STYLE_BAR)
            if iv.is_default and iv.current:
                style = f"{STYLE_DEFAULT} bold"
            for col in range(bar.col_start, bar.col_end):
                row[col] = (glyph, style)
            for a, b in bar.conflict_cols:
                for col in range(a, b):
                    row[col] = (GLYPH_DEFAULT if iv.is_default else GLYPH_CONFLICT, STYLE_CONFLICT)
            lines.append(_line(*_label(iv.name, iv.uid, current=iv.current, width=labels), (" ", None), *_cells(row)))
    if not timeline.pages:
        lines.append(_line(("No active events in this window.", STYLE_AXIS)))
    lines.append(
        _line(
            (GLYPH_BAR, STYLE_BAR),
            (" campaign  ", STYLE_AXIS),
            (GLYPH_CONFLICT, STYLE_CONFLICT),
            (" overlap  ", STYLE_AXIS),
            (GLYPH_DEFAULT, STYLE_DEFAULT),
            (" page default  ", STYLE_AXIS),
            (LIVE_MARK.strip(), STYLE_LIVE),
            (" live now  ", STYLE_AXIS),
            (GLYPH_NOW, STYLE_NOW),
            (" now", STYLE_AXIS),
        )
    )
    return lines


def svg_document(lines: list[Text], *, total: int, timeline: Timeline) -> str:
    """The same picture as an SVG document (Rich's recorder), always in colour.

    A ``<title>`` and a ``<desc>`` listing each page's events by name and uid prefix make
    the file searchable (Rich draws spaces as no-break spaces) and accessible.
    """
    import io
    from xml.sax.saxutils import escape

    from rich.console import Console

    from eventctl.text import for_terminal

    recorder = Console(
        record=True,
        width=total,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        no_color=False,
        highlight=False,
        soft_wrap=False,
    )
    for line in lines:
        recorder.print(line, no_wrap=True, overflow="ellipsis")
    document = recorder.export_svg(title=SVG_TITLE)
    desc = "\n".join(
        f"{for_terminal(lane.page_context)}: {for_terminal(iv.name)} ({iv.uid[:UID_CHARS]})"
        for lane in timeline.pages
        for iv in lane.intervals
    )
    head = document.index(">", document.index("<svg")) + 1
    meta = f"\n    <title>{escape(SVG_TITLE)}</title>\n    <desc>{escape(desc)}</desc>"
    return document[:head] + meta + document[head:]


# ---------------------------------------------------------------- options


def _svg_target(raw: str | None, *, as_json: bool) -> Path | None:
    """The --svg file, checked before any database work; ``-`` is stdout (returns None)."""
    import os
    from pathlib import Path

    from eventctl.errors import InvalidInput
    from eventctl.text import for_terminal

    if raw is None or raw == "-":
        if raw == "-" and as_json:
            raise InvalidInput("--svg - and --json both write to stdout; give --svg a file name.")
        return None
    if not raw.strip():
        raise InvalidInput("--svg needs a file name.")
    path = Path(raw).expanduser()
    shown = for_terminal(str(path)[:200])
    if path.is_dir():
        raise InvalidInput(f"Cannot write the SVG file {shown!r}: it is a directory.")
    parent = path.parent
    if not parent.is_dir():
        raise InvalidInput(f"Cannot write the SVG file {shown!r}: its directory does not exist.")
    if not os.access(path if path.exists() else parent, os.W_OK):
        raise InvalidInput(f"Cannot write the SVG file {shown!r}: permission denied.")
    return path


def _write_svg(path: Path, document: str) -> None:
    from eventctl.errors import InvalidInput
    from eventctl.text import for_terminal

    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(document)
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise InvalidInput(f"Cannot write the SVG file {for_terminal(str(path)[:200])!r}: {reason}.") from None


def _window(ctx: typer.Context, tz: str | None, raw_from: str | None, raw_to: str | None) -> tuple[Any, ...]:
    """(zone, from, to, now): --from defaults to now, --to to 30 days after --from."""
    from eventctl.errors import InvalidInput
    from eventctl.timeline import DEFAULT_SPAN
    from eventctl.timeparse import parse_time, utcnow

    zone = zone_for(ctx, tz)
    now = utcnow()
    start = parse_time(raw_from, zone=zone, now=now, what="--from") if raw_from is not None else now
    if raw_to is not None:
        end = parse_time(raw_to, zone=zone, now=now, what="--to")
    else:
        try:
            end = start + DEFAULT_SPAN
        except OverflowError:
            raise InvalidInput("--from is too late for the default 30-day axis; give --to as well.") from None
    if end <= start:
        raise InvalidInput("--to must be after --from.")
    return zone, start, end, now


def timeline(
    ctx: typer.Context,
    page: Annotated[
        list[str] | None,
        typer.Option(
            "--page",
            metavar="PAGE",
            help="Only this page key (repeatable); shown even when it has no events.",
            show_default=False,
        ),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="TIME",
            help="Start of the axis: ISO 8601, 'now', +2h/-7d [default: now].",
            show_default=False,
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="TIME",
            help="End of the axis (exclusive) [default: 30 days after --from].",
            show_default=False,
        ),
    ] = None,
    tz: TzOpt = None,
    svg: Annotated[
        str | None,
        typer.Option(
            "--svg",
            metavar="FILE",
            help="Write the picture as an SVG file instead of printing it (- for stdout).",
            show_default=False,
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Draw each page's active events on a time axis: now marked, the page default as a thin
    band, overlapping windows in red, the live event highlighted."""
    from eventctl.routes import require_route
    from eventctl.timeline import build

    zone, start, end, now = _window(ctx, tz, from_, to)
    pages = list(dict.fromkeys(require_route(p) for p in page)) if page else None
    svg_path = _svg_target(svg, as_json=json_)
    events = state(ctx).backend().timeline_events(pages=pages, start=start, end=end, now=now)
    picture = build(events, start=start, end=end, now=now, pages=pages)

    out = console()
    total = out.width
    lines = render(picture, total=total, zone=zone)
    if svg_path is not None:
        from eventctl.text import for_terminal

        _write_svg(
            svg_path, svg_document(lines, total=total, timeline=picture)
        )  # before stdout: a refusal prints nothing
        note(f"Wrote the timeline to {for_terminal(str(svg_path))}.")
    if json_:
        emit_json(picture.to_json(zone))
    elif svg == "-":
        import sys

        sys.stdout.write(svg_document(lines, total=total, timeline=picture))
    elif svg is None:
        for line in lines:
            out.print(line, no_wrap=True, overflow="ellipsis")


def register(app: typer.Typer) -> None:
    app.command("timeline")(handle_errors(timeline))
