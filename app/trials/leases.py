"""Leases: a running trial whose worker went silent is queued again, or failed at the limit.

Every report and checkpoint renews the lease (app.trials.worker_calls); the reaper here runs in
every server process, every ``reaper_seconds``. The attempt rule (``failures``, reset by a new
checkpoint) is in :func:`reap_expired`; docs/reliability.md tells why.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.search import feeder
from app.storage import locks, queries
from app.storage.db import read_engine, session_scope
from app.storage.models import EventKind, Trial, TrialState, utcnow
from app.storage.pending import close_events, end_trial, kinds_of, pending_of

log = logging.getLogger(__name__)


def renew(trial: Trial, settings: Settings) -> None:
    """The worker is alive (it reported or checkpointed): its lease runs a full term again."""
    trial.lease_expires_at = utcnow() + timedelta(seconds=settings.lease_seconds)


def any_expired(session: Session, now: datetime) -> bool:
    """Whether any running trial's lease expired before ``now`` (a read, for the reaper)."""
    q = select(Trial.id).where(Trial.state == TrialState.RUNNING, Trial.lease_expires_at < now)
    return session.scalar(q.limit(1)) is not None


def reap_expired(session: Session, now: datetime, max_failures: int) -> int:
    """Running trials whose lease expired: requeued, or failed as a poison trial.

    The attempt rule: a lost attempt (its worker died, froze or lost the server for longer
    than the lease) adds one to the trial's ``failures``, a new checkpoint sets it back to 0
    (app.trials.worker_calls.checkpoint_taken), and the trial fails at ``max_failures``.
    A trial that keeps killing its workers before it checkpoints again fails; one that a
    babysitter pauses and resumes, or whose server restarts, is no nearer to failing.
    """
    q = select(Trial).where(Trial.state == TrialState.RUNNING, Trial.lease_expires_at < now)
    if locks.locks_rows(session):
        # Another server's reaper takes the trials this one holds, and a trial locked by a
        # report in flight is alive: both are skipped. A lease renewed and committed since
        # this statement's snapshot is read again under the lock, and no longer matches.
        q = q.with_for_update(skip_locked=True, **locks.ROW_LOCK)
        q = q.order_by(Trial.id).execution_options(populate_existing=True)
    expired = list(session.scalars(q))
    locks.hold(session, "trials", [trial.id for trial in expired])
    for trial in expired:
        kinds = kinds_of(pending_of(session, trial))
        if EventKind.PRUNE in kinds:
            end_trial(session, trial, TrialState.PRUNED)
        elif EventKind.STOP in kinds:
            end_trial(session, trial, TrialState.STOPPED)
        elif EventKind.PAUSE in kinds:
            close_events(pending_of(session, trial), step=trial.step, kinds={EventKind.PAUSE})
            end_trial(session, trial, TrialState.PAUSED)
        else:
            _lost(session, trial, max_failures)
    # In id order: two reapers settling the same studies lock them in the same order.
    for study in sorted({trial.study for trial in expired}, key=lambda s: s.id):
        feeder.settle(session, study)
    return len(expired)


def _lost(session: Session, trial: Trial, max_failures: int) -> None:
    """A running attempt lost its worker: queue the trial again, or fail it at the limit."""
    trial.failures += 1
    payload = {"attempt": trial.attempt, "worker": trial.worker, "failures": trial.failures}
    if trial.failures < max_failures:
        queries.add_event(
            session, trial, EventKind.REQUEUE, payload, applied=True, applied_step=trial.step
        )
        end_trial(session, trial, TrialState.QUEUED)
        return
    trial.error = (
        f"lost its worker {trial.failures} times in a row without a new checkpoint "
        f"(attempt {trial.attempt}; the limit is {max_failures})"
    )
    queries.add_event(
        session,
        trial,
        EventKind.FAIL,
        {**payload, "error": trial.error},
        applied=True,
        applied_step=trial.step,
    )
    end_trial(session, trial, TrialState.FAILED)


def reap_once(app: FastAPI, now: datetime | None = None) -> int:
    """Requeue (or fail) the running trials whose lease expired by ``now``; returns how many.

    ``now`` is the clock (the current time when None): tests pass a later time rather than
    wait for a lease to run out.
    """
    settings: Settings = app.state.settings
    now = utcnow() if now is None else now
    # Most passes find nothing: they only read, so every server process's pass every few
    # seconds does not take the writers' turn (nor hold it, should the process stall there).
    with Session(read_engine(app.state.engine)) as session:
        if not any_expired(session, now):
            return 0
    with session_scope(app.state.engine) as session:
        return reap_expired(session, now, settings.max_failures)


async def reap_forever(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    # A lease granted before this process started may have run out while no server
    # answered: the workers of a restarted server get one lease to re-attach first (the
    # leases this process grants end after that anyway).
    await asyncio.sleep(settings.lease_seconds)
    while True:
        await asyncio.sleep(settings.reaper_seconds)
        try:
            n = await run_in_threadpool(reap_once, app)
        except Exception:  # a locked or broken database must not end the reaper for good
            log.exception("reaper pass failed")
            continue
        if n:
            log.info("reaper: %d expired lease(s)", n)
