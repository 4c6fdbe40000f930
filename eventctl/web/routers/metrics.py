"""``GET /metrics``: Prometheus text (admin token, or open with ``EVENTCTL_METRICS_PUBLIC=1``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from eventctl.web.errors import responses

router = APIRouter(tags=["ops"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}, **responses(401)},
)
def metrics(request: Request) -> Response:
    """Requests by route and status, /current outcomes, cache, loads, stale answers, database errors."""
    body, content_type = request.app.state.metrics.exposition()
    return Response(body, media_type=content_type)
