"""Trials, their events and checkpoints, and the requests that fork one."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.schemas.common import MAX_INT32, Strict
from app.storage.models import EventKind, TrialState


class TrialCreate(Strict):
    hparams: dict[str, Any] = Field(default_factory=dict)


class ForkRequest(Strict):
    step: int = Field(ge=0, le=MAX_INT32)
    hparams: dict[str, Any] = Field(default_factory=dict)


class RunningTrial(BaseModel):
    """A running trial a queued one waits behind."""

    id: int
    number: int
    study_id: int
    study: str
    worker: str | None


class Waiting(BaseModel):
    """What a queued trial waits for: its study's parallelism cap, or a free worker."""

    # "your_process": a study of your own loop waits for a pandacaviar process to claim it.
    reason: Literal["parallelism", "worker", "your_process"]
    text: str
    running: list[RunningTrial] = Field(description="the trials holding the slots or workers")


class TrialPublic(BaseModel):
    id: int
    study_id: int
    round_id: int | None
    round: int | None = Field(description="the number of the round (1, 2, ...); null in panda")
    number: int
    state: TrialState
    hparams: dict[str, Any] = Field(description="the values in force now")
    pending_hparams: dict[str, Any] = Field(description="adjustments not applied yet")
    pause_requested: bool
    stop_requested: bool
    waiting: Waiting | None = Field(None, description="a queued trial: what it waits for")
    stopped_because: dict[str, Any] | None = Field(
        None,
        description="a trial its study's scheduler pruned or parked: why, as the scheduler "
        "said it (its prune or pause event's payload: scheduler, resource (the epoch), value; "
        "ASHA: rung, cut, keep, of; median stopping: best, median, of) and the event's kind; "
        "null otherwise",
    )
    parked: bool = Field(
        False,
        description="paused by its study's scheduler (ASHA's pause "
        "mode): waiting at a rung until it is promoted or the study ends",
    )
    step: int
    epoch: float
    attempt: int = Field(description="claims so far: every resume and requeue is a new one")
    failures: int = Field(
        description="attempts in a row lost with their worker since the last "
        "new checkpoint; the trial fails when this reaches max_failures"
    )
    worker: str | None
    lease_expires_at: datetime | None
    best_value: float | None
    last_value: float | None
    parent_id: int | None
    parent_step: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class TrialsPublic(BaseModel):
    data: list[TrialPublic]
    count: int


class EventPublic(BaseModel):
    id: int
    trial_id: int
    kind: EventKind
    payload: dict[str, Any]
    requested_at: datetime
    applied_step: int | None
    applied_at: datetime | None


class CheckpointPublic(BaseModel):
    id: int
    trial_id: int
    step: int
    epoch: float
    hparams: dict[str, Any] = Field(description="the values in force up to this step")
    bytes: int
    sha256: str
    created_at: datetime
