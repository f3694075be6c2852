"""Studies: list, create, get, delete; their trials: create with explicit values, list."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app import control, crud
from app.deps import SessionDep, SettingsDep, StudyDep
from app.errors import Conflict, Invalid
from app.models import Round, Study, StudyMode, TrialState
from app.schemas import (
    StudiesPublic,
    StudyCreate,
    StudyPublic,
    TrialCreate,
    TrialPublic,
    TrialsPublic,
)
from app.serialize import study_public, trial_out, trials_out

log = logging.getLogger(__name__)
router = APIRouter(prefix="/studies", tags=["studies"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


@router.get("", response_model=StudiesPublic)
def list_studies(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> StudiesPublic:
    """List studies, newest first."""
    studies, count = crud.list_studies(session, limit=limit, offset=offset)
    counts = crud.state_counts(session, [s.id for s in studies])
    return StudiesPublic(data=[study_public(s, counts[s.id]) for s in studies], count=count)


@router.post("", response_model=StudyPublic, status_code=status.HTTP_201_CREATED)
def create_study(body: StudyCreate, session: SessionDep, settings: SettingsDep) -> StudyPublic:
    """Create a panda (one babysat model) or caviar (many in parallel) study."""
    options = control.check_task(body.task, body.task_options, settings)
    control.check_space(body.space, fixed_only=body.mode is StudyMode.PANDA)
    assert body.objective.direction is not None  # filled in by the schema
    study = Study(
        name=body.name, mode=body.mode, task=body.task, task_options=options, space=body.space,
        objective_metric=body.objective.metric, direction=body.objective.direction,
        sampler=body.sampler, scheduler=body.scheduler, budget_trials=body.budget.trials,
        epochs=body.epochs, parallelism=body.parallelism, seed=body.seed,
    )
    session.add(study)
    session.flush()
    if body.mode is StudyMode.CAVIAR:
        session.add(Round(study_id=study.id, number=1, space=body.space))
    out = study_public(study, {})
    session.commit()
    return out


@router.get("/{study_id}", response_model=StudyPublic)
def get_study(study: StudyDep, session: SessionDep) -> StudyPublic:
    """One study with its trial counts per state."""
    return study_public(study, crud.state_counts(session, [study.id])[study.id])


@router.delete("/{study_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_study(study: StudyDep, session: SessionDep) -> Response:
    """Delete a study, its trials, metrics, events and checkpoint files."""
    running = crud.state_counts(session, [study.id])[study.id].get(TrialState.RUNNING.value, 0)
    if running:
        raise Conflict(f"study {study.id} has {running} running trial(s); stop them first")
    files = crud.study_files(session, study.id)
    session.delete(study)
    session.commit()
    for path in files:  # after the commit: a failed delete must not lose the files
        Path(path).unlink(missing_ok=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{study_id}/trials", response_model=TrialPublic, status_code=status.HTTP_201_CREATED)
def create_trial(study: StudyDep, body: TrialCreate, session: SessionDep) -> TrialPublic:
    """Queue a trial with explicit hyperparameters (defaults fill the rest)."""
    hparams = control.trial_hparams(study, body.hparams)
    trial = crud.create_trial(session, study=study, hparams=hparams)
    out = trial_out(session, trial)
    session.commit()
    return out


def _states(state: str | None) -> list[TrialState]:
    names = [s for s in (state or "").split(",") if s]
    allowed = [s.value for s in TrialState]
    bad = [s for s in names if s not in allowed]
    if bad:
        raise Invalid(f"state: got {bad[0]!r}, allowed: one of {', '.join(allowed)} "
                      "(comma-separated)", field="state")
    return [TrialState(s) for s in names]


@router.get("/{study_id}/trials", response_model=TrialsPublic)
def list_trials(
    study: StudyDep,
    session: SessionDep,
    state: str | None = None,
    sort: str = "number",
    limit: Limit = 100,
    offset: Offset = 0,
) -> TrialsPublic:
    """Trials of a study; ``state=running,paused``, ``sort=-best_value`` or ``sort=best``."""
    trials, count = crud.list_trials(
        session, study=study, states=_states(state), sort=sort, limit=limit, offset=offset
    )
    return TrialsPublic(data=trials_out(session, trials), count=count)
