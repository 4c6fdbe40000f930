"""The page cache: held pages by key, bounded, and the one rule deciding what may be kept.

Runs only on the event loop and does no I/O. Every record carries the change counter its
load read (``record.stamp_of``); every invalidation carries the counter it reflects. The
cache keeps a floor per page and a global one, and ``store`` refuses a record older than
either — the only place a load is judged. ``invalidate`` drops what is older than its
counter and raises the floor, so a load still running that read an older counter is
refused when it lands, and a duplicate or late invalidation drops nothing newer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator

from eventctl.web.current.record import stamp_of

MAX_FLOORS = 100_000  # page floors remembered while loads run; more: one global floor instead


def key_of(route: str) -> bytes:
    return route.encode("utf-8", "surrogatepass")


def route_of(key: bytes) -> str:
    return key.decode("utf-8", "surrogatepass")


class PageCache:
    """Held pages by key (a page key's UTF-8 bytes), least recently used first."""

    def __init__(self, max_pages: int) -> None:
        self.max_pages = max(1, max_pages)
        self.pages: OrderedDict[bytes, bytes] = OrderedDict()  # read directly on the hot path
        self.floor = 0  # no record read before this counter is kept, for any page
        self._floors: dict[bytes, int] = {}  # the same, per page (only while loads may still land)
        self.known = 0  # the newest change counter any invalidation carried (what a replica must reach)

    def __len__(self) -> int:
        return len(self.pages)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.pages)

    def get(self, key: bytes) -> bytes | None:
        return self.pages.get(key)

    def touch(self, key: bytes) -> None:
        self.pages.move_to_end(key)

    def acceptable(self, key: bytes, stamp: int) -> bool:
        """The rule: a record is kept only if it read no older a counter than its page's floor and the global one."""
        return stamp >= max(self.floor, self._floors.get(key, 0))

    def floor_for(self, routes: list[str]) -> int:
        """The counter a replica must have replayed before a load reads it: the newest change this cache
        was told of (``known``). Unlike the per-page floors it is never forgotten: a replica may lag
        behind a write after every load of it has ended (read from a load's thread; a change told
        meanwhile only makes the cache refuse the record)."""
        return max(self.floor, self.known)

    def store(self, key: bytes, record: bytes) -> bool:
        """Hold ``record`` for ``key`` unless an invalidation newer than its load came first."""
        if not self.acceptable(key, stamp_of(record)):
            return False
        self.pages[key] = record
        self.pages.move_to_end(key)
        while len(self.pages) > self.max_pages:
            self.pages.popitem(last=False)
        return True

    def replace(self, key: bytes, old: bytes, new: bytes) -> None:
        """``new`` (the same load, its answer computed) for ``old``, if ``old`` is still held."""
        if self.pages.get(key) is old:
            self.pages[key] = new

    def invalidate(self, keys: Iterable[bytes], version: int) -> int:
        """The pages changed by writes up to ``version``: records read before it are dropped (and refused later)."""
        self.known = max(self.known, version)
        dropped = 0
        for key in keys:
            if version > self._floors.get(key, 0):
                self._floors[key] = version
            record = self.pages.get(key)
            if record is not None and stamp_of(record) < version:
                del self.pages[key]
                dropped += 1
        if len(self._floors) > MAX_FLOORS:  # far more than loads ever in flight: coarser, still right
            self.invalidate_all(max(self._floors.values()))
        return dropped

    def invalidate_all(self, version: int) -> int:
        """Any page may have changed up to ``version``: every record read before it is dropped."""
        self.known = max(self.known, version)
        if version <= self.floor:
            return 0
        self.floor = version
        self._floors = {key: floor for key, floor in self._floors.items() if floor > version}
        stale = [key for key, record in self.pages.items() if stamp_of(record) < version]
        for key in stale:
            del self.pages[key]
        return len(stale)

    def forget_floors(self) -> None:
        """No load is running: every later load reads a counter at least as new as any floor, so
        the per-page floors can go (they only ever matter to loads that began before them)."""
        self._floors.clear()
