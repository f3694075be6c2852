"""Distributions on the right scale, search spaces as JSON, and their validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from app.tuning import (
    Choice,
    Distribution,
    IntUniform,
    LogInt,
    LogUniform,
    OneMinusLogUniform,
    SearchSpace,
    SpaceError,
    Uniform,
    dist_from_dict,
    parse_space,
)

ALL_DISTS: list[Distribution] = [
    Uniform(-1.0, 3.0),
    LogUniform(1e-4, 1.0),
    OneMinusLogUniform(0.9, 0.999),
    IntUniform(50, 100),
    LogInt(16, 512),
    Choice(("relu", "tanh", "sigmoid")),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_uniform_draws_are_uniform_in_log10(seed: int) -> None:
    dist = LogUniform(1e-4, 1.0)
    rng = np.random.default_rng(seed)
    r = np.log10([dist.sample(rng) for _ in range(10_000)])
    assert r.min() >= -4.0 and r.max() <= 0.0
    assert stats.kstest(r, "uniform", args=(-4.0, 4.0)).pvalue > 0.01


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_minus_log_uniform_draws_are_uniform_in_log10_one_minus_beta(seed: int) -> None:
    dist = OneMinusLogUniform(0.9, 0.999)
    rng = np.random.default_rng(seed)
    beta = np.array([dist.sample(rng) for _ in range(10_000)])
    assert beta.min() >= 0.9 and beta.max() <= 0.999
    r = np.log10(1.0 - beta)
    assert stats.kstest(r, "uniform", args=(-3.0, 2.0)).pvalue > 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_log_int_draws_powers_of_two_with_equal_exponent_frequencies(seed: int) -> None:
    dist = LogInt(16, 512)
    rng = np.random.default_rng(seed)
    draws = [dist.sample(rng) for _ in range(6_000)]
    assert set(draws) == {16, 32, 64, 128, 256, 512}
    counts = [draws.count(2**e) for e in range(4, 10)]
    assert stats.chisquare(counts).pvalue > 0.01


def test_int_uniform_draws_every_integer_equally_often() -> None:
    dist = IntUniform(2, 4)
    rng = np.random.default_rng(0)
    draws = [dist.sample(rng) for _ in range(3_000)]
    assert all(isinstance(d, int) for d in draws)
    assert stats.chisquare([draws.count(v) for v in (2, 3, 4)]).pvalue > 0.01


@pytest.mark.parametrize(
    ("dist", "value", "unit"),
    [
        (Uniform(-1.0, 3.0), 0.0, 0.25),
        (LogUniform(1e-4, 1.0), 1e-2, 0.5),  # log10: -2 is halfway from -4 to 0
        (LogUniform(1e-4, 1.0), 1e-3, 0.25),
        (OneMinusLogUniform(0.9, 0.999), 0.99, 0.5),  # 1 - beta = 10^-2, halfway to 10^-3
        (OneMinusLogUniform(0.9, 0.999), 0.9, 0.0),
        (IntUniform(2, 4), 3, 0.5),  # bins [0,1/3) [1/3,2/3) [2/3,1]: the middle one's centre
        (IntUniform(2, 4), 2, 1 / 6),
        (LogInt(16, 256), 64, 0.5),  # exponents 4..8, 6 is the middle bin
        (Choice(("a", "b", "c", "d")), "b", 0.375),
    ],
)
def test_to_unit_matches_hand_worked_values(
    dist: Distribution, value: object, unit: float
) -> None:
    assert dist.to_unit(value) == pytest.approx(unit)
    assert dist.from_unit(unit) == pytest.approx(value)


@pytest.mark.parametrize("dist", ALL_DISTS, ids=lambda d: d.kind.value)
def test_from_unit_inverts_to_unit_and_stays_in_range(dist: Distribution) -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        v = dist.sample(rng)
        assert dist.contains(v)
        u = dist.to_unit(v)
        assert 0.0 <= u <= 1.0
        assert dist.from_unit(u) == pytest.approx(v)
    assert dist.contains(dist.from_unit(0.0)) and dist.contains(dist.from_unit(1.0))


@pytest.mark.parametrize(
    ("dist", "n", "expected"),
    [
        (Uniform(0.0, 1.0), 3, [0.0, 0.5, 1.0]),
        (LogUniform(1e-4, 1.0), 5, [1e-4, 1e-3, 1e-2, 1e-1, 1.0]),
        (OneMinusLogUniform(0.9, 0.999), 3, [0.9, 0.99, 0.999]),
        (IntUniform(2, 4), 5, [2, 3, 4]),  # 2, 2.5, 3, 3.5, 4 round half up, de-duplicated
        (LogInt(16, 512), 3, [16, 128, 512]),  # exponents 4, 6.5 -> 7, 9
        (LogUniform(1e-4, 1.0), 1, [1e-2]),  # one point: the middle of the log scale
        (Choice(("relu", "tanh")), 1, ["relu", "tanh"]),  # a grid tries every category
    ],
)
def test_grid_is_evenly_spaced_on_the_sampling_scale(
    dist: Distribution, n: int, expected: list[object]
) -> None:
    assert dist.grid(n) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("dist", "inside", "outside"),
    [
        (LogUniform(1e-4, 1.0), [1e-4, 0.5, 1], [0.0, 2.0, float("nan"), "0.1", True]),
        (OneMinusLogUniform(0.9, 0.999), [0.9, 0.95], [0.8, 0.9999, 1.0]),
        (IntUniform(2, 4), [2, 3, 4.0], [1, 5, 2.5, False]),
        (LogInt(16, 256), [16, 64, 256, 32.0], [24, 8, 512, 0, -16]),
        (Choice((1, "a", True)), [1, "a", True], [2, "b", False, 1.5]),
    ],
)
def test_contains(dist: Distribution, inside: list[object], outside: list[object]) -> None:
    assert all(dist.contains(v) for v in inside)
    assert not any(dist.contains(v) for v in outside)


def test_choice_keeps_true_and_one_apart() -> None:
    dist = Choice((1, True))
    assert dist.index(True) == 1 and dist.index(1) == 0


@pytest.mark.parametrize("dist", ALL_DISTS, ids=lambda d: d.kind.value)
def test_dist_to_dict_round_trips(dist: Distribution) -> None:
    assert dist_from_dict(dist.to_dict()) == dist


EXAMPLE = {
    "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1},
    "momentum": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999},
    "optimizer": "adam",
    "batch_size": {"dist": "log_int", "low": 16, "high": 256},
    "hidden_units": {"dist": "int_uniform", "low": 50, "high": 100},
    "activation": {"dist": "choice", "values": ["relu", "tanh"]},
    "batch_norm": True,
    "l2": 0.0,
}


def test_parse_space_builds_ranged_and_fixed() -> None:
    space = parse_space(EXAMPLE)
    assert space.ranged["learning_rate"] == LogUniform(1e-4, 1.0)
    assert space.ranged["batch_size"] == LogInt(16, 256)
    assert space.fixed == {"optimizer": "adam", "batch_norm": True, "l2": 0.0}
    assert set(space.names) == set(EXAMPLE)


def test_space_to_dict_round_trips_through_parse() -> None:
    space = parse_space(EXAMPLE)
    assert space.to_dict() == EXAMPLE
    assert parse_space(space.to_dict()) == space


@pytest.mark.parametrize("seed", [0, 7])
def test_space_sample_is_seeded_complete_and_inside(seed: int) -> None:
    space = parse_space(EXAMPLE)
    a = space.sample(np.random.default_rng(seed))
    assert a == space.sample(np.random.default_rng(seed))
    assert set(a) == set(EXAMPLE) and space.contains(a)
    assert a["optimizer"] == "adam"


def test_space_rejects_a_name_both_ranged_and_fixed() -> None:
    with pytest.raises(ValueError, match="fixed"):
        SearchSpace(ranged={"l2": Uniform(0, 1)}, fixed={"l2": 0.0})


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"dist": "uniform", "low": 1.0, "high": 1.0}, "allowed: < high"),
        ({"dist": "uniform", "low": 2.0, "high": 1.0}, "allowed: < high"),
        ({"dist": "int_uniform", "low": 4, "high": 2}, "allowed: < high"),
        ({"dist": "log_uniform", "low": 0.0, "high": 1.0}, "allowed: > 0"),
        ({"dist": "log_uniform", "low": -1e-3, "high": 1.0}, "allowed: > 0"),
        ({"dist": "one_minus_log_uniform", "low": 0.0, "high": 0.99}, "0 < low < 1"),
        ({"dist": "one_minus_log_uniform", "low": 0.9, "high": 1.0}, "0 < high < 1"),
        ({"dist": "one_minus_log_uniform", "low": 0.9, "high": 1.5}, "0 < high < 1"),
        ({"dist": "normal", "low": 0, "high": 1}, "one of uniform, log_uniform"),
        ({"low": 0, "high": 1}, "dist: got None"),
        ({"dist": "uniform", "low": 0}, "missing ['high']"),
        ({"dist": "uniform", "low": 0, "high": 1, "step": 0.1}, "unexpected ['step']"),
        ({"dist": "choice", "values": ["a"], "low": 0}, "unexpected ['low']"),
        ({"dist": "uniform", "low": float("nan"), "high": 1}, "a finite number"),
        ({"dist": "uniform", "low": 0, "high": float("inf")}, "a finite number"),
        ({"dist": "uniform", "low": True, "high": 2}, "a finite number"),
        ({"dist": "int_uniform", "low": 1.5, "high": 4}, "an integer"),
        ({"dist": "log_int", "low": 17, "high": 31}, "at least two powers of two"),
        ({"dist": "log_int", "low": 0, "high": 64}, ">= 1"),
        ({"dist": "choice", "values": []}, "at least one value"),
        ({"dist": "choice", "values": "relu"}, "a list"),
        ({"dist": "choice", "values": ["relu", "relu"]}, "distinct"),
        ({"dist": "choice", "values": [float("nan")]}, "finite"),
    ],
)
def test_parse_space_rejects_a_bad_range_naming_the_field(spec: object, fragment: str) -> None:
    with pytest.raises(SpaceError) as info:
        parse_space({"learning_rate": 0.01, "momentum": spec})
    assert info.value.name == "momentum"
    assert str(info.value).startswith("momentum: ")
    assert fragment in str(info.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [1, 2], None])
def test_parse_space_rejects_a_bad_fixed_value(value: object) -> None:
    with pytest.raises(SpaceError) as info:
        parse_space({"l2": value})
    assert info.value.name == "l2"
    assert "allowed" in str(info.value)


def test_parse_space_rejects_a_non_object() -> None:
    with pytest.raises(SpaceError):
        parse_space([1, 2])  # type: ignore[arg-type]


# A stand-in for the server's checker built from trainer.config: same contract.
LIMITS = {"learning_rate": (0.0, 10.0), "momentum": (0.0, 1.0), "batch_size": (1, 65536)}
ACTIVATIONS = ("relu", "tanh", "sigmoid")


def fake_check(name: str, value: object) -> object:
    if name == "activation":
        if value not in ACTIVATIONS:
            raise ValueError(f"{name}: got {value!r}, allowed: one of {ACTIVATIONS}")
        return value
    if name not in LIMITS:
        raise ValueError(f"{name}: unknown hyperparameter; known: {', '.join(LIMITS)}")
    low, high = LIMITS[name]
    if not low < value <= high:  # type: ignore[operator]
        raise ValueError(f"{name}: got {value!r}, allowed: {low} < {name} <= {high}")
    return value


@pytest.mark.parametrize(
    ("data", "name", "fragment"),
    [
        ({"learnin_rate": 0.01}, "learnin_rate", "unknown hyperparameter"),
        ({"learnin_rate": {"dist": "uniform", "low": 0, "high": 1}}, "learnin_rate", "unknown"),
        ({"learning_rate": 20.0}, "learning_rate", "allowed: 0.0 < learning_rate <= 10.0"),
        (
            {"learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 30}},
            "learning_rate",
            "got 30",
        ),
        (
            {"batch_size": {"dist": "log_int", "low": 16, "high": 131072}},
            "batch_size",
            "got 131072",
        ),
        (
            {"activation": {"dist": "choice", "values": ["relu", "swish"]}},
            "activation",
            "got 'swish'",
        ),
    ],
)
def test_parse_space_applies_the_value_checker(
    data: dict[str, object], name: str, fragment: str
) -> None:
    with pytest.raises(SpaceError) as info:
        parse_space(data, check_value=fake_check)
    assert info.value.name == name
    assert fragment in str(info.value)
    assert not str(info.value).startswith(f"{name}: {name}:")  # the name is said once


def test_parse_space_calls_the_checker_on_bounds_choices_and_fixed_values() -> None:
    seen: list[tuple[str, object]] = []

    def spy(name: str, value: object) -> object:
        seen.append((name, value))
        return value

    parse_space(
        {
            "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1},
            "optimizer": "adam",
            "activation": {"dist": "choice", "values": ["relu", "tanh"]},
        },
        check_value=spy,
    )
    assert seen == [
        ("learning_rate", 1e-4),
        ("learning_rate", 1),
        ("optimizer", "adam"),
        ("activation", "relu"),
        ("activation", "tanh"),
    ]


def test_parse_space_accepts_the_notes_ranges_with_the_trainers_checker() -> None:
    from trainer.config import check_hparams  # the server wires exactly this in

    def check(name: str, value: object) -> object:
        return check_hparams({name: value})[name]

    space = parse_space(EXAMPLE, check_value=check)
    assert space.ranged["momentum"] == OneMinusLogUniform(0.9, 0.999)
    with pytest.raises(SpaceError) as info:
        parse_space({"keep_prob": {"dist": "uniform", "low": 0.0, "high": 1.0}}, check_value=check)
    assert info.value.name == "keep_prob"
    assert "allowed" in str(info.value)
    assert math.isfinite(space.ranged["learning_rate"].to_unit(0.01))
