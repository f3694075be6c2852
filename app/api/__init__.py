"""The JSON API: one router per resource, all under ``/api``."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import (
    analysis,
    checkpoints,
    events,
    fleet,
    meta,
    rounds,
    studies,
    trials,
    workers,
)

api_router = APIRouter(prefix="/api")
api_router.include_router(meta.router)
api_router.include_router(studies.router)
api_router.include_router(rounds.router)
api_router.include_router(analysis.router)
api_router.include_router(trials.router)
api_router.include_router(events.router)
api_router.include_router(fleet.router)
api_router.include_router(workers.router)
api_router.include_router(checkpoints.router)
