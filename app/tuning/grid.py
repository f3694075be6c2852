"""Grid search: the cartesian product of per-hyperparameter grids, in a fixed order."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from app.tuning.base import Sampler, Setting, TrialView
from app.tuning.space import Scalar, SearchSpace


class GridExhausted(LookupError):
    """Every grid point has been handed out; the server stops feeding the round."""

    def __init__(self, index: int, size: int) -> None:
        super().__init__(f"index: got {index}, allowed: 0 <= index < {size} (grid exhausted)")
        self.index = index
        self.size = size


class GridSampler(Sampler):
    """Point ``index`` of ``itertools.product(*(dist.grid(points_per_dim) ...))``.

    The order is the product's (the last ranged hyperparameter varies fastest), so the trial's
    position in its round picks its point and no state is needed. A choice contributes all of
    its values whatever ``points_per_dim``; an integer range de-duplicates its rounded points.

    Args:
        points_per_dim: points per numeric hyperparameter, evenly spaced on its sampling
            scale (log for a learning rate), ends included.
    """

    name = "grid"
    label = "grid"
    help = "Every combination of evenly spaced values of each hyperparameter, in a fixed order."
    settings = (
        Setting(
            "points_per_dim",
            "int",
            3,
            "values per numeric hyperparameter, evenly spaced on its scale, ends included",
            low=1,
        ),
    )

    def __init__(self, points_per_dim: int = 3) -> None:
        self.points_per_dim = self._check("points_per_dim", points_per_dim)

    def axes(self, space: SearchSpace) -> dict[str, list[Scalar]]:
        """Each ranged hyperparameter's grid values."""
        return {name: d.grid(self.points_per_dim) for name, d in space.ranged.items()}

    def size(self, space: SearchSpace) -> int:
        """The number of grid points: the product of the axes' lengths (1 with no range)."""
        return math.prod(len(v) for v in self.axes(space).values())

    def distinct_values(self, space: SearchSpace) -> dict[str, int]:
        """How many distinct values the grid tries per hyperparameter.

        ``size(space)`` trials of random search would try ``size(space)`` distinct values of
        every one of them (the notes' argument for random over grid).
        """
        return {name: len(values) for name, values in self.axes(space).items()}

    def sample(
        self,
        space: SearchSpace,
        history: Sequence[TrialView],
        rng: np.random.Generator,
        *,
        index: int,
    ) -> dict[str, object]:
        """The ``index``-th product point; :class:`GridExhausted` past the end."""
        axes = self.axes(space)
        size = math.prod(len(v) for v in axes.values())
        if index < 0 or index >= size:
            raise GridExhausted(index, size)
        # Mixed-radix digits of index, last axis fastest, as itertools.product orders them.
        draws: dict[str, object] = {}
        rest = index
        for name in reversed(list(axes)):
            rest, digit = divmod(rest, len(axes[name]))
            draws[name] = axes[name][digit]
        return space.complete(draws)

    def __repr__(self) -> str:
        return f"GridSampler(points_per_dim={self.points_per_dim})"
