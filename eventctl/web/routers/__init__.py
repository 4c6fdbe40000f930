"""The app's routes, one ``APIRouter`` per resource (``create_app`` includes them all)."""

from __future__ import annotations

from fastapi import APIRouter

from eventctl.web.routers import current, events, health, metrics

ROUTERS: tuple[APIRouter, ...] = (current.router, events.router, health.router, metrics.router)
