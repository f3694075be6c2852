"""The scheduler that never stops a trial (``"none"``): every trial trains to the end."""

from __future__ import annotations

from collections.abc import Sequence

from app.tuning.base import (
    Decision,
    DecisionPoints,
    RungRecord,
    Scheduler,
    SchedulerStep,
    TrialView,
)


class NoStoppingScheduler(Scheduler):
    """Always CONTINUE; no records."""

    name = "none"
    label = "none"
    help = "Every trial trains to the end."

    def decision_points(self) -> DecisionPoints:
        return DecisionPoints()  # never decides: reports stay batched

    def on_report(
        self,
        trial: TrialView,
        resource: int,
        value: float,
        history: Sequence[TrialView],
        records: Sequence[RungRecord],
    ) -> SchedulerStep:
        return SchedulerStep(Decision.CONTINUE)

    def __repr__(self) -> str:
        return "NoStoppingScheduler()"
