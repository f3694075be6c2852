"""Trials a scheduler parked at a rung: found, promoted (queued again) or ended with the study.

A scheduler in pause mode (``AshaScheduler(mode="pause")``) answers PAUSE to a trial that does
not yet rank in the top ``1/eta`` of its rung. ``app.search.feeder`` turns that answer into a PAUSE
event whose payload names the scheduler; the worker checkpoints and releases the trial, which
ends its attempt as ``paused``. Such a trial is *parked*: paused, and its latest PAUSE event
came from the scheduler. A trial a user paused is never parked, so the feeder never resumes
it; a user may still resume a parked trial by hand.

Nothing else is stored: the rung records say where each parked trial waits and how it ranks,
so a restarted server promotes exactly as the old one would have.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.storage import queries
from app.storage.models import Event, EventKind, Study, Trial, TrialState
from app.storage.pending import end_trial
from app.tuning import RungRecord, Scheduler


def parked(session: Session, study_id: int) -> dict[int, int]:
    """The study's trials its scheduler paused and nobody resumed since: number -> trial id.

    One query of (trial, pause event) pairs in event order: a trial's last pair decides.
    """
    q = (
        select(Trial.id, Trial.number, Event.payload)
        .join(Event, Event.trial_id == Trial.id)
        .where(
            Trial.study_id == study_id,
            Trial.state == TrialState.PAUSED,
            Event.kind == EventKind.PAUSE,
        )
        .order_by(Event.id)
    )
    last = {number: (trial_id, payload) for trial_id, number, payload in session.execute(q)}
    return {n: trial_id for n, (trial_id, payload) in last.items() if "scheduler" in payload}


def promote(
    session: Session,
    study: Study,
    scheduler: Scheduler,
    records: Sequence[RungRecord],
    slots: int,
    *,
    final: bool = False,
) -> tuple[int, frozenset[int]]:
    """Queue again up to ``slots`` parked trials the scheduler promotes.

    Returns how many were queued and the ids of the trials still parked. A promoted trial is
    claimed like any queued one and resumes from its latest checkpoint; it is older than any
    trial sampled after it, so the claim (oldest first) takes it first.
    """
    waiting = parked(session, study.id) if scheduler.pauses else {}
    chosen: list[int] = []
    if waiting and slots > 0:
        chosen = scheduler.promotions(records, set(waiting), final=final)[:slots]
    for number in chosen:
        trial = session.get_one(Trial, waiting.pop(number))
        trial.state = TrialState.QUEUED
        queries.add_event(
            session,
            trial,
            EventKind.RESUME,
            {"scheduler": study.scheduler},
            applied=True,
            applied_step=trial.step,
        )
    return len(chosen), frozenset(waiting.values())


def end_parked(session: Session, study: Study, trial_ids: Iterable[int]) -> None:
    """The study is over: the parked trials ``trial_ids`` end as pruned, curves kept."""
    payload = {"scheduler": study.scheduler, "reason": "the study ended while it waited"}
    for trial_id in trial_ids:
        trial = session.get_one(Trial, trial_id)
        end_trial(session, trial, TrialState.PRUNED)  # also closes requests left pending
        queries.add_event(
            session, trial, EventKind.PRUNE, payload, applied=True, applied_step=trial.step
        )
