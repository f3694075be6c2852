"""The trial state machine, worker side: reports and their directives, checkpoints, finishes
(docs/contracts.md). Claims are app.trials.claims and app.trials.assignment, the reaper of
expired leases app.trials.leases.

Functions take a session whose transaction began IMMEDIATE (see app.storage.db), change rows
and leave the commit to the caller. Directives are derived from stored events at every report,
never queued in memory, so they survive a server restart.

On PostgreSQL, where two servers may share the database, each function locks the trial's row
before it reads the trial's state and pending events (``locks.lock_trial``; the request's
``TrialDep`` usually holds it already), the claim and the reaper skip trials locked by
others, and whatever is counted per study waits for the study's lock (see app.storage.locks).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Conflict, Invalid
from app.schemas import Applied, DirectiveOut, FinishIn, ReportIn
from app.search import feeder
from app.storage import locks, queries
from app.storage.models import Direction, Event, EventKind, Study, Trial, TrialState, utcnow
from app.storage.pending import close_events, end_trial, kinds_of, pending_of
from app.trials import leases
from trainer.reporting import Action

log = logging.getLogger(__name__)
# A scheduler's prune ends a trial like a user's stop, but as ``pruned``.
ENDING = frozenset({EventKind.STOP, EventKind.PRUNE})
# A worker that is shutting down checkpoints and hands its trial back with this status.
REQUEUE = "requeue"


def check_attempt(trial: Trial, attempt: int) -> None:
    """409 unless ``attempt`` is the trial's current, running attempt."""
    if trial.state is not TrialState.RUNNING or attempt != trial.attempt:
        raise Conflict(
            f"trial {trial.id} attempt {attempt} is stale: the trial is {trial.state.value} "
            f"at attempt {trial.attempt}"
        )


def directive_for(session: Session, trial: Trial, obeyed: Collection[int] = ()) -> DirectiveOut:
    """stop (or prune) > pause > the oldest unapplied adjustment > a checkpoint > continue.

    ``obeyed``: adjustments the worker applied already (its ``applied`` entry is on its way),
    passed over."""
    pending = pending_of(session, trial)
    kinds = kinds_of(pending)
    if kinds & ENDING:
        return DirectiveOut(action=Action.STOP)
    if EventKind.PAUSE in kinds:
        return DirectiveOut(action=Action.PAUSE)
    for event in pending:
        if event.kind is EventKind.ADJUST and event.id not in obeyed:
            hparams = event.payload.get("hparams", {})
            return DirectiveOut(action=Action.UPDATE, hparams=hparams, event_id=event.id)
    if EventKind.CHECKPOINT in kinds:
        return DirectiveOut(action=Action.CHECKPOINT)
    return DirectiveOut(action=Action.CONTINUE)


def _apply(session: Session, trial: Trial, applied: list[Applied]) -> None:
    now = utcnow()
    for item in applied:
        event = session.get(Event, item.event_id)
        if event is None or event.trial_id != trial.id or event.kind is not EventKind.ADJUST:
            raise Invalid(
                f"applied.event_id: {item.event_id} is not an adjustment of trial {trial.id}",
                field="applied",
            )
        if event.applied_at is None:  # a retried report applies nothing twice
            event.applied_at, event.applied_step = now, item.step
            trial.hparams = {**trial.hparams, **event.payload.get("hparams", {})}


def _objective_points(
    study: Study, points: list[tuple[int, str, float]]
) -> list[tuple[int, str, float]]:
    """The objective's points of a batch, picked out once: what follows reads only those,
    and a batch holds a thousand points of a few metrics each (the name read once)."""
    objective = study.objective_metric
    return [point for point in points if point[1] == objective]


def _record_objective(trial: Trial, study: Study, mine: list[tuple[int, str, float]]) -> None:
    """The trial's last and best value from its objective's points ``mine``."""
    values = sorted((s, v) for s, _, v in mine)
    if not values:
        return
    trial.last_value = values[-1][1]
    pick = max if study.direction is Direction.MAXIMIZE else min
    best = pick(v for _, v in values)
    trial.best_value = best if trial.best_value is None else pick(trial.best_value, best)


