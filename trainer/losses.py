"""Softmax and cross-entropy through log-sum-exp (finite for any finite logits).

With ``C`` classes the course's softmax is ``a_j = exp(z_j) / sum_k exp(z_k)`` and the loss
``L = -sum_j y_j log a_j`` for a one-hot ``y``; for ``C = 2`` it is logistic regression on
``z_1 - z_0``. Subtracting the row maximum first (log-sum-exp) keeps ``exp`` in ``(0, 1]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[Any]


def log_softmax(z: Array) -> Array:
    """``log softmax(z)`` along the last axis: ``z - max(z) - log(sum(exp(z - max(z))))``.

    Args:
        z: (..., C) logits.

    Returns:
        (..., C) log-probabilities, same dtype as ``z``.
    """
    shifted: Array = z - np.max(z, axis=-1, keepdims=True)
    shifted -= np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    return shifted


def softmax(z: Array) -> Array:
    """``exp(z_j) / sum_k exp(z_k)`` along the last axis, shifted by the row max.

    Args:
        z: (..., C) logits.

    Returns:
        (..., C) probabilities summing to 1 along the last axis, same dtype as ``z``.
    """
    e: Array = np.exp(z - np.max(z, axis=-1, keepdims=True))
    e /= np.sum(e, axis=-1, keepdims=True)
    return e


def check_labels(y: Array, batch: int, n_classes: int) -> None:
    """Raise ``ValueError`` unless ``y`` is ``(batch,)`` integers in ``[0, n_classes)``.

    Negative labels would otherwise index from the end without an error.
    """
    if y.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if batch and (int(np.minimum.reduce(y)) < 0 or int(np.maximum.reduce(y)) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]")


def softmax_cross_entropy(logits: Array, y: Array) -> tuple[float, Array]:
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    ``L = -(1/m) sum_i log softmax(z_i)[y_i]`` and ``dL/dz = (softmax(z) - onehot(y)) / m``.

    Args:
        logits: (m, C) scores ``z``, float32 or float64.
        y: (m,) integer class labels in ``[0, C)``.

    Returns:
        ``(loss, dlogits)``: the mean loss as a Python float and ``dlogits: (m, C)`` in the
        dtype of ``logits``.

    Raises:
        ValueError: labels of the wrong shape, type or range, or an empty batch.
    """
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must be (batch >= 1, C), got {logits.shape}")
    m, c = logits.shape
    check_labels(y, m, c)
    rows = np.arange(m)
    shifted = logits - np.maximum.reduce(logits, axis=1, keepdims=True)
    e = np.exp(shifted)
    sums = np.add.reduce(e, axis=1, keepdims=True)
    # Mean accumulated in float64: only m numbers, and the reported loss should not carry
    # float32 summation error into the curves.
    loss = float(np.add.reduce(np.log(sums[:, 0]) - shifted[rows, y], dtype=np.float64)) / m
    e /= sums
    e[rows, y] -= 1
    e *= 1.0 / m
    return loss, e
