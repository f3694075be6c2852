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
    near_centre,
    parse_space,
    sample_near,
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
    # log10 in [-4, 0] is the unit scale [0, 1]: the top 3 span [-3, -2] = [0.25, 0.5], a
    # width of 0.25 (the floor too); centred on 0.375, +-(1/2 + 0.5) * 0.25: [0.125, 0.625],
    # log10 [-3.5, -1.5].
    assert isinstance(lr, LogUniform)
    assert (lr.low, lr.high) == pytest.approx((10**-3.5, 10**-1.5))
    # hidden units, levels 0..50: the top 3 at 10, 14, 20 (spread 10) widen to the floor of
    # 12.5 levels; centred on 15, +-12.5: [2.5, 27.5], rounded outward [2, 28]: 52..78.
    assert child.ranged["hidden_units"] == IntUniform(52, 78)
    # batch size exponents 4..9 are levels 0..5: the top 3 at 1, 2 (32, 64) widen to the floor
    # of 2 levels; centred on 1.5, +-2: [-0.5, 3.5], shifted inside: [0, 4]: 16..256.
    assert child.ranged["batch_size"] == LogInt(16, 256)
    # momentum: every top-3 value is 0.99 (s = -log10(1 - beta) = 2, unit 0.5); the floor of
    # 0.25, +-0.25: unit [0.25, 0.75], s in [1.5, 2.5].
    mom = child.ranged["momentum"]
    assert isinstance(mom, OneMinusLogUniform)
    assert (mom.low, mom.high) == pytest.approx((1 - 10**-1.5, 1 - 10**-2.5))
    # choices keep what the top 3 used; fixed stays fixed.
    assert child.ranged["activation"] == Choice(("relu",))
    assert child.fixed == {"optimizer": "adam"}


def test_a_zero_width_spread_keeps_a_quarter_of_the_parent_plus_the_margin() -> None:
    child = narrow_from_top(PARENT, TRIALS, k=3, margin=0.1, direction=Direction.MINIMIZE)
    mom = child.ranged["momentum"]
    # s in [1, 3] is unit [0, 1]; every top value at unit 0.5; the floor of 0.25, +-(0.5 + 0.1)
    # * 0.25 = 0.15: unit [0.35, 0.65], s in [1.7, 2.3].
    assert isinstance(mom, OneMinusLogUniform)
    assert (mom.low, mom.high) == pytest.approx((1 - 10**-1.7, 1 - 10**-2.3))


def test_maximize_takes_the_highest_values_and_never_collapses_a_range() -> None:
    child = narrow_from_top(PARENT, TRIALS, k=1, margin=0.0, direction=Direction.MAXIMIZE)
    # Trial 3 alone, margin 0: each range keeps the floor width, shifted inside the parent.
    # lr 0.5 (unit 0.925): [0.8, 1.05] shifted to [0.75, 1]: log10 [-1, 0].
    assert child.ranged["learning_rate"] == LogUniform(0.1, 1.0)
    # momentum 0.9 (unit 0): [-0.125, 0.125] shifted to [0, 0.25]: s in [1, 1.5].
    mom = child.ranged["momentum"]
    assert isinstance(mom, OneMinusLogUniform)
    assert (mom.low, mom.high) == pytest.approx((0.9, 1 - 10**-1.5))
    # hidden units 100 (level 50): 12.5 levels, [43.75, 56.25] shifted to [37.5, 50]: 87..100.
    assert child.ranged["hidden_units"] == IntUniform(87, 100)
    # batch size 512 (level 5): 2 levels, [4, 6] shifted to [3, 5]: 128..512.
    assert child.ranged["batch_size"] == LogInt(128, 512)
    assert child.ranged["activation"] == Choice(("tanh",))
    assert child.fixed == {"optimizer": "adam"}


def test_ranges_are_clipped_to_the_parent() -> None:
    # Top values at the parent's edges: widening must not leave [1e-4, 1] or [50, 100].
    edge = [
        done(0, 0.1, **hp(1e-4, 0.9, 50, 16, "relu")),
        done(1, 0.2, **hp(1e-3, 0.9, 52, 32, "relu")),
    ]
    child = narrow_from_top(PARENT, edge, k=2, margin=1.0, direction=Direction.MINIMIZE)
    # lr unit [0, 0.25], +-1.5 * 0.25 around 0.125: [-0.25, 0.5], shifted: [0, 0.75].
    assert child.ranged["learning_rate"] == LogUniform(1e-4, 0.1)
    # levels 0 and 2; 12.5 levels, +-18.75 around 1: [-17.75, 19.75], shifted: [0, 37.5].
    assert child.ranged["hidden_units"] == IntUniform(50, 88)
    # levels 0 and 1; 2 levels, +-3 around 0.5: 6 levels, wider than the parent's 5: all of it.
    assert child.ranged["batch_size"] == LogInt(16, 512)
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
        # Narrower than the parent, never narrower than a quarter of it.
        width, parent = sampling_width(child, name), sampling_width(PARENT, name)
        assert 0.25 * parent - 1e-9 <= width < parent


