"""Importance: a forest on the sampling scale ranks what drives the objective first, at an
epoch enough trials reached, with bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.tuning import TrialStatus, TrialView, importance, parse_space, trial_rng
from app.tuning.importance import comparable_resource, needed_trials
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


# -- a hand-made study: one hyperparameter decides the objective -----------------------------

DECIDED = parse_space(
    {
        "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1},
        "batch_size": {"dist": "log_int", "low": 16, "high": 256},
        "keep_prob": {"dist": "uniform", "low": 0.5, "high": 1},
    }
)


def decided(n: int, epochs: int = 1, seed: int = 0) -> list[TrialView]:
    """Trials whose objective at every epoch is log10(learning_rate) exactly; the rest inert."""
    trials = []
    for i in range(n):
        hp = DECIDED.sample(trial_rng(seed, i))
        value = math.log10(float(hp["learning_rate"]))  # type: ignore[arg-type]
        curve = {e: value for e in range(1, epochs + 1)}
        trials.append(TrialView(i, 0, TrialStatus.COMPLETED, hp, value, curve))
    return trials


def test_a_hyperparameter_that_decides_the_objective_has_an_interval_near_one() -> None:
    result = importance(DECIDED, decided(40), seed=5)
    low, high = result.intervals["learning_rate"]
    assert result.scores["learning_rate"] > 0.95
    assert 0.9 < low <= result.scores["learning_rate"] <= high <= 1.0
    for other in ("batch_size", "keep_prob"):
        o_low, o_high = result.intervals[other]
        assert 0.0 <= o_low <= o_high < low, (other, result.intervals)
    assert "30 bootstrap resamples" in result.method
    assert (result.n_trials, result.resource, result.needed, result.enough) == (40, 1, 10, True)


def test_intervals_are_seeded() -> None:
    trials = decided(20)
    assert importance(DECIDED, trials, seed=2) == importance(DECIDED, trials, seed=2)
    assert importance(DECIDED, trials, seed=2).intervals != importance(DECIDED, trials).intervals


def stopped_at(trial: TrialView, epochs: int, value: float | None = None) -> TrialView:
    """``trial`` pruned after ``epochs`` epochs (its curve cut there, no final value)."""
    curve = {e: v for e, v in trial.intermediate.items() if e <= epochs}
    if value is not None:
        curve = dict.fromkeys(curve, value)
    return TrialView(trial.number, 0, TrialStatus.PRUNED, trial.hparams, None, curve)


def test_the_objective_is_read_at_the_largest_epoch_enough_trials_reached() -> None:
    # 30 trials of 9 epochs: 14 stopped at epoch 1, 4 at 3, 12 went to 9.
    base = decided(30, epochs=9)
    trials = [stopped_at(t, 1) for t in base[:14]]
    trials += [stopped_at(t, 3) for t in base[14:18]] + base[18:]
    # need = max(10, 2 x 3 ranged) = 10: epochs 1 (30 trials) and 3 (16) have enough, and 9
    # (12) too: the largest wins.
    assert comparable_resource(DECIDED, trials, 10) == (9, 12)
    assert comparable_resource(DECIDED, trials, 13) == (3, 16)
    assert comparable_resource(DECIDED, trials, 17) == (1, 30)
    # None has 31: the epoch with the most trials.
    assert comparable_resource(DECIDED, trials, 31) == (1, 30)
    result = importance(DECIDED, trials)
    assert (result.resource, result.n_trials) == (9, 12)
    assert result.method.endswith("bootstrap resamples of the trials")
    assert "objective at epoch 9" in result.method


def test_trials_stopped_early_count_at_the_epoch_they_reached() -> None:
    # Only 3 trials complete; 17 more were stopped at epoch 2. At epoch 2 the objective is
    # log10(learning_rate) for all 20; the completed trials' final values alone are 3.
    base = decided(20, epochs=4)
    trials = [stopped_at(t, 2) for t in base[:17]] + base[17:]
    result = importance(DECIDED, trials)
    assert (result.resource, result.n_trials, result.enough) == (2, 20, True)
    assert result.scores["learning_rate"] > 0.9


def test_too_few_trials_at_any_epoch_say_so() -> None:
    # 6 trials: fewer than the 10 a ranking needs at every epoch; ties go to the later epoch.
    trials = [stopped_at(t, 3) for t in decided(6, epochs=5)]
    result = importance(DECIDED, trials)
    assert (result.resource, result.n_trials, result.needed, result.enough) == (3, 6, 10, False)


def test_ties_at_the_fallback_take_the_later_epoch() -> None:
    trials = decided(4, epochs=3)
    assert comparable_resource(DECIDED, trials, 10) == (3, 4)
    assert comparable_resource(DECIDED, [], 10) is None


def test_a_wide_space_needs_two_trials_per_hyperparameter() -> None:
    names = ["learning_rate", "momentum", "batch_size", "hidden_units", "num_layers", "l2"]
    wide = parse_space({n: {"dist": "uniform", "low": 0.1, "high": 0.5} for n in names})
    assert needed_trials(wide) == 12 and needed_trials(DECIDED) == 10
