"""What a held /current page costs, by representation: the packed record (deflated or not)
against a plain slotted record, on the two loads that matter.

    python bench/record_memory.py [--pages 100000]

* scale: every page holds one live event (bench/scale.py's shape: 100,000 pages held);
* realistic: a few dozen campaign pages with an event, the rest unknown routes (empty pages).

Memory is what the held pages and their keys add to the process (tracemalloc), per page.
"""

from __future__ import annotations

import argparse
import tracemalloc
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eventctl.web.current.record import Deflater, HeldEvent, make_record, pack_events
from eventctl.web.errors import dumps


@dataclass(frozen=True, slots=True)
class SlottedPage:
    """The simplest alternative: the events as objects, and the answer's fields."""

    loaded_at: float
    stamp: int
    until: float
    etag: bytes
    events: tuple[HeldEvent, ...]


def event(page: str, now: datetime) -> HeldEvent:
    uid = str(uuid.uuid4())
    doc = {
        "uid": uid, "name": f"Campaign for {page}", "description": None, "page_context": page,
        "filters": {"language": ["Telugu"], "media_type": ["audio"], "category_ids": [], "source_label": None},
        "limit": 20, "is_active": True, "is_default": False, "start_date": (now - timedelta(days=1)).isoformat(),
        "end_date": (now + timedelta(days=6)).isoformat(), "created_by": "admin",
        "created_at": now.isoformat(), "updated_at": now.isoformat(), "status": "live",
    }  # fmt: skip
    return HeldEvent(uid, True, False, now - timedelta(days=1), now + timedelta(days=6), dumps(doc))


def measure(pages: list[tuple[str, bool]], hold, now: datetime) -> float:
    """Each page's events are read (made) within the measure, as a load makes them."""
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    held: OrderedDict[bytes, object] = OrderedDict()
    for page, has_event in pages:
        held[page.encode()] = hold([event(page, now)] if has_event else [])
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / len(pages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=100_000)
    args = parser.parse_args()
    now = datetime.now(UTC)
    deflater = Deflater(now)
    loads = {
        "scale (an event a page)": [
            (f"/review/page-{i}", [event(f"/review/page-{i}", now)]) for i in range(args.pages)
        ],
        "realistic (40 campaigns, the rest unknown routes)": [
            (f"/review/page-{i}", [event(f"/review/page-{i}", now)] if i < 40 else []) for i in range(args.pages)
        ],
    }
    ways = {
        "packed, deflated": lambda evs: make_record(0.0, 1, pack_events(evs, deflater, True)),
        "packed, plain": lambda evs: make_record(0.0, 1, pack_events(evs, deflater, False)),
        "slotted record": lambda evs: SlottedPage(0.0, 1, 0.0, b'"' + b"0" * 32 + b'"', tuple(evs)),
    }
    print(f"{args.pages:,} pages held; bytes a page (the page's key and the cache's entry included)")
    print(f"{'load':50s} " + " ".join(f"{name:>18s}" for name in ways))
    for load, pages in loads.items():
        sizes = [measure(pages, hold, now) for hold in ways.values()]
        print(f"{load:50s} " + " ".join(f"{size:18.0f}" for size in sizes))
        mib = [size * args.pages / 2**20 for size in sizes]
        print(f"{'  (MiB for all pages)':50s} " + " ".join(f"{m:18.1f}" for m in mib))


if __name__ == "__main__":
    main()
