"""A toy scheduler in one module, as a third party would write it: importing it registers it.

The server imports it with ``PANDACAVIAR_PLUGINS=tests.tuning.toy_scheduler``; nothing else in
the program names it (tests/web/test_plugin_algorithm.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from app.tuning import (
    Decision,
    Direction,
    RungRecord,
    Scheduler,
    SchedulerStep,
    Setting,
    TrialView,
)


class ThresholdScheduler(Scheduler):
    """Stops a trial whose value at ``at_epoch`` is worse than ``threshold``."""

    name = "toy-threshold"
    label = "toy: stop below a threshold"
    help = "Stops a trial whose objective at at_epoch is worse than threshold."
    settings = (
        Setting("at_epoch", "int", 1, "the epoch at which a trial is judged", low=1),
        Setting("threshold", "float", 0.5, "the worst value allowed there", low=0, high=1),
    )
    needs_direction = True

    def __init__(
        self, at_epoch: int = 1, threshold: float = 0.5, direction: Direction = Direction.MINIMIZE
    ) -> None:
        self.at_epoch = self._check("at_epoch", at_epoch)
        self.threshold = float(self._check("threshold", threshold))
        self.direction = Direction(direction)

    def on_report(
        self,
        trial: TrialView,
        resource: int,
        value: float,
        history: Sequence[TrialView],
        records: Sequence[RungRecord],
    ) -> SchedulerStep:
        if resource == self.at_epoch and self.direction.better(self.threshold, value):
            return SchedulerStep(Decision.STOP)
        return SchedulerStep(Decision.CONTINUE)
