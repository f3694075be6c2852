"""The median stopping rule (Golovin et al., 2017, Google Vizier)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from app.tuning.base import (
    Decision,
    DecisionPoints,
    Direction,
    RungRecord,
    Scheduler,
    SchedulerStep,
    Setting,
    SettingValue,
    TrialView,
)


class MedianStoppingScheduler(Scheduler):
    """Stops a trial whose best value so far is worse than the other trials' median.

    At a report of ``value`` at resource ``r >= grace``: ``best`` is the trial's best over
    its stored intermediate values at resources ``<= r`` and ``value``; ``others`` are the
    values other trials of the history (any state) reported at exactly ``r``, NaN left out
    (a NaN would make the median NaN). With at least
    ``min_trials`` of them, STOP iff ``best`` is strictly worse than ``median(others)``.
    Otherwise CONTINUE. Pure function of the history: nothing to store.

    Args:
        grace: epochs before any stop (>= 0).
        min_trials: other trials needed at ``r`` before the median means something (>= 1).
        direction: which values are better.
    """

    name = "median"
    label = "median stopping"
    help = (
        "Stops a trial whose best value so far is worse than the median of the other trials' "
        "values at the same epoch."
    )
    settings = (
        Setting("grace", "int", 1, "epochs before any stop", low=0),
        Setting("min_trials", "int", 3, "other trials needed at an epoch to compare", low=1),
    )
    needs_direction = True

    def __init__(
        self,
        grace: int = 1,
        min_trials: int = 3,
        direction: Direction = Direction.MINIMIZE,
    ) -> None:
        self.grace = self._check("grace", grace)
        self.min_trials = self._check("min_trials", min_trials)
        self.direction = Direction(direction)

    @classmethod
    def budget_defaults(
        cls, trials: int, max_epochs: int, given: Mapping[str, object]
    ) -> dict[str, SettingValue]:
        """``grace`` a quarter of the epochs (curves cross early), ``min_trials`` a fifth of
        the trials, between 3 and 5 (Optuna's MedianPruner waits for 5 trials)."""
        out: dict[str, SettingValue] = {}
        if "grace" not in given:
            out["grace"] = max(1, max_epochs // 4)
        if "min_trials" not in given:
            out["min_trials"] = min(5, max(3, trials // 5))
        return out

    def plan(self, trials: int) -> str:
        return (
            f"from epoch {max(1, self.grace)}, a trial below the median of at least "
            f"{self.min_trials} others at the same epoch stops"
        )

    def decision_points(self) -> DecisionPoints:
        """Every epoch from ``grace`` on (the first epoch end is 1)."""
        return DecisionPoints(every_from=max(1, self.grace))

    def on_report(
        self,
        trial: TrialView,
        resource: int,
        value: float,
        history: Sequence[TrialView],
        records: Sequence[RungRecord],
    ) -> SchedulerStep:
        if resource < self.grace:
            return SchedulerStep(Decision.CONTINUE)
        others = [
            t.intermediate[resource]
            for t in history
            if t.number != trial.number
            and resource in t.intermediate
            and not math.isnan(t.intermediate[resource])
        ]
        if len(others) < self.min_trials:
            return SchedulerStep(Decision.CONTINUE)
        own = [v for r, v in trial.intermediate.items() if r <= resource] + [float(value)]
        best = min(own, key=self.direction.key)
        median = float(np.median(others))
        if not self.direction.better(median, best):
            return SchedulerStep(Decision.CONTINUE)
        return SchedulerStep(
            Decision.STOP, (), {"best": best, "median": median, "of": len(others)}
        )

    def __repr__(self) -> str:
        return (
            f"MedianStoppingScheduler(grace={self.grace}, min_trials={self.min_trials}, "
            f"direction={self.direction.value!r})"
        )
