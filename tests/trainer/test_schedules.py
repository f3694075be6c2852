"""Learning-rate schedules against their formulas at hand-picked 1-based epochs."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.config import DecaySchedule
from trainer.schedules import Schedule, StepDecay, make_schedule

LR0 = 0.2


@pytest.mark.parametrize(
    ("name", "lr_decay", "decay_every", "expected"),
    [
        # none: lr0 whatever the epoch and the decay
        ("none", 0.5, 10, {1: 0.2, 2: 0.2, 50: 0.2}),
        # inverse_time, decay 1: 0.2/2, 0.2/3, 0.2/4, 0.2/5
        ("inverse_time", 1.0, 10, {1: 0.1, 2: 0.2 / 3, 3: 0.05, 4: 0.04}),
        # inverse_time, decay 0: no decay at all
        ("inverse_time", 0.0, 10, {1: 0.2, 7: 0.2}),
        # exponential, factor 0.5: 0.2 * 0.5, 0.2 * 0.25, 0.2 * 0.125
        ("exponential", 0.5, 10, {1: 0.1, 2: 0.05, 3: 0.025, 10: 0.2 / 1024}),
        # step, factor 0.5 every 3 epochs: epochs 1-3 at lr0, 4-6 at lr0/2, 7-9 at lr0/4
        ("step", 0.5, 3, {1: 0.2, 3: 0.2, 4: 0.1, 6: 0.1, 7: 0.05, 10: 0.025}),
        # step every epoch equals exponential shifted by one epoch
        ("step", 0.5, 1, {1: 0.2, 2: 0.1, 3: 0.05}),
        # sqrt, k = 2: 0.2 * 2 / sqrt(epoch)
        ("sqrt", 2.0, 10, {1: 0.4, 4: 0.2, 16: 0.1, 100: 0.04}),
    ],
)
def test_schedule_matches_its_formula(
    name: str, lr_decay: float, decay_every: int, expected: dict[int, float]
) -> None:
    schedule = make_schedule(name, lr_decay, decay_every)
    assert schedule.KIND is DecaySchedule(name)
    for epoch_num, lr in expected.items():
        assert schedule(LR0, epoch_num) == pytest.approx(lr, rel=1e-12), epoch_num


def test_make_schedule_accepts_the_enum() -> None:
    schedule = make_schedule(DecaySchedule.STEP, 0.1, 2)
    assert isinstance(schedule, StepDecay)
    assert schedule.hyperparameters == {
        "decay_schedule": "step",
        "lr_decay": 0.1,
        "decay_every": 2,
    }


def test_schedule_returns_a_python_float_for_numpy_epochs() -> None:
    lr = make_schedule("exponential", 0.5, 1)(LR0, np.int64(2))
    assert type(lr) is float and lr == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("cosine", 0.5, 1), "decay_schedule"),
        (("inverse_time", -1.0, 1), "lr_decay"),
        (("inverse_time", float("inf"), 1), "lr_decay"),
        (("exponential", 0.0, 1), "lr_decay"),
        (("exponential", 1.5, 1), "lr_decay"),
        (("step", 2.0, 1), "lr_decay"),
        (("sqrt", 0.0, 1), "lr_decay"),
        (("step", 0.5, 0), "decay_every"),
        (("step", 0.5, 2.5), "decay_every"),
    ],
)
def test_make_schedule_rejects_bad_values(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_schedule(*args)


@pytest.mark.parametrize("epoch_num", [0, -1, 1.5, True])
def test_call_rejects_bad_epoch_num(epoch_num: object) -> None:
    schedule: Schedule = make_schedule("none")
    with pytest.raises(ValueError, match="epoch_num"):
        schedule(LR0, epoch_num)  # type: ignore[arg-type]


@pytest.mark.parametrize("lr0", [0.0, -0.1, float("nan")])
def test_call_rejects_bad_lr0(lr0: float) -> None:
    with pytest.raises(ValueError, match="lr0"):
        make_schedule("none")(lr0, 1)
