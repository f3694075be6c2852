"""Asynchronous successive halving (ASHA; Li et al., 2020) with its rungs stored as records."""

from __future__ import annotations

from collections.abc import Sequence

from app.tuning.base import (
    Decision,
    Direction,
    RungRecord,
    Scheduler,
    SchedulerStep,
    TrialView,
)


def _positive_int(arg: str, v: object, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{arg}: got {v!r}, allowed: an integer >= {minimum}")
    return v


class AshaScheduler(Scheduler):
    """Stops a trial at a rung unless it ranks in the top ``1/eta`` of that rung so far.

    Rung ``k`` sits at ``min_resource * eta**k`` epochs, for every such resource below
    ``max_resource`` (where training ends anyway). When a trial reports at a rung resource,
    the scheduler emits a :class:`RungRecord`; with ``n`` records at that rung (the trial's
    included) it CONTINUEs iff its value is among the best ``floor(n / eta)`` (ties
    continue). Reports at other resources CONTINUE.

    The state is the stored records: pass them back in insertion order and a fresh object
    decides exactly as the old one did. A repeated report at a rung the trial already has a
    record for emits nothing and returns the original decision, computed from the records up
    to and including the trial's own.

    Args:
        min_resource: epochs at the first rung (>= 1).
        reduction_factor: ``eta``, the promotion rate 1/eta (>= 2).
        max_resource: epochs a trial trains at most (> min_resource).
        direction: which values are better.
    """

    def __init__(
        self,
        min_resource: int = 1,
        reduction_factor: int = 3,
        max_resource: int = 27,
        direction: Direction = Direction.MINIMIZE,
    ) -> None:
        self.min_resource = _positive_int("min_resource", min_resource, 1)
        self.reduction_factor = _positive_int("reduction_factor", reduction_factor, 2)
        self.max_resource = _positive_int("max_resource", max_resource, min_resource + 1)
        self.direction = Direction(direction)

    def rung_resources(self) -> tuple[int, ...]:
        """Epochs of the rungs, ``min_resource * eta**k < max_resource``; index = rung."""
        out, r = [], self.min_resource
        while r < self.max_resource:
            out.append(r)
            r *= self.reduction_factor
        return tuple(out)

    def rung_of(self, resource: int) -> int | None:
        """The rung at exactly ``resource`` epochs, or None."""
        rungs = self.rung_resources()
        return rungs.index(resource) if resource in rungs else None

    def on_report(
        self,
        trial: TrialView,
        resource: int,
        value: float,
        history: Sequence[TrialView],
        records: Sequence[RungRecord],
    ) -> SchedulerStep:
        rung = self.rung_of(resource)
        if rung is None:
            return SchedulerStep(Decision.CONTINUE)
        at_rung = [r for r in records if r.rung == rung]
        mine = [i for i, r in enumerate(at_rung) if r.trial_number == trial.number]
        if mine:
            # A replayed report (worker retry, restart): same answer, nothing new to store.
            upto = at_rung[: mine[0] + 1]
            return SchedulerStep(self._decide(upto[-1].value, [r.value for r in upto]))
        record = RungRecord(trial.number, rung, float(value))
        values = [r.value for r in at_rung] + [record.value]
        return SchedulerStep(self._decide(record.value, values), (record,))

    def _decide(self, value: float, rung_values: list[float]) -> Decision:
        """CONTINUE iff ``value`` ranks within the best ``floor(n / eta)`` of ``rung_values``."""
        n_promote = len(rung_values) // self.reduction_factor
        # Fewer than eta records: floor(n / eta) = 0 would stop every early trial. ASHA
        # proper would leave such a trial waiting for a later promotion, but a trial here
        # cannot be parked for an unknown time, so we follow optuna's SuccessiveHalvingPruner:
        # promote the first eta - 1 arrivals only while each is the best seen at the rung.
        n_promote = max(1, n_promote)
        keys = sorted(self.direction.key(v) for v in rung_values)
        if self.direction.key(value) <= keys[n_promote - 1]:
            return Decision.CONTINUE
        return Decision.STOP

    def __repr__(self) -> str:
        return (
            f"AshaScheduler(min_resource={self.min_resource}, "
            f"reduction_factor={self.reduction_factor}, max_resource={self.max_resource}, "
            f"direction={self.direction.value!r})"
        )
