"""The trial state machine, user side: pause, resume, stop, adjust, request a checkpoint, fork.
The worker side (claims, reports, finishes) is app.trials.worker_calls, the reaper
app.trials.leases.

Functions take a session whose transaction began IMMEDIATE (see app.storage.db), change rows and
leave the commit to the caller. Requests are stored as events, never queued in memory, so
they survive a server restart. On PostgreSQL each control first locks the trial's row
(``locks.lock_trial``): two servers asked to pause or adjust one trial at once take turns, so
the second sees the first's pending event (one pause, adjustments chained old -> new).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.errors import Conflict, Invalid
from app.search import feeder
from app.storage import locks, queries
from app.storage.models import Event, EventKind, Study, Trial, TrialState
from app.storage.pending import end_trial, kinds_of, pending_hparams, pending_of
from app.trials import external
from trainer.config import HParamError, check_combination, check_hparams


def pause(session: Session, trial: Trial) -> None:
    """Running: ask the worker to checkpoint and release the trial. Queued: paused at once."""
    locks.lock_trial(session, trial)
    pending = kinds_of(pending_of(session, trial))
    if trial.state is TrialState.RUNNING:
        if EventKind.STOP in pending:
            raise Conflict(f"trial {trial.id} is being stopped; it cannot be paused")
        if EventKind.PAUSE not in pending:
            queries.add_event(session, trial, EventKind.PAUSE)
    elif trial.state is TrialState.QUEUED:
        trial.state = TrialState.PAUSED
        queries.add_event(session, trial, EventKind.PAUSE, applied=True, applied_step=trial.step)
        feeder.settle(session, trial.study)  # its slot goes to the study's next trial
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
    queries.add_event(session, trial, EventKind.RESUME, applied=True, applied_step=trial.step)


def stop(session: Session, trial: Trial) -> None:
    """Running: the worker stops at its next safe point. Queued or paused: stopped at once."""
    locks.lock_trial(session, trial)
    if trial.state.finished:
        raise Conflict(f"trial {trial.id} is {trial.state.value}; it has already ended")
    if trial.state is TrialState.RUNNING:
        if EventKind.STOP not in kinds_of(pending_of(session, trial)):
            queries.add_event(session, trial, EventKind.STOP)
        return
    end_trial(session, trial, TrialState.STOPPED)
    queries.add_event(session, trial, EventKind.STOP, applied=True, applied_step=trial.step)
    feeder.settle(session, trial.study)


def _checked(
    study: Study, values: dict[str, Any], base: dict[str, Any], prefix: str = ""
) -> dict[str, Any]:
    """Adjustable values checked alone and against ``base``, or 422 naming the field."""
    if study.external:
        return external.check_adjustment(values, base, prefix)
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
    checked = _checked(trial.study, values, effective)
    old = {name: effective.get(name) for name in checked}
    return queries.add_event(session, trial, EventKind.ADJUST, {"hparams": checked, "old": old})


def request_checkpoint(session: Session, trial: Trial) -> Event:
    """Ask the worker of a running trial for a checkpoint at its next safe point."""
    locks.lock_trial(session, trial)
    if trial.state is not TrialState.RUNNING:
        raise Conflict(
            f"trial {trial.id} is {trial.state.value}; only running trials take checkpoints"
        )
    return queries.add_event(session, trial, EventKind.CHECKPOINT)


def fork(session: Session, parent: Trial, step: int, overrides: dict[str, Any]) -> Trial:
    """A new queued trial that starts from ``parent``'s checkpoint at ``step``."""
    # A claim of the parent may drop a corrupt checkpoint meanwhile: it holds this lock.
    locks.lock_trial(session, parent)
    ckpt = queries.get_checkpoint(session, trial_id=parent.id, step=step)
    if ckpt is None:
        steps = [c.step for c in queries.list_checkpoints(session, trial_id=parent.id)]
        raise Invalid(
            f"step: trial {parent.id} has no checkpoint at step {step}; "
            f"available steps: {', '.join(map(str, steps)) or 'none'}",
            field="step",
        )
    base = dict(ckpt.hparams or parent.hparams)
    checked = _checked(parent.study, overrides, base, prefix="hparams.")
    child = queries.create_trial(
        session,
        study=parent.study,
        hparams={**base, **checked},
        round_id=parent.round_id,
        parent_id=parent.id,
        parent_step=step,
        parent_checkpoint_id=ckpt.id,
        step=step,
        epoch=ckpt.epoch,  # the child counts on from the parent, as its step does
    )
    payload = {"step": step, "hparams": checked}
    queries.add_event(
        session,
        parent,
        EventKind.FORK,
        {**payload, "trial_id": child.id},
        applied=True,
        applied_step=step,
    )
    queries.add_event(
        session,
        child,
        EventKind.FORK,
        {**payload, "parent_id": parent.id},
        applied=True,
        applied_step=step + 1,
    )
    feeder.settle(session, parent.study)  # a completed caviar study is open again
    return child
