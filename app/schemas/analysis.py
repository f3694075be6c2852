"""What a study found: its best trial and the importance of each hyperparameter."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.schemas.trials import TrialPublic
from app.storage.models import Direction


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
    warning: str | None = Field(
        default=None, description="set when too few trials make the ranking unreliable"
    )
