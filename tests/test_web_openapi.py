"""The OpenAPI document stays what it was, apart from the changes listed here on purpose.

BASELINE is the document of the app as it was before the routes moved into
routers (once the platform's filter shape and ``is_default`` were in): every
operation's id, statuses and parameters, the component schemas and the fields
of the event shapes. A refactor must not move any of it; a deliberate change is written into INTENDED with its reason.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

Op = dict[str, Any]

BASELINE: dict[tuple[str, str], Op] = {
    ("/api/v1/events/", "get"): {
        "operationId": "list_events_api_v1_events__get",
        "responses": {"200", "401", "422", "503"},
        "parameters": {"query:page_context", "query:status"},
    },
    ("/api/v1/events/", "post"): {
        "operationId": "create_event_api_v1_events__post",
        "responses": {"201", "400", "401", "409", "422", "503"},
        "parameters": {"query:allow_overlap"},
    },
    ("/api/v1/events/current", "get"): {
        "operationId": "current_api_v1_events_current_get",
        "responses": {"200", "304", "400", "409", "422", "503"},
        "parameters": {"header:if-none-match", "header:x-page-route"},
    },
    ("/api/v1/events/{uid}", "delete"): {
        "operationId": "delete_event_api_v1_events__uid__delete",
        "responses": {"204", "401", "404", "422", "503"},
        "parameters": {"path:uid"},
    },
    ("/api/v1/events/{uid}", "get"): {
        "operationId": "get_event_api_v1_events__uid__get",
        "responses": {"200", "401", "404", "422", "503"},
        "parameters": {"path:uid"},
    },
    ("/api/v1/events/{uid}", "put"): {
        "operationId": "update_event_api_v1_events__uid__put",
        "responses": {"200", "400", "401", "404", "409", "422", "503"},
        "parameters": {"path:uid", "query:allow_overlap"},
    },
    ("/healthz", "get"): {"operationId": "healthz_healthz_get", "responses": {"200"}, "parameters": set()},
    ("/readyz", "get"): {"operationId": "readyz_readyz_get", "responses": {"200", "503"}, "parameters": set()},
}
BASELINE_SCHEMAS = {
    "ConflictOut",
    "ErrorOut",
    "EventCreate",
    "EventPublic",
    "EventUpdate",
    "ExtractionType",
    "HTTPValidationError",
    "HealthOut",
    "MediaType",
    "RecordReviewFilters",
    "ReleaseRights",
    "ValidationError",
}
_EVENT_FIELDS = {
    "description",
    "end_date",
    "filters",
    "is_active",
    "is_default",
    "limit",
    "name",
    "page_context",
    "start_date",
}
BASELINE_FIELDS = {
    "EventCreate": _EVENT_FIELDS,
    "EventUpdate": _EVENT_FIELDS,
    "EventPublic": _EVENT_FIELDS | {"uid", "created_by", "created_at", "updated_at", "status"},
    "RecordReviewFilters": {
        "category_ids",
        "extraction_type",
        "extration",
        "is_fully_proofread",
        "is_fully_validated",
        "language",
        "lock",
        "media_type",
        "model_name",
        "published_date",
        "release_rights",
        "source_label",
        "version",
    },
    "HealthOut": {"status"},
    "ErrorOut": {"detail"},
    "ConflictOut": {"detail", "conflicting_uids"},
}

# Each deliberate change: (operation, what changes, why).
INTENDED: list[tuple[tuple[str, str], Op, str]] = [
    (
        ("/api/v1/events/", "get"),
        {"add_parameters": {"query:skip", "query:limit", "query:is_active"}},
        "SPEC §4: the list takes the platform's own list parameters",
    ),
    (
        ("/api/v1/events/current", "head"),
        {
            "new": {
                "operationId": "current_head_api_v1_events_current_head",
                "responses": {"200", "304", "400", "409", "503"},
                "parameters": {"header:if-none-match", "header:x-page-route"},
            }
        },
        "SPEC §4: HEAD /current answers as GET, without a body",
    ),
    (
        ("/api/v1/events/current", "get"),
        {"drop_responses": {"422"}},
        "X-Page-Route is read as bytes by /current itself: malformed is 400, never FastAPI's 422",
    ),
    (("/api/v1/events/", "post"), {"add_responses": {"413"}}, "SPEC §4: bodies over 1 MiB are refused with 413"),
    (("/api/v1/events/{uid}", "put"), {"add_responses": {"413"}}, "SPEC §4: bodies over 1 MiB are refused with 413"),
    (
        ("/api/v1/events/{uid}/history", "get"),
        {
            "new": {
                "operationId": "event_history_api_v1_events__uid__history_get",
                "responses": {"200", "401", "404", "422", "503"},
                "parameters": {"path:uid"},
            }
        },
        "SPEC §4/§8: an event's audit trail for admins",
    ),
    (
        ("/api/v1/events/history", "get"),
        {
            "new": {
                "operationId": "all_history_api_v1_events_history_get",
                "responses": {"200", "401", "422", "503"},
                "parameters": {"query:page_context", "query:since", "query:skip", "query:limit"},
            }
        },
        "SPEC §8/§10: the whole audit trail a page at a time, for eventctl --api URL history",
    ),
    (
        ("/api/v1/events/server", "get"),
        {
            "new": {
                "operationId": "server_info_api_v1_events_server_get",
                "responses": {"200", "401"},
                "parameters": set(),
            }
        },
        "SPEC §10: how eventctl --api tells an eventctl serve from the platform's events API",
    ),
    (
        ("/metrics", "get"),
        {"new": {"operationId": "metrics_metrics_get", "responses": {"200", "401"}, "parameters": set()}},
        "SPEC §4: Prometheus metrics (admin, or open with EVENTCTL_METRICS_PUBLIC)",
    ),
]


def expected_operations() -> dict[tuple[str, str], Op]:
    ops = copy.deepcopy(BASELINE)
    for key, change, _why in INTENDED:
        if "new" in change:
            ops[key] = copy.deepcopy(change["new"])
            continue
        op = ops[key]
        op["parameters"] |= change.get("add_parameters", set())
        op["responses"] -= change.get("drop_responses", set())
        op["responses"] |= change.get("add_responses", set())
    return ops


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], Op]:
    return {
        (path, method): {
            "operationId": op["operationId"],
            "responses": set(op["responses"]),
            "parameters": {f"{p['in']}:{p['name']}" for p in op.get("parameters", [])},
        }
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from eventctl.config import Settings
    from eventctl.web.app import create_app

    url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'never-opened.db'}"
    app = create_app(Settings(database_url=url))
    try:
        return app.fastapi.openapi()
    finally:
        app.fastapi.state.engine.dispose()


def test_operations_unchanged_apart_from_intended_changes(doc):
    assert operations(doc) == expected_operations()


def test_schemas_and_event_fields_unchanged(doc):
    schemas = doc["components"]["schemas"]
    # the history route's answer (SPEC §8); the server-kind answer (SPEC §10); /readyz's freshness (SPEC §11)
    assert set(schemas) == BASELINE_SCHEMAS | {"AuditEntryOut", "ServerInfo", "ReadyOut"}
    for name, fields in BASELINE_FIELDS.items():
        assert set(schemas[name]["properties"]) == fields, name


def test_intended_changes_are_as_specified(doc):
    from eventctl.routes import ROUTE_PATTERN

    paths = doc["paths"]
    # the {uid} path parameter: hex and dashes, 8-36 characters (never "current")
    for method in ("get", "put", "delete"):
        (uid,) = [p for p in paths["/api/v1/events/{uid}"][method]["parameters"] if p["name"] == "uid"]
        assert uid["schema"]["pattern"] == r"^[0-9a-fA-F-]{8,36}$", method
    # list parameters, as the platform's list endpoint
    params = {p["name"]: p["schema"] for p in paths["/api/v1/events/"]["get"]["parameters"]}
    assert (params["limit"]["minimum"], params["limit"]["maximum"], params["limit"]["default"]) == (1, 200, 50)
    assert (params["skip"]["minimum"], params["skip"]["default"]) == (0, 0)
    assert params["status"]["enum"] == ["live", "scheduled", "expired", "inactive", "all"]
    # HEAD /current: GET's parameters, documented without a body
    get, head = paths["/api/v1/events/current"]["get"], paths["/api/v1/events/current"]["head"]
    assert head["parameters"] == get["parameters"]
    assert all("content" not in answer for answer in head["responses"].values())
    (route,) = [p for p in get["parameters"] if p["name"] == "x-page-route"]
    assert route["schema"]["pattern"] == ROUTE_PATTERN and "maxLength" not in route["schema"]
