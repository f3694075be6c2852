"""Row locks for read-then-write code on PostgreSQL; on SQLite they do nothing.

SQLite runs one writing transaction at a time (``BEGIN IMMEDIATE``, see app.storage.db), so a read
followed by a write is atomic there. PostgreSQL runs them side by side at READ COMMITTED: two
servers on one database would both read "queued" or "no pause pending" and both act on it. So
every read-then-write path first locks the row its decision rests on: the trial for its state
and pending events (:func:`get_trial`, :func:`lock_trial`), the study for whatever is counted
or numbered per study (:func:`lock_study`: the parallelism cap, feeding, trial numbers, ASHA's
rung records). The claim and the reaper skip locked trials instead of waiting for them
(``SKIP LOCKED``).

The lock is ``FOR NO KEY UPDATE``, what an UPDATE of non-key columns takes anyway: it keeps
out other lockers and writers of the row, not the foreign-key checks of rows inserted
meanwhile (a metric or an event of the trial takes ``FOR KEY SHARE``).

Lock order, so that two transactions never wait on each other: a trial before its study, and
a transaction that waits on a study holds no other study. The claim waits only on a study
(it skips locked trials), the reaper locks its studies in id order, and deleting a study locks
its trials before the study (see app.deps).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from app.storage.models import Study, Trial


def dialect(session: Session) -> str:
    """The session's database: ``"sqlite"`` or ``"postgresql"``."""
    return session.get_bind().dialect.name


# Session.get / refresh / Select.with_for_update arguments for FOR NO KEY UPDATE.
ROW_LOCK: dict[str, Any] = {"key_share": True}
WITH_STUDY = [joinedload(Trial.study, innerjoin=True)]
_HELD = "pandacaviar_row_locks"


def locks_rows(session: Session) -> bool:
    """Whether read-then-write code must lock rows: concurrent writers (PostgreSQL)."""
    return dialect(session) == "postgresql"


def held_rows(session: Session) -> set[tuple[str, int]]:
    """The rows locked by the session's current transaction (locks end with it)."""
    session.connection()  # begins the transaction, so that it can be told apart from the next
    txn = session.get_transaction()
    held: tuple[Any, set[tuple[str, int]]] | None = session.info.get(_HELD)
    if held is None or held[0] is not txn:
        held = (txn, set())
        session.info[_HELD] = held
    return held[1]


def hold(session: Session, table: str, ids: Iterable[int]) -> None:
    """Note rows that a statement of this transaction locked (no-op without row locks)."""
    if locks_rows(session):
        held_rows(session).update((table, i) for i in ids)


def get_trial(session: Session, trial_id: int, *, lock: bool) -> Trial | None:
    """The trial, its row locked until the transaction ends when ``lock`` (PostgreSQL)."""
    if not lock or not locks_rows(session):
        # With its study in the same query: every worker call reads the study's objective.
        return session.get(Trial, trial_id, options=WITH_STUDY)
    trial = session.get(Trial, trial_id, with_for_update=ROW_LOCK, populate_existing=True)
    if trial is not None:
        held_rows(session).add(("trials", trial_id))
    return trial


def lock_trial(session: Session, trial: Trial) -> None:
    """Lock the trial's row and reload it, unless this transaction already holds the lock.

    Read-then-write code on a trial calls this before it reads the trial's state or its
    pending events: a second server then waits for this transaction and reads what it wrote.
    """
    if not locks_rows(session):
        return
    held = held_rows(session)
    if ("trials", trial.id) in held:
        return
    session.flush()  # refresh must not drop this transaction's own unflushed changes
    session.refresh(trial, with_for_update=ROW_LOCK)
    held.add(("trials", trial.id))


def get_study(session: Session, study_id: int, *, lock: bool) -> Study | None:
    """The study, its row locked until the transaction ends when ``lock`` (PostgreSQL)."""
    if not lock or not locks_rows(session):
        return session.get(Study, study_id)
    session.flush()  # populate_existing must not drop this transaction's unflushed changes
    study = session.get(Study, study_id, with_for_update=ROW_LOCK, populate_existing=True)
    if study is not None:
        held_rows(session).add(("studies", study_id))
    return study


def lock_study(session: Session, study: Study) -> None:
    """Lock the study's row and reload it, unless this transaction already holds the lock.

    Taken before anything counted or numbered per study is read: running and queued trials
    (the parallelism cap, feeding), the next trial number, rung records.
    """
    if locks_rows(session) and ("studies", study.id) not in held_rows(session):
        get_study(session, study.id, lock=True)


def lock_trials_of_study(session: Session, study_id: int) -> None:
    """Lock every trial of the study, in id order (before deleting the study: lock order)."""
    if not locks_rows(session):
        return
    q = select(Trial.id).where(Trial.study_id == study_id).order_by(Trial.id)
    held = held_rows(session)
    for trial_id in session.scalars(q.with_for_update(**ROW_LOCK)):
        held.add(("trials", trial_id))
