"""Coarse-to-fine rounds and re-tests of a caviar study."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from app.schemas.common import Budget, FiniteFloat, Strict
from app.storage.models import Direction, RoundKind


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


class RetestShape(BaseModel):
    """What a re-test round re-runs: the ``top`` best configurations, ``seeds`` times each."""

    top: int
    seeds: int


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
    retest: RetestShape | None = Field(
        None,
        description="a re-test round's top k configurations and seeds each (read-only); "
        "null for a search round",
    )
    scheduler_settings: dict[str, Any] | None = Field(
        None,
        description="the early-stopping settings this round runs with: the study's given "
        "ones, the rest fitted to this round's own budget; null: the study's",
    )
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
