"""Studies: what a client sends to create one and what the API shows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from app.schemas.common import Budget, Name, Strict, plain, whole_number
from app.storage.models import Direction, StudyMode, StudyState
from app.tuning import SAMPLERS, SCHEDULERS
from trainer.config import HPARAM_SPECS

# A metric name a URL's comma-separated ``names`` can carry: letters, digits, _ . - /.
MetricName = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_./-]+$"),
    plain("a metric name of letters, digits, '_', '.', '-' or '/' (at most 100)"),
]


class Objective(Strict):
    metric: MetricName = "dev_accuracy"
    direction: Direction | None = None

    @model_validator(mode="after")
    def _default_direction(self) -> Objective:
        # A loss is minimised, everything else (accuracy) maximised, unless told otherwise.
        if self.direction is None:
            loss = self.metric.endswith("loss")
            self.direction = Direction.MINIMIZE if loss else Direction.MAXIMIZE
        return self


MAX_BUDGET_TRIALS = 100_000
MAX_BUDGET_EPOCHS = 10_000_000
MAX_PARALLELISM = 1024
NAME_LENGTH = 200
# A study's epochs and split seed take the trainer's bounds for them.
MIN_EPOCHS, MAX_EPOCHS = (
    int(HPARAM_SPECS["epochs"].low or 1),
    int(HPARAM_SPECS["epochs"].high or 1),
)
MIN_SEED, MAX_SEED = int(HPARAM_SPECS["seed"].low or 0), int(HPARAM_SPECS["seed"].high or 0)

# What each bounded field of a new study allows, in the words its 422 uses (and the new-study
# form, before sending).
STUDY_WORDS: dict[str, str] = {
    "name": "give the study a name",
    "name.long": f"a name of at most {NAME_LENGTH} characters",
    "epochs": whole_number(MIN_EPOCHS, MAX_EPOCHS, "epochs"),
    "seed": whole_number(MIN_SEED, MAX_SEED),
    "budget.trials": whole_number(1, MAX_BUDGET_TRIALS, "trials"),
    "budget.epochs": whole_number(1, MAX_BUDGET_EPOCHS, "epochs"),
    "parallelism": whole_number(1, MAX_PARALLELISM, "trials at once"),
}

Trials = Annotated[int, Field(ge=1, le=MAX_BUDGET_TRIALS), plain(STUDY_WORDS["budget.trials"])]
BudgetEpochs = Annotated[
    int, Field(ge=1, le=MAX_BUDGET_EPOCHS), plain(STUDY_WORDS["budget.epochs"])
]
Epochs = Annotated[int, Field(ge=MIN_EPOCHS, le=MAX_EPOCHS), plain(STUDY_WORDS["epochs"])]
Parallelism = Annotated[int, Field(ge=1, le=MAX_PARALLELISM), plain(STUDY_WORDS["parallelism"])]
Seed = Annotated[int, Field(ge=MIN_SEED, le=MAX_SEED), plain(STUDY_WORDS["seed"])]
StudyName = Annotated[
    str,
    Field(min_length=1, max_length=NAME_LENGTH),
    plain(STUDY_WORDS["name"], string_too_long=STUDY_WORDS["name.long"]),
]


class BudgetCreate(Strict):
    """``{"trials": N}`` trials, or ``{"epochs": E}`` epochs trained in total by the round."""

    trials: Trials | None = None
    epochs: BudgetEpochs | None = None

    @model_validator(mode="after")
    def _one(self) -> BudgetCreate:
        if self.trials is not None and self.epochs is not None:
            raise ValueError("give trials or epochs, not both")
        if self.trials is None and self.epochs is None:
            self.trials = 1
        return self


# A search algorithm by name, or {"name": ..., **settings}: "random", {"name": "grid",
# "points_per_dim": 4}, {"name": "asha", "min_resource": 1, "reduction_factor": 3}. The names
# and settings are the registry's (app.tuning): GET /api/algorithms lists them.
Algorithm = Name | dict[str, Any]


class StudyCreate(Strict):
    name: StudyName
    mode: StudyMode = StudyMode.PANDA
    task: Name = "digits"
    task_options: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Any] = Field(default_factory=dict)
    objective: Objective = Field(default_factory=Objective)
    epochs: Epochs = HPARAM_SPECS["epochs"].default
    budget: BudgetCreate = Field(default_factory=lambda: BudgetCreate(trials=1))
    parallelism: Parallelism = Field(1, description="caviar: trials running at once")
    sampler: Algorithm = Field(
        "random",
        description="a sampler of GET /api/algorithms by name, or with settings: "
        '{"name": "grid", "points_per_dim": 4}',
    )
    scheduler: Algorithm | None = Field(
        None,
        description="null (no early stopping) or a scheduler of GET /api/algorithms by name, "
        'or with settings: {"name": "asha", "min_resource": 1, "reduction_factor": 3}; '
        "epochs are the resource",
    )
    seed: Seed = 0

    @field_validator("sampler", "scheduler")
    @classmethod
    def _registered(cls, v: Algorithm | None, info: ValidationInfo) -> Algorithm | None:
        # Looked up at each request: an algorithm the server imported later is known too. Its
        # settings are checked with the study (app.search.study_config.check_algorithms).
        registry: dict[str, Any] = SAMPLERS if info.field_name == "sampler" else SCHEDULERS
        name = v.get("name") if isinstance(v, dict) else v
        if isinstance(name, str) and name not in registry:
            raise ValueError(f"got {name!r}, allowed: one of {', '.join(registry)}")
        return v


class ObjectivePublic(BaseModel):
    metric: str
    direction: Direction


class SamplerInfo(BaseModel):
    """How many distinct values of each ranged hyperparameter the search tries.

    The course notes' argument for random over grid search: with the same number of trials a
    grid tries a few values of each hyperparameter, random search as many as it has trials.
    """

    sampler: str
    distinct_values: dict[str, int] = Field(
        description="grid: the grid's values per hyperparameter over every search round; "
        "other samplers: the distinct values drawn so far"
    )
    grid_size: int | None = Field(description="grid: the points of every search round's grid")
    trials: int = Field(description="trials sampled so far, re-tests left out")


class Progress(BaseModel):
    """How far the study is: trials ended out of every trial it plans to run.

    ``planned`` counts each round's budget in trials (or, for a budget in epochs or a round
    that can sample no more, the trials it created), every trial a later round or a re-test
    added, and trials added by hand or forked; so ``ended <= planned`` always holds.
    """

    ended: int = Field(description="trials completed, pruned, stopped or failed")
    planned: int = Field(
        description="trials created so far plus those the rounds' budgets "
        "in trials have still to create"
    )


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
    scheduler_settings: dict[str, Any] = Field(
        default_factory=dict, description="as applied: defaults and budget-fitted ones included"
    )
    plan: str | None = Field(
        None,
        description="what the early-stopping scheduler does with round 1's budget, e.g. "
        "'rungs at 3 and 9 epochs; about 3 of 24 trials train all 27 epochs'",
    )
    sampler_info: SamplerInfo | None = Field(
        None, description="caviar studies, in GET /api/studies/{id} only (null in lists)"
    )
    seed: int
    state: StudyState
    created_at: datetime
    counts: dict[str, int] = Field(description="number of trials per state")
    progress: Progress


class StudyPlan(BaseModel):
    """POST /api/studies/plan: what the study's early stopping would do."""

    scheduler_settings: dict[str, Any]
    plan: str | None


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    count: int
