"""Coarse to fine: narrowing around the top-k trials on each hyperparameter's scale."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.tuning import (
    Choice,
    Direction,
    IntUniform,
    LogInt,
    LogUniform,
    OneMinusLogUniform,
    SearchSpace,
    TrialStatus,
    TrialView,
    Uniform,
    check_within,
    narrow_from_top,
    parse_space,
    trial_rng,
)
from tests.tuning.helpers import done

PARENT = parse_space(
    {
        "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1},
        "momentum": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999},
        "hidden_units": {"dist": "int_uniform", "low": 50, "high": 100},
        "batch_size": {"dist": "log_int", "low": 16, "high": 512},
        "activation": {"dist": "choice", "values": ["relu", "tanh", "sigmoid"]},
        "optimizer": "adam",
    }
)


def hp(lr: float, mom: float, hu: int, bs: int, act: str) -> dict[str, object]:
    return {
        "learning_rate": lr,
        "momentum": mom,
        "hidden_units": hu,
        "batch_size": bs,
        "activation": act,
        "optimizer": "adam",
    }


# Top 3 by loss: trials 0, 1, 2. Trial 3 is worse, 4 failed, 5 still running.
TRIALS = [
    done(0, 0.10, **hp(1e-3, 0.99, 60, 32, "relu")),
    done(1, 0.20, **hp(1e-2, 0.99, 70, 64, "relu")),
    done(2, 0.15, **hp(3e-3, 0.99, 64, 32, "relu")),
    done(3, 0.90, **hp(0.5, 0.9, 100, 512, "tanh")),
    TrialView(4, 0, TrialStatus.FAILED, hp(1e-4, 0.9, 50, 16, "sigmoid"), None),
    TrialView(5, 0, TrialStatus.RUNNING, hp(1e-4, 0.9, 50, 16, "sigmoid"), None),
]


def test_hand_worked_top_3_with_margin_half() -> None:
    child = narrow_from_top(PARENT, TRIALS, k=3, margin=0.5, direction=Direction.MINIMIZE)
    lr = child.ranged["learning_rate"]
    # log10: hull [-3, -2], width 1, widened by 0.5 each side: [-3.5, -1.5].
    assert isinstance(lr, LogUniform)
    assert (lr.low, lr.high) == pytest.approx((10**-3.5, 10**-1.5))
    # hidden units: hull [60, 70], width 10, +-5: [55, 75].
    assert child.ranged["hidden_units"] == IntUniform(55, 75)
    # batch size exponents: hull [5, 6], +-0.5: [4.5, 6.5], rounded outward [4, 7]: 16..128.
    assert child.ranged["batch_size"] == LogInt(16, 128)
    # momentum: every top-3 value is 0.99 (s = -log10(1 - beta) = 2, halfway in [1, 3]); a
    # zero-width hull widens by 0.5 * the parent's width: the whole parent.
    assert child.ranged["momentum"] == OneMinusLogUniform(0.9, 0.999)
    # choices keep what the top 3 used; fixed stays fixed.
    assert child.ranged["activation"] == Choice(("relu",))
    assert child.fixed == {"optimizer": "adam"}


def test_zero_width_hull_widens_by_margin_times_the_parent_width() -> None:
    child = narrow_from_top(PARENT, TRIALS, k=3, margin=0.1, direction=Direction.MINIMIZE)
    mom = child.ranged["momentum"]
    # s in [1, 3]; the hull is s = 2; widened by 0.1 * 2 = 0.2: s in [1.8, 2.2].
    assert isinstance(mom, OneMinusLogUniform)
    assert (mom.low, mom.high) == pytest.approx((1 - 10**-1.8, 1 - 10**-2.2))


def test_maximize_takes_the_highest_values() -> None:
    child = narrow_from_top(PARENT, TRIALS, k=1, margin=0.0, direction=Direction.MAXIMIZE)
    # Trial 3 alone, margin 0: every numeric range collapses to trial 3's value, now fixed.
    assert child.fixed == {
        "optimizer": "adam",
        "learning_rate": 0.5,
        "momentum": 0.9,
        "hidden_units": 100,
        "batch_size": 512,
    }
    assert child.ranged == {"activation": Choice(("tanh",))}


def test_ranges_are_clipped_to_the_parent() -> None:
    # Top values at the parent's edges: widening must not leave [1e-4, 1] or [50, 100].
    edge = [
        done(0, 0.1, **hp(1e-4, 0.9, 50, 16, "relu")),
        done(1, 0.2, **hp(1e-3, 0.9, 52, 32, "relu")),
    ]
    child = narrow_from_top(PARENT, edge, k=2, margin=1.0, direction=Direction.MINIMIZE)
    assert child.ranged["learning_rate"] == LogUniform(1e-4, 1e-2)
    assert child.ranged["hidden_units"] == IntUniform(50, 54)
    assert child.ranged["batch_size"] == LogInt(16, 64)
    assert check_within(PARENT, child) == []


def sampling_width(space: SearchSpace, name: str) -> float:
    """The range's width on its sampling scale (log10, -log10(1 - beta), exponent...)."""
    d = space.ranged[name]
    if isinstance(d, IntUniform | LogInt):
        first, last = d.levels()
        return float(last - first)
    if isinstance(d, LogUniform):
        return math.log10(d.high) - math.log10(d.low)
    if isinstance(d, OneMinusLogUniform):
        return math.log10(1 - d.low) - math.log10(1 - d.high)
    assert isinstance(d, Uniform)
    return d.high - d.low


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("margin", [0.0, 0.1, 0.25])
def test_top_k_round_contains_every_top_value_and_is_narrower(
    seed: int, k: int, margin: float
) -> None:
    # Loss grows with the distance from a good region at unit coordinate 0.3 (plus noise),
    # so the top-k cluster there as in a real study.
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(40):
        h = PARENT.sample(trial_rng(seed, i))
        dist2 = sum((d.to_unit(h[n]) - 0.3) ** 2 for n, d in PARENT.ranged.items())
        trials.append(done(i, dist2 + 0.01 * float(rng.random()), **h))
    child = narrow_from_top(PARENT, trials, k=k, margin=margin, direction=Direction.MINIMIZE)
    top = sorted(trials, key=lambda t: t.value)[:k]  # type: ignore[arg-type, return-value]
    for t in top:
        assert child.contains(t.hparams), t.hparams
    assert check_within(PARENT, child) == []
    for name in ("learning_rate", "momentum"):
        if name in child.ranged:  # k = 1 with margin 0 collapses a range to a fixed value
            assert sampling_width(child, name) < sampling_width(PARENT, name)
        else:
            assert child.fixed[name] == top[0].hparams[name]


