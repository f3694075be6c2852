"""Random search: the notes' default, every hyperparameter drawn independently on its scale."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.tuning.base import Sampler, TrialView
from app.tuning.space import SearchSpace


class RandomSampler(Sampler):
    """Independent draws, ``v = from_unit(u)`` with ``u ~ U[0, 1)`` per ranged hyperparameter.

    With ``N`` trials every hyperparameter gets ``N`` distinct values, where a grid of the same
    size gives each only ``N**(1/d)``; that is why random beats grid when few of the ``d``
    hyperparameters matter. Stateless: the trial's generator carries all the randomness.
    """

    name = "random"
    label = "random (recommended by the notes)"
    help = "Every hyperparameter drawn independently on its own scale."

    def sample(
        self,
        space: SearchSpace,
        history: Sequence[TrialView],
        rng: np.random.Generator,
        *,
        index: int,
    ) -> dict[str, object]:
        return space.sample(rng)

    def __repr__(self) -> str:
        return "RandomSampler()"
