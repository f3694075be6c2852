"""Discrete distributions: integer ranges, powers of two, and categorical choices.

On the unit scale each level (an integer, an exponent of two, a choice) owns a bin of width
``1 / n_levels``; ``to_unit`` gives the bin's centre and ``from_unit(u)`` the level of
``floor(u * n_levels)``, so a uniform ``u`` picks every level equally often.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from app.tuning.distributions import (
    DistKind,
    Distribution,
    Scalar,
    as_int,
    clip_unit,
    is_number,
)


@dataclass(frozen=True)
class IntegerDistribution(Distribution):
    """An inclusive integer range ``[low, high]``, sampled uniformly over ``levels()``."""

    low: int
    high: int

    def __post_init__(self) -> None:
        for arg in ("low", "high"):
            v = as_int(getattr(self, arg))
            if v is None:
                raise ValueError(f"{arg}: got {getattr(self, arg)!r}, allowed: an integer")
            object.__setattr__(self, arg, v)
        if self.low >= self.high:
            raise ValueError(f"low: got {self.low!r}, allowed: < high ({self.high!r})")

    @abstractmethod
    def levels(self) -> tuple[int, int]:
        """First and last level: the sampling scale's integers (values, or exponents of 2)."""

    @abstractmethod
    def value_at(self, level: int) -> int:
        """The value at an integer level."""

    @abstractmethod
    def level_of(self, v: int) -> float:
        """The sampling-scale coordinate of any positive integer (a level when it is one)."""

    def to_unit(self, v: object) -> float:
        """Bin centre ``(level - first + 0.5) / n_levels``, so ``from_unit`` inverts it."""
        iv = as_int(v)
        if iv is None:
            raise ValueError(f"value: got {v!r}, allowed: an integer")
        first, last = self.levels()
        return (self.level_of(iv) - first + 0.5) / (last - first + 1)

    def from_unit(self, u: float) -> int:
        first, last = self.levels()
        n = last - first + 1
        return self.value_at(first + min(int(math.floor(clip_unit(u) * n)), n - 1))

    def grid(self, n: int) -> list[Scalar]:
        first, last = self.levels()
        levels = [int(math.floor(first + u * (last - first) + 0.5)) for u in self._units(n)]
        return [self.value_at(lv) for lv in dict.fromkeys(levels)]

    def to_dict(self) -> dict[str, object]:
        return {"dist": self.kind.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class IntUniform(IntegerDistribution):
    """Every integer in ``[low, high]`` equally likely (hidden units 50..100, layers 2..4)."""

    kind: ClassVar[DistKind] = DistKind.INT_UNIFORM

    def levels(self) -> tuple[int, int]:
        return self.low, self.high

    def value_at(self, level: int) -> int:
        return level

    def level_of(self, v: int) -> float:
        return float(v)

    def contains(self, v: object) -> bool:
        iv = as_int(v)
        return iv is not None and self.low <= iv <= self.high


@dataclass(frozen=True)
class LogInt(IntegerDistribution):
    """``v = 2**e`` with the exponent ``e`` uniform over the powers of two in ``[low, high]``.

    Batch sizes 16..512 give 16, 32, ..., 512 each with probability 1/6. The range must hold
    at least two powers of two.
    """

    kind: ClassVar[DistKind] = DistKind.LOG_INT

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low < 1:
            raise ValueError(f"low: got {self.low!r}, allowed: >= 1 for powers of two")
        first, last = self.levels()
        if last <= first:
            raise ValueError(
                f"high: got {self.high!r}, allowed: a range [low, high] holding at least two "
                f"powers of two (low {self.low!r})"
            )

    def levels(self) -> tuple[int, int]:
        # Exact integer arithmetic: ceil(log2 low) and floor(log2 high) without float error.
        return (self.low - 1).bit_length(), self.high.bit_length() - 1

    def value_at(self, level: int) -> int:
        return int(2**level)

    def level_of(self, v: int) -> float:
        return math.log2(v) if v > 0 else -math.inf

    def contains(self, v: object) -> bool:
        iv = as_int(v)
        return iv is not None and iv > 0 and iv & (iv - 1) == 0 and self.low <= iv <= self.high


def _same(a: object, b: object) -> bool:
    # True == 1 in Python; a choice between 1 and true must not conflate them.
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


@dataclass(frozen=True)
class Choice(Distribution):
    """One of ``values`` (JSON scalars), each equally likely; the unit scale is ordinal."""

    values: tuple[Scalar, ...]
    kind: ClassVar[DistKind] = DistKind.CHOICE

    def __post_init__(self) -> None:
        if isinstance(self.values, str | bytes) or not isinstance(self.values, Sequence):
            raise ValueError(f"values: got {self.values!r}, allowed: a list of scalars")
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ValueError("values: got [], allowed: at least one value")
        for i, v in enumerate(self.values):
            if not (isinstance(v, str | bool) or is_number(v)):
                raise ValueError(f"values: got {v!r}, allowed: strings, finite numbers, booleans")
            if any(_same(v, w) for w in self.values[:i]):
                raise ValueError(f"values: got {v!r} twice, allowed: distinct values")

    def index(self, v: object) -> int:
        """Position of ``v`` in ``values``; ValueError when absent."""
        for i, c in enumerate(self.values):
            if _same(c, v):
                return i
        raise ValueError(f"value: got {v!r}, allowed: one of {list(self.values)!r}")

    def to_unit(self, v: object) -> float:
        return (self.index(v) + 0.5) / len(self.values)

    def from_unit(self, u: float) -> Scalar:
        n = len(self.values)
        return self.values[min(int(math.floor(clip_unit(u) * n)), n - 1)]

    def grid(self, n: int) -> list[Scalar]:
        """Every value, whatever ``n``: a grid that skipped a category could never try it."""
        self._units(n)
        return list(self.values)

    def contains(self, v: object) -> bool:
        return any(_same(c, v) for c in self.values)

    def to_dict(self) -> dict[str, object]:
        return {"dist": self.kind.value, "values": list(self.values)}