def test_a_child_round_can_be_narrowed_again() -> None:
    child = narrow_from_top(PARENT, TRIALS, k=3, margin=0.5, direction=Direction.MINIMIZE)
    grandchild = narrow_from_top(child, TRIALS, k=2, margin=0.0, direction=Direction.MINIMIZE)
    # Top 2: trials 0 (lr 1e-3) and 2 (lr 3e-3).
    assert grandchild.ranged["learning_rate"] == LogUniform(1e-3, 3e-3)
    assert check_within(child, grandchild) == []


@pytest.mark.parametrize(
    ("k", "margin", "field"),
    [
        (0, 0.1, "k"),
        (5, 0.1, "k"),
        (1.5, 0.1, "k"),
        (2, -0.1, "margin"),
        (2, 1.5, "margin"),
        (2, float("nan"), "margin"),
    ],
)
def test_k_and_margin_are_validated(k: object, margin: float, field: str) -> None:
    # 4 completed trials: k = 5 is too many.
    with pytest.raises(ValueError, match=field) as info:
        narrow_from_top(
            PARENT,
            TRIALS,
            k=k,  # type: ignore[arg-type]
            margin=margin,
            direction=Direction.MINIMIZE,
        )
    assert "allowed" in str(info.value)


def test_check_within_names_the_dimensions_that_leave_the_parent() -> None:
    child = parse_space(
        {
            "learning_rate": {"dist": "log_uniform", "low": 1e-5, "high": 1e-2},  # below 1e-4
            "momentum": {"dist": "one_minus_log_uniform", "low": 0.95, "high": 0.99},  # inside
            "hidden_units": {"dist": "uniform", "low": 60, "high": 70},  # non-integers
            "batch_size": {"dist": "log_int", "low": 20, "high": 200},  # 32..128: inside
            "activation": {"dist": "choice", "values": ["relu", "swish"]},  # swish unknown
            "optimizer": "sgd",  # parent fixes adam
            "l2": 0.1,  # parent lacks l2
        }
    )
    assert check_within(PARENT, child) == [
        "learning_rate",
        "hidden_units",
        "activation",
        "optimizer",
        "l2",
    ]


def test_check_within_flags_a_dropped_name_and_accepts_fixed_values_inside() -> None:
    child = parse_space(
        {
            "learning_rate": 0.01,
            "momentum": 0.95,
            "hidden_units": 64,
            "batch_size": 64,
            "activation": "tanh",
        }
    )
    assert check_within(PARENT, child) == ["optimizer"]
