"""The real deployment parts of SPEC §11, started by the tests themselves (never mocked):

- ``PgBouncer``: Debian's pgbouncer in transaction mode in front of the test PostgreSQL
  (every database name passes through), on a free port, as the ``postgres`` user;
- ``Replicated``: a private primary (``initdb``) and a hot-standby replica made from it with
  ``pg_basebackup -R``, each on a free port, so a test may stop, restart or pause either
  without touching the machine's own server.

Each can be stopped and started again mid-test (the restart tests). When a binary is missing
the fixtures skip locally and fail in CI (``REQUIRE_PG``), as PostgreSQL itself does.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_binary(name: str) -> str | None:
    """A PostgreSQL server binary (Debian keeps them out of PATH), the newest version first."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL and PgBouncer refuse to run as root: as root, run them as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _private_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


def wait_for_port(port: int, *, timeout: float = 30.0, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {what} did not listen on port {port} within {timeout} s") from None
            time.sleep(0.05)


def _wait_gone(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(0.05)
        except OSError:
            return


class PgBouncer:
    """PgBouncer, transaction pooling, in front of ``upstream`` (host, port); ``url(db)`` reaches db through it."""

    def __init__(self, upstream_port: int = 5432, *, host: str = "127.0.0.1", pool_size: int = 10) -> None:
        self.binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        self.dir = _private_dir("eventctl-pgbouncer-")
        self.port = free_port()
        self.config = self.dir / "pgbouncer.ini"
        (self.dir / "userlist.txt").write_text('"postgres" ""\n')
        self.config.write_text(
            "[databases]\n"
            f"* = host={host} port={upstream_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir}/userlist.txt\n"
            "pool_mode = transaction\n"
            "max_client_conn = 1000\n"
            f"default_pool_size = {pool_size}\n"
            "server_reset_query =\n"
            f"logfile = {self.dir}/pgbouncer.log\n"
            f"pidfile = {self.dir}/pgbouncer.pid\n"
        )
        if os.geteuid() == 0:
            for p in self.dir.iterdir():
                shutil.chown(p, "postgres", "postgres")
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            _as_postgres([self.binary, str(self.config)]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port, what="PgBouncer")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None
            _wait_gone(self.port)

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class _Server:
    """One PostgreSQL server of our own: a data directory and a port."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port
        self.pg_ctl = pg_binary("pg_ctl") or "pg_ctl"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        subprocess.run(
            _as_postgres(
                [self.pg_ctl, "-D", str(self.data), "-l", f"{self.data}.log", "-w", "-t", "60", "-o", f"-p {self.port}"]
                + ["start"]
            ),
            check=True,
            capture_output=True,
        )
        wait_for_port(self.port, what="PostgreSQL")

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            _as_postgres([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"]),
            capture_output=True,
        )
        _wait_gone(self.port)


class Replicated:
    """A private primary and a hot-standby replica of it (``pg_basebackup -R``, streaming)."""

    def __init__(self) -> None:
        self.dir = _private_dir("eventctl-replicated-")
        initdb = pg_binary("initdb") or "initdb"
        self.primary = _Server(self.dir / "primary", free_port())
        subprocess.run(
            _as_postgres([initdb, "-D", str(self.primary.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
            check=True,
            capture_output=True,
        )
        with open(self.primary.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.dir}'\n"
                "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "wal_sender_timeout = 5s\nwal_receiver_status_interval = 1s\n"
            )
        with open(self.primary.data / "pg_hba.conf", "a") as hba:
            hba.write("\nhost replication all 127.0.0.1/32 trust\n")
        self.primary.start()
        self.replica = _Server(self.dir / "replica", free_port())
        basebackup = pg_binary("pg_basebackup") or "pg_basebackup"
        subprocess.run(
            _as_postgres(
                [basebackup, "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres"]
                + ["-D", str(self.replica.data), "-R", "-X", "stream", "-c", "fast"]
            ),
            check=True,
            capture_output=True,
        )
        self.replica.start()

    def close(self) -> None:
        self.replica.stop("immediate")
        self.primary.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def missing(*names: str) -> list[str]:
    """Which of these binaries this machine lacks (pgbouncer, or a PostgreSQL server binary)."""
    out = []
    for name in names:
        if name == "pgbouncer":
            if not (shutil.which("pgbouncer") or os.path.exists("/usr/sbin/pgbouncer")):
                out.append(name)
        elif pg_binary(name) is None:
            out.append(name)
    if os.geteuid() == 0 and not shutil.which("runuser"):
        out.append("runuser")
    return out
