"""Finite-difference gradient checks in float64 (the tests' trusted reference).

A layer ``y = f(x)`` is checked through the scalar ``s(x) = sum(f(x) * g)`` with a fixed random
``g``: its gradient is exactly ``backward(g)``, so one scalar checks the whole vector-Jacobian
product (cs231n / micrograd style).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trainer.layers import Layer

Array = NDArray[Any]


def numerical_grad(f: Callable[[Array], float], x: Array, eps: float = 1e-6) -> Array:
    """Centred differences ``df/dx_i ~ (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``.

    Truncation error is ``O(eps**2)``; with ``eps = 1e-6`` in float64 the round-off,
    about ``1e-16 * |f| / eps``, dominates at ~1e-10.

    Args:
        f: scalar function of ``x``; it must read ``x`` itself (``x`` is perturbed in place,
            one entry at a time, and restored exactly afterwards).
        x: float64 array of any shape.
        eps: the step.

    Returns:
        float64 array shaped like ``x``.

    Raises:
        TypeError: ``x`` is not float64 (a 1e-6 step is below float32 resolution).
    """
    if x.dtype != np.float64:
        raise TypeError(f"gradient checks need float64, got {x.dtype}")
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        f_plus = f(x)
        x[idx] = old - eps
        f_minus = f(x)
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def rel_error(a: Array, b: Array, floor: float = 1e-12) -> float:
    """Worst disagreement scaled by the gradient's size:
    ``max_i |a_i - b_i| / max(floor, max_i (|a_i| + |b_i|))``.

    Scaling by the whole array rather than per element keeps entries that are exactly zero
    analytically (finite differences give ~1e-11 there) from reporting an error of 1; ``floor``
    keeps an all-zero pair at 0 instead of 0/0. 0 means identical, ~1 means unrelated.
    """
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"shapes differ: {a64.shape} vs {b64.shape}")
    if a64.size == 0:
        return 0.0
    scale = max(floor, float(np.max(np.abs(a64) + np.abs(b64))))
    return float(np.max(np.abs(a64 - b64))) / scale


def check_params(
    loss: Callable[[], float],
    params: Mapping[str, Array],
    analytic: Mapping[str, Array],
    eps: float = 1e-6,
) -> dict[str, float]:
    """Relative error of each analytic gradient against centred differences of ``loss``.

    Args:
        loss: recomputes the scalar from the current values of ``params`` (no arguments).
        params: name -> float64 array that ``loss`` reads (perturbed in place).
        analytic: name -> the gradient to check, same keys as ``params``.
        eps: the finite-difference step.

    Returns:
        name -> :func:`rel_error`.
    """
    return {
        name: rel_error(analytic[name], numerical_grad(lambda _: loss(), p, eps))
        for name, p in params.items()
    }


def check_layer(
    layer: Layer,
    x: Array,
    *,
    rng: np.random.Generator,
    eps: float = 1e-6,
    reset: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Check ``layer.backward`` (input gradient ``"x"`` and every parameter gradient) around a
    training-mode forward (the only mode with a backward).

    Args:
        layer: a float64 layer.
        x: (batch, n_in) float64 input (perturbed in place during the check, then restored).
        rng: draws the projection ``g``.
        eps: the finite-difference step.
        reset: called before every forward, e.g. to rewind a dropout generator so that each
            evaluation sees the same mask.

    Returns:
        ``{"x": err, "<param>": err, ...}`` with errors from :func:`rel_error`.
    """

    def project() -> float:
        if reset is not None:
            reset()
        return float(np.sum(layer.forward(x, training=True) * g))

    if reset is not None:
        reset()
    y = layer.forward(x, training=True)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g).copy()
    grads = {k: v.copy() for k, v in layer.grads.items()}
    errors = {"x": rel_error(dx, numerical_grad(lambda _: project(), x, eps))}
    errors.update(check_params(project, layer.params, grads, eps))
    return errors
