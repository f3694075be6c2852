"""Softmax, log-softmax and softmax cross-entropy."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.activations import sigmoid
from trainer.gradcheck import numerical_grad, rel_error
from trainer.losses import log_softmax, softmax, softmax_cross_entropy


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def naive_cross_entropy(z: np.ndarray, y: np.ndarray) -> float:
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def test_cross_entropy_matches_the_course_formula(rng) -> None:
    z = rng.standard_normal((7, 4))
    y = rng.integers(0, 4, 7)
    loss, _ = softmax_cross_entropy(z, y)
    assert loss == pytest.approx(naive_cross_entropy(z, y), rel=1e-12)


def test_cross_entropy_gradcheck(rng) -> None:
    z = 2.0 * rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    _, dz = softmax_cross_entropy(z, y)
    num = numerical_grad(lambda zz: softmax_cross_entropy(zz, y)[0], z)
    assert rel_error(dz, num) < 1e-6


def test_cross_entropy_gradient_formula(rng) -> None:
    z = rng.standard_normal((3, 4))
    y = np.array([0, 3, 1])
    _, dz = softmax_cross_entropy(z, y)
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(dz, (softmax(z) - onehot) / 3, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_finite_for_huge_logits(dtype) -> None:
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dz = softmax_cross_entropy(z, np.array([1, 0]))
    assert np.isfinite(loss)
    assert np.all(np.isfinite(dz))
    assert dz.dtype == dtype
    # Row 0: log-sum-exp = 1e4, label logit -1e4 -> 2e4. Row 1: 1e4 + log 2 - (-1e4).
    assert loss == pytest.approx((2e4 + 2e4 + np.log(2.0)) / 2, rel=1e-6)
    right, _ = softmax_cross_entropy(z, np.array([0, 1]))
    assert right == pytest.approx(np.log(2.0) / 2, rel=1e-4)


def test_two_class_softmax_is_the_logistic_sigmoid(rng) -> None:
    z = 5.0 * rng.standard_normal((50, 2))
    np.testing.assert_allclose(softmax(z)[:, 1], sigmoid(z[:, 1] - z[:, 0]), rtol=1e-12)


def test_softmax_and_log_softmax_agree(rng) -> None:
    z = 3.0 * rng.standard_normal((5, 6))
    p = softmax(z)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(log_softmax(z), np.log(p), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(softmax(z + 1000.0), p, rtol=1e-12)  # shift invariance


def test_float32_in_float32_out(rng) -> None:
    z = rng.standard_normal((4, 3), dtype=np.float32)
    assert softmax(z).dtype == np.float32
    assert log_softmax(z).dtype == np.float32
    loss, dz = softmax_cross_entropy(z, np.array([0, 1, 2, 0]))
    assert isinstance(loss, float)
    assert dz.dtype == np.float32


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.array([0, -1]), r"\[0, 3\)"),
        (np.array([0, 3]), r"\[0, 3\)"),
        (np.array([0, 1, 2]), "shape"),
        (np.array([0.0, 1.0]), "integers"),
    ],
)
def test_bad_labels_are_refused(y, match) -> None:
    with pytest.raises(ValueError, match=match):
        softmax_cross_entropy(np.zeros((2, 3)), y)
