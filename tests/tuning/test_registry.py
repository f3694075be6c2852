"""Samplers and schedulers built from stored names and settings, and from their declarations."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence

import pytest

from app.tuning import (
    SAMPLERS,
    SCHEDULERS,
    Algorithm,
    AshaScheduler,
    Decision,
    Direction,
    GridSampler,
    MedianStoppingScheduler,
    NoStoppingScheduler,
    RandomSampler,
    RungRecord,
    Scheduler,
    SchedulerStep,
    Setting,
    SobolSampler,
    TpeSampler,
    TrialView,
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


# -- the declarations ------------------------------------------------------------------------

EVERY = [*SAMPLERS.values(), *SCHEDULERS.values()]


def test_the_built_in_algorithms_are_registered_in_the_order_they_are_offered() -> None:
    assert list(SAMPLERS)[:4] == ["random", "grid", "sobol", "tpe"]
    assert list(SCHEDULERS)[:3] == ["none", "asha", "median"]
    assert SAMPLERS["grid"] is GridSampler and SCHEDULERS["asha"] is AshaScheduler


@pytest.mark.parametrize("cls", EVERY, ids=lambda c: c.name)
def test_declared_settings_are_the_constructor_s_keywords_with_its_defaults(
    cls: type[Algorithm],
) -> None:
    params = inspect.signature(cls).parameters
    assert cls.label and cls.help
    for setting in cls.settings:
        # None: the server fills it in (ASHA's max_resource: the longest training).
        assert setting.default in (None, params[setting.name].default), setting
        if setting.default is not None:
            assert setting.check(setting.default) == setting.default
    others = set(params) - {s.name for s in cls.settings}
    given_by_the_study = {"direction": cls.needs_direction, "seed": cls.needs_seed}
    assert others == {k for k, needed in given_by_the_study.items() if needed}


@pytest.mark.parametrize(
    ("name", "needs"),
    [("random", False), ("grid", False), ("sobol", False), ("tpe", True)]
    + [("none", False), ("asha", True), ("median", True)],
)
def test_needs_direction_is_declared(name: str, needs: bool) -> None:
    assert (SAMPLERS.get(name) or SCHEDULERS[name]).needs_direction is needs


def test_the_direction_reaches_only_the_algorithms_that_need_it() -> None:
    tpe = make_sampler("tpe", 0, direction="maximize")
    assert isinstance(tpe, TpeSampler) and tpe.direction is Direction.MAXIMIZE
    assert isinstance(make_sampler("grid", 0, direction=Direction.MAXIMIZE), GridSampler)
    median = make_scheduler("median", direction=Direction.MAXIMIZE)
    assert isinstance(median, MedianStoppingScheduler) and median.direction is Direction.MAXIMIZE
    assert isinstance(make_scheduler("none", direction=Direction.MAXIMIZE), NoStoppingScheduler)


def test_asha_presets_are_valid_settings() -> None:
    presets = {p.key: dict(p.settings) for p in AshaScheduler.presets}
    assert presets == {"pause": {"mode": "pause"}, "eager": {"mode": "pause", "eager_top": True}}
    for settings in presets.values():
        assert make_scheduler("asha", max_resource=9, **settings).pauses


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: make_scheduler("asha", eta=3),
            "eta: got an unknown setting, allowed: one of min_resource, reduction_factor, "
            "max_resource, mode, eager_top",
        ),
        (lambda: make_sampler("random", 0, points_per_dim=3), "allowed: no settings"),
        (lambda: make_sampler("tpe", 0, gamma=1), "gamma: got 1, allowed: 0 < gamma < 1"),
        (lambda: make_sampler("tpe", 0, n_startup=2.5), "n_startup: got 2.5, allowed: an integer"),
        (
            lambda: make_scheduler("median", grace=True),
            "grace: got True, allowed: an integer >= 0",
        ),
        (lambda: make_scheduler("asha", mode="later"), "allowed: one of 'stop', 'pause'"),
    ],
)
def test_settings_are_checked_from_the_declarations(call: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        call()  # type: ignore[operator]
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("setting", "value", "allowed"),
    [
        (Setting("k", "int", 1, "", low=1, high=5), 6, "an integer, 1 <= k <= 5"),
        (Setting("k", "int", 1, "", high=5, high_open=True), 5, "an integer < 5"),
        (Setting("x", "float", 0.5, "", low=0, low_open=True), 0.0, "a number > 0"),
        (Setting("x", "float", 0.5, "", low=0, high=1), float("nan"), "0 <= x <= 1"),
        (Setting("x", "float", 0.5, ""), "0.5", "a number"),
        (Setting("on", "bool", False, ""), 1, "true or false"),
        (Setting("s", "str", "a", "", choices=("a", "b")), "c", "one of 'a', 'b'"),
    ],
)
def test_a_refused_setting_names_itself_its_value_and_the_allowed_range(
    setting: Setting, value: object, allowed: str
) -> None:
    with pytest.raises(ValueError) as info:
        setting.check(value)
    assert str(info.value) == f"{setting.name}: got {value!r}, allowed: {allowed}"


def test_a_float_setting_takes_an_integer_as_a_float() -> None:
    value = Setting("x", "float", 0.5, "", low=0, high=1).check(1)
    assert value == 1.0 and isinstance(value, float)


# -- a new algorithm is one class ------------------------------------------------------------


class _Never(Scheduler):
    """Base of the test schedulers below: never stops (no name: not registered itself)."""

    def on_report(
        self,
        trial: TrialView,
        resource: int,
        value: float,
        history: Sequence[TrialView],
        records: Sequence[RungRecord],
    ) -> SchedulerStep:
        return SchedulerStep(Decision.CONTINUE)


@pytest.fixture
def forget() -> Iterator[list[str]]:
    """Names the test registers, taken out of the registry afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        SCHEDULERS.pop(name, None)


def test_defining_a_class_with_a_name_registers_it(forget: list[str]) -> None:
    assert "_Never" not in {c.__name__ for c in SCHEDULERS.values()}
    forget.append("test-patience")

    class Patience(_Never):
        name = "test-patience"
        label = "patience"
        help = "Never stops (a test)."
        settings = (Setting("epochs", "int", 2, "epochs to wait", low=1),)

        def __init__(self, epochs: int = 2) -> None:
            self.epochs = self._check("epochs", epochs)

    assert SCHEDULERS["test-patience"] is Patience
    built = make_scheduler("test-patience", epochs=4)
    assert isinstance(built, Patience) and built.epochs == 4
    with pytest.raises(ValueError, match="epochs: got 0, allowed: an integer >= 1"):
        make_scheduler("test-patience", epochs=0)
    with pytest.raises(ValueError, match="allowed: one of none, asha, median, .*test-patience"):
        make_scheduler("nope")


def test_a_taken_name_is_refused(forget: list[str]) -> None:
    with pytest.raises(ValueError, match="scheduler 'asha': the name is taken by app.tuning.asha"):

        class Impostor(_Never):
            name = "asha"

    assert SCHEDULERS["asha"] is AshaScheduler


def test_a_declared_setting_the_constructor_lacks_is_refused(forget: list[str]) -> None:
    forget.append("test-broken")
    with pytest.raises(TypeError, match="'test-broken': the constructor takes no rate, direction"):

        class Broken(_Never):
            name = "test-broken"
            settings = (Setting("rate", "float", 0.1, "a rate"),)
            needs_direction = True

    assert "test-broken" not in SCHEDULERS
