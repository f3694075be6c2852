"""One hyperparameter's range and the scale it is sampled on (course notes, week 3).

Every distribution maps a value to a unit coordinate on its SAMPLING scale and back:
``to_unit``/``from_unit``. Drawing ``u ~ U[0, 1)`` and returning ``from_unit(u)`` is the draw
the notes describe (``r = -4 * rand(); alpha = 10**r``), and the same maps serve grids, Sobol
points, TPE and coarse-to-fine narrowing. Values outside the range map outside [0, 1].
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

import numpy as np

Scalar = str | int | float | bool


class DistKind(str, Enum):
    """The ``"dist"`` key of a distribution's JSON form."""

    UNIFORM = "uniform"
    LOG_UNIFORM = "log_uniform"
    ONE_MINUS_LOG_UNIFORM = "one_minus_log_uniform"
    INT_UNIFORM = "int_uniform"
    LOG_INT = "log_int"
    CHOICE = "choice"


def is_number(v: object) -> bool:
    """A finite int or float (bool excluded: JSON ``true`` is not a bound)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def as_int(v: object) -> int | None:
    """``v`` as an int when it is an integral finite number (16 or 16.0), else None."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _finite(arg: str, v: object) -> float:
    if not is_number(v):
        raise ValueError(f"{arg}: got {v!r}, allowed: a finite number")
    return float(v)  # type: ignore[arg-type]


def clip_unit(u: float) -> float:
    return min(1.0, max(0.0, float(u)))


class Distribution(ABC):
    """Base of the frozen distribution dataclasses."""

    kind: ClassVar[DistKind]

    def sample(self, rng: np.random.Generator) -> Scalar:
        """One draw: ``from_unit(u)`` with ``u ~ U[0, 1)``, i.e. uniform on the sampling scale."""
        return self.from_unit(float(rng.random()))

    @abstractmethod
    def to_unit(self, v: object) -> float:
        """The value's coordinate on the sampling scale, 0 at the low end and 1 at the high end."""

    @abstractmethod
    def from_unit(self, u: float) -> Scalar:
        """The value at unit coordinate ``u`` (clipped to [0, 1]); inverse of :meth:`to_unit`."""

    @abstractmethod
    def grid(self, n: int) -> list[Scalar]:
        """``n`` points evenly spaced on the sampling scale, ends included (one: the middle)."""

    @abstractmethod
    def contains(self, v: object) -> bool:
        """Whether ``v`` is a value this distribution can produce."""

    @abstractmethod
    def to_dict(self) -> dict[str, object]:
        """The JSON form; :func:`dist_from_dict` inverts it."""

    def _units(self, n: int) -> list[float]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n: got {n!r}, allowed: an integer >= 1")
        return [0.5] if n == 1 else [float(u) for u in np.linspace(0.0, 1.0, n)]


@dataclass(frozen=True)
class ContinuousDistribution(Distribution):
    """``low <= v <= high`` on the sampling scale ``s``.

    ``u = (s(v) - s(low)) / (s(high) - s(low))`` and ``v = s^-1(s(low) + u (s(high) - s(low)))``.
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", _finite("low", self.low))
        object.__setattr__(self, "high", _finite("high", self.high))
        if self.low >= self.high:
            raise ValueError(f"low: got {self.low!r}, allowed: < high ({self.high!r})")

    @abstractmethod
    def _s(self, v: float) -> float: ...

    @abstractmethod
    def _s_inv(self, s: float) -> float: ...

    def to_unit(self, v: object) -> float:
        lo, hi = self._s(self.low), self._s(self.high)
        return (self._s(_finite("value", v)) - lo) / (hi - lo)

    def from_unit(self, u: float) -> float:
        lo, hi = self._s(self.low), self._s(self.high)
        # Clipping absorbs the last-bit error of 10**log10(x), so draws never leave the range.
        return min(self.high, max(self.low, self._s_inv(lo + clip_unit(u) * (hi - lo))))

    def grid(self, n: int) -> list[Scalar]:
        return [self.from_unit(u) for u in self._units(n)]

    def contains(self, v: object) -> bool:
        return is_number(v) and self.low <= v <= self.high  # type: ignore[operator]

    def to_dict(self) -> dict[str, object]:
        return {"dist": self.kind.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Uniform(ContinuousDistribution):
    """``v = low + u * (high - low)``."""

    kind: ClassVar[DistKind] = DistKind.UNIFORM

    def _s(self, v: float) -> float:
        return v

    def _s_inv(self, s: float) -> float:
        return s


@dataclass(frozen=True)
class LogUniform(ContinuousDistribution):
    """``v = 10**r`` with ``r ~ U[log10 low, log10 high]``; ``low > 0`` (learning rate)."""

    kind: ClassVar[DistKind] = DistKind.LOG_UNIFORM

    def __post_init__(self) -> None:
        if is_number(self.low) and self.low <= 0:
            raise ValueError(f"low: got {self.low!r}, allowed: > 0 on a log scale")
        super().__post_init__()

    def _s(self, v: float) -> float:
        return math.log10(v) if v > 0 else -math.inf

    def _s_inv(self, s: float) -> float:
        return float(10.0**s)


@dataclass(frozen=True)
class OneMinusLogUniform(ContinuousDistribution):
    """``v = 1 - 10**r`` with ``r ~ U[log10(1 - high), log10(1 - low)]``; ``0 < low < high < 1``.

    For momentum and Adam's betas: 0.9 -> 0.999 is averaging over ~10 -> ~1000 steps, so equal
    effort per decade of ``1 - beta``. The unit coordinate ``u = s(v)`` uses
    ``s = -log10(1 - v)``, so it grows with ``v`` like every other distribution's.
    """

    kind: ClassVar[DistKind] = DistKind.ONE_MINUS_LOG_UNIFORM

    def __post_init__(self) -> None:
        for arg in ("low", "high"):
            v = getattr(self, arg)
            if is_number(v) and not 0.0 < v < 1.0:
                raise ValueError(f"{arg}: got {v!r}, allowed: 0 < {arg} < 1 for 1 - 10**r")
        super().__post_init__()

    def _s(self, v: float) -> float:
        return -math.log10(1.0 - v) if v < 1 else math.inf

    def _s_inv(self, s: float) -> float:
        return float(1.0 - 10.0 ** (-s))
