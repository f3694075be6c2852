"""Random search: seeded, independent, on each hyperparameter's scale."""

from __future__ import annotations

import pytest

from app.tuning import RandomSampler, parse_space, trial_rng

SPACE = parse_space(
    {
        "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1},
        "momentum": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999},
        "batch_size": {"dist": "log_int", "low": 16, "high": 256},
        "activation": {"dist": "choice", "values": ["relu", "tanh"]},
        "optimizer": "adam",
    }
)


def run(seed: int, n: int = 20) -> list[dict[str, object]]:
    sampler = RandomSampler()
    return [sampler.sample(SPACE, [], trial_rng(seed, i), index=i) for i in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_same_seed_gives_the_same_sequence(seed: int) -> None:
    assert run(seed) == run(seed)


def test_different_seeds_give_different_sequences() -> None:
    assert run(0) != run(1)


@pytest.mark.parametrize("seed", [0, 3])
def test_draws_are_complete_and_inside_the_space(seed: int) -> None:
    for hp in run(seed):
        assert SPACE.contains(hp)
        assert hp["optimizer"] == "adam"


def test_a_trials_draw_does_not_depend_on_the_others() -> None:
    # trial_rng(seed, number): trial 7 gets the same values whether or not 0..6 were drawn.
    alone = RandomSampler().sample(SPACE, [], trial_rng(5, 7), index=0)
    assert alone == run(5, 8)[7]


def test_random_tries_as_many_distinct_values_as_trials() -> None:
    # The notes' argument: N random trials try N values of each continuous hyperparameter.
    lrs = {hp["learning_rate"] for hp in run(0, 27)}
    assert len(lrs) == 27
