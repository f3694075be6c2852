"""Pydantic wire types, one family per entity (Create / Public / sPublic)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from app.models import Direction, EventKind, RoundKind, StudyMode, StudyState, TrialState
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


class BudgetCreate(Strict):
    """``{"trials": N}`` trials, or ``{"epochs": E}`` epochs trained in total by the round."""

    trials: int | None = Field(default=None, ge=1, le=100_000)
    epochs: int | None = Field(default=None, ge=1, le=10_000_000)

    @model_validator(mode="after")
    def _one(self) -> BudgetCreate:
        if self.trials is not None and self.epochs is not None:
            raise ValueError("give trials or epochs, not both")
        if self.trials is None and self.epochs is None:
            self.trials = 1
        return self


class Budget(BaseModel):
    """A round's budget as the API shows it: only the key that is set."""

    trials: int | None = None
    epochs: int | None = None

    @model_serializer(mode="wrap")
    def _set_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


# A search algorithm by name, or {"name": ..., **settings}: "random", {"name": "grid",
# "points_per_dim": 4}, {"name": "asha", "min_resource": 1, "reduction_factor": 3}.
Algorithm = Name | dict[str, Any]


class StudyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    mode: StudyMode = StudyMode.PANDA
    task: Name = "digits"
    task_options: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Any] = Field(default_factory=dict)
    objective: Objective = Field(default_factory=Objective)
    epochs: int = HPARAM_SPECS["epochs"].default
    budget: BudgetCreate = Field(default_factory=lambda: BudgetCreate(trials=1))
    parallelism: int = Field(1, ge=1, le=1024, description="caviar: trials running at once")
    sampler: Algorithm = Field("random", description='"random", "grid", "sobol", "tpe" or '
                               '{"name": "grid", "points_per_dim": 4}')
    scheduler: Algorithm | None = Field(None, description='null, "none", "asha", "median" or '
                                        '{"name": "asha", "min_resource": 1, '
                                        '"reduction_factor": 3}; epochs are the resource')
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
    sampler_settings: dict[str, Any] = Field(default_factory=dict)
    scheduler_settings: dict[str, Any] = Field(default_factory=dict)
    seed: int
    state: StudyState
    created_at: datetime
    counts: dict[str, int] = Field(description="number of trials per state")


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    count: int


# -- rounds, re-tests, analysis --------------------------------------------------------------


class RoundCreate(Strict):
    """``{"from_top": k, "margin": m, "trials": n}`` or ``{"space": {...}, "trials": n}``.

    ``space`` is laid over the previous search round's space (names left out keep their
    range); dimensions that leave the previous ranges are accepted and listed in the answer's
    ``outside_parent``. ``epochs`` instead of ``trials`` budgets the round in total epochs.
    """

    from_top: int | None = Field(None, ge=1, le=100_000)
    margin: FiniteFloat = Field(0.1, ge=0.0, le=1.0)
    space: dict[str, Any] | None = None
    trials: int | None = Field(None, ge=1, le=100_000)
    epochs: int | None = Field(None, ge=1, le=10_000_000)

    @model_validator(mode="after")
    def _shape(self) -> RoundCreate:
        if (self.from_top is None) == (self.space is None):
            raise ValueError("give either from_top (with margin) or space")
        if (self.trials is None) == (self.epochs is None):
            raise ValueError("give either trials or epochs as the round's budget")
        return self


class RoundPublic(BaseModel):
    id: int
    study_id: int
    number: int
    kind: RoundKind
    space: dict[str, Any]
    parent_round_id: int | None
    budget: Budget
    from_top: int | None
    margin: float | None
    outside_parent: list[str] = Field(
        description="dimensions of an explicit space that leave the parent round's ranges"
    )
    counts: dict[str, int] = Field(description="number of trials per state")
    created_at: datetime


class RoundsPublic(BaseModel):
    data: list[RoundPublic]
    count: int


class RetestCreate(Strict):
    top: int = Field(ge=1, le=100)
    seeds: int = Field(ge=1, le=100)


class RetestGroup(BaseModel):
    """One configuration re-run with fresh seeds; mean and std over the re-runs that completed."""

    trial_id: int = Field(description="the original trial")
    number: int
    hparams: dict[str, Any] = Field(description="the configuration, seed left out")
    value: float | None = Field(description="the original trial's objective")
    trial_ids: list[int] = Field(description="the re-test trials")
    values: list[float]
    completed: int
    pending: int = Field(description="re-test trials not ended yet")
    mean: float | None
    std: float | None = Field(description="sample standard deviation (n - 1), two values on")


class RetestPublic(BaseModel):
    metric: str
    direction: Direction
    data: list[RetestGroup]
    count: int


class BestPublic(BaseModel):
    metric: str
    direction: Direction
    value: float = Field(description="the trial's final objective value")
    hparams: dict[str, Any]
    trial: TrialPublic


class ImportancePublic(BaseModel):
    method: str
    scores: dict[str, float] = Field(description="name -> share of importance; sums to 1")
    n_trials: int
    metric: str


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
