"""``/healthz`` (liveness: no database call) and ``/readyz`` (database reachable, schema at head)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from eventctl.web.deps import CurrentServiceDep, EngineDep
from eventctl.web.errors import responses

router = APIRouter(tags=["ops"])


class HealthOut(BaseModel):
    status: str


class ReadyOut(HealthOut):
    freshness: str  # listen (LISTEN/NOTIFY pushes writes) or poll
    freshness_note: str | None = None  # why LISTEN cannot work where it was asked for


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyOut, responses=responses(503))
def readyz(engine: EngineDep, service: CurrentServiceDep) -> dict[str, str | None]:
    """Ready when the database answers at the schema's head; says how writes reach this worker."""
    from eventctl.migrate import ensure_schema

    ensure_schema(engine, auto_upgrade=False)  # SchemaNotAtHead / a database error → 503
    return {"status": "ok", "freshness": service.freshness_mode, "freshness_note": service.freshness_note}
