"""Median stopping: a hand-worked example."""

from __future__ import annotations

import pytest

from app.tuning import Decision, Direction, MedianStoppingScheduler
from tests.tuning.helpers import running, with_curve

# Three finished trials; at epoch 2 their losses are 0.6, 0.5, 0.7: median 0.6.
HISTORY = [
    with_curve(0, {1: 0.9, 2: 0.6, 3: 0.5}),
    with_curve(1, {1: 0.8, 2: 0.5, 3: 0.4}),
    with_curve(2, {1: 1.0, 2: 0.7, 3: 0.6}),
]


@pytest.mark.parametrize(
    ("curve", "epoch", "value", "expected"),
    [
        ({}, 1, 2.0, Decision.CONTINUE),  # epoch 1 < grace 2
        ({1: 2.0}, 2, 0.65, Decision.STOP),  # best min(2.0, 0.65) = 0.65 worse than 0.6
        ({1: 2.0}, 2, 0.55, Decision.CONTINUE),  # 0.55 better than the median
        ({1: 2.0}, 2, 0.60, Decision.CONTINUE),  # equal to the median: not strictly worse
        ({1: 0.3}, 2, 0.90, Decision.CONTINUE),  # best so far is epoch 1's 0.3
        ({1: 2.0, 2: 0.9}, 4, 5.0, Decision.CONTINUE),  # nobody else reported at epoch 4
        ({1: 2.0}, 2, float("nan"), Decision.STOP),  # diverged: worse than anything
    ],
)
@pytest.mark.parametrize("direction", [Direction.MINIMIZE, Direction.MAXIMIZE])
def test_hand_worked_example(
    curve: dict[int, float], epoch: int, value: float, expected: Decision, direction: Direction
) -> None:
    # Maximising the negated values must decide the same.
    sign = 1.0 if direction is Direction.MINIMIZE else -1.0
    history = [
        with_curve(t.number, {r: sign * v for r, v in t.intermediate.items()}) for t in HISTORY
    ]
    scheduler = MedianStoppingScheduler(grace=2, min_trials=3, direction=direction)
    trial = running(9, {r: sign * v for r, v in curve.items()})
    step = scheduler.on_report(trial, epoch, sign * value, history, [])
    assert step.decision is expected
    assert step.new_records == ()


def test_a_stop_says_what_it_was_compared_with() -> None:
    scheduler = MedianStoppingScheduler(grace=2, min_trials=3, direction=Direction.MINIMIZE)
    step = scheduler.on_report(running(9, {1: 2.0}), 2, 0.65, HISTORY, [])
    # Best so far 0.65 against the median 0.6 of the 3 others at epoch 2.
    assert step.why == {"best": 0.65, "median": 0.6, "of": 3}
    assert scheduler.on_report(running(9, {1: 2.0}), 2, 0.55, HISTORY, []).why == {}


def test_needs_min_trials_others() -> None:
    scheduler = MedianStoppingScheduler(grace=1, min_trials=4, direction=Direction.MINIMIZE)
    step = scheduler.on_report(running(9, {1: 2.0}), 2, 0.65, HISTORY, [])
    assert step.decision is Decision.CONTINUE  # only 3 others at epoch 2


def test_the_trial_itself_is_not_among_the_others() -> None:
    # Others at epoch 2: 0.6 and 0.7, median 0.65, so 0.66 is worse: STOP. Counting the
    # trial's own stored 0.66 would make the median 0.66 and let it continue.
    me = running(5, {1: 0.9, 2: 0.66})
    history = [HISTORY[0], HISTORY[2], me]
    scheduler = MedianStoppingScheduler(grace=1, min_trials=2, direction=Direction.MINIMIZE)
    assert scheduler.on_report(me, 2, 0.66, history, []).decision is Decision.STOP


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"grace": -1}, "grace"), ({"min_trials": 0}, "min_trials")]
)
def test_settings_are_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        MedianStoppingScheduler(**kwargs)  # type: ignore[arg-type]
