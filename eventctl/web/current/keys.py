"""Which held page an ``X-Page-Route`` header names: itself, what it normalizes to, or its own answer.

Headers that are not a page key as sent (``/a/``, ``/%61``, malformed ones) are remembered,
bounded in number and length (anyone can send them).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Container

from eventctl.errors import MalformedPageHeader, MalformedRoute
from eventctl.web.current.cache import key_of
from eventctl.web.current.record import NULL_ETAG, Answer

MAX_ALIASES = 4_096  # headers remembered that are not a page key as sent
MAX_ALIAS_BYTES = 1_024  # longer headers are not remembered (a header may be ~64 KB: 4,096 of them would be 256 MB)


class PageKeys:
    def __init__(self) -> None:
        self.aliases: OrderedDict[bytes | None, bytes | Answer] = OrderedDict()

    def __contains__(self, raw: object) -> bool:
        return raw in self.aliases

    def __len__(self) -> int:
        return len(self.aliases)

    def key(self, raw: bytes | None, held: Container[bytes]) -> bytes | Answer:
        """The page key for a header (no page named: null; malformed: 400)."""
        from eventctl.routes import normalize_route

        if raw and raw in held:
            return raw
        alias = self.aliases.get(raw)
        if alias is None:
            try:
                route = normalize_route(raw)  # the header's bytes, read as UTF-8
            except MalformedRoute as exc:
                alias = Answer.error(MalformedPageHeader(exc.message), math.inf)
            else:
                alias = Answer.ok(b"null", math.inf, NULL_ETAG) if route is None else key_of(route)
            if alias != raw and (raw is None or len(raw) <= MAX_ALIAS_BYTES):
                self.aliases[raw] = alias
                while len(self.aliases) > MAX_ALIASES:
                    self.aliases.popitem(last=False)
        else:
            self.aliases.move_to_end(raw)
        return alias
