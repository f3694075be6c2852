"""Trials a scheduler parked at a rung: found, promoted (queued again) or ended with the study.

A scheduler in pause mode (``AshaScheduler(mode="pause")``) answers PAUSE to a trial that does
not yet rank in the top ``1/eta`` of its rung. ``app.caviar`` turns that answer into a PAUSE
event whose payload names the scheduler; the worker checkpoints and releases the trial, which
ends its attempt as ``paused``. Such a trial is *parked*: paused, and its latest PAUSE event
came from the scheduler. A trial a user paused is never parked, so the feeder never resumes
it; a user may still resume a parked trial by hand.

Nothing else is stored: the rung records say where each parked trial waits and how it ranks,
so a restarted server promotes exactly as the old one would have.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import crud
from app.db import utcnow
from app.models import Event, EventKind, Study, Trial, TrialState
from app.tuning import RungRecord, Scheduler


def parked(session: Session, study_id: int) -> dict[int, Trial]:
    """The study's trials its scheduler paused and nobody resumed since, by trial number."""
    q = select(Trial).where(Trial.study_id == study_id, Trial.state == TrialState.PAUSED)
    paused = list(session.scalars(q))
    if not paused:
        return {}
    last: dict[int, Event] = {}  # trial id -> its newest PAUSE event
    events = (
        select(Event)
        .where(Event.trial_id.in_([t.id for t in paused]), Event.kind == EventKind.PAUSE)
        .order_by(Event.id)
    )
    for event in session.scalars(events):
        last[event.trial_id] = event
    return {t.number: t for t in paused if t.id in last and "scheduler" in last[t.id].payload}


def promote(
    session: Session, study: Study, scheduler: Scheduler, records: Sequence[RungRecord],
    slots: int, *, final: bool = False,
) -> int:
    """Queue again up to ``slots`` parked trials the scheduler promotes; how many were.

    A promoted trial is claimed like any queued one and resumes from its latest checkpoint;
    it is older than any trial sampled after it, so the claim (oldest first) takes it first.
    """
    if slots <= 0 or not scheduler.pauses:
        return 0
    waiting = parked(session, study.id)
    if not waiting:
        return 0
    chosen = scheduler.promotions(records, set(waiting), final=final)[:slots]
    for number in chosen:
        trial = waiting[number]
        trial.state = TrialState.QUEUED
        crud.add_event(session, trial, EventKind.RESUME, {"scheduler": study.scheduler},
                       applied=True, applied_step=trial.step)
    return len(chosen)


def end_parked(session: Session, study: Study) -> int:
    """The study is over: every trial still parked ends as pruned, its curve kept."""
    waiting = parked(session, study.id)
    now = utcnow()
    for trial in waiting.values():
        trial.state, trial.ended_at = TrialState.PRUNED, now
        payload = {"scheduler": study.scheduler, "reason": "the study ended while it waited"}
        crud.add_event(session, trial, EventKind.PRUNE, payload,
                       applied=True, applied_step=trial.step)
    return len(waiting)
