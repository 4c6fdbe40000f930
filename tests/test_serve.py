"""`eventctl serve` as a user runs it, on each supported server (granian, uvicorn): what it does
holds on both — workers, settings handed to them, metrics summed across workers, the access log,
graceful SIGTERM, start-up failures, --host/--port, the body limit, HEAD, LISTEN per worker."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from conftest import make_cli

SERVERS = ("granian", "uvicorn")
CURRENT = "/api/v1/events/current"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _samples(text_: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for line in text_.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m:
            out[tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(1) or "")))] = float(m.group(2))
    return out


class Served:
    def __init__(self, tmp_path: Path, args: list[str], env_extra: dict[str, str], host: str = "127.0.0.1") -> None:
        self.port = _free_port()
        self.base = f"http://{host}:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTCTL_", "PROMETHEUS_"))}
        env.update(PYTHONUNBUFFERED="1", EVENTCTL_DATA_DIR=str(tmp_path / "default-data"), **env_extra)
        self.log_path = tmp_path / "serve.log"
        self.log = open(self.log_path, "w+", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        argv = [
            sys.executable,
            "-m",
            "eventctl",
            *args[:2],
            "serve",
            "--host",
            host,
            "--port",
            str(self.port),
            *args[2:],
        ]
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp_path)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, workers: int = 1) -> None:
        deadline = time.monotonic() + 60
        while self.text().count(" ready") < workers:
            assert self.proc.poll() is None and time.monotonic() < deadline, self.text()
            time.sleep(0.05)
        while True:  # a worker's lifespan can start before its server accepts
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=1):
                    return
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, self.text()
                time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.log.close()


def _get(base: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(base + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


@pytest.mark.slow
@pytest.mark.parametrize("server", SERVERS)
def test_two_workers_take_the_handed_settings_sum_their_metrics_and_log_json(server, tmp_path, db_url, backend):
    """The database is given only as the --database-url flag: workers that read the environment again
    would answer from the empty default database instead."""
    cli = make_cli(db_url)
    token = cli("token", "create", "scraper").stdout.strip()
    assert cli("create", "--name", "Live", "--page", "/live").exit_code == 0
    served = Served(
        tmp_path,
        ["--database-url", db_url, "--workers", "2", "--log-format", "json", "--server", server],
        {"EVENTCTL_POLL_INTERVAL": "0.2"},
    )
    try:
        served.wait_ready(workers=2)
        if backend == "postgresql":  # each worker listens on its own connection
            engine = create_engine(db_url)
            deadline = time.monotonic() + 30  # each starts listening in the background once started
            try:
                while True:
                    with engine.connect() as conn:
                        listening = conn.execute(
                            text(
                                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND query ILIKE 'LISTEN%'"
                            )
                        ).scalar()
                    if listening >= 2 or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
            finally:
                engine.dispose()
            assert listening == 2, listening
        sent = 60
        for _ in range(sent):  # new connections: the kernel spreads them over both workers
            status, _, body = _get(served.base, CURRENT, {"X-Page-Route": "/live", "Connection": "close"})
            assert status == 200 and json.loads(body)["name"] == "Live"
        assert _get(served.base, "/api/v1/events/", {"Authorization": "Bearer nope"})[0] == 401
        deadline = time.monotonic() + 10  # each worker hands its counts over once a poll interval
        while True:
            metrics = _get(served.base, "/metrics", {"Authorization": f"Bearer {token}"})[2].decode()
            counted = _samples(metrics, "eventctl_http_requests_total")
            key = (("method", "GET"), ("route", CURRENT), ("status", "200"))
            if counted.get(key, 0) >= sent or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert counted[key] == sent, counted  # both workers' counts, in one scrape
    finally:
        assert served.stop() == 0, served.text()
    lines = served.text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len({r["pid"] for r in records if r.get("message", "").endswith(" ready")}) == 2, lines
    # every line the server or eventctl logged is JSON (only the CLI's start-up note is plain text)
    assert [line for line in lines if not line.startswith("{")] == [lines[0]], lines
    access = [r for r in records if r.get("logger") == "eventctl.access"]
    assert any(r["status"] == 401 and r["route"] == "/api/v1/events/" for r in access), access
    assert not any(r.get("route") == CURRENT for r in access)
    assert token not in served.text() and "nope" not in served.text()


@pytest.mark.parametrize("server", SERVERS)
def test_one_worker_answers_head_the_body_limit_and_stops_gracefully_on_sigterm(server, tmp_path, db_url):
    cli = make_cli(db_url)
    token = cli("token", "create", "admin").stdout.strip()
    assert cli("create", "--name", "Here", "--page", "/here").exit_code == 0
    served = Served(tmp_path, [], {"EVENTCTL_DATABASE_URL": db_url, "EVENTCTL_SERVER": server}, host="127.0.0.2")
    try:
        served.wait_ready()
        with socket.socket() as probe:  # --host is honoured: 127.0.0.1 is not served
            assert probe.connect_ex(("127.0.0.1", served.port)) != 0
        conn = http.client.HTTPConnection("127.0.0.2", served.port, timeout=10)
        try:
            # HEAD: same status and headers, no body (a body would garble the next answer on this connection)
            conn.request("HEAD", CURRENT, headers={"X-Page-Route": "/here"})
            head = conn.getresponse()
            head.read()
            conn.request("GET", CURRENT, headers={"X-Page-Route": "/here"})
            got = conn.getresponse()
            body = got.read()
            assert head.status == got.status == 200 and json.loads(body)["name"] == "Here"
            assert head.getheader("etag") == got.getheader("etag") and head.getheader("content-length") == str(
                len(body)
            )
            # same-origin (the fast path) and cross-origin (the full stack) answer the same bytes
            conn.request("GET", CURRENT, headers={"X-Page-Route": "/here", "Origin": "https://other.example"})
            cross = conn.getresponse()
            assert cross.read() == body and cross.getheader("etag") == got.getheader("etag")
            # a body over 1 MiB: 413, nothing written
            big = json.dumps({"name": "x" * (1024 * 1024), "page_context": "/big"}).encode()
            conn.request(
                "POST", "/api/v1/events/", body=big,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )  # fmt: skip
            too_big = conn.getresponse()
            too_big.read()
            assert too_big.status == 413
        finally:
            conn.close()
        assert json.loads(cli("list", "--page", "/big", "--json").stdout or "[]") == []
    finally:
        code = served.stop()
    log = served.text()
    assert code in (0, -signal.SIGTERM), log  # uvicorn ends by re-raising the signal it handled
    assert re.search(r"INFO eventctl\.web worker \d+ stopped: /current cache stopped", log), log
    assert f"127.0.0.2:{served.port} (1 worker(s), {server})" in log


@pytest.mark.parametrize("server", SERVERS)
def test_start_failures_have_their_own_exit_codes(server, tmp_path, db_url):
    """Run as a user runs it (a process of its own): nothing the server sets up stays in the test's process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env.update(EVENTCTL_DATABASE_URL=db_url, EVENTCTL_SERVER=server)
    argv = [sys.executable, "-m", "eventctl", "serve"]
    r = subprocess.run([*argv, "--host", "no.such.host.invalid"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--host" in r.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([*argv, "--port", str(port)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert f"could not start on 127.0.0.1:{port}" in r.stderr


def test_a_second_granian_on_a_taken_port_refuses_rather_than_shares_it(tmp_path, db_url):
    """granian binds with SO_REUSEPORT: without eventctl's own check a second server would split the traffic."""
    first = Served(tmp_path, [], {"EVENTCTL_DATABASE_URL": db_url, "EVENTCTL_SERVER": "granian"})
    try:
        first.wait_ready()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
        env.update(EVENTCTL_DATABASE_URL=db_url, EVENTCTL_SERVER="granian")
        r = subprocess.run(
            [sys.executable, "-m", "eventctl", "serve", "--port", str(first.port)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 1 and "could not start" in r.stderr, r.stderr
    finally:
        assert first.stop() == 0
