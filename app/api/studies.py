"""Studies: list, create, get, delete; their trials: create with explicit values, list."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.serialize import studies_out, study_out, trial_out, trials_out
from app.deps import SessionDep, SettingsDep, StudyDep, get_settings
from app.errors import Conflict, Invalid, field_errors
from app.schemas import (
    StudiesPublic,
    StudyCreate,
    StudyPlan,
    StudyPublic,
    TrialCreate,
    TrialPublic,
    TrialsPublic,
)
from app.search import analysis, feeder
from app.storage import queries
from app.storage.models import Study, TrialState
from app.trials import studies

log = logging.getLogger(__name__)
router = APIRouter(prefix="/studies", tags=["studies"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


def _study_out(session: Session, study: Study) -> StudyPublic:
    """One study with its counts, progress and the distinct values its sampler tried."""
    return study_out(session, study, analysis.sampler_info(session, study))


@router.get("", response_model=StudiesPublic)
def list_studies(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> StudiesPublic:
    """List studies, newest first."""
    studies, count = queries.list_studies(session, limit=limit, offset=offset)
    return StudiesPublic(data=studies_out(session, studies), count=count)


@router.post("/plan", response_model=StudyPlan)
def plan_study(body: StudyCreate) -> StudyPlan:
    """What the study's early stopping would do, before creating it: its scheduler's settings
    as applied (defaults fitted to the budget) and its plan in words. Writes nothing."""
    settings, plan = studies.preview(body)
    return StudyPlan(scheduler_settings=settings, plan=plan)


class EveryBadField(APIRoute):
    """A new study's body that its schema refuses is still checked against the study's own
    rules (task, space, sampler and scheduler settings), so one 422 names every bad field:
    ``{"detail", "field", "errors": [{"field", "message"}, ...]}``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                found = field_errors(exc)
                if not found:  # not JSON at all: nothing more to check
                    raise
                bad = {e.field for e in found}
                settings = get_settings(request)
                more = await run_in_threadpool(
                    studies.errors_beyond_schema, exc.body, bad, settings
                )
                raise Invalid.every([*found, *more]) from None

        return route


def create_study(body: StudyCreate, session: SessionDep, settings: SettingsDep) -> StudyPublic:
    """Create a panda (one babysat model) or caviar (many in parallel) study.

    A caviar study gets round 1 with its ``space`` and samples its first trials at once; the
    server keeps ``parallelism`` of them queued or running until the ``budget`` is spent.
    A 422 names every bad field in ``errors``, the first in ``field``.
    """
    study = studies.create_study(session, body, settings)
    out = _study_out(session, study)
    session.commit()
    return out


router.add_api_route(
    "",
    create_study,
    methods=["POST"],
    response_model=StudyPublic,
    status_code=status.HTTP_201_CREATED,
    route_class_override=EveryBadField,
)


@router.get("/{study_id}", response_model=StudyPublic)
def get_study(study: StudyDep, session: SessionDep) -> StudyPublic:
    """One study with its trial counts per state and, for caviar, its ``sampler_info``."""
    return _study_out(session, study)


@router.delete("/{study_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_study(study: StudyDep, session: SessionDep) -> Response:
    """Delete a study, its trials, metrics, events and checkpoint files."""
    running = queries.state_counts(session, [study.id])[study.id].get(TrialState.RUNNING.value, 0)
    if running:
        raise Conflict(f"study {study.id} has {running} running trial(s); stop them first")
    files = queries.study_files(session, study.id)
    session.delete(study)
    session.commit()
    for path in files:  # after the commit: a failed delete must not lose the files
        Path(path).unlink(missing_ok=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{study_id}/trials", response_model=TrialPublic, status_code=status.HTTP_201_CREATED)
def create_trial(study: StudyDep, body: TrialCreate, session: SessionDep) -> TrialPublic:
    """Queue a trial with explicit hyperparameters (defaults fill the rest).

    In a caviar study it joins the latest search round and uses one trial of its budget.
    """
    hparams = studies.trial_hparams(study, body.hparams)
    trial = queries.create_trial(
        session, study=study, hparams=hparams, round_id=feeder.latest_round_id(session, study.id)
    )
    feeder.settle(session, study)
    out = trial_out(session, trial)
    session.commit()
    return out


def _states(state: str | None) -> list[TrialState]:
    names = [s for s in (state or "").split(",") if s]
    allowed = [s.value for s in TrialState]
    bad = [s for s in names if s not in allowed]
    if bad:
        raise Invalid(
            f"state: got {bad[0]!r}, allowed: one of {', '.join(allowed)} (comma-separated)",
            field="state",
        )
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
    trials, count = queries.list_trials(
        session, study=study, states=_states(state), sort=sort, limit=limit, offset=offset
    )
    return TrialsPublic(data=trials_out(session, trials), count=count)
