"""Typed dependency aliases: handlers take ``session: SessionDep``, ``trial: TrialDep``..."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import NotFound
from app.storage import locks
from app.storage.db import get_session, read_engine
from app.storage.models import Study, Trial


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]


# Requests that only read: every other method may write, so it locks what it loads.
READS = frozenset({"GET", "HEAD"})


def load_study(study_id: int, request: Request, session: SessionDep) -> Study:
    """The study; a writing request holds its row lock until it commits (PostgreSQL).

    Adding trials or rounds numbers them after the study's last one, and a deletion checks that
    nothing runs: on PostgreSQL those reads must not race another server's writes. A deletion
    locks the study's trials first, in the order every other path takes them (app.storage.locks).
    """
    write = request.method not in READS
    if write and request.method == "DELETE":
        locks.lock_trials_of_study(session, study_id)
    study = locks.get_study(session, study_id, lock=write)
    if study is None:
        raise NotFound(f"study {study_id} not found")
    return study


def load_trial(trial_id: int, request: Request, session: SessionDep) -> Trial:
    """The trial; a writing request holds its row lock until it commits (PostgreSQL).

    Taken before the handler reads the trial's state or pending events, so that a report,
    finish or control on another server waits for this one and reads what it wrote.
    """
    trial = locks.get_trial(session, trial_id, lock=request.method not in READS)
    if trial is None:
        raise NotFound(f"trial {trial_id} not found")
    return trial


StudyDep = Annotated[Study, Depends(load_study)]
TrialDep = Annotated[Trial, Depends(load_trial)]


def _exists(engine: Engine, model: type[Study] | type[Trial], id_: int) -> bool:
    with Session(read_engine(engine)) as session:
        return session.scalar(select(model.id).where(model.id == id_)) is not None


def existing_study_id(study_id: int, engine: EngineDep) -> int:
    """404 or the id, without keeping a session open (for long-lived streams)."""
    if not _exists(engine, Study, study_id):
        raise NotFound(f"study {study_id} not found")
    return study_id


def existing_trial_id(trial_id: int, engine: EngineDep) -> int:
    """404 or the id, without keeping a session open (for long-lived streams)."""
    if not _exists(engine, Trial, trial_id):
        raise NotFound(f"trial {trial_id} not found")
    return trial_id


StudyIdDep = Annotated[int, Depends(existing_study_id)]
TrialIdDep = Annotated[int, Depends(existing_trial_id)]
