"""``GET``/``HEAD /api/v1/events/current``: a per-page cache, versioned by the database's change counter.

One responsibility a module:

* ``record`` — a held page (one bytes record, stamped with the counter its load read) and answer encoding;
* ``cache`` — the page cache: loop-only, no I/O, and the one rule deciding what may be kept;
* ``keys`` — which page an ``X-Page-Route`` header names (remembered aliases, bounded);
* ``loader`` — pages from the database (batched, bounded threads), stamped in the same transaction;
* ``feed`` — the change feed: polling and LISTEN, reconnection, resync, a silent listener found out;
* ``freshness`` — Cache-Control, the horizon, and the outage rules (stale grace, then 503);
* ``service`` — composes them and answers one request;
* ``asgi`` — the fast path middleware and the route's adapter.
"""

from __future__ import annotations

from eventctl.web.current.asgi import CURRENT_PATH, EVENTS_PREFIX, CurrentFastPath, send_current
from eventctl.web.current.service import CurrentService

__all__ = ["CURRENT_PATH", "EVENTS_PREFIX", "CurrentFastPath", "CurrentService", "send_current"]
