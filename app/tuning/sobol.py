"""Quasi-random search: a scrambled Sobol sequence mapped onto each hyperparameter's scale."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import qmc  # type: ignore[import-untyped]

from app.tuning.base import Sampler, TrialView
from app.tuning.space import SearchSpace


class SobolSampler(Sampler):
    """Trial ``index`` gets row ``index`` of a scrambled Sobol sequence, mapped by ``from_unit``.

    Sobol points fill the unit cube more evenly than independent draws (lower discrepancy),
    so a small round covers the space better. A choice takes ``values[floor(u * n)]``. The
    point depends only on ``seed``, the number of ranged dimensions and ``index``: no state.

    Args:
        seed: scrambles the sequence; the server may derive it from the study seed and round.
    """

    name = "sobol"
    label = "sobol (quasi-random)"
    help = "A scrambled Sobol sequence: covers the space more evenly than independent draws."
    needs_seed = True

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: got {seed!r}, allowed: an integer >= 0")
        self.seed = seed

    def point(self, dims: int, index: int) -> np.ndarray:
        """Row ``index`` (0-based) of the scrambled sequence in ``dims`` dimensions, in [0, 1)."""
        if index < 0:
            raise ValueError(f"index: got {index}, allowed: >= 0")
        engine = qmc.Sobol(d=dims, scramble=True, rng=np.random.default_rng(self.seed))
        # Drawing 2**m >= index + 1 rows keeps scipy's balance warning quiet; cost O(index).
        m = max(0, math.ceil(math.log2(index + 1)))
        return np.asarray(engine.random_base2(m)[index], dtype=float)

    def sample(
        self,
        space: SearchSpace,
        history: Sequence[TrialView],
        rng: np.random.Generator,
        *,
        index: int,
    ) -> dict[str, object]:
        if not space.ranged:
            return space.complete({})
        u = self.point(len(space.ranged), index)
        pairs = zip(space.ranged.items(), u, strict=True)
        draws = {name: d.from_unit(float(ui)) for (name, d), ui in pairs}
        return space.complete(draws)

    def __repr__(self) -> str:
        return f"SobolSampler(seed={self.seed})"
