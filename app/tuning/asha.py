"""Asynchronous successive halving (ASHA; Li et al., 2020) with its rungs stored as records."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from enum import Enum

from app.tuning.base import (
    Decision,
    DecisionPoints,
    Direction,
    Preset,
    RungRecord,
    Scheduler,
    SchedulerStep,
    Setting,
    SettingValue,
    TrialView,
)


class AshaMode(str, Enum):
    """What happens to a trial that does not rank in the top ``1/eta`` of its rung.

    ``stop``: it ends there (Optuna's ``SuccessiveHalvingPruner``, Ray Tune's ASHA). ``pause``:
    it waits at the rung and is promoted as soon as enough later trials rank below it, the
    ASHA paper's own rule; a study in this mode never runs an early arrival in full only
    because nothing better has been seen yet.
    """

    STOP = "stop"
    PAUSE = "pause"


# Budget-fitted defaults aim at this many trials trained in full: enough to compare a few
# finished curves, few enough that early stopping saves most of the epochs.
FULL_TRIALS = 2.5


class AshaScheduler(Scheduler):
    """Stops (or pauses) a trial at a rung unless it ranks in the top ``1/eta`` of that rung.

    Rung ``k`` sits at ``min_resource * eta**k`` epochs, for every such resource below
    ``max_resource`` (where training ends anyway). When a trial reports at a rung resource,
    the scheduler emits a :class:`RungRecord`; with ``n`` records at that rung (the trial's
    included) it CONTINUEs iff its value is among the best ``floor(n / eta)`` (ties
    continue), else it STOPs (``mode="stop"``) or PAUSEs (``mode="pause"``). Reports at other
    resources CONTINUE.

    In ``pause`` mode :meth:`promotions` resumes a paused trial once it ranks among the best
    ``floor(n / eta)`` of the rung it waits at, the highest rung first (Li et al., Algorithm 2:
    a free worker takes a promotion before a new configuration). With ``eager_top`` (pause
    mode only) the top rung, the last before ``max_resource``, keeps ``max(1, floor(n /
    eta))``: while it has fewer than ``eta`` records, a trial that is the best there goes on at
    once, as stop mode's early arrivals do, instead of waiting for ``eta`` of them.

    At the end of a study (``final``) the cut is ``ceil(n / eta)``: a rung's last, incomplete
    group of ``eta`` also sends its best on, so a small study still trains some trials in full.

    The state is the stored records: pass them back in insertion order and a fresh object
    decides exactly as the old one did. A repeated report at a rung the trial already has a
    record for emits nothing and returns the original decision, computed from the records up
    to and including the trial's own.

    Args:
        min_resource: epochs at the first rung (>= 1).
        reduction_factor: ``eta``, the promotion rate 1/eta (>= 2).
        max_resource: epochs a trial trains at most (> min_resource).
        direction: which values are better.
        mode: ``"stop"`` (the default) or ``"pause"``, see :class:`AshaMode`.
        eager_top: pause mode's top rung lets its best early arrival go on (default False).
            Why: in pause mode the first trial to train in full starts only after ``eta**k``
            trials reached rung 0, ``eta**(k-1)`` rung 1, ... and ``eta`` the top rung ``k``;
            waiting at the top rung is the largest part of that wait, while the lower rungs'
            full groups already keep hopeless early arrivals out.
    """

    name = "asha"
    label = "ASHA (successive halving)"
    help = (
        "At rungs of min_resource * reduction_factor**k epochs, only the best "
        "1/reduction_factor of the trials go on; the others stop (or wait, in pause mode)."
    )
    settings = (
        Setting("min_resource", "int", 1, "epochs at the first rung", low=1),
        Setting("reduction_factor", "int", 3, "eta: 1/eta of a rung's trials go on", low=2),
        Setting(
            "max_resource", "int", None,
            "epochs a trial trains at most, above min_resource; by default the most epochs "
            "a trial of the study can train", low=2,
        ),
        Setting(
            "mode", "str", AshaMode.STOP.value,
            "stop: a trial below a rung's cut ends there; pause: it waits for a promotion",
            choices=tuple(m.value for m in AshaMode),
        ),
        Setting(
            "eager_top", "bool", False,
            "pause mode: the top rung's best early arrival goes on instead of waiting",
        ),
    )  # fmt: skip
    presets = (
        Preset("pause", "ASHA, trials wait at a rung for promotion", {"mode": "pause"}),
        Preset(
            "eager",
            "ASHA, trials wait, but the top rung's best goes on",
            {"mode": "pause", "eager_top": True},
        ),
    )
    needs_direction = True

    def __init__(
        self,
        min_resource: int = 1,
        reduction_factor: int = 3,
        max_resource: int = 27,
        direction: Direction = Direction.MINIMIZE,
        mode: AshaMode | str = AshaMode.STOP,
        eager_top: bool = False,
    ) -> None:
        self.min_resource = self._check("min_resource", min_resource)
        self.reduction_factor = self._check("reduction_factor", reduction_factor)
        self.max_resource = self._check("max_resource", max_resource)
        if self.max_resource <= self.min_resource:
            raise ValueError(
                f"max_resource: got {max_resource!r}, allowed: an integer >= {min_resource + 1}"
            )
        self.direction = Direction(direction)
        self.mode = AshaMode(self._check("mode", mode))
        self.pauses = self.mode is AshaMode.PAUSE
        eager_top = self._check("eager_top", eager_top)
        if eager_top and not self.pauses:
            raise ValueError(
                "eager_top: got true with mode 'stop', allowed: true only with "
                "mode 'pause' (stop mode lets early arrivals go on at every rung)"
            )
        self.eager_top = eager_top

    @classmethod
    def budget_defaults(
        cls, trials: int, max_epochs: int, given: Mapping[str, object]
    ) -> dict[str, SettingValue]:
        """``min_resource`` (and ``max_resource``) so that about ``FULL_TRIALS`` trains in full.

        With ``k`` rungs below ``max_resource = R`` about ``trials / eta**k`` trials reach
        ``R``; ``k`` is the most rungs (at least one) that leaves ``FULL_TRIALS`` or more, and
        the first rung sits at ``R / eta**k`` epochs (at least 1). 24 trials of 27 epochs with
        eta 3: rungs at 3 and 9 epochs, about 3 trials in full, where the fixed ``min_resource``
        of 1 (rungs 1, 3, 9) trains about 1 and decides at one epoch, before most curves
        separate. See docs/decisions.md.
        """
        eta = int(given.get("reduction_factor", 3))  # type: ignore[call-overload]
        top = int(given.get("max_resource", max_epochs))  # type: ignore[call-overload]
        out: dict[str, SettingValue] = {"max_resource": top}
        if "min_resource" in given or top < 2 or eta < 2:
            return out
        k = 1
        while eta ** (k + 1) <= top and trials / eta ** (k + 1) >= FULL_TRIALS:
            k += 1
        out["min_resource"] = max(1, min(top - 1, round(top / eta**k)))
        return out

    def plan(self, trials: int) -> str:
        """``"rungs at 3 and 9 epochs; about 3 of 24 trials train all 27 epochs"``."""
        rungs = self.rung_resources()
        full = trials / self.reduction_factor ** len(rungs)
        where = " and ".join(", ".join(map(str, rungs)).rsplit(", ", 1))
        return (
            f"rung{'s' if len(rungs) > 1 else ''} at {where} epochs; about {max(1, round(full))} "
            f"of {trials} trials train all {self.max_resource} epochs"
        )

    def rung_resources(self) -> tuple[int, ...]:
        """Epochs of the rungs, ``min_resource * eta**k < max_resource``; index = rung."""
        out, r = [], self.min_resource
        while r < self.max_resource:
            out.append(r)
            r *= self.reduction_factor
        return tuple(out)

    def decision_points(self) -> DecisionPoints:
        """Only a rung decides."""
        return DecisionPoints(epochs=self.rung_resources())

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
            values = [r.value for r in upto]
            decision = self._decide(upto[-1].value, values, rung)
            return SchedulerStep(decision, (), self._why(rung, values, decision))
        record = RungRecord(trial.number, rung, float(value))
        values = [r.value for r in at_rung] + [record.value]
        decision = self._decide(record.value, values, rung)
        return SchedulerStep(decision, (record,), self._why(rung, values, decision))

    def _why(self, rung: int, values: Sequence[float], decision: Decision) -> dict[str, float]:
        """A stop or pause explained: the rung, its cut (the worst value that went on) and how
        many of how many records the cut keeps."""
        if decision is Decision.CONTINUE:
            return {}
        keep = len(values) // self.reduction_factor
        if self.eager_top and rung == len(self.rung_resources()) - 1:
            keep = max(1, keep)
        if self.mode is AshaMode.STOP:
            keep = max(1, keep)
        bar = self._bar(values, keep)
        out: dict[str, float] = {"rung": rung, "keep": keep, "of": len(values)}
        if bar is not None:
            out["cut"] = bar if self.direction is Direction.MINIMIZE else -bar
        return out

    def _decide(self, value: float, rung_values: list[float], rung: int) -> Decision:
        """CONTINUE iff ``value`` ranks within the best ``floor(n / eta)`` of ``rung_values``
        (``max(1, floor(n / eta))`` at the top rung with ``eager_top``)."""
        n_promote = len(rung_values) // self.reduction_factor
        if self.eager_top and rung == len(self.rung_resources()) - 1:
            n_promote = max(1, n_promote)
        if self.mode is AshaMode.PAUSE:
            # Fewer than eta records promote nobody yet: the trial waits for later arrivals.
            return (
                Decision.CONTINUE
                if self._within(value, rung_values, n_promote)
                else (Decision.PAUSE)
            )
        # Stop mode cannot wait: floor(n / eta) = 0 would stop every early trial, so, as
        # optuna's SuccessiveHalvingPruner, the first eta - 1 arrivals continue only while
        # each is the best seen at the rung.
        if self._within(value, rung_values, max(1, n_promote)):
            return Decision.CONTINUE
        return Decision.STOP

    def _within(self, value: float, rung_values: Sequence[float], cut: int) -> bool:
        """Whether ``value`` ranks within the best ``cut`` of ``rung_values`` (ties do)."""
        bar = self._bar(rung_values, cut)
        return bar is not None and self.direction.key(value) <= bar

    def _bar(self, rung_values: Sequence[float], cut: int) -> float | None:
        """The key of the ``cut``-th best of ``rung_values`` (None when ``cut <= 0``): a value
        ranks within the best ``cut`` iff its key is at most this."""
        if cut <= 0:
            return None
        keys = sorted(self.direction.key(v) for v in rung_values)
        return keys[min(cut, len(keys)) - 1]

    def promotions(
        self, records: Sequence[RungRecord], waiting: Collection[int], *, final: bool = False
    ) -> list[int]:
        """The waiting trials that rank within their rung's cut: highest rung first, then
        best first (ties: the earlier record).

        A trial waits at the highest rung it has a record at. The cut of a rung with ``n``
        records is ``floor(n / eta)``, or ``ceil(n / eta)`` when ``final``. Stop mode never
        pauses a trial, so it has none to promote.
        """
        if self.mode is AshaMode.STOP or not waiting:
            return []
        at: dict[int, int] = {}  # waiting trial -> the rung it waits at
        for rec in records:
            if rec.trial_number in waiting:
                at[rec.trial_number] = max(rec.rung, at.get(rec.trial_number, 0))
        out: list[int] = []
        for rung in sorted(set(at.values()), reverse=True):
            rows = [r for r in records if r.rung == rung]
            n = len(rows)
            cut = math.ceil(n / self.reduction_factor) if final else n // self.reduction_factor
            # One sort per rung, not one per waiting trial: a study in pause mode can hold
            # thousands of records at rung 0.
            bar = self._bar([r.value for r in rows], cut)
            if bar is None:
                continue
            keyed = ((self.direction.key(r.value), i, r.trial_number) for i, r in enumerate(rows))
            chosen = [k for k in keyed if k[0] <= bar and at.get(k[2]) == rung]
            out += [number for *_, number in sorted(chosen)]
        return out

    def __repr__(self) -> str:
        return (
            f"AshaScheduler(min_resource={self.min_resource}, "
            f"reduction_factor={self.reduction_factor}, max_resource={self.max_resource}, "
            f"direction={self.direction.value!r}, mode={self.mode.value!r}, "
            f"eager_top={self.eager_top})"
        )
