"""A trial's pending requests (events not applied yet), and its leaving the running state.

The rows every side of the trial state machine reads and closes: the user's controls
(app.trials.controls), the worker's calls (app.trials.worker_calls), the reaper
(app.trials.leases) and the study's scheduler parking trials (app.search.parking).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.storage import queries
from app.storage.models import Event, EventKind, Trial, TrialState, utcnow


def pending_of(session: Session, trial: Trial) -> list[Event]:
    return queries.pending_events(session, [trial.id]).get(trial.id, [])


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


def pending_hparams(events: Sequence[Event]) -> dict[str, Any]:
    """Adjustments requested and not yet applied, later ones winning."""
    out: dict[str, Any] = {}
    for event in events:
        if event.kind is EventKind.ADJUST:
            out.update(event.payload.get("hparams", {}))
    return out
