"""One trial: read it, its curves, events and checkpoints; pause, resume, stop, adjust, fork."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from app.api.serialize import Point, checkpoint_public, curve, event_public, trial_out
from app.deps import SessionDep, TrialDep
from app.errors import NotFound
from app.schemas import CheckpointPublic, EventPublic, ForkRequest, TrialPublic
from app.search import feeder
from app.search.curves import downsample
from app.storage import queries
from app.storage.models import Trial
from app.trials import controls

router = APIRouter(prefix="/trials", tags=["trials"])


@router.get("/{trial_id}", response_model=TrialPublic)
def get_trial(trial: TrialDep, session: SessionDep) -> TrialPublic:
    """One trial: state, current and pending hyperparameters, progress, lineage."""
    return trial_out(session, trial)


@router.get("/{trial_id}/metrics")
def get_metrics(
    trial: TrialDep,
    session: SessionDep,
    names: str | None = None,
    since_step: Annotated[int | None, Query(ge=0)] = None,
    max_points: Annotated[int | None, Query(ge=2, le=100_000)] = None,
) -> dict[str, list[Point]]:
    """Curves as ``{name: [[step, value], ...]}``, sorted by step, optionally downsampled."""
    wanted = [n for n in (names or "").split(",") if n]
    series = queries.metric_series(session, trial_id=trial.id, names=wanted, since_step=since_step)
    if max_points is not None:
        series = {name: downsample(points, max_points) for name, points in series.items()}
    return {name: curve(points) for name, points in series.items()}


@router.get("/{trial_id}/events", response_model=list[EventPublic])
def get_events(trial: TrialDep, session: SessionDep) -> list[EventPublic]:
    """Every event of the trial, oldest first; pending ones have ``applied_at`` null."""
    return [event_public(e) for e in queries.list_events(session, trial_id=trial.id)]


@router.get("/{trial_id}/checkpoints", response_model=list[CheckpointPublic])
def get_checkpoints(trial: TrialDep, session: SessionDep) -> list[CheckpointPublic]:
    """The trial's checkpoints by step: the points a fork can start from."""
    return [checkpoint_public(c) for c in queries.list_checkpoints(session, trial_id=trial.id)]


@router.post(
    "/{trial_id}/checkpoints", response_model=TrialPublic, status_code=status.HTTP_202_ACCEPTED
)
def request_checkpoint(trial: TrialDep, session: SessionDep) -> TrialPublic:
    """Ask a running trial for a checkpoint at its next safe point."""
    controls.request_checkpoint(session, trial)
    return _commit(session, trial)


@router.get("/{trial_id}/checkpoints/{step}", response_class=FileResponse)
def download_checkpoint(trial: TrialDep, step: int, session: SessionDep) -> FileResponse:
    """Download the checkpoint taken after ``step`` steps (``.npz``)."""
    ckpt = queries.get_checkpoint(session, trial_id=trial.id, step=step)
    if ckpt is None or not Path(ckpt.path).is_file():
        raise NotFound(f"trial {trial.id} has no checkpoint at step {step}")
    return FileResponse(
        ckpt.path,
        media_type="application/octet-stream",
        filename=f"trial{trial.id}-step{step}.npz",
        headers={"X-Checkpoint-Sha256": ckpt.sha256},
    )


def _commit(session: Session, trial: Trial) -> TrialPublic:
    out = trial_out(session, trial)
    session.commit()
    return out


@router.post("/{trial_id}/pause", response_model=TrialPublic)
def pause_trial(trial: TrialDep, session: SessionDep) -> TrialPublic:
    """Pause: a running trial checkpoints and frees its worker; a queued one waits."""
    controls.pause(session, trial)
    return _commit(session, trial)


@router.post("/{trial_id}/resume", response_model=TrialPublic)
def resume_trial(trial: TrialDep, session: SessionDep) -> TrialPublic:
    """Resume a paused trial from its latest checkpoint (it is queued again)."""
    controls.resume(session, trial)
    # The trial is open again: a study completed meanwhile becomes active (controls.resume
    # itself does not settle).
    feeder.settle(session, trial.study)
    return _commit(session, trial)


@router.post("/{trial_id}/stop", response_model=TrialPublic)
def stop_trial(trial: TrialDep, session: SessionDep) -> TrialPublic:
    """Stop for good: at the next safe point if running, at once otherwise."""
    controls.stop(session, trial)
    return _commit(session, trial)


@router.patch("/{trial_id}/hparams", response_model=TrialPublic)
def adjust_hparams(
    trial: TrialDep, session: SessionDep, values: Annotated[dict[str, Any], Body()]
) -> TrialPublic:
    """Change adjustable hyperparameters; applied at the next safe point or at resume."""
    controls.adjust(session, trial, values)
    return _commit(session, trial)


@router.post("/{trial_id}/fork", response_model=TrialPublic, status_code=status.HTTP_201_CREATED)
def fork_trial(trial: TrialDep, body: ForkRequest, session: SessionDep) -> TrialPublic:
    """A new trial from this one's checkpoint at ``step`` with overrides (rewind = fork)."""
    child = controls.fork(session, trial, body.step, body.hparams)
    return _commit(session, child)
