from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.synthetic import (
    BLOB_CENTER_BOX,
    SPIRAL_SWEEP,
    class_sizes,
    make_blobs,
    make_moons,
    make_spirals,
    make_synthetic,
)


def test_class_sizes_are_even_and_sum_to_n() -> None:
    assert class_sizes(10, 3) == [4, 3, 3]
    assert class_sizes(9, 3) == [3, 3, 3]
    assert sum(class_sizes(200_001, 7)) == 200_001


def test_class_sizes_rejects_fewer_samples_than_classes() -> None:
    with pytest.raises(ValueError, match="one sample per class"):
        class_sizes(2, 3)


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_spirals_shapes_and_labels(n_classes: int) -> None:
    X, y = make_spirals(301, n_classes, 0.2, np.random.default_rng(0))
    assert X.shape == (301, 2) and X.dtype == np.float64
    assert y.shape == (301,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == class_sizes(301, n_classes)
    # Radii lie in [0, 1] whatever the angle noise.
    assert np.all(np.hypot(X[:, 0], X[:, 1]) <= 1.0 + 1e-12)


def test_spirals_without_noise_lie_on_their_arms() -> None:
    X, y = make_spirals(300, 3, 0.0, np.random.default_rng(1))
    r = np.hypot(X[:, 0], X[:, 1])
    angle = np.arctan2(X[:, 0], X[:, 1])  # points are r * (sin t, cos t)
    expected = 2 * math.pi * y / 3 + SPIRAL_SWEEP * r
    wrapped = np.angle(np.exp(1j * (angle - expected)))
    assert np.allclose(wrapped, 0.0, atol=1e-9)


def test_spirals_noise_moves_points_off_the_arms() -> None:
    rng = np.random.default_rng(2)
    X, y = make_spirals(2000, 3, 0.5, rng)
    r = np.hypot(X[:, 0], X[:, 1])
    angle = np.arctan2(X[:, 0], X[:, 1])
    wrapped = np.angle(np.exp(1j * (angle - 2 * math.pi * y / 3 - SPIRAL_SWEEP * r)))
    assert 0.4 < np.std(wrapped) < 0.6


def test_moons_without_noise_lie_on_the_half_circles() -> None:
    X, y = make_moons(201, 0.0, np.random.default_rng(0))
    assert np.bincount(y).tolist() == [100, 101]
    outer, inner = X[y == 0], X[y == 1]
    assert np.allclose(np.hypot(outer[:, 0], outer[:, 1]), 1.0)
    assert np.all(outer[:, 1] >= 0.0)
    assert np.allclose(np.hypot(inner[:, 0] - 1.0, inner[:, 1] - 0.5), 1.0)
    assert np.all(inner[:, 1] <= 0.5)


def test_moons_noise_is_the_standard_deviation() -> None:
    X0, _ = make_moons(20_000, 0.0, np.random.default_rng(3))
    X1, _ = make_moons(20_000, 0.3, np.random.default_rng(3))
    # Same generator state for the angles, so the difference is the noise alone.
    assert np.std(X1 - X0) == pytest.approx(0.3, rel=0.05)


def test_blobs_shapes_centres_and_spread() -> None:
    X, y = make_blobs(6000, 4, 3, 0.5, np.random.default_rng(0))
    assert X.shape == (6000, 4)
    assert np.bincount(y).tolist() == [2000, 2000, 2000]
    for c in range(3):
        pts = X[y == c]
        assert np.std(pts - pts.mean(axis=0)) == pytest.approx(0.5, rel=0.05)
        low, high = BLOB_CENTER_BOX
        assert np.all((pts.mean(axis=0) > low - 0.1) & (pts.mean(axis=0) < high + 0.1))


def test_blobs_without_noise_collapse_onto_centres() -> None:
    X, y = make_blobs(90, 2, 3, 0.0, np.random.default_rng(0))
    for c in range(3):
        assert np.ptp(X[y == c], axis=0).max() == 0.0


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("spirals", {"n_samples": 120, "n_classes": 4, "noise": 0.1}),
        ("moons", {"n_samples": 120, "noise": 0.1}),
        ("blobs", {"n_samples": 120, "n_features": 3, "n_classes": 4, "noise": 1.0}),
    ],
)
def test_make_synthetic_is_a_function_of_the_seed(name: str, options: dict[str, float]) -> None:
    X1, y1 = make_synthetic(name, options, np.random.default_rng(5))
    X2, y2 = make_synthetic(name, options, np.random.default_rng(5))
    X3, _ = make_synthetic(name, options, np.random.default_rng(6))
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    assert len(y1) == 120


def test_make_synthetic_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="no generator"):
        make_synthetic("circles", {}, np.random.default_rng(0))
