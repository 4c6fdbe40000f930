"""``GET``/``HEAD /api/v1/events/current``: documents the frontend's route.

Requests are answered by ``CurrentFastPath`` before routing; these routes answer
through the same ``send_current`` when the app runs without it (``app.fastapi``
mounted elsewhere), so both ways give the same statuses, headers and bodies.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from starlette.types import Receive, Scope, Send

from eventctl.routes import ROUTE_PATTERN
from eventctl.shapes import EventPublic
from eventctl.web.current import CURRENT_PATH, CurrentService, send_current
from eventctl.web.deps import CurrentServiceDep
from eventctl.web.errors import responses

router = APIRouter(tags=["frontend"])

# Declared for the document only: the header's raw bytes go to normalize_route (read as
# UTF-8), so a route sent percent-encoded or as UTF-8 bytes is one page, and a malformed
# one is 400 (never FastAPI's 422).
_HEADERS: list[dict[str, Any]] = [
    {
        "name": "x-page-route",
        "in": "header",
        "required": False,
        "description": (
            "The page key: a route such as /review/audio (percent-encoded as window.location.pathname "
            "gives it, or as UTF-8 bytes) or a key such as doc_digitization. Missing or blank: null."
        ),
        "schema": {"type": "string", "pattern": ROUTE_PATTERN, "title": "X-Page-Route"},
    },
    {
        "name": "if-none-match",
        "in": "header",
        "required": False,
        "description": "ETags from an earlier answer",
        "schema": {"type": "string", "title": "If-None-Match"},
    },
]
_SUMMARY = "The event live for the page named by X-Page-Route (null if none)"


class CurrentResponse(Response):
    """Answered by ``send_current``, as the fast path answers."""

    def __init__(self, service: CurrentService) -> None:
        super().__init__()
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_current(self.service, scope, send)


@router.get(
    CURRENT_PATH,
    response_model=EventPublic | None,
    responses=responses(304, 400, 409, 503),
    summary=_SUMMARY,
    openapi_extra={"parameters": _HEADERS},
)
async def current(service: CurrentServiceDep) -> Response:
    return CurrentResponse(service)


@router.head(
    CURRENT_PATH,
    response_class=Response,
    responses={200: {"description": "As GET, without a body"}, **responses(304, 400, 409, 503, bodies=False)},
    summary="As GET /current: the same status and headers (ETag, Cache-Control, Vary), no body",
    openapi_extra={"parameters": _HEADERS},
)
async def current_head(service: CurrentServiceDep) -> Response:
    return CurrentResponse(service)
