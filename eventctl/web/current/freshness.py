"""The freshness and outage rules: how long an answer may be cached, and when the database is gone.

``Cache-Control``: ``max-age`` never past the TTL nor the page's next boundary. While the
database fails, answers come from the pages held for ``stale_grace`` seconds after the
last successful call (``max-age=0``, ``stale-if-error`` for what is left), then 503.
``horizon``: how far ahead a load reads (``WAIT_AGE`` + the larger of the grace and the
TTL), the longest a page is ever answered from or cached downstream.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from eventctl.errors import DatabaseUnavailable
from eventctl.web.current.record import Answer

if TYPE_CHECKING:
    from eventctl.web.metrics import Metrics

log = logging.getLogger("eventctl.web")
# a page is reloaded at least this often: rows changed by hand with SQL (no notification, no
# counter) are seen then. Writes through eventctl are pushed; this is only the safety net, and
# it costs a reload per held page per period (100,000 pages: ~170 a second in the background)
MAX_ENTRY_AGE = 600.0
# a page older than MAX_ENTRY_AGE is reloaded in the background, answered from memory meanwhile;
# older than this (not asked for a while), a request waits for its reload
WAIT_AGE = 2 * MAX_ENTRY_AGE


class Freshness:
    def __init__(self, *, cache_ttl: float, stale_grace: float, clock: Callable[[], float], metrics: Metrics) -> None:
        self.cache_ttl = cache_ttl
        self.stale_grace = stale_grace
        self.clock = clock
        self.metrics = metrics
        self.horizon = WAIT_AGE + max(stale_grace, cache_ttl)
        self.last_success: float | None = None
        self.failing = False
        # the cause is logged once, not on every request
        self.unavailable = Answer.error(DatabaseUnavailable("The database is unavailable."), math.inf)
        # a boundary further off than both: the same Cache-Control every time, made once
        self._far = max(cache_ttl, stale_grace) + 1.0
        self._far_cache_control = self._value(self._far, 0.0, False)

    def succeeded(self, at: float) -> None:
        """A database call that began at ``at`` worked."""
        self.last_success = max(self.last_success or 0.0, at)

    def recovered(self) -> None:
        self.last_success, self.failing = self.clock(), False

    def failed(self, exc: BaseException, held: int) -> None:
        self.metrics.db_error("current")
        if self.last_success is not None:
            self.metrics.data_age(self.clock() - self.last_success, held)
        if not self.failing:
            log.warning("database unavailable, serving last good data: %s", str(exc).splitlines()[0][:300])
        self.failing = True

    def beyond_grace(self, now: float) -> bool:
        return self.failing and (self.last_success is None or now - self.last_success > self.stale_grace)

    def cache_control(self, until: float, now: float, stale: bool) -> bytes:
        """max-age ≤ TTL and ≤ the next boundary; stale-if-error never reaches past it either.

        Stale answers (database down) get max-age=0, so caches come back to us, and
        stale-if-error for what is left of the grace period.
        """
        if not stale and until - now >= self._far:
            return self._far_cache_control
        return self._value(until - now, now, stale)

    def _value(self, until_boundary: float, now: float, stale: bool) -> bytes:
        if stale:
            max_age = 0
            grace_left = self.stale_grace - (now - (self.last_success or now))
            stale_if_error = math.floor(min(grace_left, until_boundary))
        else:
            max_age = max(0, math.floor(min(self.cache_ttl, until_boundary)))
            stale_if_error = math.floor(min(self.stale_grace, until_boundary)) - max_age
        value = f"public, max-age={max_age}"
        if stale_if_error > 0:
            value += f", stale-if-error={stale_if_error}"
        return value.encode("ascii")
