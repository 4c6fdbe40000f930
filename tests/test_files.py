"""apply / export (SPEC §7) and the audit trail (SPEC §8), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from conftest import count_rows, make_cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FULL_FILTERS = {
    "language": ["Telugu", "Hindi"],
    "media_type": ["text", "audio", "video", "image", "document"],
    "category_ids": ["0b7a6b0e-3c1a-4c55-9d22-123456789abc"],
    "source_label": "Wikisource",
    "release_rights": "NA",
    "published_date": "2026-02-28",
    "is_fully_proofread": False,
    "is_fully_validated": True,
    "extraction_type": "caption",
    "model_name": "whisper",
    "version": "initial",
    "lock": True,
    "extration": False,
}


def write(tmp_path: Path, name: str, data) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def apply_json(cli, path: str, *args: str) -> dict:
    r = cli("apply", path, "--json", *args)
    assert r.exit_code == 0, r.stderr
    return r.json()


def test_apply_plans_counts_and_is_idempotent(cli, db_url, tmp_path):
    path = str(EXAMPLES / "campaigns.yaml")
    first = apply_json(cli, path)
    assert (first["created"], first["updated"], first["unchanged"], first["deleted"]) == (3, 0, 0, 0)
    assert first["dry_run"] is False and all(isinstance(first[k], int) for k in ("created", "updated"))
    assert {c["action"] for c in first["changes"]} == {"create"}
    entries = count_rows(db_url, "eventctl_audit")
    second = apply_json(cli, path)
    assert (second["created"], second["updated"], second["unchanged"], second["deleted"]) == (0, 0, 3, 0)
    assert count_rows(db_url, "events") == 3 and count_rows(db_url, "eventctl_audit") == entries
    # the page default answers /review/audio until the campaign starts
    assert cli("current", "--page", "/review/audio", "--json").json()["name"] == "Audio review (standing)"
    assert cli("current", "--page", "doc_digitization", "--json").json()["filters"]["media_type"] == ["document"]


def test_apply_updates_field_by_field_and_prunes(cli, db_url, tmp_path):
    base = [
        {"name": "A", "page_context": "/p", "start_date": "2031-01-01T00:00:00Z", "end_date": "2031-01-02T00:00:00Z"},
        {"name": "B", "page_context": "/p", "start_date": "2031-02-01T00:00:00Z", "end_date": "2031-02-02T00:00:00Z"},
        {"name": "Elsewhere", "page_context": "/q"},
    ]
    apply_json(cli, write(tmp_path, "a.json", base))
    changed = [
        {**base[0], "limit": 40, "filters": {"media_type": ["audio"]}},
        {"name": "C", "page_context": "/p", "start_date": "2031-03-01T00:00:00Z"},
    ]
    dry = apply_json(cli, write(tmp_path, "b.json", changed), "--prune", "--dry-run")
    assert (dry["created"], dry["updated"], dry["unchanged"], dry["deleted"]) == (1, 1, 0, 1)
    assert dry["dry_run"] is True
    update = next(c for c in dry["changes"] if c["action"] == "update")
    assert update["fields"] == {"filters": [{}, {"media_type": ["audio"]}], "limit": [20, 40]}
    assert [c["name"] for c in dry["changes"] if c["action"] == "delete"] == ["B"]  # /q is not the file's page
    assert count_rows(db_url, "events") == 3 and count_rows(db_url, "eventctl_audit") == 3  # dry run: nothing
    real = apply_json(cli, write(tmp_path, "b.json", changed), "--prune")
    assert {k: real[k] for k in ("created", "updated", "unchanged", "deleted")} == {
        k: dry[k] for k in ("created", "updated", "unchanged", "deleted")
    }
    names = sorted(e["name"] for e in cli("list", "--json").json())
    assert names == ["A", "C", "Elsewhere"]
    assert count_rows(db_url, "eventctl_audit") == 6  # 3 creates, then create + update + delete
    people = cli("apply", write(tmp_path, "b.json", changed), "--dry-run")
    assert people.exit_code == 0 and "0 created, 0 updated, 2 unchanged, 0 deleted" in people.stderr


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ('[{"name": "A", "page_context": "/p", "colour": "red"}]', "entry 1: unknown key 'colour'"),
        ('[{"name": "A", "page_context": "/p"}, {"name": "B", "page_context": "/p", "limit": 500}]', "entry 2"),
        ('[{"name": "A", "page_context": "/p", "filters": {"media_type": "audio"}}]', "entry 1"),
        ('[{"name": "A", "page_context": "/p", "start_date": "2030-01-01T09:00"}]', "entry 1"),  # no offset
        ('[{"name": "A", "page_context": "/p"}, {"name": "A", "page_context": "/p/"}]', "entry 2"),
        ('{"name": "A"}', "must hold a list"),
        ("- !!python/object/apply:os.system ['touch pwned']", "YAML tag '!!python/object/apply:os.system'"),
        ("- {name: A, page_context: /p, uid: nope}", "not a UUID"),
        ("[1, 2]", "entry 1 is not a mapping"),
        ("- name: [unclosed", "not valid YAML"),
    ],
)
def test_invalid_files_are_refused_whole(cli, db_url, tmp_path, document, where):
    apply_json(cli, write(tmp_path, "ok.json", [{"name": "Keep", "page_context": "/keep"}]))
    before = (count_rows(db_url, "events"), count_rows(db_url, "eventctl_audit"))
    r = cli("apply", write(tmp_path, "bad.yaml", document), "--prune")
    assert r.exit_code == 2, r.stderr
    assert where in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (count_rows(db_url, "events"), count_rows(db_url, "eventctl_audit")) == before
    assert not (tmp_path / "pwned").exists()


def test_an_overlap_in_the_file_is_judged_on_the_final_state(cli, db_url, tmp_path):
    a = {"name": "A", "page_context": "/o", "start_date": "2031-01-01T00:00:00Z", "end_date": "2031-01-10T00:00:00Z"}
    b = {"name": "B", "page_context": "/o", "start_date": "2031-01-05T00:00:00Z", "end_date": "2031-01-20T00:00:00Z"}
    r = cli("apply", write(tmp_path, "o.json", [a, b]))
    assert r.exit_code == 3 and "overlaps" in r.stderr and "--allow-overlap" in r.stderr, r.stderr
    assert count_rows(db_url, "events") == 0 and count_rows(db_url, "eventctl_audit") == 0
    # moving A out of B's way in the same file is fine: only the final state counts
    apply_json(cli, write(tmp_path, "o1.json", [a]))
    moved = {**a, "end_date": "2031-01-05T00:00:00Z"}
    result = apply_json(cli, write(tmp_path, "o2.json", [b, moved]))
    assert (result["created"], result["updated"]) == (1, 1)
    assert apply_json(cli, write(tmp_path, "o3.json", [a, b]), "--allow-overlap")["updated"] == 1


def test_export_apply_round_trip_is_exact(cli, db_url, tmp_path, backend):
    cli("create", "--name", "Full", "--page", "/review/తెలుగు", "--filters", json.dumps(FULL_FILTERS),
        "--start", "2031-01-01T09:00+05:30", "--end", "2031-02-01T00:00Z", "--description", "multi\nline")  # fmt: skip
    cli("create", "--name", "Default", "--page", "doc_digitization", "--default", "--limit", "100", "--inactive")
    for fmt in ("yaml", "json"):
        exported = cli("export", "--format", fmt)
        assert exported.exit_code == 0, exported.stderr
        empty = tmp_path / f"empty-{fmt}.db"
        other = make_cli(f"sqlite:///{empty}")
        assert other("db", "upgrade").exit_code == 0
        path = write(tmp_path, f"export.{fmt}", exported.stdout)
        assert other("apply", path).exit_code == 0
        again = other("export", "--format", fmt)
        assert again.stdout == exported.stdout
        assert apply_json(other, path)["unchanged"] == 2
    rows = json.loads(cli("export", "--format", "json").stdout)
    full = next(r for r in rows if r["name"] == "Full")
    assert full["filters"] == FULL_FILTERS and full["start_date"] == "2031-01-01T03:30:00Z"
    assert set(full) == {"uid", "name", "description", "page_context", "filters", "limit", "is_active",
                         "is_default", "start_date", "end_date"}  # fmt: skip
    assert cli("export", "--page", "doc_digitization", "--format", "json").stdout.count('"uid"') == 1
    assert cli("export", "--format", "xml").exit_code == 2


def test_history_records_every_write_and_outlives_the_event(cli, db_url, tmp_path):
    ev = cli("create", "--json", "--name", "H", "--page", "/h", "--created-by", "alice").json()
    assert cli("update", ev["uid"], "--limit", "30", "--created-by", "bob").exit_code == 0
    apply_json(cli, write(tmp_path, "h.json", [{"uid": ev["uid"], "name": "H2", "page_context": "/h", "limit": 30}]))
    assert cli("delete", ev["uid"], "--yes", env={"EVENTCTL_ACTOR": "carol"}).exit_code == 0
    r = cli("history", ev["uid"][:8], "--json")
    assert r.exit_code == 0, r.stderr
    entries = r.json()
    assert [(e["action"], e["via"], e["actor"]) for e in entries] == [
        ("delete", "cli", "carol"),
        ("update", "apply", entries[1]["actor"]),
        ("update", "cli", "bob"),
        ("create", "cli", "alice"),
    ]
    create, update = entries[3], entries[2]
    assert create["before"] is None and create["after"]["name"] == "H" and create["after"]["limit"] == 20
    assert update["before"]["limit"] == 20 and update["after"]["limit"] == 30
    assert entries[1]["before"]["name"] == "H" and entries[1]["after"]["name"] == "H2"
    assert entries[0]["after"] is None and entries[0]["before"]["name"] == "H2"
    assert all(e["uid"] == ev["uid"] and e["page_context"] == "/h" for e in entries)
    # as times, not text: a time on a whole second is written without ".000000"
    assert entries == sorted(entries, key=lambda e: datetime.fromisoformat(e["at"]), reverse=True)
    people = cli("history", "--page", "/h")
    assert people.exit_code == 0 and "limit: 20 -> 30" in people.stdout, people.stdout
    assert cli("history", "--since", "+1d", "--json").json() == []
    assert len(cli("history", "--since", "-1h", "--json").json()) == 4
    assert cli("history", "ffffffff", "--json").exit_code == 4
    assert cli("history", "--since", "yesterday-ish").exit_code == 2


@pytest.mark.parametrize("writer", ["create", "apply", "cleanup"])
def test_an_audit_write_failure_rolls_back_the_change(cli, db_url, monkeypatch, tmp_path, writer):
    """Every writer goes through the one write path (audit entry, counter, NOTIFY): when its audit
    write fails, the change itself is rolled back."""
    from eventctl import audit

    assert cli("create", "--name", "Old", "--page", "/old", "--start", "-30d", "--end", "-20d").exit_code == 0
    before = (count_rows(db_url, "events"), count_rows(db_url, "eventctl_audit"))

    def broken(*_args, **_kwargs):
        raise RuntimeError("audit table is gone")

    monkeypatch.setattr(audit, "insert", broken)
    args = {
        "create": ("create", "--name", "X", "--page", "/x"),
        "apply": ("apply", write(tmp_path, "f.json", [{"name": "X", "page_context": "/x"}])),
        "cleanup": ("cleanup", "--older-than", "1d"),
    }[writer]
    r = cli(*args)
    assert r.exit_code == 1 and "Traceback" not in r.stderr, r.stderr
    assert (count_rows(db_url, "events"), count_rows(db_url, "eventctl_audit")) == before


def test_history_from_every_writer_cli_http_apply_cleanup(cli, db_url, tmp_path):
    """Issue 9: a create via CLI, an update via HTTP, an apply and a cleanup of the same event → four entries."""
    from fastapi.testclient import TestClient
    from webtools import make_app

    token = cli("token", "create", "web-admin").stdout.strip()
    ev = cli(
        "create", "--json", "--name", "Old", "--page", "/h4", "--start", "-30d", "--end", "-20d", "--created-by", "ana"
    ).json()
    with TestClient(make_app(db_url)) as client:
        r = client.put(f"/api/v1/events/{ev['uid']}", json={"limit": 42}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        entry = {**{k: ev[k] for k in ("uid", "name", "page_context", "start_date", "end_date")}, "limit": 42}
        apply_json(cli, write(tmp_path, "h4.json", [{**entry, "description": "from the file"}]))
        assert cli("cleanup", "--older-than", "7d", env={"EVENTCTL_ACTOR": "cron"}).exit_code == 0
        assert cli("show", ev["uid"]).exit_code == 4  # gone; its history is not
        via_http = client.get(f"/api/v1/events/{ev['uid']}/history", headers={"Authorization": f"Bearer {token}"})
    entries = cli("history", ev["uid"], "--json").json()
    assert via_http.status_code == 200 and via_http.json() == entries
    assert [(e["action"], e["via"], e["actor"]) for e in entries] == [
        ("delete", "cleanup", "cron"),
        ("update", "apply", entries[1]["actor"]),
        ("update", "http", "web-admin"),
        ("create", "cli", "ana"),
    ]
    assert entries[2]["before"]["limit"] == 20 and entries[2]["after"]["limit"] == 42
    assert entries[1]["before"]["description"] is None and entries[1]["after"]["description"] == "from the file"
    assert entries[0]["before"]["description"] == "from the file" and entries[0]["after"] is None
