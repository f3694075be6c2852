"""Sobol search: deterministic per seed and index, better spread than random."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import qmc  # type: ignore[import-untyped]

from app.tuning import RandomSampler, SobolSampler, parse_space, trial_rng

SPACE = parse_space(
    {
        "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1},
        "momentum": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999},
        "hidden_units": {"dist": "uniform", "low": 50, "high": 100},
        "optimizer": "adam",
    }
)


def units(hps: list[dict[str, object]]) -> np.ndarray:
    return np.array([[d.to_unit(hp[n]) for n, d in SPACE.ranged.items()] for hp in hps])


def sobol_run(seed: int, n: int) -> list[dict[str, object]]:
    sampler = SobolSampler(seed)
    return [sampler.sample(SPACE, [], trial_rng(99, i), index=i) for i in range(n)]


@pytest.mark.parametrize("seed", [0, 5])
def test_same_seed_gives_the_same_sequence(seed: int) -> None:
    assert sobol_run(seed, 16) == sobol_run(seed, 16)
    assert sobol_run(seed, 16) != sobol_run(seed + 1, 16)


def test_point_index_is_row_index_of_the_scrambled_sequence() -> None:
    reference = qmc.Sobol(d=3, scramble=True, rng=np.random.default_rng(4)).random(8)
    sampler = SobolSampler(4)
    for i in (0, 3, 5, 7):
        np.testing.assert_allclose(sampler.point(3, i), reference[i])
    np.testing.assert_allclose(units(sobol_run(4, 8)), reference, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sobol_points_are_better_spread_than_random(seed: int) -> None:
    n = 64
    random_hps = [RandomSampler().sample(SPACE, [], trial_rng(seed, i), index=i) for i in range(n)]
    sobol = qmc.discrepancy(units(sobol_run(seed, n)))
    random = qmc.discrepancy(units(random_hps))
    assert sobol < random / 2


def test_choices_take_floor_u_times_n() -> None:
    space = parse_space({"activation": {"dist": "choice", "values": ["relu", "tanh", "sigmoid"]}})
    sampler = SobolSampler(0)
    for i in range(8):
        u = sampler.point(1, i)[0]
        expected = ["relu", "tanh", "sigmoid"][int(np.floor(u * 3))]
        assert sampler.sample(space, [], trial_rng(0, i), index=i) == {"activation": expected}


def test_bad_seed_and_index_are_rejected() -> None:
    with pytest.raises(ValueError, match="seed"):
        SobolSampler(-1)
    with pytest.raises(ValueError, match="index"):
        SobolSampler(0).point(2, -1)
