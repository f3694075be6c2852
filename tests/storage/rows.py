"""Rows the storage tests build directly, without the API: a study, and a trial in it."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.storage.models import Direction, Study, StudyMode, Trial, TrialState


def a_study(name: str = "s", objective: str = "m") -> Study:
    """A panda study on digits with the smallest budget."""
    return Study(
        name=name,
        mode=StudyMode.PANDA,
        task="digits",
        objective_metric=objective,
        direction=Direction.MAXIMIZE,
        sampler="random",
        budget_trials=1,
        epochs=1,
        parallelism=1,
        seed=0,
    )


def a_trial(session: Session, state: TrialState, objective: str = "m") -> Trial:
    """A trial of a new study, flushed (it has its id), not committed."""
    study = a_study(objective=objective)
    session.add(study)
    session.flush()
    trial = Trial(study_id=study.id, number=0, state=state, hparams={})
    session.add(trial)
    session.flush()
    return trial


def a_trial_id(engine: Engine, state: TrialState, objective: str = "m") -> int:
    """The id of a committed trial of a new study."""
    with Session(engine) as session:
        trial = a_trial(session, state, objective)
        session.commit()
        return trial.id
