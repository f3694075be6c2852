"""The worker protocol's bodies and answers (docs/contracts.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from app.schemas.common import MAX_INT32, FiniteFloat, Name, Strict
from app.schemas.trials import TrialPublic
from trainer.reporting import Action

# At most this long: a client (or a proxy) may time out a quiet request after 10 s.
MAX_WAIT_SECONDS = 5.0


class ClaimIn(Strict):
    worker: str = Field(min_length=1, max_length=200)
    # A user's process claims the trials of one study of task "external"; the server's own
    # workers (no study) claim every other study's trials and never those.
    study_id: int | None = Field(None, ge=1, le=MAX_INT32)
    # Seconds to wait for a trial when none is queued: the claim answers the moment one is.
    wait: float = Field(0.0, ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False)


class CheckpointRef(BaseModel):
    """The checkpoint a claimed trial resumes from: where it restarts and how to verify it."""

    id: int
    step: int
    # The trainer's epoch at ``step`` (fractional mid-epoch), as the checkpoint row stores it:
    # what the worker reports until its restored trainer says otherwise.
    epoch: float
    sha256: str


class ClaimOut(BaseModel):
    trial_id: int
    attempt: int
    config: dict[str, Any]
    checkpoint: CheckpointRef | None
    lease_seconds: float
    report_seconds: float
    # Epoch ends where the study's scheduler may stop or pause the trial: the worker reports
    # at once there instead of batching (app.tuning.base.DecisionPoints).
    decide_epochs: list[int] = Field(default_factory=list)
    decide_from: int | None = None
    # The largest checkpoint the server stores (a user's process checks before it uploads).
    max_checkpoint_bytes: int | None = None
    # Report the first step at once: someone watches a panda trial's chart fill from empty.
    report_first: bool = False


class Applied(Strict):
    event_id: int
    step: int = Field(ge=0, le=MAX_INT32)


Step = Annotated[int, Field(ge=0, le=MAX_INT32)]
Point = tuple[Step, Name, FiniteFloat]
# [step, epoch] of an epoch's end inside a batch of points: early stopping looks at each one.
EpochEnd = tuple[Step, Annotated[int, Field(ge=1, le=MAX_INT32)]]


class ReportIn(Strict):
    attempt: int = Field(ge=1, le=MAX_INT32)
    step: int = Field(ge=0, le=MAX_INT32)
    epoch: FiniteFloat = Field(ge=0, le=MAX_INT32)
    points: list[Point] = Field(default_factory=list)
    epoch_ends: list[EpochEnd] = Field(default_factory=list)
    applied: list[Applied] = Field(default_factory=list)


class DirectiveOut(BaseModel):
    action: Action
    hparams: dict[str, Any] = Field(default_factory=dict)
    event_id: int | None = None


class FinishIn(Strict):
    attempt: int = Field(ge=1, le=MAX_INT32)
    # "requeue": a stopping worker checkpointed and hands the trial back to the queue.
    status: Literal["completed", "paused", "stopped", "failed", "requeue"]
    step: int = Field(ge=0, le=MAX_INT32)
    epoch: FiniteFloat = Field(0.0, ge=0)
    metrics: dict[Name, FiniteFloat] = Field(default_factory=dict)
    error: str | None = Field(None, max_length=20_000)
    # Points still buffered by the worker when the attempt ended (stored like a report's).
    points: list[Point] = Field(default_factory=list)
    epoch_ends: list[EpochEnd] = Field(default_factory=list)
    # The worker's next claim, made in the same request: one round trip a trial, not two.
    claim: ClaimIn | None = None


class FinishOut(TrialPublic):
    """The ended trial, and the next assignment when the finish carried a ``claim``."""

    next: ClaimOut | None = Field(
        None, description="the claimed trial's assignment; null if none was asked or queued"
    )


class CheckpointOut(BaseModel):
    id: int
    step: int
    sha256: str
    bytes: int
