"""``/healthz`` (liveness: no database call) and ``/readyz`` (database reachable, schema at head)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from eventctl.web.deps import EngineDep
from eventctl.web.errors import responses

router = APIRouter(tags=["ops"])


class HealthOut(BaseModel):
    status: str


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=HealthOut, responses=responses(503))
def readyz(engine: EngineDep) -> dict[str, str]:
    from eventctl.migrate import ensure_schema

    ensure_schema(engine, auto_upgrade=False)  # SchemaNotAtHead / a database error → 503
    return {"status": "ok"}
