"""Reusable queries; keyword-only, no HTTP and no state-machine rules (those are in control).

Row locks live in app.storage.locks and the claim in app.trials.claims.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.errors import Invalid
from app.storage import locks
from app.storage.models import (
    Checkpoint,
    Direction,
    Event,
    EventKind,
    IntermediateValue,
    Metric,
    Study,
    Trial,
    TrialState,
    utcnow,
)

TRIAL_SORTS = (
    "number",
    "id",
    "state",
    "step",
    "epoch",
    "best",
    "best_value",
    "last_value",
    "created_at",
    "started_at",
    "ended_at",
)


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
    locks.lock_study(session, study)
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
        raise Invalid(
            f"sort: got {sort!r}, allowed: one of {allowed} (prefix - to reverse)", field="sort"
        )
    if name == "best":
        name, desc = "best_value", desc != (direction is Direction.MAXIMIZE)
    column = getattr(Trial, name)
    return cast(ColumnElement[Any], (column.desc() if desc else column.asc()).nulls_last())


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
    """Insert or overwrite points on (trial, name, step): a retried batch changes nothing, and
    of two points on one (name, step) the later wins. Returns the number of points given."""
    points = points if isinstance(points, Sequence) else list(points)
    if not points:
        return 0
    conn = session.connection()
    if locks.dialect(session) == "sqlite":
        _upsert_sqlite(conn, trial_id, points)
        return len(points)
    # A PostgreSQL statement may not update one row twice: the last point of a key wins here.
    latest = {(name, step): value for step, name, value in points}
    rows = [(trial_id, name, step, value) for (name, step), value in latest.items()]
    # Straight to the driver's executemany: SQLAlchemy's per-row bind processing cost twice
    # the insert itself, and every point of every report passes here.
    conn.exec_driver_sql(_UPSERT_PG, rows)
    return len(points)


def _upsert_sqlite(
    conn: Connection, trial_id: int, points: Sequence[tuple[int, str, float]]
) -> None:
    """A few multi-row INSERTs instead of one statement per point.

    ``executemany`` steps its statement once per row, each step dropping and retaking the GIL
    inside the writers' turn, and the rows had to be rebuilt as ``(trial, name, step, value)``
    first. Here the points bind as they come, ``(step, name, value)`` flattened behind the
    trial's id (``?1``: SQLite numbers each plain ``?`` after the highest so far), in chunks
    of 2**k rows, so that a batch of any size runs a few statements the driver has cached.
    SQLite applies the rows in order: of two points on one key the later wins.
    """
    start, left = 0, len(points)
    while left:
        rows = min(_SQLITE_CHUNK, 1 << (left.bit_length() - 1))
        chunk = points[start : start + rows]
        conn.exec_driver_sql(_sqlite_upsert(rows), (trial_id, *chain.from_iterable(chunk)))
        start, left = start + rows, left - rows


# 256 rows bind 769 parameters: under 999, the limit of SQLite builds before 3.32.
_SQLITE_CHUNK = 256


@functools.cache
def _sqlite_upsert(rows: int) -> str:
    values = ", ".join(["(?1, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO metrics (trial_id, step, name, value) VALUES {values} "
        "ON CONFLICT (trial_id, name, step) DO UPDATE SET value = excluded.value"
    )


_UPSERT_PG = (
    "INSERT INTO metrics (trial_id, name, step, value) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (trial_id, name, step) DO UPDATE SET value = excluded.value"
)


def upsert_intermediate(session: Session, *, trial_id: int, resource: int, value: float) -> None:
    """The objective at the end of epoch ``resource``; a retried report overwrites it."""
    insert = pg_insert if locks.dialect(session) == "postgresql" else sqlite_insert
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
        and_(
            Metric.trial_id == last.c.trial_id,
            Metric.name == last.c.name,
            Metric.step == last.c.step,
        ),
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
