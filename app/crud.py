"""Reusable queries; keyword-only, no HTTP and no state-machine rules (those are in control).

Row locks (PostgreSQL). SQLite runs one writing transaction at a time (``BEGIN IMMEDIATE``,
see app.db), so a read followed by a write is atomic there. PostgreSQL runs them side by side
at READ COMMITTED: two servers on one database would both read "queued" or "no pause pending"
and both act on it. So every read-then-write path first locks the row its decision rests on:
the trial for its state and pending events (:func:`get_trial`, :func:`lock_trial`), the study
for whatever is counted or numbered per study (:func:`lock_study`: the parallelism cap,
feeding, trial numbers, ASHA's rung records). The claim and the reaper skip locked trials
instead of waiting for them (``SKIP LOCKED``). On SQLite these helpers do nothing.

The lock is ``FOR NO KEY UPDATE``, what an UPDATE of non-key columns takes anyway: it keeps
out other lockers and writers of the row, not the foreign-key checks of rows inserted
meanwhile (a metric or an event of the trial takes ``FOR KEY SHARE``).

Lock order, so that two transactions never wait on each other: a trial before its study, and
a transaction that waits on a study holds no other study. The claim waits only on a study
(it skips locked trials), the reaper locks its studies in id order, and deleting a study locks
its trials before the study (see app.deps).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased, joinedload

from app.db import UTCDateTime, utcnow
from app.errors import Invalid
from app.models import (
    Checkpoint,
    Direction,
    Event,
    EventKind,
    IntermediateValue,
    Metric,
    Study,
    StudyMode,
    Trial,
    TrialState,
)

TRIAL_SORTS = (
    "number", "id", "state", "step", "epoch", "best", "best_value", "last_value",
    "created_at", "started_at", "ended_at",
)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


# -- row locks -------------------------------------------------------------------------------

# Session.get / refresh / Select.with_for_update arguments for FOR NO KEY UPDATE.
ROW_LOCK: dict[str, Any] = {"key_share": True}
WITH_STUDY = [joinedload(Trial.study, innerjoin=True)]
_HELD = "pandacaviar_row_locks"


def locks_rows(session: Session) -> bool:
    """Whether read-then-write code must lock rows: concurrent writers (PostgreSQL)."""
    return _dialect(session) == "postgresql"


def _held(session: Session) -> set[tuple[str, int]]:
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
        _held(session).update((table, i) for i in ids)


def get_trial(session: Session, trial_id: int, *, lock: bool) -> Trial | None:
    """The trial, its row locked until the transaction ends when ``lock`` (PostgreSQL)."""
    if not lock or not locks_rows(session):
        # With its study in the same query: every worker call reads the study's objective.
        return session.get(Trial, trial_id, options=WITH_STUDY)
    trial = session.get(Trial, trial_id, with_for_update=ROW_LOCK, populate_existing=True)
    if trial is not None:
        _held(session).add(("trials", trial_id))
    return trial


def lock_trial(session: Session, trial: Trial) -> None:
    """Lock the trial's row and reload it, unless this transaction already holds the lock.

    Read-then-write code on a trial calls this before it reads the trial's state or its
    pending events: a second server then waits for this transaction and reads what it wrote.
    """
    if not locks_rows(session):
        return
    held = _held(session)
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
        _held(session).add(("studies", study_id))
    return study


def lock_study(session: Session, study: Study) -> None:
    """Lock the study's row and reload it, unless this transaction already holds the lock.

    Taken before anything counted or numbered per study is read: running and queued trials
    (the parallelism cap, feeding), the next trial number, rung records.
    """
    if locks_rows(session) and ("studies", study.id) not in _held(session):
        get_study(session, study.id, lock=True)


def lock_trials_of_study(session: Session, study_id: int) -> None:
    """Lock every trial of the study, in id order (before deleting the study: lock order)."""
    if not locks_rows(session):
        return
    q = select(Trial.id).where(Trial.study_id == study_id).order_by(Trial.id)
    held = _held(session)
    for trial_id in session.scalars(q.with_for_update(**ROW_LOCK)):
        held.add(("trials", trial_id))


# -- studies ---------------------------------------------------------------------------------


def list_studies(session: Session, *, limit: int, offset: int) -> tuple[list[Study], int]:
    count = session.scalar(select(func.count()).select_from(Study)) or 0
    rows = session.scalars(select(Study).order_by(Study.id.desc()).limit(limit).offset(offset))
    return list(rows), count


def state_counts(session: Session, study_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Number of trials per state for each study, in one query."""
    ids = list(study_ids)
    out: dict[int, dict[str, int]] = {i: {} for i in ids}
    if not ids:
        return out
    q = (
        select(Trial.study_id, Trial.state, func.count())
        .where(Trial.study_id.in_(ids))
        .group_by(Trial.study_id, Trial.state)
    )
    for study_id, state, n in session.execute(q):
        out[study_id][state.value] = n
    return out


