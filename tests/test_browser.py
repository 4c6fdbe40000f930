"""A real browser calls /current cross-origin on a separately started `eventctl serve`.

Needs Debian's chromium and chromium-driver (installed by .ci/run). Skipped locally
when they are missing; required in CI (like PostgreSQL).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from webtools import free_port

from conftest import REQUIRE_PG as IN_CI
from conftest import make_cli

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")
pytestmark = pytest.mark.browser

PAGE = """<!doctype html><meta charset="utf-8"><title>review</title>
<div id="out">loading</div>
<script>
const api = new URLSearchParams(location.search).get("api");
fetch(api + "/api/v1/events/current", {headers: {"X-Page-Route": "/review/audio"}})
  .then(r => r.json())
  .then(e => { document.getElementById("out").textContent = e ? "event: " + e.name : "none"; })
  .catch(err => { document.getElementById("out").textContent = "blocked: " + err; });
</script>
"""


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and CHROMEDRIVER):
        if IN_CI:
            pytest.fail("Chromium and chromedriver are required in CI (apt-get install chromium chromium-driver)")
        pytest.skip("chromium / chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chrome-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def page_servers(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2)]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{srv.server_address[1]}" for srv in servers]
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def served_api(tmp_path, page_servers):
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    cli = make_cli(url)
    assert cli("db", "upgrade").exit_code == 0
    assert cli("create", "--name", "Audio week", "--page", "/review/audio", "--media-type", "audio").exit_code == 0
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env.update(EVENTCTL_DATABASE_URL=url, EVENTCTL_CORS_ORIGINS=page_servers[0])
    proc = subprocess.Popen(
        [sys.executable, "-m", "eventctl", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                output, _ = proc.communicate(timeout=10)
                pytest.fail(f"eventctl serve did not start: {output}")
            time.sleep(0.1)
    yield base
    proc.terminate()
    proc.communicate(timeout=10)  # reads and closes the pipe (no ResourceWarning)


def _page_text(driver, url: str) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "out").text != "loading")
    return driver.find_element(By.ID, "out").text


def test_allowed_origin_shows_the_event_and_other_origin_is_blocked(browser, page_servers, served_api):
    allowed, other = page_servers
    assert _page_text(browser, f"{allowed}/index.html?api={served_api}") == "event: Audio week"
    text = _page_text(browser, f"{other}/index.html?api={served_api}")
    assert text.startswith("blocked:"), text
