"""The trial state machine: user controls, worker directives, claims, finishes and the reaper.

Functions take a session whose transaction began IMMEDIATE (see app.db), change rows and
leave the commit to the caller. Directives are derived from stored events at every report,
never queued in memory, so they survive a server restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import crud
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, Invalid
from app.models import Checkpoint, Direction, Event, EventKind, Study, Trial, TrialState
from app.schemas import Applied, CheckpointRef, ClaimOut, DirectiveOut, FinishIn, ReportIn
from trainer.config import (
    HPARAM_SPECS,
    HParamError,
    TrainConfig,
    check_combination,
    check_hparams,
    complete_hparams,
)
from trainer.reporting import Action

# -- creating studies and trials -------------------------------------------------------------


def check_task(task: str, options: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The task's options with defaults filled in, or 422 naming the field."""
    from trainer.data import DataError, check_task_options  # NumPy/scikit-learn: load lazily

    try:
        options = check_task_options(task, options)
    except DataError as exc:
        field = "task" if task not in _task_names() else "task_options"
        raise Invalid(f"{field}: {exc}", field=field) from None
    if "path" in options:
        # Only files uploaded to the server: a study must not read arbitrary server files.
        root = settings.upload_dir.resolve()
        path = (root / str(options["path"])).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise Invalid(f"task_options.path: {options['path']!r} is not an uploaded file",
                          field="task_options.path")
        options["path"] = str(path)
    return options


def _task_names() -> list[str]:
    from trainer.data import TASKS

    return list(TASKS)


def check_space(space: dict[str, Any], *, fixed_only: bool) -> None:
    """Names and bounds of a search space: fixed values or distributions (sampled later)."""
    try:
        for name, value in space.items():
            if name not in HPARAM_SPECS:
                check_hparams({name: value})  # raises the "unknown hyperparameter" message
            if not isinstance(value, dict):
                check_hparams({name: value})
                continue
            if fixed_only:
                raise HParamError(name, "a panda study takes fixed values, not distributions")
            for key in ("low", "high"):
                if key in value:
                    HPARAM_SPECS[name].check(value[key])
            for choice in value.get("choices", []):
                HPARAM_SPECS[name].check(choice)
        complete_hparams({k: v for k, v in space.items() if not isinstance(v, dict)})
    except HParamError as exc:
        raise Invalid.from_hparam(exc, "space.") from None


def trial_hparams(study: Study, explicit: dict[str, Any]) -> dict[str, Any]:
    """Complete hyperparameters: defaults < the study's fixed values and epochs < ``explicit``."""
    fixed = {k: v for k, v in study.space.items() if not isinstance(v, dict)}
    try:
        return complete_hparams({"epochs": study.epochs, **fixed, **explicit})
    except HParamError as exc:
        raise Invalid.from_hparam(exc, "hparams.") from None


# -- user controls ---------------------------------------------------------------------------


def _pending(session: Session, trial: Trial) -> list[Event]:
    return crud.pending_events(session, [trial.id]).get(trial.id, [])


def _kinds(events: list[Event]) -> set[EventKind]:
    return {e.kind for e in events}


def _close(events: list[Event], *, step: int | None, kinds: set[EventKind] | None = None) -> None:
    """Mark pending events done; ``step`` is NULL for requests that became moot."""
    now = utcnow()
    for event in events:
        if kinds is None or event.kind in kinds:
            event.applied_at = now
            event.applied_step = step


def _end(session: Session, trial: Trial, state: TrialState) -> None:
    trial.state = state
    trial.worker = None
    trial.lease_expires_at = None
    if state.finished:
        trial.ended_at = utcnow()
        _close(_pending(session, trial), step=None)


def pause(session: Session, trial: Trial) -> None:
    """Running: ask the worker to checkpoint and release the trial. Queued: paused at once."""
    pending = _kinds(_pending(session, trial))
    if trial.state is TrialState.RUNNING:
        if EventKind.STOP in pending:
            raise Conflict(f"trial {trial.id} is being stopped; it cannot be paused")
        if EventKind.PAUSE not in pending:
            crud.add_event(session, trial, EventKind.PAUSE)
    elif trial.state is TrialState.QUEUED:
        trial.state = TrialState.PAUSED
        crud.add_event(session, trial, EventKind.PAUSE, applied=True, applied_step=trial.step)
    else:
        raise Conflict(
            f"trial {trial.id} is {trial.state.value}; only queued or running trials can be paused"
        )


def resume(session: Session, trial: Trial) -> None:
    """A paused trial goes back to the queue and restarts from its latest checkpoint."""
    if trial.state is not TrialState.PAUSED:
        raise Conflict(
            f"trial {trial.id} is {trial.state.value}; only paused trials can be resumed"
        )
    trial.state = TrialState.QUEUED
    crud.add_event(session, trial, EventKind.RESUME, applied=True, applied_step=trial.step)


