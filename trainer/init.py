"""Weight initialisers: He for ReLU, Xavier for tanh, drawn from an explicit Generator.

Both draw ``W ~ N(0, scale / n_in)`` with shape ``(n_in, n_out)`` so that ``x @ W`` keeps the
variance of ``z`` near that of ``x`` (course, week 1 "weight initialization for deep networks").
Biases are not drawn here: they start at zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from trainer.config import Init

Initializer = Callable[[int, int, np.random.Generator, DTypeLike], NDArray[Any]]


def _normal(
    scale: float, n_in: int, n_out: int, rng: np.random.Generator, dtype: DTypeLike
) -> NDArray[Any]:
    if n_in < 1 or n_out < 1:
        raise ValueError(f"layer sizes must be >= 1, got n_in={n_in}, n_out={n_out}")
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    # Drawn directly in the target dtype (no float64 detour); the python-float scale keeps it.
    w: NDArray[Any]
    if dt == np.float32:
        w = rng.standard_normal((n_in, n_out), dtype=np.float32)
    else:
        w = rng.standard_normal((n_in, n_out), dtype=np.float64)
    w *= math.sqrt(scale / n_in)
    return w


def he(
    n_in: int, n_out: int, rng: np.random.Generator, dtype: DTypeLike = np.float32
) -> NDArray[Any]:
    """He initialisation, for ReLU layers: ``W ~ N(0, 2 / n_in)``.

    Args:
        n_in: fan-in, the number of inputs of the layer.
        n_out: the number of units of the layer.
        rng: the trial's seeded generator (the only source of randomness).
        dtype: float32 or float64.

    Returns:
        W: (n_in, n_out) array of ``dtype``.
    """
    return _normal(2.0, n_in, n_out, rng, dtype)


def xavier(
    n_in: int, n_out: int, rng: np.random.Generator, dtype: DTypeLike = np.float32
) -> NDArray[Any]:
    """Xavier initialisation as the course gives it for tanh: ``W ~ N(0, 1 / n_in)``.

    Args and Returns as :func:`he`.
    """
    return _normal(1.0, n_in, n_out, rng, dtype)


_INITIALIZERS: dict[Init, Initializer] = {Init.HE: he, Init.XAVIER: xavier}


def initializer(name: Init | str) -> Initializer:
    """The initialiser called ``name`` (``"he"`` or ``"xavier"``).

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    try:
        return _INITIALIZERS[Init(name)]
    except ValueError:
        known = ", ".join(i.value for i in Init)
        raise ValueError(f"unknown init {name!r}; known: {known}") from None
