"""Importance: a forest on the sampling scale ranks what drives the objective first."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.tuning import TrialStatus, TrialView, importance, parse_space, trial_rng
from tests.tuning.helpers import done

SPACE = parse_space(
    {
        "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1},
        "noise": {"dist": "uniform", "low": 0, "high": 1},
        "activation": {"dist": "choice", "values": ["relu", "tanh", "sigmoid"]},
        "optimizer": "adam",
    }
)


def study(seed: int, n: int, choice_weight: float = 0.0) -> list[TrialView]:
    """Loss = (log10 lr + 2)^2 (+ choice_weight for non-tanh) + small noise; 'noise' is inert."""
    rng = np.random.default_rng(seed + 1000)
    trials = []
    for i in range(n):
        hp = SPACE.sample(trial_rng(seed, i))
        loss = (math.log10(float(hp["learning_rate"])) + 2.0) ** 2  # type: ignore[arg-type]
        loss += choice_weight * (hp["activation"] != "tanh") + 0.01 * float(rng.normal())
        trials.append(done(i, loss, **hp))
    return trials


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_driving_hyperparameter_ranks_above_noise(seed: int) -> None:
    result = importance(SPACE, study(seed, 60))
    assert set(result.scores) == {"learning_rate", "noise", "activation"}
    assert result.scores["learning_rate"] > 0.6
    assert result.scores["learning_rate"] > 5 * result.scores["noise"]
    assert sum(result.scores.values()) == pytest.approx(1.0)
    assert result.n_trials == 60
    assert "random-forest" in result.method and "sampling scale" in result.method


def test_a_choice_that_matters_ranks_above_noise() -> None:
    result = importance(SPACE, study(0, 80, choice_weight=4.0))
    assert result.scores["activation"] > result.scores["noise"]


def test_is_seeded() -> None:
    trials = study(4, 30)
    assert importance(SPACE, trials, seed=3) == importance(SPACE, trials, seed=3)


def test_only_completed_trials_inside_the_space_count() -> None:
    trials = study(0, 10)
    extra = [
        TrialView(90, 0, TrialStatus.RUNNING, dict(trials[0].hparams), None),
        TrialView(91, 0, TrialStatus.COMPLETED, {**trials[0].hparams, "activation": "elu"}, 1.0),
        TrialView(92, 0, TrialStatus.COMPLETED, {"noise": 0.5}, 1.0),
        TrialView(93, 0, TrialStatus.COMPLETED, dict(trials[0].hparams), float("nan")),
    ]
    assert importance(SPACE, trials + extra).n_trials == 10


def test_a_constant_objective_gives_zero_scores() -> None:
    trials = [done(t.number, 1.0, **t.hparams) for t in study(0, 10)]
    assert set(importance(SPACE, trials).scores.values()) == {0.0}


@pytest.mark.parametrize("n", [0, 1])
def test_needs_two_completed_trials(n: int) -> None:
    trials = study(0, n) + [TrialView(50, 0, TrialStatus.FAILED, {}, None)]
    with pytest.raises(ValueError, match="at least 2"):
        importance(SPACE, trials)
