"""The finite-difference checker itself: it must be accurate and it must catch wrong gradients."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.activations import Tanh
from trainer.gradcheck import check_layer, check_params, numerical_grad, rel_error


def test_numerical_grad_of_a_known_function() -> None:
    x = np.array([[0.5, -1.0, 2.0], [3.0, 0.0, -0.25]])
    grad = numerical_grad(lambda v: float(np.sum(v**3)), x)
    np.testing.assert_allclose(grad, 3 * x**2, rtol=1e-8, atol=1e-8)


def test_numerical_grad_restores_its_input() -> None:
    x = np.random.default_rng(0).standard_normal((4, 3))
    before = x.copy()
    numerical_grad(lambda v: float(np.sum(np.sin(v))), x)
    np.testing.assert_array_equal(x, before)


def test_numerical_grad_refuses_float32() -> None:
    with pytest.raises(TypeError, match="float64"):
        numerical_grad(lambda v: float(v.sum()), np.zeros(3, np.float32))


def test_rel_error_values() -> None:
    a = np.array([1.0, -2.0, 0.0])
    assert rel_error(a, a) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    # max |a-b| = 0.5 over max(|a|+|b|) = 2 + 2.5
    assert rel_error(a, np.array([1.0, -2.5, 0.0])) == pytest.approx(0.5 / 4.5)
    assert rel_error(a, -a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes"):
        rel_error(a, np.zeros(2))


def test_check_params_on_a_quadratic() -> None:
    w = np.array([1.0, -2.0, 3.0])
    errors = check_params(lambda: float(np.sum(w**2)), {"w": w}, {"w": 2 * w})
    assert errors["w"] < 1e-9
    wrong = check_params(lambda: float(np.sum(w**2)), {"w": w}, {"w": 3 * w})
    assert wrong["w"] > 0.1


class _WrongTanh(Tanh):
    """Forgets the square in 1 - y**2: a plausible bug the checker must report."""

    def backward(self, dy: np.ndarray) -> np.ndarray:
        assert self._y is not None
        return dy * (1 - self._y)


def test_check_layer_catches_a_wrong_backward() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4))
    assert check_layer(Tanh(np.float64), x.copy(), rng=rng)["x"] < 1e-6
    assert check_layer(_WrongTanh(np.float64), x.copy(), rng=rng)["x"] > 1e-2
