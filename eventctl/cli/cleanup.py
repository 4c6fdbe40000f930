"""eventctl cleanup (SPEC §5)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from eventctl.cli._common import JsonOpt, console, fail, handle_errors, state


def cleanup(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help="Age cut-off: 30m, 12h, 7d, 2w (units s m h d w, lower case) [env: EVENTCTL_RETENTION; default: 7d].",
        ),
    ] = None,
    uploads_dir: Annotated[
        str | None,
        typer.Option(
            "--uploads-dir", metavar="DIR", help="Uploads root [env: EVENTCTL_UPLOADS_DIR].", show_default=False
        ),
    ] = None,
    chunks_dir: Annotated[
        str | None,
        typer.Option(
            "--chunks-dir", metavar="DIR", help="Chunk uploads root [env: EVENTCTL_CHUNKS_DIR].", show_default=False
        ),
    ] = None,
    skip_events: Annotated[bool, typer.Option("--skip-events", help="Leave the events table alone.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report the plan; remove nothing.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Delete expired events, old uploads and abandoned chunk uploads."""
    from eventctl import maintenance as m
    from eventctl.config import default_actor, override
    from eventctl.text import for_terminal
    from eventctl.timeparse import isoformat, utcnow

    st = state(ctx)
    settings = override(
        st.settings,
        retention=("--older-than", older_than),
        uploads_dir=("--uploads-dir", uploads_dir),
        chunks_dir=("--chunks-dir", chunks_dir),
    )
    uploads = m.check_dir(settings.uploads_dir, "--uploads-dir")
    chunks = m.check_dir(settings.chunks_dir, "--chunks-dir")
    cutoff = m.cutoff_for(settings.retention, utcnow())
    engine = None if skip_events else st.engine()
    actor = default_actor(settings)

    reports: dict[str, m.SourceReport] = {}
    try:
        with _progress(enabled=not json_ and sys.stderr.isatty()) as (advance, set_total):
            reports["events"] = (
                m.cleanup_events(engine, cutoff=cutoff, dry_run=dry_run, actor=actor, progress=advance)
                if engine
                else m.SourceReport(skipped=True)
            )
            reports["uploads"] = (
                m.cleanup_uploads(uploads, cutoff=cutoff, dry_run=dry_run, progress=advance)
                if uploads
                else m.SourceReport(skipped=True)
            )
            reports["chunks"] = (
                m.cleanup_chunks(chunks, cutoff=cutoff, dry_run=dry_run, progress=advance, total=set_total)
                if chunks
                else m.SourceReport(skipped=True)
            )

        if json_:
            _write_json(sys.stdout, cutoff=isoformat(cutoff) or "", dry_run=dry_run, reports=reports)
        else:
            _print_summary(reports, cutoff=isoformat(cutoff) or "", dry_run=dry_run)
    finally:
        for report in reports.values():
            report.close()
    errors = sum(r.errors for r in reports.values())
    for source, r in reports.items():
        for msg in r.error_messages:
            typer.echo(f"Error: {source}: {for_terminal(msg).rstrip('.')}.", err=True)
        if r.errors > len(r.error_messages):
            typer.echo(f"Error: {source}: and {r.errors - len(r.error_messages)} more errors.", err=True)
    if errors:
        raise fail(f"{errors} item(s) could not be read or removed; the rest were processed.", 1)


def _json_string(text: str) -> str:
    """A JSON string; a file name that is not UTF-8 is written with \\u escapes (it round-trips)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(text)
    return json.dumps(text, ensure_ascii=False)


def _write_json(out: Any, *, cutoff: str, dry_run: bool, reports: dict[str, Any]) -> None:
    """The --json document, the items streamed one by one (the same text as json.dumps(indent=2))."""
    out.write(f'{{\n  "cutoff": {json.dumps(cutoff)},\n  "dry_run": {json.dumps(dry_run)},\n  "sources": {{')
    for i, (source, r) in enumerate(reports.items()):
        out.write(f"{',' if i else ''}\n    {json.dumps(source)}: {{")
        for key, value in r.summary().items():
            out.write(f"\n      {json.dumps(key)}: {json.dumps(value)},")
        out.write('\n      "items": [')
        first = True
        for item in r.items:
            out.write(f"{'' if first else ','}\n        {_json_string(item)}")
            first = False
        out.write("]" if first else "\n      ]")
        out.write("\n    }")
    out.write("\n  }\n}\n")


class _progress:
    """A Rich progress bar on stderr for people; nothing otherwise."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> tuple[Any, Any]:
        if not self.enabled:
            return None, None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console(stderr=True),
            transient=True,
        )
        self.bar.start()

        def advance(source: str, n: int) -> None:
            if source not in self.tasks:
                self.tasks[source] = self.bar.add_task(f"scanning {source}", total=None)
            self.bar.advance(self.tasks[source], n)

        def set_total(n: int) -> None:
            self.tasks["chunks"] = self.bar.add_task("scanning chunks", total=n)

        return advance, set_total

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print_summary(reports: dict[str, Any], *, cutoff: str, dry_run: bool) -> None:
    from rich.table import Table

    from eventctl.text import for_terminal

    out = console()
    if dry_run:  # one line per item, control characters escaped: a file name cannot forge a line
        for source, r in reports.items():
            for item in r.items:
                sys.stdout.write(f"would remove {source}: {for_terminal(item)}\n")
    table = Table(title=f"cleanup{' (dry run)' if dry_run else ''}: older than {cutoff}", title_justify="left")
    for col in ("source", "scanned", "removed" if not dry_run else "would remove", "bytes freed", "errors"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for source, r in reports.items():
        if r.skipped:
            table.add_row(source, "-", "-", "-", "-", style="dim")
        else:
            table.add_row(source, str(r.scanned), str(r.removed), f"{r.bytes_freed:,}", str(r.errors))
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("cleanup")(handle_errors(cleanup))