def stop(session: Session, trial: Trial) -> None:
    """Running: the worker stops at its next safe point. Queued or paused: stopped at once."""
    if trial.state.finished:
        raise Conflict(f"trial {trial.id} is {trial.state.value}; it has already ended")
    if trial.state is TrialState.RUNNING:
        if EventKind.STOP not in _kinds(_pending(session, trial)):
            crud.add_event(session, trial, EventKind.STOP)
        return
    _end(session, trial, TrialState.STOPPED)
    crud.add_event(session, trial, EventKind.STOP, applied=True, applied_step=trial.step)


def pending_hparams(events: Sequence[Event]) -> dict[str, Any]:
    """Adjustments requested and not yet applied, later ones winning."""
    out: dict[str, Any] = {}
    for event in events:
        if event.kind is EventKind.ADJUST:
            out.update(event.payload.get("hparams", {}))
    return out


def _checked(values: dict[str, Any], base: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Adjustable values checked alone and against ``base``, or 422 naming the field."""
    try:
        checked = check_hparams(values, adjust=True)
        check_combination({**base, **checked})
    except HParamError as exc:
        raise Invalid.from_hparam(exc, prefix) from None
    return checked


def adjust(session: Session, trial: Trial, values: dict[str, Any]) -> Event:
    """Record an adjustment; a running trial applies it at its next safe point, others at claim."""
    if trial.state.finished:
        raise Conflict(
            f"trial {trial.id} is {trial.state.value}; adjust a queued, running or paused "
            "trial, or fork this one from a checkpoint"
        )
    if not values:
        raise Invalid("hparams: no hyperparameters given", field="hparams")
    pending = pending_hparams(_pending(session, trial))
    checked = _checked(values, {**trial.hparams, **pending})
    return crud.add_event(session, trial, EventKind.ADJUST, {"hparams": checked})


def request_checkpoint(session: Session, trial: Trial) -> Event:
    """Ask the worker of a running trial for a checkpoint at its next safe point."""
    if trial.state is not TrialState.RUNNING:
        raise Conflict(
            f"trial {trial.id} is {trial.state.value}; only running trials take checkpoints"
        )
    return crud.add_event(session, trial, EventKind.CHECKPOINT)


def fork(session: Session, parent: Trial, step: int, overrides: dict[str, Any]) -> Trial:
    """A new queued trial that starts from ``parent``'s checkpoint at ``step``."""
    ckpt = crud.get_checkpoint(session, trial_id=parent.id, step=step)
    if ckpt is None:
        steps = [c.step for c in crud.list_checkpoints(session, trial_id=parent.id)]
        raise Invalid(
            f"step: trial {parent.id} has no checkpoint at step {step}; "
            f"available steps: {', '.join(map(str, steps)) or 'none'}",
            field="step",
        )
    base = dict(ckpt.hparams or parent.hparams)
    checked = _checked(overrides, base, prefix="hparams.")
    child = crud.create_trial(
        session, study=parent.study, hparams={**base, **checked}, round_id=parent.round_id,
        parent_id=parent.id, parent_step=step, parent_checkpoint_id=ckpt.id, step=step,
    )
    payload = {"step": step, "hparams": checked}
    crud.add_event(session, parent, EventKind.FORK, {**payload, "trial_id": child.id},
                   applied=True, applied_step=step)
    crud.add_event(session, child, EventKind.FORK, {**payload, "parent_id": parent.id},
                   applied=True, applied_step=step + 1)
    return child


# -- worker side -----------------------------------------------------------------------------


def check_attempt(trial: Trial, attempt: int) -> None:
    """409 unless ``attempt`` is the trial's current, running attempt."""
    if trial.state is not TrialState.RUNNING or attempt != trial.attempt:
        raise Conflict(
            f"trial {trial.id} attempt {attempt} is stale: the trial is {trial.state.value} "
            f"at attempt {trial.attempt}"
        )


def directive_for(session: Session, trial: Trial) -> DirectiveOut:
    """stop > pause > the oldest unapplied adjustment > a checkpoint request > continue."""
    pending = _pending(session, trial)
    kinds = _kinds(pending)
    if EventKind.STOP in kinds:
        return DirectiveOut(action=Action.STOP)
    if EventKind.PAUSE in kinds:
        return DirectiveOut(action=Action.PAUSE)
    for event in pending:
        if event.kind is EventKind.ADJUST:
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


def _record_objective(trial: Trial, study: Study, points: list[tuple[int, str, float]]) -> None:
    values = sorted((s, v) for s, n, v in points if n == study.objective_metric)
    if not values:
        return
    trial.last_value = values[-1][1]
    pick = max if study.direction is Direction.MAXIMIZE else min
    best = pick(v for _, v in values)
    trial.best_value = best if trial.best_value is None else pick(trial.best_value, best)


def report(session: Session, trial: Trial, body: ReportIn, settings: Settings) -> DirectiveOut:
    """Store a batch of points, renew the lease, record applied updates, answer a directive."""
    check_attempt(trial, body.attempt)
    crud.upsert_metrics(session, trial_id=trial.id, points=body.points)
    _record_objective(trial, trial.study, body.points)
    trial.step, trial.epoch = body.step, body.epoch
    trial.lease_expires_at = utcnow() + timedelta(seconds=settings.lease_seconds)
    _apply(session, trial, body.applied)
    session.flush()
    return directive_for(session, trial)


def checkpoint_taken(session: Session, trial: Trial, step: int, settings: Settings) -> None:
    """A checkpoint arrived: it answers pending checkpoint requests and renews the lease."""
    _close(_pending(session, trial), step=step, kinds={EventKind.CHECKPOINT})
    trial.lease_expires_at = utcnow() + timedelta(seconds=settings.lease_seconds)


def finish(session: Session, trial: Trial, body: FinishIn) -> None:
    """End the attempt: completed, stopped, failed, or paused (stop wins over a pause)."""
    check_attempt(trial, body.attempt)
    points = [(body.step, name, value) for name, value in body.metrics.items()]
    crud.upsert_metrics(session, trial_id=trial.id, points=points)
    _record_objective(trial, trial.study, points)
    trial.step, trial.epoch = body.step, body.epoch
    pending = _pending(session, trial)
    state = TrialState(body.status)
    if state is TrialState.PAUSED and EventKind.STOP in _kinds(pending):
        state = TrialState.STOPPED
    if state is TrialState.PAUSED:
        _close(pending, step=body.step, kinds={EventKind.PAUSE, EventKind.CHECKPOINT})
    else:
        _close(pending, step=body.step, kinds={EventKind.STOP})
    if state is TrialState.FAILED:
        trial.error = body.error or "failed without a message"
        crud.add_event(session, trial, EventKind.FAIL, {"error": trial.error},
                       applied=True, applied_step=body.step)
    _end(session, trial, state)


def resume_point(session: Session, trial: Trial) -> Checkpoint | None:
    """The trial's latest own checkpoint, else the one it was forked from."""
    own = crud.latest_checkpoint(session, trial_id=trial.id)
    if own is None and trial.parent_checkpoint_id is not None:
        return session.get(Checkpoint, trial.parent_checkpoint_id)
    return own


def claim(session: Session, worker: str, settings: Settings) -> ClaimOut | None:
    """Hand the oldest queued trial to ``worker``; adjustments made meanwhile apply at once."""
    now = utcnow()
    lease_until = now + timedelta(seconds=settings.lease_seconds)
    row = crud.claim_next(session, worker=worker, now=now, lease_until=lease_until)
    if row is None:
        return None
    trial = session.get_one(Trial, row[0], populate_existing=True)
    ckpt = resume_point(session, trial)
    adjusts = [e for e in _pending(session, trial) if e.kind is EventKind.ADJUST]
    if adjusts:
        trial.hparams = {**trial.hparams, **pending_hparams(adjusts)}
        _close(adjusts, step=(ckpt.step if ckpt else 0) + 1)
    study = trial.study
    config = TrainConfig(
        task=study.task, hparams=trial.hparams, task_options=study.task_options,
        split_seed=study.seed, report_seconds=settings.report_seconds,
    )
    ref = CheckpointRef(id=ckpt.id, step=ckpt.step, sha256=ckpt.sha256) if ckpt else None
    return ClaimOut(
        trial_id=trial.id, attempt=trial.attempt, config=config.to_dict(), checkpoint=ref,
        lease_seconds=settings.lease_seconds, report_seconds=settings.report_seconds,
    )


def reap_expired(session: Session, now: datetime, max_attempts: int) -> int:
    """Running trials whose lease expired: requeued, or failed after ``max_attempts``."""
    q = select(Trial).where(Trial.state == TrialState.RUNNING, Trial.lease_expires_at < now)
    expired = list(session.scalars(q))
    for trial in expired:
        kinds = _kinds(_pending(session, trial))
        payload = {"attempt": trial.attempt, "worker": trial.worker}
        if EventKind.STOP in kinds:
            _end(session, trial, TrialState.STOPPED)
        elif EventKind.PAUSE in kinds:
            _close(_pending(session, trial), step=trial.step, kinds={EventKind.PAUSE})
            _end(session, trial, TrialState.PAUSED)
        elif trial.attempt >= max_attempts:
            trial.error = f"lease expired on attempt {trial.attempt} of {max_attempts}"
            crud.add_event(session, trial, EventKind.FAIL, {**payload, "error": trial.error},
                           applied=True, applied_step=trial.step)
            _end(session, trial, TrialState.FAILED)
        else:
            crud.add_event(session, trial, EventKind.REQUEUE, payload,
                           applied=True, applied_step=trial.step)
            _end(session, trial, TrialState.QUEUED)
    return len(expired)