def test_a_child_round_can_be_narrowed_again() -> None:
    child = narrow_from_top(PARENT, TRIALS, k=3, margin=0.5, direction=Direction.MINIMIZE)
    grandchild = narrow_from_top(child, TRIALS, k=2, margin=0.0, direction=Direction.MINIMIZE)
    # Top 2: trials 0 (lr 1e-3) and 2 (lr 3e-3). The child's log10 range [-3.5, -1.5] is the
    # unit scale; they sit at 0.25 and (log10(3e-3) + 3.5) / 2 = 0.4886, a spread under the
    # floor of 0.25: centred on 0.3693, +-0.125: log10 [-3.0114, -2.5114].
    lr = grandchild.ranged["learning_rate"]
    c = (0.25 + (np.log10(3e-3) + 3.5) / 2) / 2
    assert isinstance(lr, LogUniform)
    assert (lr.low, lr.high) == pytest.approx(
        (10 ** (-3.5 + 2 * (c - 0.125)), 10 ** (-3.5 + 2 * (c + 0.125)))
    )
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


class _Normals:
    """A stand-in generator whose standard normal draws are fixed, for hand-worked tests."""

    def __init__(self, *z: float) -> None:
        self.z = list(z)
        self.uniform = np.random.default_rng(0)

    def standard_normal(self) -> float:
        return self.z.pop(0)

    def __getattr__(self, name: str) -> object:  # a choice's draw: a real generator's
        return getattr(self.uniform, name)


def test_near_centre_draws_every_other_trial_near_the_top_trials_in_turn() -> None:
    assert [near_centre(i, 3) for i in range(8)] == [0, None, 1, None, 2, None, 0, None]
    assert [near_centre(i, 1) for i in range(4)] == [0, None, 0, None]
    assert near_centre(0, 0) is None  # no top trial: the study's sampler draws


def test_sample_near_hand_worked() -> None:
    child = SearchSpace(
        ranged={
            "learning_rate": LogUniform(1e-3, 1e-1),
            "hidden_units": IntUniform(50, 89),
            "momentum": OneMinusLogUniform(0.9, 0.999),
        },
        fixed={"optimizer": "momentum"},
    )
    centre = {"learning_rate": 1e-2, "hidden_units": 70, "momentum": 0.99, "seed": 7}
    rng = _Normals(1.0, -1.0, 8.0)
    got = sample_near(child, centre, rng, spread=0.25)  # type: ignore[arg-type]
    # lr: log10 in [-3, -1] is [0, 1]; 1e-2 at 0.5, + 0.25 * 1 = 0.75: 10**-1.5.
    assert got["learning_rate"] == pytest.approx(10**-1.5)
    # 40 levels 50..89; 70 at its bin centre (20 + 0.5) / 40 = 0.5125, - 0.25 = 0.2625:
    # level floor(0.2625 * 40) = 10, 60 units.
    assert got["hidden_units"] == 60
    # momentum 0.99 at 0.5, + 0.25 * 8 = 2.5, clipped to the range's end: 0.999.
    assert got["momentum"] == pytest.approx(0.999)
    # Fixed values stay; the centre's own seed is not carried over.
    assert got == {**got, "optimizer": "momentum"}
    assert "seed" not in got


def test_sample_near_draws_a_choice_and_a_missing_name_from_the_space() -> None:
    child = SearchSpace(
        ranged={"activation": Choice(("relu", "tanh")), "hidden_units": IntUniform(50, 89)}
    )
    got = sample_near(child, {"activation": "relu"}, np.random.default_rng(0))
    assert got["activation"] in ("relu", "tanh")
    assert 50 <= int(got["hidden_units"]) <= 89  # type: ignore[call-overload]


def test_sample_near_stays_near_its_centre_on_the_sampling_scale() -> None:
    child = SearchSpace(ranged={"learning_rate": LogUniform(1e-4, 1.0)})
    rng = trial_rng(0, 0)
    logs = [
        math.log10(float(sample_near(child, {"learning_rate": 1e-2}, rng)["learning_rate"]))  # type: ignore[arg-type]
        for _ in range(4000)
    ]
    # 4 decades wide, spread 0.25: one decade of standard deviation around -2 (clipping at -4
    # and 0 is two deviations out on each side, nearly symmetric).
    assert float(np.mean(logs)) == pytest.approx(-2.0, abs=0.05)
    assert float(np.std(logs)) == pytest.approx(1.0, abs=0.1)
