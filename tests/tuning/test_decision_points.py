"""Where each scheduler may stop or pause a trial: the epoch ends a worker reports at once."""

from __future__ import annotations

import pytest

from app.tuning import AshaScheduler, MedianStoppingScheduler
from app.tuning.base import DecisionPoints
from app.tuning.no_stopping import NoStoppingScheduler


def decided(points: DecisionPoints, last: int = 30) -> list[int]:
    return [e for e in range(1, last + 1) if points.includes(e)]


def test_asha_decides_at_its_rungs_only() -> None:
    assert decided(AshaScheduler(1, 3, 27).decision_points()) == [1, 3, 9]
    assert decided(AshaScheduler(2, 2, 20).decision_points()) == [2, 4, 8, 16]


@pytest.mark.parametrize(("grace", "first"), [(0, 1), (1, 1), (4, 4)])
def test_median_decides_at_every_epoch_from_grace(grace: int, first: int) -> None:
    points = MedianStoppingScheduler(grace=grace).decision_points()
    assert decided(points) == list(range(first, 31))


def test_no_stopping_never_decides() -> None:
    assert decided(NoStoppingScheduler().decision_points()) == []
