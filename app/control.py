"""The trial state machine, user side: validation of new studies and trials, pause, resume,
stop, adjust, fork. The worker side (claims, reports, finishes, the reaper) is app.protocol.

Functions take a session whose transaction began IMMEDIATE (see app.db), change rows and
leave the commit to the caller. Requests are stored as events, never queued in memory, so
they survive a server restart. On PostgreSQL each control first locks the trial's row
(``locks.lock_trial``): two servers asked to pause or adjust one trial at once take turns, so
the second sees the first's pending event (one pause, adjustments chained old -> new).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app import caviar, caviar_config, crud, locks
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, Invalid
from app.models import Event, EventKind, Round, RoundKind, Study, StudyMode, Trial, TrialState
from app.schemas import StudyCreate
from trainer.config import (
    HPARAM_SPECS,
    HParamError,
    check_combination,
    check_hparams,
    complete_hparams,
)

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


def check_space(space: dict[str, Any]) -> None:
    """A panda study's space: fixed values the trainer accepts, no distributions."""
    try:
        for name, value in space.items():
            if name in HPARAM_SPECS and isinstance(value, dict):
                raise HParamError(name, "a panda study takes fixed values, not distributions")
        complete_hparams(space)
    except HParamError as exc:
        raise Invalid.from_hparam(exc, "space.") from None


def create_study(session: Session, body: StudyCreate, settings: Settings) -> Study:
    """A new study; a caviar one also gets round 1 and its first sampled trials."""
    options = check_task(body.task, body.task_options, settings)
    sampler, sampler_settings = caviar_config.split(body.sampler, "sampler")
    scheduler, scheduler_settings = caviar_config.split(body.scheduler, "scheduler")
    space = body.space
    if body.mode is StudyMode.PANDA:
        check_space(space)
    else:
        parsed = caviar_config.parse(space, body.epochs)
        space = parsed.to_dict()
        if scheduler == "asha":  # rungs stop below the longest training: ASHA's max resource
            longest = caviar_config.max_epochs(parsed, body.epochs)
            scheduler_settings.setdefault("max_resource", longest)
    assert body.objective.direction is not None  # filled in by the schema
    study = Study(
        name=body.name, mode=body.mode, task=body.task, task_options=options, space=space,
        objective_metric=body.objective.metric, direction=body.objective.direction,
        sampler=sampler, sampler_settings=sampler_settings, scheduler=scheduler,
        scheduler_settings=scheduler_settings, budget_trials=body.budget.trials,
        budget_epochs=body.budget.epochs, epochs=body.epochs, parallelism=body.parallelism,
        seed=body.seed,
    )
    if body.mode is StudyMode.CAVIAR:
        caviar_config.check_algorithms(study)
    session.add(study)
    session.flush()
    if body.mode is StudyMode.CAVIAR:
        session.add(Round(study_id=study.id, number=1, kind=RoundKind.SEARCH, space=space,
                          budget_trials=body.budget.trials, budget_epochs=body.budget.epochs))
        caviar.settle(session, study)
    return study


def trial_hparams(study: Study, explicit: dict[str, Any]) -> dict[str, Any]:
    """Complete hyperparameters: defaults < the study's fixed values and epochs < ``explicit``."""
    fixed = {k: v for k, v in study.space.items() if not isinstance(v, dict)}
    try:
        return complete_hparams({"epochs": study.epochs, **fixed, **explicit})
    except HParamError as exc:
        raise Invalid.from_hparam(exc, "hparams.") from None


# -- user controls ---------------------------------------------------------------------------


def pending_of(session: Session, trial: Trial) -> list[Event]:
    return crud.pending_events(session, [trial.id]).get(trial.id, [])


def kinds_of(events: list[Event]) -> set[EventKind]:
    return {e.kind for e in events}


def close_events(
    events: list[Event], *, step: int | None, kinds: set[EventKind] | None = None
) -> None:
    """Mark pending events done; ``step`` is NULL for requests that became moot."""
    now = utcnow()
    for event in events:
        if kinds is None or event.kind in kinds:
            event.applied_at = now
            event.applied_step = step


def end_trial(
    session: Session, trial: Trial, state: TrialState, pending: list[Event] | None = None
) -> None:
    """Leave the running state; a finished trial's requests still pending become moot.

    ``pending``: the trial's pending events when the caller has just read them (a query
    fewer); events it closed meanwhile keep their step.
    """
    trial.state = state
    trial.worker = None
    trial.lease_expires_at = None
    if state.finished:
        trial.ended_at = utcnow()
        if pending is None:
            pending = pending_of(session, trial)
        close_events([e for e in pending if e.applied_at is None], step=None)


