"""Samplers and schedulers built from stored names and settings."""

from __future__ import annotations

import pytest

from app.tuning import (
    AshaScheduler,
    Decision,
    Direction,
    GridSampler,
    MedianStoppingScheduler,
    NoStoppingScheduler,
    RandomSampler,
    SobolSampler,
    TpeSampler,
    make_sampler,
    make_scheduler,
)
from tests.tuning.helpers import running


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("random", RandomSampler),
        ("grid", GridSampler),
        ("sobol", SobolSampler),
        ("tpe", TpeSampler),
    ],
)
def test_make_sampler(name: str, cls: type) -> None:
    assert isinstance(make_sampler(name, 3), cls)


def test_make_sampler_passes_settings() -> None:
    grid = make_sampler("grid", 0, points_per_dim=5)
    assert isinstance(grid, GridSampler) and grid.points_per_dim == 5
    sobol = make_sampler("sobol", 11)
    assert isinstance(sobol, SobolSampler) and sobol.seed == 11
    tpe = make_sampler("tpe", 0, direction=Direction.MAXIMIZE, n_startup=4)
    assert isinstance(tpe, TpeSampler) and tpe.direction is Direction.MAXIMIZE


@pytest.mark.parametrize(
    ("name", "settings", "cls"),
    [
        ("none", {}, NoStoppingScheduler),
        ("asha", {"min_resource": 1, "reduction_factor": 3, "max_resource": 27}, AshaScheduler),
        (
            "median",
            {"grace": 2, "min_trials": 3, "direction": "maximize"},
            MedianStoppingScheduler,
        ),
    ],
)
def test_make_scheduler(name: str, settings: dict[str, object], cls: type) -> None:
    assert isinstance(make_scheduler(name, **settings), cls)


def test_none_never_stops() -> None:
    step = make_scheduler("none").on_report(running(0), 1, float("nan"), [], [])
    assert step.decision is Decision.CONTINUE and step.new_records == ()


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: make_sampler("bayes", 0), "allowed: one of random, grid, sobol, tpe"),
        (lambda: make_sampler("grid", 0, points=3), "points"),
        (lambda: make_sampler("grid", 0, points_per_dim=0), "points_per_dim"),
        (lambda: make_scheduler("hyperband"), "allowed: one of none, asha, median"),
        (lambda: make_scheduler("asha", eta=3), "eta"),
        (lambda: make_scheduler("median", grace=-1), "grace"),
    ],
)
def test_bad_names_and_settings_raise_value_error(call: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        call()  # type: ignore[operator]