def report(session: Session, trial: Trial, body: ReportIn, settings: Settings) -> DirectiveOut:
    """Store a batch of points, renew the lease, record applied updates, answer a directive."""
    # Locked first: the reaper must not requeue the trial under a report that renews its lease,
    # and an adjustment is applied (and its directive handed out) by one report at a time.
    locks.lock_trial(session, trial)
    check_attempt(trial, body.attempt)
    if body.step < trial.step:
        raise Invalid(
            f"step: got {body.step}, allowed: at least {trial.step}, the step this attempt "
            "last reported (steps never go backwards; a rewind is a fork)",
            field="step",
        )
    queries.upsert_metrics(session, trial_id=trial.id, points=body.points)
    mine = _objective_points(trial.study, body.points)
    _record_objective(trial, trial.study, mine)
    trial.step, trial.epoch = body.step, body.epoch
    leases.renew(trial, settings)
    _apply(session, trial, body.applied)
    for step, epoch in _epoch_ends(body.epoch_ends, (body.step, body.epoch)):
        feeder.on_report(session, trial, step, epoch, mine)
    session.flush()
    return directive_for(session, trial)


def _epoch_ends(
    ends: list[tuple[int, int]], last: tuple[int, float] | None = None
) -> list[tuple[int, float]]:
    """Each (step, epoch) at which an epoch ended, in order, once.

    A worker sends the points of 0.1 s at a time; a small network finishes several epochs in
    that time, and early stopping must see each epoch's end, not only the batch's last one.
    """
    out = {step: float(epoch) for step, epoch in ends}
    if last is not None:
        out.setdefault(last[0], last[1])
    return sorted(out.items())


def checkpoint_taken(session: Session, trial: Trial, step: int, settings: Settings) -> None:
    """A checkpoint arrived: it answers pending checkpoint requests and renews the lease."""
    attempt = trial.attempt
    locks.lock_trial(session, trial)
    # Checked again under the lock: the trial may have been requeued or ended since the
    # caller read it, and a lease renewed on a requeued trial would outlive its worker.
    check_attempt(trial, attempt)
    close_events(pending_of(session, trial), step=step, kinds={EventKind.CHECKPOINT})
    leases.renew(trial, settings)
    # Progress: the next lost attempt resumes from here, so the ones before no longer count.
    trial.failures = 0


def finish(session: Session, trial: Trial, body: FinishIn) -> None:
    """End the attempt: completed, stopped, failed, paused or requeue; then feed the study.

    A pending prune turns a stopped (or paused) attempt into ``pruned``, a pending stop turns a
    paused one into ``stopped``; a trial that completed its epochs stays completed.
    """
    locks.lock_trial(session, trial)
    check_attempt(trial, body.attempt)
    final = [(body.step, name, value) for name, value in body.metrics.items()]
    # The points still buffered by the worker come first: the final metrics win a tie.
    points = [*body.points, *final]
    queries.upsert_metrics(session, trial_id=trial.id, points=points)
    for step, epoch in _epoch_ends(body.epoch_ends):
        feeder.on_report(session, trial, step, epoch, body.points)
    # Read before the trial's own changes: the read's autoflush then writes only what the
    # scheduler added (a prune), and the trial's row is written once, at the commit.
    pending = pending_of(session, trial)
    _record_objective(trial, trial.study, _objective_points(trial.study, points))
    trial.step, trial.epoch = body.step, body.epoch
    if body.status == REQUEUE and not kinds_of(pending) & (ENDING | {EventKind.PAUSE}):
        _hand_back(session, trial, pending, body.step)
        return
    # A pending stop, prune or pause outranks a hand-back: it ends like a pause would.
    status = TrialState.PAUSED.value if body.status == REQUEUE else body.status
    kinds, state = kinds_of(pending), TrialState(status)
    if state in (TrialState.PAUSED, TrialState.STOPPED) and EventKind.PRUNE in kinds:
        state = TrialState.PRUNED
    elif state is TrialState.PAUSED and EventKind.STOP in kinds:
        state = TrialState.STOPPED
    if state is TrialState.PAUSED:
        close_events(pending, step=body.step, kinds={EventKind.PAUSE, EventKind.CHECKPOINT})
    else:
        close_events(pending, step=body.step, kinds=set(ENDING))
    if state is TrialState.FAILED:
        trial.error = body.error or "failed without a message"
        queries.add_event(
            session,
            trial,
            EventKind.FAIL,
            {"error": trial.error},
            applied=True,
            applied_step=body.step,
        )
    end_trial(session, trial, state, pending)
    feeder.settle(session, trial.study)


def _hand_back(session: Session, trial: Trial, pending: list[Event], step: int) -> None:
    """A stopping worker checkpointed at ``step`` and returned the trial: queue it again."""
    close_events(pending, step=step, kinds={EventKind.CHECKPOINT})
    payload = {"attempt": trial.attempt, "worker": trial.worker, "reason": "worker stopped"}
    queries.add_event(session, trial, EventKind.REQUEUE, payload, applied=True, applied_step=step)
    end_trial(session, trial, TrialState.QUEUED)
    feeder.settle(session, trial.study)
