"""The course's first framework example as a model: minimise J(w) = c0 w^2 + c1 w + c2.

The coefficients are the data (one row ``[c0, c1, c2]``), exactly as the notes feed them
through a placeholder; ``w`` starts at 0. Plain gradient descent at learning rate 0.01 gives
w = 0.1 after one step and 4.99999 after 1000 (the notes' printout).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


class QuadraticModel:
    """One parameter ``w`` (shape (1,)); the "batch" x is the coefficient row, shape (1, 3)."""

    def __init__(self, dtype: np.dtype[np.floating] | type[np.floating] = np.float32) -> None:
        self.dtype = np.dtype(dtype)
        self.params: dict[str, NDArray[np.floating]] = {"w": np.zeros(1, dtype=self.dtype)}
        self.grads: dict[str, NDArray[np.floating]] = {"w": np.zeros(1, dtype=self.dtype)}
        self.buffers: dict[str, NDArray[np.floating]] = {}

    def cost(self, x: NDArray[np.floating]) -> float:
        """J(w) = c0 w^2 + c1 w + c2 for the coefficient row ``x[0]``."""
        c0, c1, c2 = (float(c) for c in x[0])
        w = float(self.params["w"][0])
        return c0 * w * w + c1 * w + c2

    def loss_and_grads(
        self, x: NDArray[np.floating], y: NDArray[np.integer], *, l2: float
    ) -> tuple[float, NDArray[np.floating]]:
        """Returns J(w) + l2/2 w^2 and fills ``grads["w"]`` with dJ/dw = 2 c0 w + c1 + l2 w."""
        c0, c1, _ = (float(c) for c in x[0])
        w = float(self.params["w"][0])
        self.grads["w"][0] = 2.0 * c0 * w + c1 + l2 * w
        return self.cost(x) + 0.5 * l2 * w * w, np.empty((len(x), 0), dtype=self.dtype)

    def evaluate(
        self, x: NDArray[np.floating], y: NDArray[np.integer], *, batch_size: int = 1024
    ) -> tuple[float, float]:
        """(J(w), nan): a cost has no accuracy."""
        return self.cost(x), float("nan")

    def z_stats(self) -> dict[str, float]:
        return {}

    def set_keep_prob(self, p: float) -> None:
        """No dropout in a one-parameter model."""

    def set_bn_momentum(self, m: float) -> None:
        """No batch norm in a one-parameter model."""

    def state_dict(self) -> dict[str, NDArray[np.floating]]:
        return {"w": self.params["w"].copy()}

    def load_state_dict(self, state: dict[str, NDArray[np.floating]]) -> None:
        if set(state) != {"w"} or np.shape(state["w"]) != (1,):
            raise ValueError(f"quadratic state must hold w of shape (1,), got {sorted(state)}")
        self.params["w"][...] = state["w"]

    def __repr__(self) -> str:
        return "QuadraticModel(J(w) = c0 w^2 + c1 w + c2)"
