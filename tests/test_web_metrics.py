"""GET /metrics (SPEC §4) and the access log: counters add up, across worker processes."""

from __future__ import annotations

import re
import threading
import time

from fastapi.testclient import TestClient
from webtools import auth, cur, make_app, settle

from conftest import make_cli


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted label pairs: value} of one metric in Prometheus text."""
    out = {}
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(1) or "")))
            out[labels] = float(m.group(2))
    return out


def test_metrics_count_known_traffic_and_need_a_token(db_url):
    token = make_cli(db_url)("token", "create", "metrics").stdout.strip()
    assert make_cli(db_url)("create", "--name", "A", "--page", "/a").exit_code == 0
    assert make_cli(db_url)("create", "--name", "B", "--page", "/b", "--allow-overlap").exit_code == 0
    with TestClient(make_app(db_url)) as client:
        settle(client)  # the start-up resync reloads held pages: let it pass before counting misses
        assert client.get("/metrics").status_code == 401
        for _ in range(5):
            assert cur(client, "/a").status_code == 200
        assert cur(client, "/nothing").json() is None
        assert cur(client, "/%zz").status_code == 400
        etag = cur(client, "/a").headers["etag"]
        assert cur(client, "/a", **{"If-None-Match": etag}).status_code == 304
        assert client.get("/api/v1/events/", headers=auth(token)).status_code == 200
        r = client.get("/metrics", headers=auth(token))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        requests = _samples(r.text, "eventctl_http_requests_total")
        current = {k: v for k, v in requests.items() if ("route", "/api/v1/events/current") in k}
        assert sum(current.values()) == 9
        assert requests[(("method", "GET"), ("route", "/api/v1/events/current"), ("status", "200"))] == 7
        assert requests[(("method", "GET"), ("route", "/api/v1/events/"), ("status", "200"))] == 1
        assert requests[(("method", "GET"), ("route", "/metrics"), ("status", "401"))] == 1
        outcomes = _samples(r.text, "eventctl_current_answers_total")
        assert outcomes[(("outcome", "event"),)] == 6
        assert outcomes[(("outcome", "null"),)] == 1
        assert outcomes[(("outcome", "bad_request"),)] == 1
        assert outcomes[(("outcome", "not_modified"),)] == 1
        lookups = _samples(r.text, "eventctl_current_cache_lookups_total")
        assert lookups[(("result", "hit"),)] + lookups[(("result", "miss"),)] == 9
        assert lookups[(("result", "miss"),)] == 3  # /a, /nothing, /%zz once each
        assert _samples(r.text, "eventctl_current_loads_total")[()] >= 1
    with TestClient(make_app(db_url, metrics_public=True)) as client:
        assert client.get("/metrics").status_code == 200


def test_unbounded_paths_share_one_label(db_url):
    with TestClient(make_app(db_url, metrics_public=True)) as client:
        for i in range(20):
            client.get(f"/random/{i}")
        text = client.get("/metrics").text
    requests = _samples(text, "eventctl_http_requests_total")
    routes = {dict(k).get("route") for k in requests}
    assert routes == {"other"}, routes  # /metrics itself is counted once its answer has gone out
    assert sum(requests.values()) == 20


def test_request_labels_stay_bounded_for_odd_methods(db_url):
    with TestClient(make_app(db_url, metrics_public=True)) as client:
        for method in ("FOO", "BAR", "X" * 50):
            client.request(method, "/api/v1/events/current")
        text = client.get("/metrics").text
    methods = {dict(k).get("method") for k in _samples(text, "eventctl_http_requests_total")}
    assert methods <= {"GET", "OTHER"} and "OTHER" in methods


def test_counts_reach_prometheus_client_within_a_poll_interval_without_a_poll(db_url):
    """Per-request counts wait in a dict; a request after poll_interval hands them over even when
    no poll completes (a poll can hang on a dead database), so other workers' scrapes see them."""
    from eventctl.web.current import CurrentService

    app = make_app(db_url, poll_interval=3600)  # the poll loop runs once, at start
    service: CurrentService = app.fastapi.state.current
    service.listen = False  # LISTEN connecting would wake the loop for one more poll (and flush)
    now = [time.time()]
    service.clock = lambda: now[0]
    flushed = threading.Event()
    metrics, real_flush = service.metrics, service.metrics.flush
    metrics.flush = lambda: (real_flush(), flushed.set())  # before any request: only the loop flushes
    with TestClient(app) as client:
        assert flushed.wait(10), "the start-up poll never ended"  # the loop now sleeps for 3600 s
        del metrics.flush
        cur(client, "/p")
        for _ in range(4):
            cur(client, "/p")

        def handed_over() -> float:
            text = app.fastapi.state.metrics.exposition()[0].decode()  # what another worker reads
            return _samples(text, "eventctl_current_answers_total").get((("outcome", "null"),), 0.0)

        assert handed_over() < 5  # still waiting in this worker
        now[0] += 3600
        cur(client, "/p")
        assert handed_over() >= 5


def test_a_grace_meant_as_for_ever_is_not_an_outage(db_url):
    """EVENTCTL_STALE_GRACE=1e12 puts the load horizon past year 9999: no horizon, not a 503."""
    assert make_cli(db_url)("create", "--name", "F", "--page", "/forever").exit_code == 0
    with TestClient(make_app(db_url, stale_grace=1e12)) as client:
        r = cur(client, "/forever")
        assert r.status_code == 200 and r.json()["name"] == "F"
