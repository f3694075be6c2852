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

from collections.abc import Callable, Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.storage import queries
from app.storage.models import Event, EventKind, Study, Trial, TrialState
from app.storage.pending import end_trial
from app.tuning import RungRecord, Scheduler


def parked(session: Session, study_id: int) -> dict[int, int]:
    """The study's trials its scheduler paused and nobody resumed since: number -> trial id."""
    return {number: trial_id for number, (trial_id, _) in _parked(session, study_id).items()}


def _parked(session: Session, study_id: int) -> dict[int, tuple[int, int | None]]:
    """Parked trials: number -> (trial id, round id).

    One query of (trial, pause event) pairs in event order: a trial's last pair decides.
    """
    q = (
        select(Trial.id, Trial.number, Trial.round_id, Event.payload)
        .join(Event, Event.trial_id == Trial.id)
        .where(
            Trial.study_id == study_id,
            Trial.state == TrialState.PAUSED,
            Event.kind == EventKind.PAUSE,
        )
        .order_by(Event.id)
    )
    last = {n: (tid, rnd, payload) for tid, n, rnd, payload in session.execute(q)}
    return {n: (tid, rnd) for n, (tid, rnd, payload) in last.items() if "scheduler" in payload}


def promote(
    session: Session,
    study: Study,
    scheduler_of: Callable[[int | None], Scheduler | None],
    records_of: Callable[[int | None], Sequence[RungRecord]],
    slots: int,
    *,
    final: bool = False,
) -> tuple[int, frozenset[int]]:
    """Queue again up to ``slots`` parked trials the scheduler promotes.

    Each round is a bracket of its own: a parked trial is promoted by its round's scheduler
    (``scheduler_of(round_id)``) on its round's records (``records_of(round_id)``). Returns
    how many were queued and the ids of the trials still parked. A promoted trial is claimed
    like any queued one and resumes from its latest checkpoint; it is older than any trial
    sampled after it, so the claim (oldest first) takes it first.
    """
    waiting = _parked(session, study.id)
    chosen: list[int] = []
    for round_id in sorted({rnd for _, rnd in waiting.values()}, key=lambda r: r or 0):
        scheduler = scheduler_of(round_id)
        if len(chosen) >= slots or scheduler is None or not scheduler.pauses:
            continue
        mine = {n for n, (_, rnd) in waiting.items() if rnd == round_id}
        chosen += scheduler.promotions(records_of(round_id), mine, final=final)
    chosen = chosen[:slots]
    for number in chosen:
        trial = session.get_one(Trial, waiting.pop(number)[0])
        trial.state = TrialState.QUEUED
        queries.add_event(
            session,
            trial,
            EventKind.RESUME,
            {"scheduler": study.scheduler},
            applied=True,
            applied_step=trial.step,
        )
    return len(chosen), frozenset(tid for tid, _ in waiting.values())


def end_parked(session: Session, study: Study, trial_ids: Iterable[int]) -> None:
    """The study is over: the parked trials ``trial_ids`` end as pruned, curves kept."""
    payload = {"scheduler": study.scheduler, "reason": "the study ended while it waited"}
    for trial_id in trial_ids:
        trial = session.get_one(Trial, trial_id)
        end_trial(session, trial, TrialState.PRUNED)  # also closes requests left pending
        queries.add_event(
            session, trial, EventKind.PRUNE, payload, applied=True, applied_step=trial.step
        )