def study_files(session: Session, study_id: int) -> list[str]:
    q = (
        select(Checkpoint.path)
        .join(Trial, Checkpoint.trial_id == Trial.id)
        .where(Trial.study_id == study_id)
    )
    return list(session.scalars(q))


# -- trials ----------------------------------------------------------------------------------


def next_number(session: Session, study_id: int) -> int:
    """The number the study's next trial gets (the caller holds the write lock, or on
    PostgreSQL the study's row lock: see :func:`create_trial`)."""
    last = session.scalar(select(func.max(Trial.number)).where(Trial.study_id == study_id))
    return 0 if last is None else last + 1


def create_trial(
    session: Session, *, study: Study, hparams: dict[str, Any], **fields: Any
) -> Trial:
    """A queued trial numbered after the study's last one (the caller holds the write lock);
    ``step`` and ``epoch`` default to 0 (a fork starts at its parent checkpoint's)."""
    # Two servers adding trials to one study would both read the same last number.
    lock_study(session, study)
    trial = Trial(
        study_id=study.id,
        number=next_number(session, study.id),
        state=TrialState.QUEUED,
        hparams=hparams,
        attempt=0,
        step=fields.pop("step", 0),
        epoch=fields.pop("epoch", 0.0),
        **fields,
    )
    session.add(trial)
    session.flush()
    return trial


def _sort_key(sort: str, direction: Direction) -> ColumnElement[Any]:
    desc = sort.startswith("-")
    name = sort.lstrip("-")
    if name not in TRIAL_SORTS:
        allowed = ", ".join(TRIAL_SORTS)
        raise Invalid(f"sort: got {sort!r}, allowed: one of {allowed} (prefix - to reverse)",
                      field="sort")
    if name == "best":
        name, desc = "best_value", desc != (direction is Direction.MAXIMIZE)
    column = getattr(Trial, name)
    return (column.desc() if desc else column.asc()).nulls_last()


def list_trials(
    session: Session,
    *,
    study: Study,
    states: Sequence[TrialState],
    sort: str,
    limit: int,
    offset: int,
) -> tuple[list[Trial], int]:
    where = [Trial.study_id == study.id]
    if states:
        where.append(Trial.state.in_(states))
    count = session.scalar(select(func.count()).select_from(Trial).where(*where)) or 0
    q = select(Trial).where(*where).order_by(_sort_key(sort, study.direction), Trial.id)
    return list(session.scalars(q.limit(limit).offset(offset))), count


def claim_next(
    session: Session, *, worker: str, now: datetime, lease_until: datetime
) -> tuple[int, int] | None:
    """Atomically turn the oldest queued trial into a running one: ONE UPDATE ... RETURNING.

    A caviar study's trials are skipped while ``parallelism`` of them run: the cap lives in
    the same statement, so two workers claiming at once cannot both take the last slot (on
    SQLite, whose writers take turns; PostgreSQL's claim is :func:`_claim_next_locking`).
    """
    if locks_rows(session):
        return _claim_next_locking(session, worker=worker, now=now, lease_until=lease_until)
    params = {"worker": worker, "now": now, "lease_until": lease_until}
    row = session.execute(_sqlite_claim(), params).first()
    return None if row is None else (row[0], row[1])


_CANDIDATE, _OTHER = aliased(Trial), aliased(Trial)


@cache
def _sqlite_claim() -> Any:
    """The claim statement, built once: building it cost more than running it."""
    claimed = _claimed(
        bindparam("worker"), bindparam("now", type_=UTCDateTime()),
        bindparam("lease_until", type_=UTCDateTime()),
    )
    return (
        update(Trial)
        .where(Trial.id == _oldest_queued(set()).scalar_subquery())
        .values(**claimed)
        .returning(Trial.id, Trial.attempt)
        .execution_options(synchronize_session=False)
    )


