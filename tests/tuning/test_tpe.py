"""TPE: random during start-up, then proposals pulled towards the good trials."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.tuning import (
    Direction,
    RandomSampler,
    Sampler,
    TpeSampler,
    TrialView,
    parse_space,
    trial_rng,
)
from tests.tuning.helpers import done

SPACE = parse_space(
    {
        "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1},
        "activation": {"dist": "choice", "values": ["relu", "tanh", "sigmoid"]},
        "optimizer": "adam",
    }
)


def objective(hp: dict[str, object]) -> float:
    """Best at learning_rate 1e-2 with tanh: (log10 lr + 2)^2, + 1 for the other choices."""
    lr = float(hp["learning_rate"])  # type: ignore[arg-type]
    return (math.log10(lr) + 2.0) ** 2 + (0.0 if hp["activation"] == "tanh" else 1.0)


def study(sampler: Sampler, seed: int, n: int) -> list[TrialView]:
    trials: list[TrialView] = []
    for i in range(n):
        hp = sampler.sample(SPACE, trials, trial_rng(seed, i), index=i)
        trials.append(done(i, objective(hp), **hp))
    return trials


@pytest.mark.parametrize("seed", [0, 1])
def test_same_seed_gives_the_same_sequence(seed: int) -> None:
    a = [t.hparams for t in study(TpeSampler(n_startup=5), seed, 25)]
    b = [t.hparams for t in study(TpeSampler(n_startup=5), seed, 25)]
    assert a == b


def test_start_up_trials_are_the_random_samplers() -> None:
    tpe = [t.hparams for t in study(TpeSampler(n_startup=10), 3, 10)]
    rnd = [t.hparams for t in study(RandomSampler(), 3, 10)]
    assert tpe == rnd


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tpe_proposals_concentrate_near_the_optimum(seed: int) -> None:
    n, startup = 40, 10
    tpe = study(TpeSampler(n_startup=startup), seed, n)[startup:]
    rnd = study(RandomSampler(), seed, n)[startup:]
    assert np.mean([t.value for t in tpe]) < 0.5 * np.mean([t.value for t in rnd])
    assert all(SPACE.contains(t.hparams) for t in tpe)


def test_maximize_direction_seeks_the_other_end() -> None:
    space = parse_space({"x": {"dist": "uniform", "low": 0, "high": 1}})
    sampler = TpeSampler(n_startup=5, direction=Direction.MAXIMIZE)
    trials: list[TrialView] = []
    for i in range(30):
        hp = sampler.sample(space, trials, trial_rng(0, i), index=i)
        trials.append(done(i, float(hp["x"]), **hp))  # type: ignore[arg-type]
    assert np.mean([t.hparams["x"] for t in trials[5:]]) > 0.7


def test_history_outside_the_space_is_ignored() -> None:
    # Trials of a wider earlier round do not count towards start-up in a narrowed space.
    narrow = parse_space({"learning_rate": {"dist": "log_uniform", "low": 1e-3, "high": 1e-2}})
    outside = [done(i, 1.0, learning_rate=0.5) for i in range(20)]
    tpe = TpeSampler(n_startup=2).sample(narrow, outside, trial_rng(0, 0), index=0)
    rnd = RandomSampler().sample(narrow, outside, trial_rng(0, 0), index=0)
    assert tpe == rnd


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_startup": 1}, "n_startup"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 1.0}, "gamma"),
        ({"n_candidates": 0}, "n_candidates"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TpeSampler(**kwargs)  # type: ignore[arg-type]
