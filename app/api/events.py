"""Server-Sent Events: new metric points, state changes and events of a trial or a study.

Each stream reads the database (a deferred read, never the write lock) for metric rows and
events with ids above what it already sent, and for trials whose state changed: as soon as a
request of this server process commits a change to any trial (:data:`~app.storage.wakeups.
CHANGED`), at most every ``MIN_POLL_SECONDS``, and at least every ``stream_poll_seconds``
(writes of other server processes). A pause pressed on the dashboard thus shows as soon as
the worker has obeyed it, not up to half a second later. The SSE ``id`` is
``"<metric id>:<event id>"``, so a browser that reconnects with ``Last-Event-ID`` continues
where it stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy import ColumnElement, Engine, func, select
from sqlalchemy.orm import Session

from app.api.serialize import event_public, finite
from app.deps import StudyIdDep, TrialIdDep
from app.storage.db import read_engine
from app.storage.models import Event, Metric, Trial
from app.storage.wakeups import CHANGED, WAKEUPS

router = APIRouter(tags=["streams"])
# Reads of one stream are at least this far apart, however often trials change: many
# trials reporting many times a second must not turn every open dashboard into a busy loop.
MIN_POLL_SECONDS = 0.05
# A comment now and then: writing is how a server notices that a client went away.
HEARTBEAT_SECONDS = 5.0


@dataclass
class _Cursor:
    """What one stream has sent so far."""

    metric_id: int = 0
    event_id: int = 0
    states: dict[int, str] = field(default_factory=dict)
    pending: set[int] = field(default_factory=set)

    @property
    def sse_id(self) -> str:
        return f"{self.metric_id}:{self.event_id}"


def _parse_last_id(value: str | None) -> tuple[int, int] | None:
    try:
        metric_id, event_id = (value or "").split(":")
        return int(metric_id), int(event_id)
    except ValueError:
        return None


def _start(session: Session, where: ColumnElement[bool], last: tuple[int, int] | None) -> _Cursor:
    if last is not None:
        return _Cursor(metric_id=last[0], event_id=last[1])
    ids = select(Trial.id).where(where).scalar_subquery()
    m = session.scalar(select(func.max(Metric.id)).where(Metric.trial_id.in_(ids))) or 0
    e = session.scalar(select(func.max(Event.id)).where(Event.trial_id.in_(ids))) or 0
    return _Cursor(metric_id=m, event_id=e)


def _poll(engine: Engine, where: ColumnElement[bool], cur: _Cursor) -> list[ServerSentEvent]:
    """New points per trial, changed states, new and newly applied events, as SSE frames."""
    out: list[ServerSentEvent] = []
    with Session(read_engine(engine)) as session:
        ids = select(Trial.id).where(where).scalar_subquery()
        for tid, state, step, epoch, attempt, best in session.execute(
            select(
                Trial.id, Trial.state, Trial.step, Trial.epoch, Trial.attempt, Trial.best_value
            ).where(where)
        ):
            if cur.states.get(tid) != state.value:
                cur.states[tid] = state.value
                data = {
                    "trial_id": tid,
                    "state": state.value,
                    "step": step,
                    "epoch": epoch,
                    "attempt": attempt,
                    "best_value": None if best is None else finite(best),
                }
                out.append(ServerSentEvent(event="state", data=data))
        points: dict[int, dict[str, list[list[Any]]]] = {}
        q = (
            select(Metric.id, Metric.trial_id, Metric.name, Metric.step, Metric.value)
            .where(Metric.id > cur.metric_id, Metric.trial_id.in_(ids))
            .order_by(Metric.id)
        )
        for mid, tid, name, step, value in session.execute(q):
            points.setdefault(tid, {}).setdefault(name, []).append([step, finite(value)])
            cur.metric_id = mid
        for tid, series in points.items():
            for curve in series.values():
                curve.sort(key=lambda p: p[0])
            out.append(ServerSentEvent(event="metrics", data={"trial_id": tid, "points": series}))
        q_events = select(Event).where(
            Event.trial_id.in_(ids),
            (Event.id > cur.event_id) | (Event.id.in_(cur.pending) & Event.applied_at.isnot(None)),
        )
        for event in session.scalars(q_events.order_by(Event.id)):
            cur.event_id = max(cur.event_id, event.id)
            if event.applied_at is None:
                cur.pending.add(event.id)
            else:
                cur.pending.discard(event.id)
            data = event_public(event).model_dump(mode="json")
            out.append(ServerSentEvent(event="event", data=data))
    for frame in out:
        frame.id = cur.sse_id
    return out


async def _stream(
    request: Request, where: ColumnElement[bool], last_event_id: str | None
) -> AsyncIterator[ServerSentEvent]:
    engine: Engine = request.app.state.engine
    poll_seconds: float = request.app.state.settings.stream_poll_seconds
    request.app.state.streams += 1
    try:
        cur = await run_in_threadpool(_start_cursor, engine, where, _parse_last_id(last_event_id))
        quiet_since = time.monotonic()
        while not await request.is_disconnected():
            read_at = time.monotonic()
            # Before the read: no change slips between it and the wait.
            with WAKEUPS.subscription(CHANGED) as changed:
                frames = await run_in_threadpool(_poll, engine, where, cur)
                for frame in frames:
                    yield frame
                if frames:
                    quiet_since = read_at
                elif read_at - quiet_since >= HEARTBEAT_SECONDS:
                    quiet_since = read_at
                    yield ServerSentEvent(comment="heartbeat")
                await WAKEUPS.wait_for(changed, poll_seconds)
            await asyncio.sleep(max(0.0, read_at + MIN_POLL_SECONDS - time.monotonic()))
    finally:
        request.app.state.streams -= 1


def _start_cursor(
    engine: Engine, where: ColumnElement[bool], last: tuple[int, int] | None
) -> _Cursor:
    with Session(read_engine(engine)) as session:
        return _start(session, where, last)


LastEventId = Annotated[str | None, Header(alias="Last-Event-ID")]


@router.get("/trials/{trial_id}/stream", response_class=EventSourceResponse)
async def trial_stream(
    trial_id: TrialIdDep, request: Request, last_event_id: LastEventId = None
) -> AsyncIterator[ServerSentEvent]:
    """Live ``metrics``, ``state`` and ``event`` frames of one trial."""
    async for frame in _stream(request, Trial.id == trial_id, last_event_id):
        yield frame


@router.get("/studies/{study_id}/stream", response_class=EventSourceResponse)
async def study_stream(
    study_id: StudyIdDep, request: Request, last_event_id: LastEventId = None
) -> AsyncIterator[ServerSentEvent]:
    """Live ``metrics``, ``state`` and ``event`` frames of every trial of a study."""
    async for frame in _stream(request, Trial.study_id == study_id, last_event_id):
        yield frame
