"""Element-wise layers: ReLU, tanh, sigmoid and inverted dropout (see :mod:`trainer.layers`
for the conventions every layer follows)."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from trainer.config import HPARAM_SPECS
from trainer.layers import Array, Layer


class ReLU(Layer):
    """``y = max(x, 0)``; ``dx = dy * [x > 0]`` (the kink at 0 gets gradient 0)."""

    def __init__(self, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self._mask: Array | None = None

    def forward(self, x: Array, *, training: bool) -> Array:
        self._check(x)
        if not training:
            return np.maximum(x, 0)
        # A 0/1 mask in the float dtype: building it and multiplying is faster than
        # np.maximum, and the backward becomes one plain multiply.
        mask = np.greater(x, 0, out=self._buf("mask", x.shape))
        self._mask = mask
        return np.multiply(x, mask, out=self._buf("y", x.shape))

    def backward(self, dy: Array) -> Array:
        if self._mask is None:
            raise RuntimeError(f"{self!r}: backward before a training forward")
        return np.multiply(dy, self._mask, out=self._buf("dx", dy.shape))

    def __repr__(self) -> str:
        return "ReLU()"


class Tanh(Layer):
    """``y = tanh(x)``; ``dx = dy * (1 - y**2)``."""

    def __init__(self, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self._y: Array | None = None

    def forward(self, x: Array, *, training: bool) -> Array:
        self._check(x)
        if not training:
            return np.tanh(x)
        self._y = np.tanh(x, out=self._buf("y", x.shape))
        return self._y

    def backward(self, dy: Array) -> Array:
        if self._y is None:
            raise RuntimeError(f"{self!r}: backward before a training forward")
        dx = np.multiply(self._y, self._y, out=self._buf("dx", dy.shape))
        np.subtract(1, dx, out=dx)
        return np.multiply(dx, dy, out=dx)

    def __repr__(self) -> str:
        return "Tanh()"


def sigmoid(x: Array, out: Array | None = None) -> Array:
    """Logistic ``1 / (1 + exp(-x))`` without overflow: with ``e = exp(-|x|)`` (always <= 1),
    ``sigmoid = 1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` for ``x < 0``, so tiny outputs
    keep full relative precision."""
    e = np.exp(-np.abs(x))
    y = np.add(e, 1, out=out)
    np.reciprocal(y, out=y)
    np.multiply(y, e, out=y, where=x < 0)
    return y


class Sigmoid(Layer):
    """``y = sigmoid(x)`` (numerically stable); ``dx = dy * y * (1 - y)``."""

    def __init__(self, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self._y: Array | None = None

    def forward(self, x: Array, *, training: bool) -> Array:
        self._check(x)
        if not training:
            return sigmoid(x)
        self._y = sigmoid(x, out=self._buf("y", x.shape))
        return self._y

    def backward(self, dy: Array) -> Array:
        if self._y is None:
            raise RuntimeError(f"{self!r}: backward before a training forward")
        dx = np.subtract(1, self._y, out=self._buf("dx", dy.shape))
        np.multiply(dx, self._y, out=dx)
        return np.multiply(dx, dy, out=dx)

    def __repr__(self) -> str:
        return "Sigmoid()"


_LEVELS = 1 << 16  # resolution of the dropout draw


class Dropout(Layer):
    """Inverted dropout: ``y = x * mask / keep_prob`` with ``mask ~ Bernoulli(keep_prob)``
    drawn from ``rng`` per training forward, so ``E[y] = x`` and eval needs no rescaling;
    ``dx = dy * mask / keep_prob``. ``keep_prob`` is realised to a resolution of ``2**-16``.

    The identity (returning its input object, drawing nothing) in eval mode and whenever
    ``keep_prob == 1``. ``keep_prob`` may change between steps (it is adjustable on a running
    trial).
    """

    def __init__(
        self, keep_prob: float, *, rng: np.random.Generator, dtype: DTypeLike = np.float32
    ) -> None:
        super().__init__(dtype)
        self.keep_prob = keep_prob
        self.rng = rng
        self._mask: Array | None = None
        self._ready = False

    @property
    def keep_prob(self) -> float:
        """Probability of keeping a unit, in (0, 1]."""
        return self._keep_prob

    @keep_prob.setter
    def keep_prob(self, value: float) -> None:
        self._keep_prob = float(HPARAM_SPECS["keep_prob"].check(value))

    def forward(self, x: Array, *, training: bool) -> Array:
        self._check(x)
        if not training:
            return x  # leaves the training state alone, like every other layer
        p = self._keep_prob
        if p >= 1.0:
            self._mask, self._ready = None, True
            return x
        # 16-bit uniform integers cost a third of float draws; u < t keeps a unit with
        # probability t / 2**16 (within 1e-5 of keep_prob) and the scale uses that exact
        # probability, so E[mask] = 1 still holds exactly.
        t = max(1, round(p * _LEVELS))
        u = self.rng.integers(0, _LEVELS, size=x.shape, dtype=np.uint16)
        mask = np.less(u, t, out=self._buf("mask", x.shape))
        mask *= _LEVELS / t
        self._mask, self._ready = mask, True
        return np.multiply(x, mask, out=self._buf("y", x.shape))

    def backward(self, dy: Array) -> Array:
        if not self._ready:
            raise RuntimeError(f"{self!r}: backward before a training forward")
        if self._mask is None:
            return dy
        return np.multiply(dy, self._mask, out=self._buf("dx", dy.shape))

    def __repr__(self) -> str:
        return f"Dropout(keep_prob={self._keep_prob:g})"
