"""What a study found: its best trial and the importance of each hyperparameter."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.schemas.trials import TrialPublic
from app.storage.models import Direction


class BestPublic(BaseModel):
    """The configuration to trust: after a re-test, the best mean over its completed runs."""

    metric: str
    direction: Direction
    value: float = Field(
        description="the mean objective over the configuration's completed "
        "runs (before any re-test: the top-ranked trial's value)"
    )
    std: float = Field(description="sample standard deviation over the runs; 0 for one run")
    runs: int = Field(description="how many completed runs the mean is over")
    retested: bool = Field(description="whether the configuration was re-tested")
    run_trial_ids: list[int] = Field(description="the trials of those runs")
    seeds: list[int | None] = Field(description="each run's seed, in the same order")
    hparams: dict[str, Any]
    trial: TrialPublic = Field(description="the configuration's original trial")


class ImportancePublic(BaseModel):
    method: str
    scores: dict[str, float] = Field(description="name -> share of importance; sums to 1")
    n_trials: int
    metric: str
    warning: str | None = Field(
        default=None, description="set when too few trials make the ranking unreliable"
    )
