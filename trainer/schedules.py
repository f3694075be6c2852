"""Learning-rate decay schedules: the rate to train epoch ``epoch_num`` with.

``epoch_num`` is the course's 1-based epoch number: the first pass over the data is epoch 1.
Every schedule is a small frozen object, ``schedule(lr0, epoch_num) -> lr``, so the trainer
can rebuild it from the trial's hyperparameters whenever ``lr_decay``, ``decay_schedule`` or
``decay_every`` change mid-training.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from trainer.config import HPARAM_SPECS, DecaySchedule


@dataclass(frozen=True)
class Schedule(ABC):
    """A decay rule with its own parameters.

    Attributes:
        lr_decay: the decay rate, factor or ``k`` (see each subclass).
        decay_every: epochs between drops (the step schedule only).
    """

    KIND: ClassVar[DecaySchedule]

    lr_decay: float = 0.0
    decay_every: int = 10

    def __call__(self, lr0: float, epoch_num: int) -> float:
        """The learning rate of epoch ``epoch_num`` (1-based) starting from ``lr0``.

        Raises:
            ValueError: ``lr0`` not a finite number > 0, or ``epoch_num`` not an int >= 1.
        """
        if not (math.isfinite(lr0) and lr0 > 0.0):
            raise ValueError(f"lr0: got {lr0!r}, allowed: a finite number > 0")
        integral = isinstance(epoch_num, numbers.Integral) and not isinstance(epoch_num, bool)
        if not integral or epoch_num < 1:
            raise ValueError(f"epoch_num: got {epoch_num!r}, allowed: an integer >= 1")
        return float(self._rate(float(lr0), int(epoch_num)))

    @abstractmethod
    def _rate(self, lr0: float, epoch_num: int) -> float:
        """The formula, on checked arguments."""

    @property
    def hyperparameters(self) -> dict[str, object]:
        """Enough to rebuild this schedule with :func:`make_schedule`."""
        return {
            "decay_schedule": self.KIND.value,
            "lr_decay": self.lr_decay,
            "decay_every": self.decay_every,
        }


@dataclass(frozen=True)
class NoDecay(Schedule):
    """``lr = lr0`` at every epoch."""

    KIND = DecaySchedule.NONE

    def _rate(self, lr0: float, epoch_num: int) -> float:
        return lr0


@dataclass(frozen=True)
class InverseTimeDecay(Schedule):
    """``lr = lr0 / (1 + lr_decay * epoch_num)``; ``lr_decay`` is the decay rate, >= 0."""

    KIND = DecaySchedule.INVERSE_TIME

    def _rate(self, lr0: float, epoch_num: int) -> float:
        return lr0 / (1.0 + self.lr_decay * epoch_num)


@dataclass(frozen=True)
class ExponentialDecay(Schedule):
    """``lr = lr0 * lr_decay ** epoch_num``; ``lr_decay`` is a factor in (0, 1], e.g. 0.95."""

    KIND = DecaySchedule.EXPONENTIAL

    def _rate(self, lr0: float, epoch_num: int) -> float:
        return lr0 * self.lr_decay**epoch_num


@dataclass(frozen=True)
class StepDecay(Schedule):
    """``lr = lr0 * lr_decay ** floor((epoch_num - 1) / decay_every)``.

    The notes' "discrete staircase": the first ``decay_every`` epochs (1..decay_every) train
    at ``lr0`` itself, and the rate drops by the factor ``lr_decay`` in (0, 1] at the start of
    epochs ``decay_every + 1``, ``2 * decay_every + 1``, ... We count from ``epoch_num - 1`` so
    the first drop comes after ``decay_every`` full epochs, not one epoch early.
    """

    KIND = DecaySchedule.STEP

    def _rate(self, lr0: float, epoch_num: int) -> float:
        return lr0 * self.lr_decay ** ((epoch_num - 1) // self.decay_every)


@dataclass(frozen=True)
class SqrtDecay(Schedule):
    """``lr = lr0 * k / sqrt(epoch_num)`` with ``k = lr_decay`` > 0."""

    KIND = DecaySchedule.SQRT

    def _rate(self, lr0: float, epoch_num: int) -> float:
        return lr0 * self.lr_decay / math.sqrt(epoch_num)


_CLASSES: dict[DecaySchedule, type[Schedule]] = {
    cls.KIND: cls for cls in (NoDecay, InverseTimeDecay, ExponentialDecay, StepDecay, SqrtDecay)
}


def make_schedule(
    name: str | DecaySchedule, lr_decay: float = 0.0, decay_every: int = 10
) -> Schedule:
    """Build the schedule ``name`` (a :class:`~trainer.config.DecaySchedule` value).

    Args:
        name: ``"none"``, ``"inverse_time"``, ``"exponential"``, ``"step"`` or ``"sqrt"``.
        lr_decay: decay rate (inverse_time, >= 0), factor (exponential and step, in (0, 1])
            or ``k`` (sqrt, > 0); ignored by ``"none"``.
        decay_every: epochs between drops of the step schedule, an integer >= 1.

    Raises:
        ValueError: naming the argument (``decay_schedule``, ``lr_decay`` or ``decay_every``)
            and its allowed values.
    """
    try:
        kind = DecaySchedule(name)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in DecaySchedule)
        raise ValueError(f"decay_schedule: got {name!r}, allowed: one of {allowed}") from None
    lr_decay = float(HPARAM_SPECS["lr_decay"].check(lr_decay))
    decay_every = int(HPARAM_SPECS["decay_every"].check(decay_every))
    if kind in (DecaySchedule.EXPONENTIAL, DecaySchedule.STEP) and not 0.0 < lr_decay <= 1.0:
        raise ValueError(
            f"lr_decay: got {lr_decay!r}, allowed: a factor in (0, 1] for {kind.value!r}"
        )
    if kind is DecaySchedule.SQRT and lr_decay <= 0.0:
        raise ValueError(f"lr_decay: got {lr_decay!r}, allowed: k > 0 for 'sqrt'")
    return _CLASSES[kind](lr_decay=lr_decay, decay_every=decay_every)
