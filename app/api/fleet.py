"""The workers as the studies list shows them: the launcher's status, and who trains what."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from app.deps import SessionDep
from app.schemas import BusyWorker, FleetPublic, LauncherPublic
from app.storage.models import Study, Trial, TrialState

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=FleetPublic)
def list_workers(request: Request, session: SessionDep) -> FleetPublic:
    """The launcher's status (null where this process launches none) and the busy workers:
    each running trial with its worker's name, study, epoch and since when (one query)."""
    dispatcher = getattr(request.app.state, "dispatcher", None)
    launcher = None
    if dispatcher is not None:
        launcher = LauncherPublic.model_validate(dispatcher.status())
    q = (
        select(
            Trial.worker,
            Trial.id,
            Trial.number,
            Trial.study_id,
            Study.name,
            Trial.epoch,
            Trial.started_at,
        )
        .join(Study, Study.id == Trial.study_id)
        .where(Trial.state == TrialState.RUNNING)
        .order_by(Trial.worker, Trial.id)
    )
    busy = [
        BusyWorker(
            worker=worker,
            trial_id=tid,
            number=number,
            study_id=sid,
            study=name,
            epoch=epoch,
            since=since,
        )
        for worker, tid, number, sid, name, epoch, since in session.execute(q)
    ]
    return FleetPublic(launcher=launcher, busy=busy)
