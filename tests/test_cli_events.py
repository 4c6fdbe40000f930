"""Admin CLI behaviour (SPEC §2, §3), each test on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import sqlalchemy as sa

from conftest import count_rows

CAT_A = "0b7a6b0e-3c1a-4c55-9d22-123456789abc"
CAT_B = "5f0c2a9d-0000-4000-8000-00000000000b"


def create(cli, *args: str) -> dict:
    r = cli("create", "--json", *args)
    assert r.exit_code == 0, r.stderr
    return r.json()


def test_missing_or_blank_route_is_null(cli):
    create(cli, "--name", "A", "--page", "/review/audio")
    for page in ("", "   "):
        r = cli("current", "--page", page, "--json")
        assert r.exit_code == 0, r.stderr
        assert r.stdout.strip() == "null"


def test_one_live_event_is_returned_and_route_is_normalized(cli):
    ev = create(cli, "--name", "Audio week", "--page", "/review//audio/", "--media-type", "audio")
    assert ev["page_context"] == "/review/audio"
    for page in ("/review/audio", " /review/audio/?x=1#top ", "//review///audio//"):
        r = cli("current", "--page", page, "--json")
        assert r.exit_code == 0, r.stderr
        assert r.json()["uid"] == ev["uid"]
    assert cli("current", "--page", "/Review/Audio", "--json").stdout.strip() == "null"  # case is kept
    assert cli("current", "--page", "/review/other", "--json").stdout.strip() == "null"


def test_future_and_expired_events_are_ignored(cli):
    create(cli, "--name", "Future", "--page", "/p", "--start", "+1d")
    create(cli, "--name", "Past", "--page", "/p", "--start", "-2d", "--end", "-1d")
    create(cli, "--name", "Off", "--page", "/p", "--inactive", "--allow-overlap")
    r = cli("current", "--page", "/p", "--json")
    assert r.exit_code == 0 and r.stdout.strip() == "null", r.stderr
    statuses = {e["name"]: e["status"] for e in cli("list", "--json").json()}
    assert statuses == {"Future": "scheduled", "Past": "expired", "Off": "inactive"}
    assert [e["name"] for e in cli("list", "--status", "scheduled", "--json").json()] == ["Future"]
    assert [e["name"] for e in cli("list", "--status", "expired", "--json").json()] == ["Past"]
    assert [e["name"] for e in cli("list", "--status", "inactive", "--json").json()] == ["Off"]
    assert cli("list", "--status", "live", "--json").json() == []


def test_two_live_events_conflict_naming_both(cli):
    a = create(cli, "--name", "A", "--page", "/p")
    b = create(cli, "--name", "B", "--page", "/p", "--allow-overlap")
    r = cli("current", "--page", "/p", "--json")
    assert r.exit_code == 3, r.stderr
    assert r.stdout == ""
    assert a["uid"] in r.stderr and b["uid"] in r.stderr


def test_start_inclusive_end_exclusive(cli):
    ev = create(cli, "--name", "W", "--page", "/w", "--start", "2030-01-01T10:00:00Z", "--end", "2030-01-01T12:00:00Z")

    def at(t: str):
        r = cli("current", "--page", "/w", "--at", t, "--json")
        assert r.exit_code == 0, r.stderr
        return None if r.stdout.strip() == "null" else r.json()["uid"]

    assert at("2030-01-01T09:59:59.999999Z") is None
    assert at("2030-01-01T10:00:00Z") == ev["uid"]
    assert at("2030-01-01T11:59:59.999999Z") == ev["uid"]
    assert at("2030-01-01T12:00:00Z") is None
    # local time with --tz: 15:30 in Kolkata is 10:00 UTC
    r = cli("current", "--page", "/w", "--at", "2030-01-01T15:30", "--tz", "Asia/Kolkata", "--json")
    assert r.json()["uid"] == ev["uid"]


def test_back_to_back_windows_are_allowed(cli):
    create(cli, "--name", "Mon", "--page", "/b", "--start", "2030-01-06T00:00Z", "--end", "2030-01-07T00:00Z")
    r = cli("create", "--name", "Tue", "--page", "/b", "--start", "2030-01-07T00:00Z", "--end", "2030-01-08T00:00Z")
    assert r.exit_code == 0, r.stderr
    r = cli("create", "--name", "Sun", "--page", "/b", "--end", "2030-01-06T00:00Z")
    assert r.exit_code == 0, r.stderr


def test_overlap_refused_with_nothing_written(cli, db_url):
    a = create(cli, "--name", "A", "--page", "/o", "--start", "2030-01-01T00:00Z", "--end", "2030-01-10T00:00Z")
    before = count_rows(db_url)
    r = cli("create", "--name", "B", "--page", "/o", "--start", "2030-01-09T23:59Z", "--end", "2030-01-20T00:00Z")
    assert r.exit_code == 3
    assert a["uid"] in r.stderr and "--allow-overlap" in r.stderr
    assert r.stdout == ""
    assert count_rows(db_url) == before
    # open-ended windows overlap everything on the page
    assert cli("create", "--name", "C", "--page", "/o").exit_code == 3
    # other pages are unaffected
    assert cli("create", "--name", "D", "--page", "/o2").exit_code == 0


def test_allow_overlap_is_honoured(cli, db_url):
    create(cli, "--name", "A", "--page", "/o")
    r = cli("create", "--name", "B", "--page", "/o", "--allow-overlap")
    assert r.exit_code == 0, r.stderr
    assert count_rows(db_url) == 2


def test_guard_on_update_and_reactivation(cli):
    a = create(cli, "--name", "A", "--page", "/g")
    b = create(cli, "--name", "B", "--page", "/g", "--inactive")
    r = cli("update", b["uid"], "--active")
    assert r.exit_code == 3 and a["uid"] in r.stderr
    assert cli("show", b["uid"], "--json").json()["is_active"] is False
    c = create(cli, "--name", "C", "--page", "/other")
    r = cli("update", c["uid"], "--page", "/g")
    assert r.exit_code == 3
    assert cli("show", c["uid"], "--json").json()["page_context"] == "/other"
    assert cli("update", b["uid"], "--active", "--allow-overlap").exit_code == 0
    # an expired event never conflicts again
    assert cli("update", a["uid"], "--start", "2020-01-01T00:00Z", "--end", "2020-01-02T00:00Z").exit_code == 0


def test_filters_round_trip_from_the_database(cli, db_url):
    filters = {
        "language": ["Telugu", "Hindi"],
        "media_type": ["text", "audio", "video", "image", "document"],
        "category_ids": [CAT_A, CAT_B, CAT_A],
        "source_label": "Wikisource",
        "release_rights": "NA",
        "published_date": "2026-02-28",
        "is_fully_proofread": False,
        "is_fully_validated": True,
        "extraction_type": "caption",
        "model_name": "whisper-large-v3",
        "version": "initial",
        "lock": True,
        "extration": False,
    }
    ev = create(cli, "--name", "F", "--page", "/f", "--filters", json.dumps(filters))
    expected = {**filters, "category_ids": [CAT_A, CAT_B]}
    assert ev["filters"] == expected
    # read back through a fresh engine, straight from the column
    from eventctl.db import make_engine

    engine = make_engine(db_url)
    with engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT filters FROM events")).scalar_one()
    engine.dispose()
    stored = json.loads(raw) if isinstance(raw, str) else raw
    assert stored == expected
    assert cli("show", ev["uid"], "--json").json()["filters"] == expected
    assert cli("current", "--page", "/f", "--json").json()["filters"] == expected


def test_flag_filters_merge_over_filters_json(cli, tmp_path):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"media_type": ["text"], "language": ["English"], "lock": True}))
    ev = create(
        cli, "--name", "M", "--page", "/m", "--filters", f"@{path}", "--media-type", "video", "--media-type", "audio",
        "--category", CAT_A, "--no-lock", "--proofread",
    )  # fmt: skip
    assert ev["filters"] == {
        "media_type": ["video", "audio"],
        "language": ["English"],
        "category_ids": [CAT_A],
        "lock": False,
        "is_fully_proofread": True,
    }
    r = cli("create", "--name", "S", "--page", "/s", "--filters", "-", input="")
    assert r.exit_code == 2 and "not valid JSON" in r.stderr
    r = cli("create", "--json", "--name", "T", "--page", "/t", "--filters", "-", input='{"media_type": ["image"]}')
    assert r.json()["filters"] == {"media_type": ["image"]}


def test_a_flag_for_every_filter_key(cli):
    ev = create(
        cli, "--name", "All", "--page", "doc_digitization",
        "--language", " Telugu ", "--language", "Urdu", "--media-type", "document", "--category", CAT_B,
        "--source-label", "Archive", "--release-rights", "others", "--published-date", "2024-02-29",
        "--not-proofread", "--validated", "--extraction-type", "ocr", "--model-name", "tesseract",
        "--version", "latest", "--lock", "--extration",
    )  # fmt: skip
    assert ev["page_context"] == "doc_digitization"
    assert ev["filters"] == {
        "language": ["Telugu", "Urdu"],
        "media_type": ["document"],
        "category_ids": [CAT_B],
        "source_label": "Archive",
        "release_rights": "others",
        "published_date": "2024-02-29",
        "is_fully_proofread": False,
        "is_fully_validated": True,
        "extraction_type": "ocr",
        "model_name": "tesseract",
        "version": "latest",
        "lock": True,
        "extration": True,
    }
    from eventctl.filters import RecordReviewFilters

    assert set(ev["filters"]) == set(RecordReviewFilters.model_fields)  # no key without its flag
    assert cli("current", "--page", "doc_digitization", "--json").json()["uid"] == ev["uid"]
    assert cli("current", "--page", "Doc_Digitization", "--json").stdout.strip() == "null"  # exact match


def test_uid_prefix_lookup(cli):
    ev = create(cli, "--name", "P", "--page", "/p")
    uid = ev["uid"]
    for ref in (uid, uid[:8], uid[:13], uid.replace("-", "")[:10].upper()):
        r = cli("show", ref, "--json")
        assert r.exit_code == 0, (ref, r.stderr)
        assert r.json()["uid"] == uid
    r = cli("show", uid[:7])
    assert r.exit_code == 2 and "8" in r.stderr
    r = cli("show", "ffffffff")
    assert r.exit_code == 4 if not uid.startswith("ffffffff") else True
    r = cli("show", str(uuid.uuid4()))
    assert r.exit_code == 4
    r = cli("show", "not-a-uid")
    assert r.exit_code == 2


def test_partial_update_refreshes_updated_at(cli):
    ev = create(
        cli, "--name", "U", "--page", "/u", "--media-type", "audio", "--language", "te", "--description", "first"
    )
    r = cli("update", ev["uid"][:8], "--name", "U2", "--media-type", "video", "--json")
    assert r.exit_code == 0, r.stderr
    up = r.json()
    assert up["name"] == "U2"
    assert up["filters"] == {"media_type": ["video"], "language": ["te"]}
    assert up["description"] == "first" and up["page_context"] == "/u"
    # as times, not text: a time on a whole second is written without ".000000"
    assert datetime.fromisoformat(up["updated_at"]) > datetime.fromisoformat(ev["updated_at"])
    assert up["created_at"] == ev["created_at"]
    shown = cli("show", ev["uid"], "--json").json()
    assert shown["updated_at"] == up["updated_at"]
    r = cli("update", ev["uid"], "--clear-filters", "--start", "+1h", "--end", "+2h", "--json")
    assert r.json()["filters"] == {} and r.json()["status"] == "scheduled"
    r = cli("update", ev["uid"], "--clear-start", "--clear-end", "--json")
    assert r.json()["start_date"] is None and r.json()["end_date"] is None
    assert cli("update", ev["uid"]).exit_code == 2  # nothing to update


def test_delete_refuses_without_terminal_and_deletes_with_yes(cli, db_url):
    ev = create(cli, "--name", "D", "--page", "/d")
    r = cli("delete", ev["uid"])
    assert r.exit_code == 2
    assert "--yes" in r.stderr
    assert count_rows(db_url) == 1
    r = cli("delete", ev["uid"][:8], "--yes")
    assert r.exit_code == 0, r.stderr
    assert count_rows(db_url) == 0
    assert cli("delete", ev["uid"], "--yes").exit_code == 4


def test_list_filters_by_page_newest_first(cli):
    a = create(cli, "--name", "A", "--page", "/l")
    b = create(cli, "--name", "B", "--page", "/l", "--allow-overlap")
    create(cli, "--name", "C", "--page", "/other")
    rows = cli("list", "--page", "/l/", "--json").json()
    assert [r["uid"] for r in rows] == [b["uid"], a["uid"]]
    human = cli("list")
    assert human.exit_code == 0 and "/other" in human.stdout


def test_created_by_precedence(cli):
    assert create(cli, "--name", "A", "--page", "/a1")["created_by"]
    r = cli("create", "--json", "--name", "B", "--page", "/a2", env={"EVENTCTL_ACTOR": "ops-bot"})
    assert r.json()["created_by"] == "ops-bot"
    r = cli(
        "create", "--json", "--name", "C", "--page", "/a3", "--created-by", "alice", env={"EVENTCTL_ACTOR": "ops-bot"}
    )
    assert r.json()["created_by"] == "alice"


def test_human_output_has_no_json_and_json_output_is_pure(cli):
    ev = create(cli, "--name", "H", "--page", "/h")
    r = cli("show", ev["uid"])
    assert r.exit_code == 0 and "H" in r.stdout and not r.stdout.lstrip().startswith("{")
    r = cli("current", "--page", "/nothing", "--json")
    assert r.stdout.strip() == "null" and r.exit_code == 0
    assert json.loads(cli("list", "--json").stdout)[0]["uid"] == ev["uid"]


def test_delete_asks_at_a_terminal(cli, db_url, monkeypatch):
    from eventctl.cli import _common

    ev = create(cli, "--name", "D", "--page", "/d")
    monkeypatch.setattr(_common, "can_ask", lambda: True)
    r = cli("delete", ev["uid"], input="n\n")
    assert r.exit_code == 0 and "Delete event" in r.stderr and "Not deleted" in r.stderr  # declining is no failure
    assert count_rows(db_url) == 1
    r = cli("delete", ev["uid"], input="y\n")
    assert r.exit_code == 0, r.stderr
    assert count_rows(db_url) == 0


def test_editing_an_allowed_overlap_needs_no_flag_unless_the_window_moves(cli):
    a = create(cli, "--name", "A", "--page", "/x")
    create(cli, "--name", "B", "--page", "/x", "--allow-overlap")
    assert cli("update", a["uid"], "--name", "A2", "--limit", "30", "--media-type", "audio").exit_code == 0
    assert cli("update", a["uid"], "--end", "+30d").exit_code == 3
    assert cli("update", a["uid"], "--end", "+30d", "--allow-overlap").exit_code == 0


def test_page_default_answers_only_when_no_campaign_is_live(cli, db_url):
    default = create(cli, "--name", "Standing", "--page", "/review/audio", "--default", "--media-type", "audio")
    assert default["is_default"] is True

    def current(at: str | None = None):
        r = cli("current", "--page", "/review/audio", "--json", *(["--at", at] if at else []))
        assert r.exit_code == 0, r.stderr
        return None if r.stdout.strip() == "null" else r.json()["uid"]

    assert current() == default["uid"]  # default alone
    # a campaign on top does not collide with the default, and wins while it is live
    campaign = create(
        cli, "--name", "Week", "--page", "/review/audio", "--start", "2030-01-01T00:00Z", "--end", "+2000w"
    )
    assert current("2030-01-02T00:00Z") == campaign["uid"]
    assert current("2029-12-31T23:59Z") == default["uid"]
    # a second default is refused (exit 3) with nothing written, unless allowed
    before = count_rows(db_url)
    r = cli("create", "--name", "Other default", "--page", "/review/audio", "--default")
    assert r.exit_code == 3 and default["uid"] in r.stderr and campaign["uid"] not in r.stderr, r.stderr
    assert count_rows(db_url) == before
    other = create(cli, "--name", "Other default", "--page", "/review/audio", "--default", "--allow-overlap")
    r = cli("current", "--page", "/review/audio", "--json", "--at", "2029-01-01T00:00Z")
    assert r.exit_code == 3 and default["uid"] in r.stderr and other["uid"] in r.stderr
    assert current("2030-01-02T00:00Z") == campaign["uid"]  # a campaign still wins over both
    # turning a campaign into a default is checked against the defaults
    r = cli("update", campaign["uid"], "--default")
    assert r.exit_code == 3, r.stderr
    # a default on another page is its own page's business
    assert cli("create", "--name", "D2", "--page", "/review/text", "--default").exit_code == 0


def test_limit_is_the_platforms_1_to_100(cli):
    assert create(cli, "--name", "L", "--page", "/lim", "--limit", "100")["limit"] == 100
    r = cli("create", "--name", "L2", "--page", "/lim2", "--limit", "101")
    assert r.exit_code == 2 and "100" in r.stderr
    r = cli("update", "--help")
    assert "default: 20" not in r.stdout  # update keeps the stored value


def test_list_limit_and_offset(cli):
    made = [create(cli, "--name", f"E{i}", "--page", f"/p{i}")["uid"] for i in range(5)]
    newest_first = list(reversed(made))
    assert [e["uid"] for e in cli("list", "--json").json()] == newest_first
    assert [e["uid"] for e in cli("list", "--json", "--limit", "2").json()] == newest_first[:2]
    assert [e["uid"] for e in cli("list", "--json", "--limit", "2", "--offset", "2").json()] == newest_first[2:4]
    assert cli("list", "--json", "--offset", "10").json() == []
    assert cli("list", "--limit", "0").exit_code == 2
    assert cli("list", "--offset", "-1").exit_code == 2


def test_people_never_get_raw_control_characters(cli, db_url):
    """Stored text is printed with control characters escaped (SPEC §1 Text)."""
    from eventctl.db import make_engine

    ev = create(cli, "--name", "Plain", "--page", "/t")
    engine = make_engine(db_url)
    with engine.begin() as conn:  # written by something other than eventctl
        conn.execute(sa.text("UPDATE events SET name = :n"), {"n": "evil\x1b]0;title\x07\nforged line"})
    engine.dispose()
    for args in (["show", ev["uid"]], ["list"], ["current", "--page", "/t"]):
        r = cli(*args)
        assert r.exit_code == 0, r.stderr
        assert "\x1b" not in r.stdout and "\x07" not in r.stdout, args
        assert "\\x1b" in r.stdout, (args, r.stdout)
    assert cli("show", ev["uid"], "--json").json()["name"] == "evil\x1b]0;title\x07\nforged line"


def test_uid_column_is_never_cut_and_times_never_wrap(cli):
    ev = create(cli, "--name", "N" * 150, "--page", "/" + "p" * 200, "--start", "2030-01-01T09:00Z", "--end",
                "2030-02-01T18:30Z")  # fmt: skip
    for width in ("80", "120"):
        r = cli("list", env={"COLUMNS": width})
        assert ev["uid"][:8] in r.stdout, r.stdout
        assert "2030-01-01 09:00Z" in r.stdout and "2030-02-01 18:30Z" in r.stdout, r.stdout


SAMPLES = {
    "media_type": ("audio", ["audio"]), "language": ("Telugu", ["Telugu"]), "source_label": ("wiki", "wiki"),
    "release_rights": ("creator", "creator"), "published_date": ("2030-01-02", "2030-01-02"),
    "extraction_type": ("ocr", "ocr"), "model_name": ("whisper", "whisper"), "version": ("latest", "latest"),
}  # fmt: skip


def test_every_filter_option_reaches_its_key_on_create_and_update(cli):
    """One option table (FILTER_OPTIONS): each option sets the filter key it is named for, on both commands."""
    import typer.main

    from eventctl.cli import app
    from eventctl.cli.events import FILTER_OPTIONS
    from eventctl.filters import FILTER_KEYS

    assert sorted(k for k, _ in FILTER_OPTIONS) == sorted(set(FILTER_KEYS) - {"category_ids"})
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for key, _ in FILTER_OPTIONS:
        for command in ("create", "update"):
            option = next(p for p in commands[command].params if p.name == key)
            assert option.param_type_name == "option", (command, key)
        flag = next(p for p in commands["create"].params if p.name == key)
        if flag.is_flag:
            args, expected = [flag.opts[0]], True
        else:
            args, expected = [flag.opts[0], SAMPLES[key][0]], SAMPLES[key][1]
        made = cli("create", "--name", key, "--page", f"/{key}", *args, "--json")
        assert made.exit_code == 0, made.stderr
        assert made.json()["filters"] == {key: expected}
        other = cli("create", "--name", "o", "--page", f"/o/{key}", "--json").json()["uid"]
        updated = cli("update", other, *args, "--json")
        assert updated.exit_code == 0 and updated.json()["filters"] == {key: expected}, updated.stderr
