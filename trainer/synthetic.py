"""Synthetic classification data sets: spirals, moons, blobs.

Every generator takes an explicit ``np.random.Generator`` so a data set is a pure function of
its options and the generator's seed (the study's ``split_seed``). Points come out grouped by
class; :func:`trainer.data.load_task` shuffles them when it splits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

# The angle one spiral arm sweeps from the centre to its tip, in radians. 4 rad is the
# CS231n "spiral data set" that a linear classifier cannot separate but a small MLP can.
SPIRAL_SWEEP = 4.0
# Blob centres are drawn uniformly in this box in every dimension (scikit-learn's default).
BLOB_CENTER_BOX = (-10.0, 10.0)


def class_sizes(n_samples: int, n_classes: int) -> list[int]:
    """Split ``n_samples`` into ``n_classes`` near-equal counts (the first ones get the extra).

    Raises:
        ValueError: fewer than one sample per class.
    """
    if n_classes < 1 or n_samples < n_classes:
        raise ValueError(f"need at least one sample per class: {n_samples=}, {n_classes=}")
    base, extra = divmod(n_samples, n_classes)
    return [base + (k < extra) for k in range(n_classes)]


def _labels(sizes: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)


def make_spirals(
    n_samples: int, n_classes: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms, one per class, in the plane.

    Arm ``k`` holds points at radius ``r ~ U(0, 1)`` and angle
    ``2*pi*k/C + SPIRAL_SWEEP*r + noise*N(0, 1)``: the noise perturbs the angle, so it blurs
    the arms more at the rim than at the centre.

    Args:
        n_samples: total points, split evenly over the classes.
        n_classes: number of arms (classes), >= 1.
        noise: standard deviation of the angle noise, radians, >= 0.
        rng: source of all randomness.

    Returns:
        X: (n_samples, 2) float64 points; y: (n_samples,) int64 labels in 0..n_classes-1.
    """
    sizes = class_sizes(n_samples, n_classes)
    parts = []
    for k, m in enumerate(sizes):
        r = rng.uniform(0.0, 1.0, m)
        t = 2.0 * math.pi * k / n_classes + SPIRAL_SWEEP * r + noise * rng.standard_normal(m)
        parts.append(np.column_stack([r * np.sin(t), r * np.cos(t)]))
    return np.concatenate(parts), _labels(sizes)


def make_moons(
    n_samples: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (scikit-learn's ``make_moons`` geometry).

    Class 0 lies on ``(cos t, sin t)``, class 1 on ``(1 - cos t, 0.5 - sin t)`` with
    ``t ~ U(0, pi)``; Gaussian noise of standard deviation ``noise`` is added to both axes.

    Args:
        n_samples: total points; class 0 gets ``n_samples // 2``, class 1 the rest.
        noise: standard deviation of the additive Gaussian noise, >= 0.
        rng: source of all randomness.

    Returns:
        X: (n_samples, 2) float64 points; y: (n_samples,) int64 labels in {0, 1}.
    """
    sizes = [n_samples // 2, n_samples - n_samples // 2]
    t_out = rng.uniform(0.0, math.pi, sizes[0])
    t_in = rng.uniform(0.0, math.pi, sizes[1])
    outer = np.column_stack([np.cos(t_out), np.sin(t_out)])
    inner = np.column_stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)])
    X = np.concatenate([outer, inner])
    X += noise * rng.standard_normal(X.shape)
    return X, _labels(sizes)


def make_blobs(
    n_samples: int, n_features: int, n_classes: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian clusters, one per class.

    Centres are drawn uniformly in :data:`BLOB_CENTER_BOX` along every axis; each point is its
    class centre plus ``noise * N(0, I)``.

    Args:
        n_samples: total points, split evenly over the classes.
        n_features: dimension of the points, >= 1.
        n_classes: number of clusters (classes), >= 1.
        noise: cluster standard deviation, >= 0.
        rng: source of all randomness.

    Returns:
        X: (n_samples, n_features) float64 points; y: (n_samples,) int64 labels.
    """
    sizes = class_sizes(n_samples, n_classes)
    centers = rng.uniform(*BLOB_CENTER_BOX, size=(n_classes, n_features))
    y = _labels(sizes)
    X = centers[y] + noise * rng.standard_normal((n_samples, n_features))
    return X, y


def make_synthetic(
    name: str, options: Mapping[str, Any], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch a synthetic task name (``spirals``, ``moons``, ``blobs``) to its generator.

    Args:
        name: the task.
        options: its checked options (see :func:`trainer.data.check_task_options`).
        rng: source of all randomness.

    Returns:
        X: (n_samples, d) float64; y: (n_samples,) int64.
    """
    o = options
    if name == "spirals":
        return make_spirals(o["n_samples"], o["n_classes"], o["noise"], rng)
    if name == "moons":
        return make_moons(o["n_samples"], o["noise"], rng)
    if name == "blobs":
        return make_blobs(o["n_samples"], o["n_features"], o["n_classes"], o["noise"], rng)
    raise ValueError(f"no generator for synthetic task {name!r}")