def pause(session: Session, trial: Trial) -> None:
    """Running: ask the worker to checkpoint and release the trial. Queued: paused at once."""
    locks.lock_trial(session, trial)
    pending = kinds_of(pending_of(session, trial))
    if trial.state is TrialState.RUNNING:
        if EventKind.STOP in pending:
            raise Conflict(f"trial {trial.id} is being stopped; it cannot be paused")
        if EventKind.PAUSE not in pending:
            crud.add_event(session, trial, EventKind.PAUSE)
    elif trial.state is TrialState.QUEUED:
        trial.state = TrialState.PAUSED
        crud.add_event(session, trial, EventKind.PAUSE, applied=True, applied_step=trial.step)
        caviar.settle(session, trial.study)  # its slot goes to the study's next trial
    else:
        raise Conflict(
            f"trial {trial.id} is {trial.state.value}; only queued or running trials can be paused"
        )


def resume(session: Session, trial: Trial) -> None:
    """A paused trial goes back to the queue and restarts from its latest checkpoint."""
    locks.lock_trial(session, trial)
    if trial.state is not TrialState.PAUSED:
        raise Conflict(
            f"trial {trial.id} is {trial.state.value}; only paused trials can be resumed"
        )
    trial.state = TrialState.QUEUED
    crud.add_event(session, trial, EventKind.RESUME, applied=True, applied_step=trial.step)


def stop(session: Session, trial: Trial) -> None:
    """Running: the worker stops at its next safe point. Queued or paused: stopped at once."""
    locks.lock_trial(session, trial)
    if trial.state.finished:
        raise Conflict(f"trial {trial.id} is {trial.state.value}; it has already ended")
    if trial.state is TrialState.RUNNING:
        if EventKind.STOP not in kinds_of(pending_of(session, trial)):
            crud.add_event(session, trial, EventKind.STOP)
        return
    end_trial(session, trial, TrialState.STOPPED)
    crud.add_event(session, trial, EventKind.STOP, applied=True, applied_step=trial.step)
    caviar.settle(session, trial.study)


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
    """Record an adjustment; a running trial applies it at its next safe point, others at claim.

    The event's payload is ``{"hparams": new values, "old": the values they replace}``, so the
    trial page can mark "old -> new at step S" without replaying the trial's history.
    """
    locks.lock_trial(session, trial)
    if trial.state.finished:
        raise Conflict(
            f"trial {trial.id} is {trial.state.value}; adjust a queued, running or paused "
            "trial, or fork this one from a checkpoint"
        )
    if not values:
        raise Invalid("hparams: no hyperparameters given", field="hparams")
    # What each name will hold just before this adjustment applies: pending ones apply first.
    effective = {**trial.hparams, **pending_hparams(pending_of(session, trial))}
    checked = _checked(values, effective)
    old = {name: effective.get(name) for name in checked}
    return crud.add_event(session, trial, EventKind.ADJUST, {"hparams": checked, "old": old})


def request_checkpoint(session: Session, trial: Trial) -> Event:
    """Ask the worker of a running trial for a checkpoint at its next safe point."""
    locks.lock_trial(session, trial)
    if trial.state is not TrialState.RUNNING:
        raise Conflict(
            f"trial {trial.id} is {trial.state.value}; only running trials take checkpoints"
        )
    return crud.add_event(session, trial, EventKind.CHECKPOINT)


def fork(session: Session, parent: Trial, step: int, overrides: dict[str, Any]) -> Trial:
    """A new queued trial that starts from ``parent``'s checkpoint at ``step``."""
    # A claim of the parent may drop a corrupt checkpoint meanwhile: it holds this lock.
    locks.lock_trial(session, parent)
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
        epoch=ckpt.epoch,  # the child counts on from the parent, as its step does
    )
    payload = {"step": step, "hparams": checked}
    crud.add_event(session, parent, EventKind.FORK, {**payload, "trial_id": child.id},
                   applied=True, applied_step=step)
    crud.add_event(session, child, EventKind.FORK, {**payload, "parent_id": parent.id},
                   applied=True, applied_step=step + 1)
    caviar.settle(session, parent.study)  # a completed caviar study is open again
    return child