def _oldest_queued(full: set[int]) -> Select[Any]:
    """The oldest queued trial whose study has a free slot, studies in ``full`` left out."""
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
    session: Session, *, worker: str, now: datetime, lease_until: datetime
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
        pick = (
            _oldest_queued(full)
            .with_for_update(of=_CANDIDATE, skip_locked=True, **ROW_LOCK)
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
                parallelism = session.scalar(lock.with_for_update(**ROW_LOCK))
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
        held = _held(session)
        held.add(("trials", row[0]))
        if row[3] is StudyMode.CAVIAR:
            held.add(("studies", row[2]))
        return (row[0], row[1])


# -- events ----------------------------------------------------------------------------------


def add_event(
    session: Session,
    trial: Trial,
    kind: EventKind,
    payload: dict[str, Any] | None = None,
    *,
    applied: bool = False,
    applied_step: int | None = None,
) -> Event:
    now = utcnow()
    event = Event(
        trial_id=trial.id,
        kind=kind,
        payload=payload or {},
        requested_at=now,
        applied_at=now if applied else None,
        applied_step=applied_step,
    )
    session.add(event)
    session.flush()
    return event


def pending_events(session: Session, trial_ids: Iterable[int]) -> dict[int, list[Event]]:
    """Events not applied yet, oldest first, per trial."""
    ids = list(trial_ids)
    out: dict[int, list[Event]] = defaultdict(list)
    if ids:
        for event in session.scalars(_PENDING, {"ids": ids}):
            out[event.trial_id].append(event)
    return out


# Built once: every worker call asks for pending events, and building the statement cost more
# than running it.
_PENDING = (
    select(Event)
    .where(Event.trial_id.in_(bindparam("ids", expanding=True)), Event.applied_at.is_(None))
    .order_by(Event.id)
)


def list_events(session: Session, *, trial_id: int) -> list[Event]:
    q = select(Event).where(Event.trial_id == trial_id).order_by(Event.id)
    return list(session.scalars(q))


# -- metrics ---------------------------------------------------------------------------------


def upsert_metrics(
    session: Session, *, trial_id: int, points: Iterable[tuple[int, str, float]]
) -> int:
    """Insert or overwrite points on (trial, name, step): a retried batch changes nothing."""
    latest = {(name, step): value for step, name, value in points}
    if not latest:
        return 0
    rows = [
        {"trial_id": trial_id, "name": name, "step": step, "value": value}
        for (name, step), value in latest.items()
    ]
    insert = pg_insert if _dialect(session) == "postgresql" else sqlite_insert
    stmt = insert(Metric.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=["trial_id", "name", "step"], set_={"value": stmt.excluded.value}
    )
    session.connection().execute(stmt, rows)
    return len(rows)


def upsert_intermediate(session: Session, *, trial_id: int, resource: int, value: float) -> None:
    """The objective at the end of epoch ``resource``; a retried report overwrites it."""
    insert = pg_insert if _dialect(session) == "postgresql" else sqlite_insert
    stmt = insert(IntermediateValue).values(trial_id=trial_id, resource=resource, value=value)
    stmt = stmt.on_conflict_do_update(
        index_elements=["trial_id", "resource"], set_={"value": stmt.excluded.value}
    )
    session.execute(stmt)


def final_metrics(
    session: Session, *, study_id: int, names: Sequence[str]
) -> dict[int, dict[str, float]]:
    """Per trial of the study, the last point (highest step) of each metric in ``names``."""
    last = (
        select(Metric.trial_id, Metric.name, func.max(Metric.step).label("step"))
        .join(Trial, Trial.id == Metric.trial_id)
        .where(Trial.study_id == study_id, Metric.name.in_(names))
        .group_by(Metric.trial_id, Metric.name)
        .subquery()
    )
    q = select(Metric.trial_id, Metric.name, Metric.value).join(
        last,
        and_(Metric.trial_id == last.c.trial_id, Metric.name == last.c.name,
             Metric.step == last.c.step),
    )
    out: dict[int, dict[str, float]] = defaultdict(dict)
    for trial_id, name, value in session.execute(q):
        out[trial_id][name] = value
    return out


def metric_series(
    session: Session, *, trial_id: int, names: Sequence[str], since_step: int | None
) -> dict[str, list[tuple[int, float]]]:
    """Points per metric name, sorted by step."""
    q = select(Metric.name, Metric.step, Metric.value).where(Metric.trial_id == trial_id)
    if names:
        q = q.where(Metric.name.in_(names))
    if since_step is not None:
        q = q.where(Metric.step > since_step)
    out: dict[str, list[tuple[int, float]]] = {name: [] for name in names}
    for name, step, value in session.execute(q.order_by(Metric.name, Metric.step)):
        out.setdefault(name, []).append((step, value))
    return out


# -- checkpoints -----------------------------------------------------------------------------


def list_checkpoints(session: Session, *, trial_id: int) -> list[Checkpoint]:
    q = select(Checkpoint).where(Checkpoint.trial_id == trial_id).order_by(Checkpoint.step)
    return list(session.scalars(q))


def get_checkpoint(session: Session, *, trial_id: int, step: int) -> Checkpoint | None:
    q = select(Checkpoint).where(Checkpoint.trial_id == trial_id, Checkpoint.step == step)
    return session.scalar(q)


def latest_checkpoint(session: Session, *, trial_id: int) -> Checkpoint | None:
    q = (
        select(Checkpoint)
        .where(Checkpoint.trial_id == trial_id)
        .order_by(Checkpoint.step.desc())
        .limit(1)
    )
    return session.scalar(q)
