"""Pydantic wire types, one family per entity (Create / Public / sPublic)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.models import Direction, EventKind, StudyMode, StudyState, TrialState
from trainer.config import HPARAM_SPECS, HParamError
from trainer.reporting import Action

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=100)]


def _check_spec(name: str, value: Any) -> Any:
    try:
        return HPARAM_SPECS[name].check(value)
    except HParamError as exc:
        raise ValueError(exc.message) from None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- studies ---------------------------------------------------------------------------------


class Objective(Strict):
    metric: Name = "dev_accuracy"
    direction: Direction | None = None

    @model_validator(mode="after")
    def _default_direction(self) -> Objective:
        # A loss is minimised, everything else (accuracy) maximised, unless told otherwise.
        if self.direction is None:
            loss = self.metric.endswith("loss")
            self.direction = Direction.MINIMIZE if loss else Direction.MAXIMIZE
        return self


class Budget(Strict):
    trials: int = Field(1, ge=1, le=100_000)


class StudyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    mode: StudyMode = StudyMode.PANDA
    task: Name = "digits"
    task_options: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Any] = Field(default_factory=dict)
    objective: Objective = Field(default_factory=Objective)
    epochs: int = HPARAM_SPECS["epochs"].default
    budget: Budget = Field(default_factory=Budget)
    parallelism: int = Field(1, ge=1, le=1024)
    sampler: Name = "random"
    scheduler: Name | None = None
    seed: int = 0

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, v: int) -> int:
        return int(_check_spec("epochs", v))

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int) -> int:
        return int(_check_spec("seed", v))


class ObjectivePublic(BaseModel):
    metric: str
    direction: Direction


class StudyPublic(BaseModel):
    id: int
    name: str
    mode: StudyMode
    task: str
    task_options: dict[str, Any]
    space: dict[str, Any]
    objective: ObjectivePublic
    epochs: int
    budget: Budget
    parallelism: int
    sampler: str
    scheduler: str | None
    seed: int
    state: StudyState
    created_at: datetime
    counts: dict[str, int] = Field(description="number of trials per state")


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    count: int


# -- trials ----------------------------------------------------------------------------------


class TrialCreate(Strict):
    hparams: dict[str, Any] = Field(default_factory=dict)


class ForkRequest(Strict):
    step: int = Field(ge=0)
    hparams: dict[str, Any] = Field(default_factory=dict)


class TrialPublic(BaseModel):
    id: int
    study_id: int
    round_id: int | None
    number: int
    state: TrialState
    hparams: dict[str, Any] = Field(description="the values in force now")
    pending_hparams: dict[str, Any] = Field(description="adjustments not applied yet")
    pause_requested: bool
    stop_requested: bool
    step: int
    epoch: float
    attempt: int
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


# -- worker protocol (docs/contracts.md) -----------------------------------------------------


class ClaimIn(Strict):
    worker: str = Field(min_length=1, max_length=200)


class CheckpointRef(BaseModel):
    id: int
    step: int
    sha256: str


class ClaimOut(BaseModel):
    trial_id: int
    attempt: int
    config: dict[str, Any]
    checkpoint: CheckpointRef | None
    lease_seconds: float
    report_seconds: float


class Applied(Strict):
    event_id: int
    step: int = Field(ge=0)


class ReportIn(Strict):
    attempt: int = Field(ge=1)
    step: int = Field(ge=0)
    epoch: FiniteFloat = Field(ge=0)
    points: list[tuple[Annotated[int, Field(ge=0)], Name, FiniteFloat]] = Field(
        default_factory=list
    )
    applied: list[Applied] = Field(default_factory=list)


class DirectiveOut(BaseModel):
    action: Action
    hparams: dict[str, Any] = Field(default_factory=dict)
    event_id: int | None = None


class FinishIn(Strict):
    attempt: int = Field(ge=1)
    status: Literal["completed", "paused", "stopped", "failed"]
    step: int = Field(ge=0)
    epoch: FiniteFloat = Field(0.0, ge=0)
    metrics: dict[Name, FiniteFloat] = Field(default_factory=dict)
    error: str | None = Field(None, max_length=20_000)


class CheckpointOut(BaseModel):
    id: int
    step: int
    sha256: str
    bytes: int


# -- meta ------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    database: str
    streams: int = Field(description="open SSE streams")


class TaskPublic(BaseModel):
    name: str
    kind: str
    description: str
    options: dict[str, dict[str, Any]] = Field(
        description="option name -> {name, type, default, low, high, length, help, required}"
    )


class TasksPublic(BaseModel):
    data: list[TaskPublic]
    count: int


class HParamPublic(BaseModel):
    name: str
    type: str
    default: Any
    low: float | None
    high: float | None
    low_open: bool
    high_open: bool
    choices: list[str]
    adjustable: bool
    range: str
    help: str
