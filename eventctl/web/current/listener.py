"""The LISTEN connection (PostgreSQL): a thread that hands each notification's payload over.

TCP keepalives find a connection dropped without a reset; ``reconnect`` replaces a connection
that is open but silent (the feed decides that); while it cannot connect it retries with
backoff. Every (re)connection and every loss is reported: notifications sent while nobody
listened are lost, so the feed resynchronizes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import URL, Engine

log = logging.getLogger("eventctl.web")
LISTEN_BACKOFF = (0.1, 5.0)  # first and longest wait between LISTEN reconnections (seconds)
LISTEN_WAKE = 0.25  # the listener checks for stop() and reconnect requests this often
PROBE_WAIT = 5.0  # how long a probe notification may take to come back before LISTEN is judged impossible
# TCP keepalives: a connection dropped without a reset (a NAT, a load balancer) is found dead
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


class CannotListen(Exception):
    """LISTEN cannot work over this URL (a hot standby, a transaction-mode pooler): polling it is."""


def check_session(conn: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    """Raise CannotListen unless a notification sent to this connection's session reaches it.

    A hot standby refuses LISTEN. Through a transaction-mode pooler (PgBouncer, managed poolers) the
    server session goes back to the pool after each transaction, so a notification reaches whoever
    holds it, not this connection: found by a round trip (LISTEN on a probe channel of its own, a
    NOTIFY from another connection, which must arrive within PROBE_WAIT).
    """
    import secrets

    import psycopg

    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    if row and row[0]:
        raise CannotListen("the server is a hot standby, which cannot LISTEN")
    channel = f"eventctl_probe_{secrets.token_hex(8)}"
    conn.execute(f"LISTEN {channel}")
    try:
        with psycopg.connect(*cargs, **cparams) as other:
            other.execute("SELECT pg_notify(%s, 'probe')", (channel,))
        if not any(note.channel == channel for note in conn.notifies(timeout=PROBE_WAIT, stop_after=1)):
            raise CannotListen("a notification to this session never arrived (a transaction-mode pooler?)")
    finally:
        conn.execute(f"UNLISTEN {channel}")


class Listener:
    def __init__(
        self,
        engine: Engine,
        url: URL,
        *,
        heard: Callable[[str], None],
        connected: Callable[[], None],
        lost: Callable[[], None],
    ) -> None:
        self.engine, self.url = engine, url
        self._heard, self._connected, self._lost = heard, connected, lost
        self.poll_hint: float | str = "?"  # the poll interval, for the log line
        self.listening = False
        self.impossible: str | None = None  # why LISTEN cannot work over this URL (the feed polls instead)
        self.connects = 0
        self.pid: int | None = None  # the listening backend's process id
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._retry = threading.Event()  # ends a backoff wait early
        self._reconnect = threading.Event()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if not self.alive:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="eventctl-listen", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Blocks until the thread has closed its connection."""
        self._stop.set()
        self._retry.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def reconnect(self) -> None:
        """Replace the connection (it is silent): within LISTEN_WAKE, without backoff."""
        self._reconnect.set()

    def retry(self) -> None:
        """End a backoff wait now (a connection may succeed again)."""
        self._retry.set()

    def _run(self) -> None:
        import psycopg

        from eventctl.events import NOTIFY_CHANNEL

        cargs, cparams = self.engine.dialect.create_connect_args(self.url)
        cparams = {**cparams, "autocommit": True, "connect_timeout": 5, "prepare_threshold": None, **KEEPALIVES}
        wait, logged = LISTEN_BACKOFF[0], False
        while not self._stop.is_set():
            self._reconnect.clear()
            try:
                with psycopg.connect(*cargs, **cparams) as conn:
                    check_session(conn, cargs, cparams)
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.pid = conn.info.backend_pid
                    self._connected()  # before `listening`: whoever sees it listening sees the resync asked for
                    self.listening, wait, logged = True, LISTEN_BACKOFF[0], False
                    self.connects += 1
                    while not self._stop.is_set() and not self._reconnect.is_set():
                        for note in conn.notifies(timeout=LISTEN_WAKE):
                            self._heard(note.payload)
            except CannotListen as exc:
                self.impossible = str(exc)
                log.warning(
                    "not listening for changes: %s; polling every %s s instead. For writes seen within "
                    "~100 ms, set EVENTCTL_LISTEN_URL (serve --listen-url) to a direct session connection "
                    "to the primary.",
                    exc,
                    self.poll_hint,
                )
                return  # for good: the URL will not change
            except Exception as exc:  # noqa: BLE001 - the feed polls meanwhile; reconnect with backoff
                if not logged and not self._stop.is_set():
                    log.warning("not listening for changes (polling meanwhile): %s", str(exc).splitlines()[0][:300])
                    logged = True
            finally:
                if self.listening:
                    self.listening = False
                    self._lost()
                self.pid = None
            if self._reconnect.is_set():
                continue  # a silent connection: a new one at once
            self._retry.wait(wait)
            self._retry.clear()
            wait = min(wait * 2, LISTEN_BACKOFF[1])
