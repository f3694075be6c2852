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
    n_trials: int = Field(description="the trials the forest was fitted on")
    resource: int | None = Field(
        default=None,
        description="the epoch whose objective was used: the largest that at least "
        "`needed` trials reached (stopped early or not), else the one most trials reached; "
        "null: no values by epoch, the completed trials' final values",
    )
    intervals: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="name -> [low, high]: the 10th and 90th percentiles of its score over "
        "forests refitted on 30 bootstrap resamples of the trials",
    )
    needed: int = Field(
        default=10,
        description="trials a ranking needs to be worth trusting: max(10, 2 per "
        "ranged hyperparameter)",
    )
    metric: str
    warning: str | None = Field(
        default=None,
        description="set when too few trials back the ranking, e.g. 'Only 6 trials at "
        "epoch 3: too few to trust this ranking (at least 10 needed)'",
    )
