"""Grid search: exactly the cartesian product, in a fixed order, and a clear end."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from app.tuning import GridExhausted, GridSampler, parse_space

SPACE = parse_space(
    {
        "learning_rate": {"dist": "log_uniform", "low": 1e-3, "high": 1e-1},
        "num_layers": {"dist": "int_uniform", "low": 2, "high": 4},
        "activation": {"dist": "choice", "values": ["relu", "tanh"]},
        "optimizer": "adam",
    }
)
RNG = np.random.default_rng(0)


@pytest.mark.parametrize("points", [1, 2, 3, 4])
def test_grid_enumerates_exactly_the_product(points: int) -> None:
    sampler = GridSampler(points)
    axes = [d.grid(points) for d in SPACE.ranged.values()]
    expected = [
        {**dict(zip(SPACE.ranged, combo, strict=True)), "optimizer": "adam"}
        for combo in itertools.product(*axes)
    ]
    got = [sampler.sample(SPACE, [], RNG, index=i) for i in range(sampler.size(SPACE))]
    assert got == expected
    assert sampler.size(SPACE) == len(expected)


def test_grid_points_match_a_hand_written_grid() -> None:
    got = [GridSampler(3).sample(SPACE, [], RNG, index=i) for i in range(18)]
    lrs = [pytest.approx(v) for v in (1e-3, 1e-2, 1e-1)]  # evenly spaced in log10
    hand = [
        {"learning_rate": lr, "num_layers": n, "activation": a, "optimizer": "adam"}
        for lr in lrs
        for n in (2, 3, 4)
        for a in ("relu", "tanh")
    ]
    assert got == hand


@pytest.mark.parametrize("index", [18, 19, 100, -1])
def test_grid_raises_past_the_end(index: int) -> None:
    with pytest.raises(GridExhausted) as info:
        GridSampler(3).sample(SPACE, [], RNG, index=index)
    assert info.value.size == 18
    assert "exhausted" in str(info.value)


def test_distinct_values_per_hyperparameter() -> None:
    # 4 points per numeric axis: an 4*3*2 = 24-trial grid tries only 4 learning rates, where
    # 24 random trials would try 24; num_layers has only 3 integers; a choice all its values.
    sampler = GridSampler(4)
    assert sampler.distinct_values(SPACE) == {"learning_rate": 4, "num_layers": 3, "activation": 2}
    assert sampler.size(SPACE) == 24


def test_a_space_without_ranges_is_one_point() -> None:
    space = parse_space({"optimizer": "sgd"})
    assert GridSampler(3).size(space) == 1
    assert GridSampler(3).sample(space, [], RNG, index=0) == {"optimizer": "sgd"}


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_points_per_dim_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="points_per_dim"):
        GridSampler(bad)  # type: ignore[arg-type]
