"""The one ranking, against a hand-worked study with ASHA (eta 3, rungs at epochs 1, 3, 9)."""

from __future__ import annotations

import statistics

import pytest

from app.tuning import Direction, TrialStatus, TrialView
from app.tuning.ranking import best_configuration, configurations, rank, standing

C, P, R, F, OTHER = (
    TrialStatus.COMPLETED,
    TrialStatus.PRUNED,
    TrialStatus.RUNNING,
    TrialStatus.FAILED,
    TrialStatus.OTHER,
)


def trial(n: int, state: TrialStatus, curve: dict[int, float], final: float | None = None,
          rnd: int = 0) -> TrialView:  # fmt: skip
    return TrialView(n, rnd, state, {"learning_rate": 10.0**-n}, final, curve)


# Dev accuracy (maximised) at each epoch end where it was recorded.
STUDY = [
    trial(0, C, {1: 0.80, 3: 0.90, 9: 0.95, 27: 0.97}, 0.97),
    trial(1, C, {1: 0.82, 3: 0.91, 9: 0.94, 27: 0.96}, 0.96),
    trial(2, P, {1: 0.85, 3: 0.93}),  # stopped at rung 1
    trial(3, P, {1: 0.90}),  # best at epoch 1, stopped at rung 0
    trial(4, P, {1: 0.70, 3: 0.94}, rnd=1),  # round 2, stopped at rung 1, better there than 2
    trial(5, OTHER, {1: 0.60, 3: 0.80, 9: 0.91}),  # parked at rung 2 (ASHA's pause mode)
    trial(6, R, {1: 0.99}),  # still running: not ranked
    trial(7, F, {}),  # crashed before its first epoch ended: nothing to rank by
    trial(8, OTHER, {1: 0.50, 2: 0.55, 5: 0.60}),  # stopped by its user at epoch 5
]


def numbers(trials: list[TrialView]) -> list[int]:
    return [t.number for t in trials]


def test_completed_first_then_the_higher_rung_then_the_value_there() -> None:
    # 0, 1 completed (0.97 > 0.96); then by the furthest epoch with a value: 5 (9), 8 (5),
    # then epoch 3: 4 (0.94) before 2 (0.93); then epoch 1: 3 (0.90, the best value there).
    assert numbers(rank(STUDY, Direction.MAXIMIZE)) == [0, 1, 5, 8, 4, 2, 3]


def test_minimize_orders_within_a_rung_by_the_lowest_value() -> None:
    losses = [
        trial(0, P, {1: 0.5, 3: 0.30}),
        trial(1, P, {1: 0.4, 3: 0.20}),
        trial(2, P, {1: 0.1}),
        trial(3, C, {1: 0.6, 3: 0.5, 9: 0.45}, 0.45),
    ]
    assert numbers(rank(losses, Direction.MINIMIZE)) == [3, 1, 0, 2]


def test_a_tie_goes_to_the_lower_number() -> None:
    tied = [trial(4, P, {1: 0.5}), trial(2, P, {1: 0.5})]
    assert numbers(rank(tied, Direction.MAXIMIZE)) == [2, 4]


def test_running_queued_and_valueless_trials_have_no_standing() -> None:
    assert standing(STUDY[6], Direction.MAXIMIZE) is None
    assert standing(STUDY[7], Direction.MAXIMIZE) is None
    nan = trial(9, C, {1: float("nan")}, float("nan"))
    assert standing(nan, Direction.MAXIMIZE) is None


def test_best_before_a_retest_is_the_top_ranked_trial() -> None:
    best = best_configuration(STUDY, {}, Direction.MAXIMIZE)
    assert best is not None
    assert (best.trial_number, best.values, best.std) == (0, (0.97,), 0.0)


def test_best_after_a_retest_is_the_configuration_with_the_best_mean() -> None:
    retests = {
        0: [trial(10, C, {}, 0.95), trial(11, C, {}, 0.95)],  # runs 0.97, 0.95, 0.95
        1: [trial(12, C, {}, 0.965), trial(13, C, {}, 0.965), trial(15, R, {1: 0.9})],
        4: [trial(14, C, {}, 0.90)],  # the pruned original does not count as a run
    }
    best = best_configuration(STUDY, retests, Direction.MAXIMIZE)
    assert best is not None
    # Config 1: 0.96, 0.965, 0.965 -> mean 0.963333 beats config 0's 0.956667; the running
    # re-test (15) is not a run yet.
    assert best.trial_number == 1 and best.numbers == (1, 12, 13)
    assert best.mean == pytest.approx((0.96 + 0.965 + 0.965) / 3)
    assert best.std == pytest.approx(statistics.stdev([0.96, 0.965, 0.965]))
    by_number = {c.trial_number: c for c in configurations(STUDY, retests)}
    assert by_number[4].values == (0.90,) and by_number[4].numbers == (14,)
    assert by_number[0].mean == pytest.approx((0.97 + 0.95 + 0.95) / 3)


def test_no_objective_anywhere_means_no_best() -> None:
    assert best_configuration([STUDY[6], STUDY[7]], {}, Direction.MAXIMIZE) is None
