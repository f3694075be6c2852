"""The worker protocol of docs/contracts.md: claim, report, finish (checkpoints:
app.api.checkpoints)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.api.serialize import trial_out, trial_public
from app.config import Settings
from app.errors import Invalid, NotFound
from app.schemas import ClaimIn, ClaimOut, DirectiveOut, FinishIn, FinishOut, ReportIn
from app.schemas.common import MAX_INT32
from app.schemas.workers import MAX_WAIT_SECONDS
from app.storage import locks
from app.storage.db import read_engine
from app.storage.models import EXTERNAL_TASK, Study, StudyState, Trial
from app.storage.wakeups import QUEUE, WAKEUPS, trial_key
from app.trials import claims, worker_calls
from app.trials.assignment import assignment
from trainer.reporting import Action

_T = TypeVar("_T")
_M = TypeVar("_M", bound=BaseModel)
router = APIRouter(prefix="/workers", tags=["workers"])


# The three calls every trial makes are async handlers that do all their work in ONE thread
# hop: as sync handlers with sync dependencies (session, trial, settings) they took five, and
# on the event loop those hops cost more than the database work of a short trial.


# A waiting request re-checks the database this often: a write of another server process
# (or of a Core statement, like the reaper's) wakes no waiter of this one.
RECHECK_SECONDS = 0.25


@router.post("/claim", response_model=ClaimOut, responses={204: {"description": "queue empty"}})
async def claim(body: ClaimIn, request: Request) -> ClaimOut | Response:
    """Atomically take the oldest queued trial; 204 when nothing is queued.

    With ``wait``, an empty queue holds the answer up to that many seconds: the claim is made
    the moment a trial is queued, so a new trial starts without a poll interval.
    """
    deadline = time.monotonic() + body.wait
    while True:
        # Before the read: a trial queued after it wakes us.
        with WAKEUPS.subscription(QUEUE) as queued:
            out = await run_in_threadpool(_in_session, request, _claim, body)
            left = deadline - time.monotonic()
            if out is not None or left <= 0:
                break
            if body.study_id is not None and await run_in_threadpool(_ended, request, body):
                break  # a completed study queues nothing more unless someone acts on it
            await WAKEUPS.wait_for(queued, min(RECHECK_SECONDS, left))
    return Response(status_code=status.HTTP_204_NO_CONTENT) if out is None else out


@router.get("/trials/{trial_id}/directive", response_model=DirectiveOut)
async def directive(
    trial_id: int,
    attempt: Annotated[int, Query(ge=1, le=MAX_INT32)],
    request: Request,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False)] = 0.0,
    obeyed: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_INT32)]] | None,
        Query(max_length=100, description="adjustments applied whose `applied` is on its way"),
    ] = None,
) -> DirectiveOut:
    """What the trial's worker should do at its next safe point, without waiting for its next
    report: answers as soon as a pause, stop, prune, adjustment or checkpoint request is
    pending (``continue`` after ``wait`` seconds). Reads only: the report that follows
    applies it. The adjustments listed in ``obeyed`` are passed over: the worker applied them
    and its ``applied`` entry is on its way (behind a checkpoint's upload), so the next
    request of the user is heard meanwhile. 409 for a stale attempt."""
    engine: Engine = request.app.state.engine
    deadline = time.monotonic() + wait
    key = trial_key(trial_id)
    while True:
        # Before the read: a request made after it wakes us.
        with WAKEUPS.subscription(key) as asked:
            out = await run_in_threadpool(_peek, engine, trial_id, attempt, set(obeyed or ()))
            left = deadline - time.monotonic()
            if out.action is not Action.CONTINUE or left <= 0:
                return out
            await WAKEUPS.wait_for(asked, min(RECHECK_SECONDS, left))


def _peek(engine: Engine, trial_id: int, attempt: int, obeyed: set[int]) -> DirectiveOut:
    with Session(read_engine(engine)) as session:
        trial = session.get(Trial, trial_id)
        if trial is None:
            raise NotFound(f"trial {trial_id} not found")
        worker_calls.check_attempt(trial, attempt)
        return worker_calls.directive_for(session, trial, obeyed)


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its nested models written in place (no ``$ref``): the
    OpenAPI document's components hold only the models FastAPI parses itself."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[str(node["$ref"]).rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return dict(resolve(schema))


_REPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inline_schema(ReportIn)}},
    }
}


@router.post("/trials/{trial_id}/report", response_model=DirectiveOut, openapi_extra=_REPORT_BODY)
async def report(trial_id: int, request: Request) -> DirectiveOut:
    """Store a batch of metric points (idempotent), renew the lease, answer a directive.

    The body (:class:`ReportIn`) is parsed here rather than by FastAPI: pydantic-core reads
    and checks the JSON in one pass, off the event loop, a third of the CPU of ``json.loads``
    and a model check on it (thousands of points a report, many reports a second)."""
    raw = await request.body()
    return await run_in_threadpool(_parse_then_report, request, raw, trial_id)


def _parse_then_report(request: Request, raw: bytes, trial_id: int) -> DirectiveOut:
    return _in_session(request, _report, _parsed(ReportIn, raw), trial_id)


def _parsed(model: type[_M], raw: bytes) -> _M:
    """``model`` from a JSON body; its errors are FastAPI's own (the same 422s)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
    if raw.strip() and not any(e["type"] == "json_invalid" for e in errors):
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors])
    try:  # not JSON: json's own message, worded as FastAPI words it
        json.loads(raw)
    except json.JSONDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error], body=exc.doc) from None
    raise RequestValidationError(
        [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
    )


@router.post("/trials/{trial_id}/finish", response_model=FinishOut)
async def finish(trial_id: int, body: FinishIn, request: Request) -> FinishOut:
    """End the attempt as completed, paused, stopped or failed; with ``claim``, claim the next.

    On SQLite the claim shares the finish's transaction: one durable commit a trial. Where
    transactions run side by side (PostgreSQL), the finish commits first, so that the claim
    never waits for a study's lock while this transaction holds another study's.
    """
    return await run_in_threadpool(_in_session, request, _finish, body, trial_id)


def _in_session(
    request: Request, work: Callable[..., _T], body: Any, trial_id: int | None = None
) -> _T:
    """``work(session, settings, body[, trial])`` in a writing session; it commits itself."""
    settings: Settings = request.app.state.settings
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        if trial_id is None:
            return work(session, settings, body)
        # Locked before its state or pending events are read (PostgreSQL; see app.deps).
        trial = locks.get_trial(session, trial_id, lock=True)
        if trial is None:
            raise NotFound(f"trial {trial_id} not found")
        return work(session, settings, body, trial)


def _engine(session: Session) -> Engine:
    bind = session.get_bind()
    assert isinstance(bind, Engine), "request sessions are bound to the app's engine"
    return bind


def _claim(session: Session, settings: Settings, body: ClaimIn) -> ClaimOut | None:
    _check_scope(session, body)
    taken = claims.take(session, body.worker, settings, body.study_id)
    if taken is None:  # an empty queue wrote nothing: no commit, no sync
        return None
    session.commit()
    return assignment(_engine(session), taken, settings)


def _ended(request: Request, body: ClaimIn) -> bool:
    with Session(read_engine(request.app.state.engine)) as session:
        return session.scalar(select(Study.state).where(Study.id == body.study_id)) == (
            StudyState.COMPLETED
        )


def _check_scope(session: Session, body: ClaimIn) -> None:
    """A claim for one study names an external one: the server's workers run the others."""
    if body.study_id is None:
        return
    study = session.get(Study, body.study_id)
    if study is None:
        raise NotFound(f"study {body.study_id} not found")
    if not study.external:
        raise Invalid(
            f"study_id: study {study.id} trains on the server's workers (task {study.task!r}); "
            f"allowed: a study of task {EXTERNAL_TASK!r}, whose trials your processes run",
            field="study_id",
        )


def _report(session: Session, settings: Settings, body: ReportIn, trial: Trial) -> DirectiveOut:
    directive = worker_calls.report(session, trial, body, settings)
    session.commit()
    return directive


def _finish(session: Session, settings: Settings, body: FinishIn, trial: Trial) -> FinishOut:
    worker_calls.finish(session, trial, body)
    # Ending a trial closed every request it had pending: no need to look them up again, and
    # the answer, which then reads no row, is built after the commit, out of the writers' turn.
    ended = trial.state.finished and not trial.round_id
    out = None if ended else trial_out(session, trial)
    taken = None
    if body.claim is not None:
        if locks.locks_rows(session):
            session.commit()
        taken = claims.take(session, body.claim.worker, settings, body.claim.study_id)
    session.commit()
    if out is None:
        out = trial_public(trial, [], None)
    # Read out of the writers' turn, like the answer above.
    claimed = assignment(_engine(session), taken, settings) if taken else None
    return FinishOut.model_construct(**dict(out), next=claimed)
