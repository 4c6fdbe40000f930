"""Remote mode (SPEC §10): one suite of CLI cases run against a local database, a real
``eventctl serve`` (SQLite and PostgreSQL) and a stand-in of the platform's events API,
each a real HTTP server on a free loopback port; then what only a network does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from platform_events_standin import PlatformEvents, ServedApp, create_app

from conftest import Ran, database_for, make_cli

ADMIN_TOKEN = "platform-admin-token"
EVENT_KEYS = {
    "uid", "name", "description", "page_context", "filters", "limit", "is_active", "is_default",
    "start_date", "end_date", "created_by", "created_at", "updated_at", "status",
}  # fmt: skip
TARGETS = [
    "local-sqlite",
    pytest.param("local-postgresql", marks=pytest.mark.postgres),
    "serve-sqlite",
    pytest.param("serve-postgresql", marks=pytest.mark.postgres),
    "platform",
]


@dataclass
class Target:
    name: str
    env: dict[str, str]
    platform: PlatformEvents | None = None
    db_url: str | None = None

    @property
    def remote(self) -> bool:
        return "EVENTCTL_API_URL" in self.env

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Ran:
        return run_cli(*args, input=input, env={"COLUMNS": "200", **self.env, **(env or {})})


def run_cli(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Ran:
    return make_cli(None)(*args, input=input, env=env)


def _token(db_url: str) -> str:
    from eventctl.db import make_engine, write_session
    from eventctl.tokens import create_token

    engine = make_engine(db_url)
    with write_session(engine) as session:
        token = create_token(session, name="remote-admin", now=datetime.now(UTC))
    engine.dispose()
    return token


@pytest.fixture
def platform() -> Iterator[tuple[PlatformEvents, str]]:
    state = PlatformEvents()
    with ServedApp(create_app(state)) as served:
        yield state, served.url


@pytest.fixture
def served_eventctl(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[str, str, str]]:
    from eventctl.config import Settings
    from eventctl.web.app import create_app as eventctl_app

    db_url = database_for(getattr(request, "param", "sqlite"), request, tmp_path)
    token = _token(db_url)
    with ServedApp(eventctl_app(Settings(database_url=db_url, poll_interval=0.1)), lifespan="on") as served:
        yield served.url, token, db_url


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Target]:
    name = request.param
    where, _, db = name.partition("-")
    if where == "local":
        yield Target(name, {"EVENTCTL_DATABASE_URL": database_for(db, request, tmp_path)})
    elif where == "serve":
        from eventctl.config import Settings
        from eventctl.web.app import create_app as eventctl_app

        db_url = database_for(db, request, tmp_path)
        token = _token(db_url)
        with ServedApp(eventctl_app(Settings(database_url=db_url, poll_interval=0.1)), lifespan="on") as served:
            yield Target(name, {"EVENTCTL_API_URL": served.url, "EVENTCTL_API_TOKEN": token}, db_url=db_url)
    else:
        state = PlatformEvents()
        with ServedApp(create_app(state)) as served:
            yield Target(name, {"EVENTCTL_API_URL": served.url, "EVENTCTL_API_TOKEN": ADMIN_TOKEN}, platform=state)


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).replace(microsecond=0).isoformat()


# ---------------------------------------------------------------- one suite, every backend


def test_create_show_list_update_delete_same_shapes_and_codes(target: Target) -> None:
    made = target("create", "--name", "Audio week", "--page", "/review/audio", "--media-type", "audio",
                  "--language", "Telugu", "--start", "-1h", "--end", "+7d", "--limit", "25", "--json")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    event = made.json()
    assert set(event) == EVENT_KEYS
    assert event["filters"] == {"language": ["Telugu"], "media_type": ["audio"]}
    assert (event["limit"], event["status"], event["is_default"]) == (25, "live", False)
    uid = event["uid"]

    shown = target("show", uid, "--json")
    assert shown.exit_code == 0, shown.stderr
    assert {k: v for k, v in shown.json().items() if k != "updated_at"} == {
        k: v for k, v in event.items() if k != "updated_at"
    }
    people = target("show", uid)
    assert people.exit_code == 0 and "Audio week" in people.stdout

    listed = target("list", "--json")
    assert listed.exit_code == 0 and [e["uid"] for e in listed.json()] == [uid]
    assert target("list", "--status", "scheduled", "--json").json() == []
    assert "Audio week" in target("list").stdout

    updated = target("update", uid, "--name", "Audio fortnight", "--media-type", "video", "--json")
    assert updated.exit_code == 0, updated.stderr
    assert updated.json()["name"] == "Audio fortnight"
    assert updated.json()["filters"] == {"language": ["Telugu"], "media_type": ["video"]}  # flags merge over stored

    current = target("current", "--page", "/review/audio", "--json")
    assert current.exit_code == 0, current.stderr
    assert current.json()["uid"] == uid
    nothing = target("current", "--page", "/review/video", "--json")
    assert (nothing.exit_code, nothing.json()) == (0, None)

    gone = target("delete", uid, "--yes", "--json")
    assert gone.exit_code == 0, gone.stderr
    assert gone.json()["uid"] == uid
    after = target("show", uid, "--json")
    if target.platform is not None:  # the platform's delete deactivates
        assert "deactivates" in gone.stderr
        assert (after.exit_code, after.json()["is_active"]) == (0, False)
    else:
        assert after.exit_code == 4, after.stderr
    assert target("current", "--page", "/review/audio", "--json").json() is None


def test_refusals_have_the_same_exit_codes(target: Target) -> None:
    missing = target("show", str(uuid.uuid4()))
    assert missing.exit_code == 4, missing.stderr
    assert target("update", str(uuid.uuid4()), "--name", "x").exit_code == 4
    bad = target("create", "--name", "x", "--page", "/p", "--limit", "101")
    assert bad.exit_code == 2 and "limit" in bad.stderr
    assert target("current", "--page", "bad key with spaces").exit_code == 2
    assert target("list", "--json").json() == []  # nothing was written


def test_overlap_guard_and_conflict(target: Target) -> None:
    first = target("create", "--name", "A", "--page", "/p", "--start", "-1h", "--end", "+2d", "--json")
    assert first.exit_code == 0, first.stderr
    refused = target("create", "--name", "B", "--page", "/p", "--start", "+1d", "--end", "+3d")
    assert refused.exit_code == 3, refused.stderr
    assert first.json()["uid"] in refused.stderr and "--allow-overlap" in refused.stderr
    assert len(target("list", "--json").json()) == 1
    forced = target("create", "--name", "B", "--page", "/p", "--start", "-1h", "--end", "+3d", "--allow-overlap")
    assert forced.exit_code == 0, forced.stderr
    conflict = target("current", "--page", "/p", "--json")
    assert conflict.exit_code == 3, conflict.stderr


def test_current_at_is_end_exclusive_and_said_so(target: Target) -> None:
    end = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    made = target("create", "--name", "A", "--page", "/p", "--start", "-1h", "--end", end.isoformat(), "--json")
    assert made.exit_code == 0, made.stderr
    before = target("current", "--page", "/p", "--at", (end - timedelta(minutes=1)).isoformat(), "--json")
    assert before.exit_code == 0 and before.json()["uid"] == made.json()["uid"]
    at_end = target("current", "--page", "/p", "--at", end.isoformat(), "--json")
    assert (at_end.exit_code, at_end.json()) == (0, None)
    if target.remote:
        assert "resolved here" in at_end.stderr
    if target.platform is not None:
        assert "end instant" in at_end.stderr and made.json()["uid"] in at_end.stderr


def test_apply_plan_dry_run_prune_export(target: Target, tmp_path: Any) -> None:
    doc = [
        {"name": "One", "page_context": "/a", "start_date": iso(timedelta(days=1)), "end_date": iso(timedelta(days=2))},
        {"name": "Two", "page_context": "/a", "start_date": iso(timedelta(days=3)), "end_date": iso(timedelta(days=4))},
    ]
    path = tmp_path / "events.json"
    path.write_text(json.dumps(doc))
    dry = target("apply", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    assert (dry.json()["dry_run"], dry.json()["created"]) == (True, 2)
    assert target("list", "--json").json() == []
    done = target("apply", str(path), "--json")
    assert done.exit_code == 0, done.stderr
    assert [c["action"] for c in done.json()["changes"]] == ["create", "create"]
    again = target("apply", str(path), "--json")
    assert (again.json()["unchanged"], again.json()["created"], again.json()["updated"]) == (2, 0, 0)

    exported = target("export", "--format", "json")
    assert exported.exit_code == 0, exported.stderr
    rows = json.loads(exported.stdout)
    assert sorted(r["name"] for r in rows) == ["One", "Two"]
    rows = [r for r in rows if r["name"] == "One"]
    rows[0]["limit"] = 50
    path.write_text(json.dumps(rows))
    pruned = target("apply", str(path), "--prune", "--json")
    assert pruned.exit_code == 0, pruned.stderr
    plan = pruned.json()
    assert (plan["updated"], plan["deleted"]) == (1, 1)
    assert plan["changes"][0]["fields"] == {"limit": [20, 50]}
    live = [e for e in target("list", "--json").json() if e["is_active"]]
    assert [(e["name"], e["limit"]) for e in live] == [("One", 50)]
    people = target("apply", str(path), "--prune")
    assert people.exit_code == 0 and "0 created, 0 updated, 1 unchanged, 0 deleted" in people.stderr


def test_apply_refuses_an_overlap_on_the_final_state(target: Target, tmp_path: Any) -> None:
    doc = [
        {"name": "One", "page_context": "/a", "start_date": iso(timedelta(days=1)), "end_date": iso(timedelta(days=3))},
        {"name": "Two", "page_context": "/a", "start_date": iso(timedelta(days=2)), "end_date": iso(timedelta(days=4))},
    ]
    path = tmp_path / "events.json"
    path.write_text(json.dumps(doc))
    refused = target("apply", str(path))
    assert refused.exit_code == 3, refused.stderr
    assert target("list", "--json").json() == []


def test_timeline_and_history(target: Target) -> None:
    made = target("create", "--name", "A", "--page", "/p", "--start", "-1h", "--end", "+2d", "--json").json()
    drawn = target("timeline", "--page", "/p", "--json")
    assert drawn.exit_code == 0, drawn.stderr
    lanes = drawn.json()["pages"]
    assert [iv["uid"] for lane in lanes for iv in lane["events"]] == [made["uid"]]
    assert target("update", made["uid"], "--limit", "30").exit_code == 0
    history = target("history", made["uid"], "--json")
    if target.platform is not None:
        assert history.exit_code == 2 and "keeps no history" in history.stderr
        return
    assert history.exit_code == 0, history.stderr
    assert [h["action"] for h in history.json()] == ["update", "create"]
    other = target("create", "--name", "B", "--page", "/q", "--json").json()
    assert target("delete", other["uid"], "--yes").exit_code == 0
    everything = target("history", "--json")
    assert everything.exit_code == 0, everything.stderr
    assert [(h["action"], h["uid"]) for h in everything.json()] == [
        ("delete", other["uid"]), ("create", other["uid"]), ("update", made["uid"]), ("create", made["uid"]),
    ]  # fmt: skip
    assert [h["action"] for h in target("history", "--page", "/q", "--json").json()] == ["delete", "create"]
    assert target("history", "--since", "+1h", "--json").json() == []
    assert "Audio" not in target("history").stdout and "create" in target("history").stdout


def test_page_default_refused_by_the_platform_only(target: Target) -> None:
    made = target("create", "--name", "Fallback", "--page", "/p", "--default", "--json")
    if target.platform is not None:
        assert made.exit_code == 2 and "is_default" in made.stderr
        assert target.platform.events == {}
    else:
        assert made.exit_code == 0 and made.json()["is_default"] is True


def test_apply_of_an_exported_file_from_elsewhere_runs_twice_without_duplicates(target: Target, tmp_path: Any) -> None:
    """Entries carry uids the target has never seen (a file exported from another backend): the second
    run matches what the first made (by uid, else by page and name) and changes nothing."""
    doc = [{"uid": str(uuid.uuid4()), "name": "Moved", "page_context": "/m", "start_date": iso(timedelta(days=1))}]
    path = tmp_path / "from-elsewhere.json"
    path.write_text(json.dumps(doc))
    first = target("apply", str(path), "--json")
    assert first.exit_code == 0 and first.json()["created"] == 1, first.stderr
    second = target("apply", str(path), "--json")
    assert second.exit_code == 0, second.stderr
    assert (second.json()["created"], second.json()["unchanged"]) == (0, 1)
    assert len(target("list", "--json").json()) == 1
