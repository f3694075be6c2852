"""The claim: the oldest queued trial that may run becomes running, for one worker only.

On SQLite one UPDATE ... RETURNING does it (writers take turns); on PostgreSQL the trial is
taken with ``FOR NO KEY UPDATE SKIP LOCKED`` and a caviar study's cap is counted again under
the study's lock (see app.storage.locks). What the worker then needs to run it is read after the
commit (app.trials.assignment).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, func, literal, or_, select, update
from sqlalchemy.orm import Session, aliased

from app.config import Settings
from app.storage import locks
from app.storage.models import (
    EXTERNAL_TASK,
    Study,
    StudyMode,
    Trial,
    TrialState,
    UTCDateTime,
    utcnow,
)


class Taken(NamedTuple):
    """A trial a claim made running: which one, and the attempt the worker now runs."""

    trial_id: int
    attempt: int


def take(
    session: Session, worker: str, settings: Settings, study_id: int | None = None
) -> Taken | None:
    """Make the oldest queued trial ``worker``'s, with a fresh lease; None if none may run.

    ``study_id``: a user's process takes that (external) study's trials only; without it,
    a server worker takes any study's but an external one's.

    The caller commits; only then is the trial's assignment read (app.trials.assignment), out of
    the writers' turn, which this one statement is all a claim holds.
    """
    # Take the write lock before reading the clock: a claim waiting on a finish then starts
    # after that finish's ``ended_at``, so trial intervals show the true concurrency.
    session.connection()
    now = utcnow()
    lease_until = now + timedelta(seconds=settings.lease_seconds)
    row = claim_next(session, worker=worker, now=now, lease_until=lease_until, study_id=study_id)
    return None if row is None else Taken(*row)


def claim_next(
    session: Session,
    *,
    worker: str,
    now: datetime,
    lease_until: datetime,
    study_id: int | None = None,
) -> tuple[int, int] | None:
    """Atomically turn the oldest queued trial into a running one: ONE UPDATE ... RETURNING.

    A caviar study's trials are skipped while ``parallelism`` of them run: the cap lives in
    the same statement, so two workers claiming at once cannot both take the last slot (on
    SQLite, whose writers take turns; PostgreSQL's claim is :func:`_claim_next_locking`).
    """
    if locks.locks_rows(session):
        return _claim_next_locking(
            session, worker=worker, now=now, lease_until=lease_until, study_id=study_id
        )
    params = {"worker": worker, "now": now, "lease_until": lease_until}
    if study_id is not None:
        params["scope_study_id"] = study_id
    # On the Core connection: the ORM's bulk-update machinery cost more than the statement.
    row = session.connection().execute(_sqlite_claim(study_id is not None), params).first()
    return None if row is None else (row[0], row[1])


_CANDIDATE, _OTHER = aliased(Trial), aliased(Trial)


@cache
def _sqlite_claim(one_study: bool) -> Any:
    """The claim statement, built once: building it cost more than running it."""
    claimed = _claimed(
        bindparam("worker"),
        bindparam("now", type_=UTCDateTime()),
        bindparam("lease_until", type_=UTCDateTime()),
    )
    return (
        update(Trial)
        .where(Trial.id == _oldest_queued(set(), _scope(one_study)).scalar_subquery())
        .values(**claimed)
        .returning(Trial.id, Trial.attempt)
        .execution_options(synchronize_session=False)
    )


def _scope(one_study: bool, study_id: Any = None) -> Any:
    """Which studies a claim may take from: one (a user's process; its id, or a bind
    parameter), or every study but the external ones (a server worker)."""
    if one_study:
        return _CANDIDATE.study_id == (
            bindparam("scope_study_id") if study_id is None else study_id
        )
    return Study.task != EXTERNAL_TASK


def _oldest_queued(full: set[int], scope: Any) -> Select[Any]:
    """The oldest queued trial in ``scope`` whose study has a free slot, ``full`` left out."""
    candidate, other = _CANDIDATE, _OTHER
    running = (
        select(func.count())
        .select_from(other)
        .where(other.study_id == candidate.study_id, other.state == TrialState.RUNNING)
        .correlate(candidate)
        .scalar_subquery()
    )
    q = (
        select(candidate.id)
        .join(Study, Study.id == candidate.study_id)
        .where(
            candidate.state == TrialState.QUEUED,
            scope,
            or_(Study.mode != StudyMode.CAVIAR, running < Study.parallelism),
        )
        .order_by(candidate.id)
        .limit(1)
    )
    return q.where(candidate.study_id.not_in(full)) if full else q


def _claimed(worker: Any, now: Any, lease_until: Any) -> dict[str, Any]:
    """The claimed trial's new values (plain values, or bind parameters)."""
    if isinstance(now, datetime):
        now = literal(now, UTCDateTime())
    return {
        "state": TrialState.RUNNING,
        "attempt": Trial.attempt + 1,
        "worker": worker,
        "lease_expires_at": lease_until,
        "started_at": func.coalesce(Trial.started_at, now),
    }


def _claim_next_locking(
    session: Session,
    *,
    worker: str,
    now: datetime,
    lease_until: datetime,
    study_id: int | None,
) -> tuple[int, int] | None:
    """The claim where transactions run concurrently (PostgreSQL).

    The oldest queued trial is taken with ``FOR NO KEY UPDATE SKIP LOCKED``: a trial that
    another claim holds is skipped rather than waited for, and claimed only once. The cap is
    counted from a snapshot in that statement, so two claims could both see the study's last
    free slot; a caviar claim therefore locks its study (every claim of the study waits
    there), counts again, and undoes itself in a savepoint when the study turns out full:
    the rollback frees both locks before the next study is tried, so a claim never holds
    one study while waiting for another.
    """
    full: set[int] = set()
    while True:
        scope = _scope(study_id is not None, study_id)
        pick = _oldest_queued(full, scope).with_for_update(
            of=_CANDIDATE, skip_locked=True, **locks.ROW_LOCK
        )
        mode = select(Study.mode).where(Study.id == Trial.study_id).scalar_subquery()
        stmt = (
            update(Trial)
            # A scalar subquery runs once (an InitPlan), so it locks exactly one trial.
            .where(Trial.id == pick.scalar_subquery())
            .values(**_claimed(worker, now, lease_until))
            .returning(Trial.id, Trial.attempt, Trial.study_id, mode)
            .execution_options(synchronize_session=False)
        )
        savepoint = session.begin_nested()
        try:
            row = session.execute(stmt).first()
            if row is not None and row[3] is StudyMode.CAVIAR:
                lock = select(Study.parallelism).where(Study.id == row[2])
                parallelism = session.scalar(lock.with_for_update(**locks.ROW_LOCK))
                # A new statement: it sees every claim committed while this one waited.
                running = session.scalar(
                    select(func.count()).select_from(Trial)
                    .where(Trial.study_id == row[2], Trial.state == TrialState.RUNNING)
                )  # fmt: skip
                if parallelism is None or (running or 0) > parallelism:
                    savepoint.rollback()
                    full.add(row[2])
                    continue
        except BaseException:
            if savepoint.is_active:
                savepoint.rollback()
            raise
        savepoint.commit()
        if row is None:
            return None
        held = locks.held_rows(session)
        held.add(("trials", row[0]))
        if row[3] is StudyMode.CAVIAR:
            held.add(("studies", row[2]))
        return (row[0], row[1])
