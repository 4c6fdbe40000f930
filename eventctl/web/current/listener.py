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

from sqlalchemy.engine import URL, Engine

log = logging.getLogger("eventctl.web")
LISTEN_BACKOFF = (0.1, 5.0)  # first and longest wait between LISTEN reconnections (seconds)
LISTEN_WAKE = 0.25  # the listener checks for stop() and reconnect requests this often
# TCP keepalives: a connection dropped without a reset (a NAT, a load balancer) is found dead
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


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
        self.listening = False
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
        cparams = {**cparams, "autocommit": True, "connect_timeout": 5, **KEEPALIVES}
        wait, logged = LISTEN_BACKOFF[0], False
        while not self._stop.is_set():
            self._reconnect.clear()
            try:
                with psycopg.connect(*cargs, **cparams) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.pid = conn.info.backend_pid
                    self._connected()  # before `listening`: whoever sees it listening sees the resync asked for
                    self.listening, wait, logged = True, LISTEN_BACKOFF[0], False
                    self.connects += 1
                    while not self._stop.is_set() and not self._reconnect.is_set():
                        for note in conn.notifies(timeout=LISTEN_WAKE):
                            self._heard(note.payload)
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
