"""Small bases every search algorithm builds on: trial views, enums and two ABCs.

Algorithms never see ORM rows. A glue module in the server turns stored trials into
:class:`TrialView` objects and stored rung records into :class:`RungRecord` objects, calls an
algorithm, and persists whatever it returns. Every decision is a pure function of those
inputs plus the algorithm's own settings, so a server restart changes nothing.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from app.tuning.space import SearchSpace


class TrialStatus(str, Enum):
    """What the algorithms need to know about a trial's state (the server maps its own)."""

    RUNNING = "running"
    COMPLETED = "completed"
    PRUNED = "pruned"
    FAILED = "failed"
    OTHER = "other"


class Direction(str, Enum):
    """Whether the objective is minimised (a loss) or maximised (an accuracy)."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"

    def key(self, value: float) -> float:
        """A sort key, smaller = better: ``v`` (minimise) or ``-v`` (maximise); NaN -> +inf.

        NaN (a diverged trial) sorts last in both directions.
        """
        if math.isnan(value):
            return math.inf
        return value if self is Direction.MINIMIZE else -value

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``; NaN is worse than any number."""
        return self.key(a) < self.key(b)


class Decision(str, Enum):
    """A scheduler's answer to one report.

    PAUSE parks the trial: it checkpoints and waits until :meth:`Scheduler.promotions` names
    it (the server then queues it again) or the study ends (then it ends as pruned).
    """

    CONTINUE = "continue"
    STOP = "stop"
    PAUSE = "pause"


@dataclass(frozen=True)
class TrialView:
    """A stored trial as the algorithms see it.

    Attributes:
        number: the trial's number in its study (unique, stable).
        round: the coarse-to-fine round the trial belongs to (0 = the first).
        state: see :class:`TrialStatus`.
        hparams: the trial's complete hyperparameters, name -> value.
        value: the final objective value, None until the trial completes.
        intermediate: resource (epoch) -> objective value reported at that resource.
    """

    number: int
    round: int
    state: TrialStatus
    hparams: Mapping[str, object]
    value: float | None = None
    intermediate: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RungRecord:
    """One trial's objective value at one ASHA rung; the server stores one row per record."""

    trial_number: int
    rung: int
    value: float


@dataclass(frozen=True)
class DecisionPoints:
    """The epoch ends at which a scheduler may answer something other than CONTINUE.

    A worker sends its report at once at these (its reports are otherwise batched by time),
    so that a stop or a pause takes effect at the epoch it was decided for, not one report
    interval later: a small network trains several epochs in one interval. ``epochs`` lists
    them; ``every_from`` adds every epoch from that one on.
    """

    epochs: tuple[int, ...] = ()
    every_from: int | None = None

    def includes(self, epoch: int) -> bool:
        return epoch in self.epochs or (self.every_from is not None and epoch >= self.every_from)


@dataclass(frozen=True)
class SchedulerStep:
    """A scheduler's answer: the decision plus records the server must persist."""

    decision: Decision
    new_records: tuple[RungRecord, ...] = ()


def completed_trials(trials: Sequence[TrialView]) -> list[TrialView]:
    """The completed trials with a finite final value, in the given order."""
    return [
        t
        for t in trials
        if t.state is TrialStatus.COMPLETED and t.value is not None and math.isfinite(t.value)
    ]


def ranked(trials: Sequence[TrialView], direction: Direction) -> list[TrialView]:
    """:func:`completed_trials` best first; ties broken by the lower trial number."""
    return sorted(
        completed_trials(trials),
        key=lambda t: (direction.key(float(t.value)), t.number),  # type: ignore[arg-type]
    )


def trial_rng(seed: int, trial_number: int) -> np.random.Generator:
    """The generator a trial's hyperparameters are drawn with: ``default_rng([seed, number])``.

    Deriving it from the study seed and the trial number (both stored) instead of one
    long-lived generator makes a draw independent of restarts and of the order in which
    trials were created.
    """
    return np.random.default_rng([seed, trial_number])


class Sampler(ABC):
    """Proposes hyperparameters for a new trial."""

    @abstractmethod
    def sample(
        self,
        space: SearchSpace,
        history: Sequence[TrialView],
        rng: np.random.Generator,
        *,
        index: int,
    ) -> dict[str, object]:
        """Return a complete hyperparameter dict (ranged draws plus the fixed values).

        Args:
            space: the round's search space.
            history: the study's stored trials (any state, any round).
            rng: a seeded generator, e.g. :func:`trial_rng`; the only source of randomness.
            index: the trial's position in its round (0, 1, ...), used by deterministic
                samplers (grid, Sobol).
        """


class Scheduler(ABC):
    """Decides, at each report, whether a running trial goes on."""

    #: Whether ``on_report`` may answer PAUSE; only then does the server ask ``promotions``.
    pauses: bool = False

    def decision_points(self) -> DecisionPoints:
        """Where ``on_report`` may stop or pause a trial: every epoch unless said otherwise."""
        return DecisionPoints(every_from=1)

    @abstractmethod
    def on_report(
        self,
        trial: TrialView,
        resource: int,
        value: float,
        history: Sequence[TrialView],
        records: Sequence[RungRecord],
    ) -> SchedulerStep:
        """Decide on one report of ``value`` at ``resource`` (epochs) by ``trial``.

        Args:
            trial: the reporting trial.
            resource: epochs trained so far.
            value: the objective at that resource.
            history: the study's stored trials.
            records: every rung record stored so far for the study, in insertion order.
        """

    def promotions(
        self, records: Sequence[RungRecord], waiting: Collection[int], *, final: bool = False
    ) -> list[int]:
        """Of the ``waiting`` trials (numbers of trials this scheduler PAUSEd), those to resume
        now, in order; ``final``: no new trial will start, this is their last chance.

        A scheduler that never answers PAUSE has nothing to promote.
        """
        return []
