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
async def metrics(request: Request) -> Response:
    """Requests by route and status, /current outcomes, cache, loads, stale answers, database errors."""
    from anyio import to_thread

    collected = request.app.state.metrics
    collected.flush()  # this worker's counts now; every other worker's within its poll interval
    body, content_type = await to_thread.run_sync(collected.exposition)
    return Response(body, media_type=content_type)
