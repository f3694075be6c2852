"""The notes' first framework example, J(w) = w^2 - 10w + 25, trained by the real loop."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.config import DType, TrainConfig
from trainer.gradcheck import numerical_grad
from trainer.loop import FitStatus, Trainer
from trainer.quadratic import QuadraticModel
from trainer.reporting import NullReporter


def _gd(steps: int, dtype: DType = DType.FLOAT32, **options: object) -> Trainer:
    config = TrainConfig(
        task="quadratic",
        task_options=options,
        hparams={"optimizer": "sgd", "learning_rate": 0.01},
        dtype=dtype,
        max_steps=steps,
    )
    trainer = Trainer(config)
    assert trainer.fit(NullReporter()).status is FitStatus.COMPLETED
    return trainer


def test_one_step_of_gradient_descent_gives_w_0_1() -> None:
    # w1 = 0 - 0.01 * (2*1*0 - 10) = 0.1
    trainer = _gd(1, DType.FLOAT64)
    assert trainer.model.params["w"][0] == pytest.approx(0.1, abs=1e-12)


def test_thousand_steps_reach_the_minimum_at_five() -> None:
    trainer = _gd(1000)
    assert abs(float(trainer.model.params["w"][0]) - 5.0) < 1e-4


def test_coefficients_are_data() -> None:
    # J(w) = 2w^2 - 8w + 3 has its minimum at w = 2.
    trainer = _gd(2000, DType.FLOAT64, coefficients=[2.0, -8.0, 3.0])
    assert float(trainer.model.params["w"][0]) == pytest.approx(2.0, abs=1e-6)


def test_gradient_matches_finite_differences() -> None:
    model = QuadraticModel(np.float64)
    x = np.array([[1.5, -4.0, 2.0]])
    model.params["w"][0] = 0.7

    def cost(w: np.ndarray) -> float:
        model.params["w"][...] = w
        return model.loss_and_grads(x, np.zeros(1, dtype=np.int64), l2=0.3)[0]

    numeric = numerical_grad(cost, np.array([0.7]))
    model.params["w"][0] = 0.7
    model.loss_and_grads(x, np.zeros(1, dtype=np.int64), l2=0.3)
    np.testing.assert_allclose(model.grads["w"], numeric, rtol=1e-7)
