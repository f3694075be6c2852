"""Small bases every search algorithm builds on: trial views, enums and two ABCs.

A sampler or scheduler declares what the rest of the program needs to know about it as class
attributes (:class:`Algorithm`): its ``name``, a one-line ``label`` and ``help``, its user
``settings`` (:class:`Setting`: type, default, allowed range), named ``presets`` of them, and
whether it is built with the objective's direction or the study seed. A class that declares a
``name`` registers itself when it is defined (:data:`SAMPLERS`, :data:`SCHEDULERS`); the
registry, the request checks, ``GET /api/algorithms`` and the new-study form are built from
these declarations, so a new algorithm is one module.

Algorithms never see ORM rows. A glue module in the server turns stored trials into
:class:`TrialView` objects and stored rung records into :class:`RungRecord` objects, calls an
algorithm, and persists whatever it returns. Every decision is a pure function of those
inputs plus the algorithm's own settings, so a server restart changes nothing.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeVar, cast

import numpy as np

if TYPE_CHECKING:
    from app.tuning.space import SearchSpace


class TrialStatus(str, Enum):
    """What the algorithms need to know about a trial's state (the server maps its own)."""

    RUNNING = "running"
    COMPLETED = "completed"
    PRUNED = "pruned"
    FAILED = "failed"
    OTHER = "other"


class Direction(StrEnum):
    """Whether the objective is minimised (a loss) or maximised (an accuracy).

    The one Direction of the program: the server stores it as its value (``app.storage.models``
    re-exports this class), so ``"minimize"`` and ``"maximize"`` are what the database holds.
    """

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"

    def key(self, value: float) -> float:
        """A sort key, smaller = better: ``v`` (minimise) or ``-v`` (maximise); NaN -> +inf.

        NaN (a diverged trial) sorts last in both directions.
        """
        if math.isnan(value):
            return math.inf
        return value if self is Direction.MINIMIZE else -value

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``; NaN is worse than any number."""
        return self.key(a) < self.key(b)


class Decision(str, Enum):
    """A scheduler's answer to one report.

    PAUSE parks the trial: it checkpoints and waits until :meth:`Scheduler.promotions` names
    it (the server then queues it again) or the study ends (then it ends as pruned).
    """

    CONTINUE = "continue"
    STOP = "stop"
    PAUSE = "pause"


@dataclass(frozen=True)
class TrialView:
    """A stored trial as the algorithms see it.

    Attributes:
        number: the trial's number in its study (unique, stable).
        round: the coarse-to-fine round the trial belongs to (0 = the first).
        state: see :class:`TrialStatus`.
        hparams: the trial's complete hyperparameters, name -> value.
        value: the final objective value, None until the trial completes.
        intermediate: resource (epoch) -> objective value reported at that resource.
    """

    number: int
    round: int
    state: TrialStatus
    hparams: Mapping[str, object]
    value: float | None = None
    intermediate: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RungRecord:
    """One trial's objective value at one ASHA rung; the server stores one row per record."""

    trial_number: int
    rung: int
    value: float


@dataclass(frozen=True)
class DecisionPoints:
    """The epoch ends at which a scheduler may answer something other than CONTINUE.

    A worker sends its report at once at these (its reports are otherwise batched by time),
    so that a stop or a pause takes effect at the epoch it was decided for, not one report
    interval later: a small network trains several epochs in one interval. ``epochs`` lists
    them; ``every_from`` adds every epoch from that one on.
    """

    epochs: tuple[int, ...] = ()
    every_from: int | None = None

    def includes(self, epoch: int) -> bool:
        return epoch in self.epochs or (self.every_from is not None and epoch >= self.every_from)


@dataclass(frozen=True)
class SchedulerStep:
    """A scheduler's answer: the decision, records the server must persist, and why (what
    the trial was compared with: a rung's cut, a median), which the trial page shows."""

    decision: Decision
    new_records: tuple[RungRecord, ...] = ()
    why: Mapping[str, float | int] = field(default_factory=dict)


def completed_trials(trials: Sequence[TrialView]) -> list[TrialView]:
    """The completed trials with a finite final value, in the given order."""
    return [
        t
        for t in trials
        if t.state is TrialStatus.COMPLETED and t.value is not None and math.isfinite(t.value)
    ]


def ranked(trials: Sequence[TrialView], direction: Direction) -> list[TrialView]:
    """:func:`completed_trials` best first; ties broken by the lower trial number."""
    return sorted(
        completed_trials(trials),
        key=lambda t: (direction.key(float(t.value)), t.number),  # type: ignore[arg-type]
    )


def trial_rng(seed: int, trial_number: int) -> np.random.Generator:
    """The generator a trial's hyperparameters are drawn with: ``default_rng([seed, number])``.

    Deriving it from the study seed and the trial number (both stored) instead of one
    long-lived generator makes a draw independent of restarts and of the order in which
    trials were created.
    """
    return np.random.default_rng([seed, trial_number])


SettingType = Literal["int", "float", "bool", "str"]
SettingValue = int | float | bool | str
_T = TypeVar("_T")


@dataclass(frozen=True)
class Setting:
    """One setting a user may give a sampler or scheduler: ``{"name": "asha", "<name>": v}``.

    Attributes:
        name: the constructor's keyword argument.
        type: ``"int"``, ``"float"``, ``"bool"`` or ``"str"`` (a str setting lists ``choices``).
        default: the constructor's default; None when the server fills it in from the study
            (ASHA's ``max_resource``: the most epochs a trial can train).
        help: one line for the API and the new-study form.
        low, high: bounds of a number, inclusive unless ``low_open`` / ``high_open``.
        choices: the values a str setting allows.
    """

    name: str
    type: SettingType
    default: SettingValue | None
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        """The allowed values in words: ``an integer >= 1``, ``0 < gamma < 1``, ``one of ...``."""
        if self.type == "bool":
            return "true or false"
        if self.type == "str":
            return "one of " + ", ".join(map(repr, self.choices)) if self.choices else "a string"
        kind = "an integer" if self.type == "int" else "a number"
        below = "<" if self.low_open else "<="
        above = "<" if self.high_open else "<="
        if self.low is not None and self.high is not None:
            between = f"{self.low:g} {below} {self.name} {above} {self.high:g}"
            return f"{kind}, {between}" if self.type == "int" else between
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{kind} {above} {self.high:g}"
        return kind

    def check(self, value: object) -> SettingValue:
        """``value`` if allowed (an int given for a float setting becomes a float).

        Raises:
            ValueError: ``"<name>: got <value>, allowed: <allowed()>"``.
        """
        if self.type == "bool":
            if isinstance(value, bool):
                return value
        elif self.type == "str":
            if isinstance(value, str) and (not self.choices or value in self.choices):
                return value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value) if self.type == "float" else value
            if (self.type == "float" or isinstance(value, int)) and self._within(float(value)):
                return number
        raise ValueError(f"{self.name}: got {value!r}, allowed: {self.allowed()}")

    def _within(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return False
        return self.high is None or not (v > self.high or (self.high_open and v == self.high))


@dataclass(frozen=True)
class Preset:
    """Settings the new-study form offers as an entry of their own, e.g. ASHA in pause mode.

    The form's entry is ``"<algorithm name>-<key>"``; choosing it fills the settings in.
    """

    key: str
    label: str
    settings: Mapping[str, SettingValue]


class Algorithm:
    """What a sampler or scheduler declares about itself, as class attributes.

    Attributes:
        name: the registry name a study stores (``"asha"``); a class that declares one is
            registered when it is defined, so importing its module once makes it known.
        label: a few words for the new-study form's list.
        help: one sentence on what it does.
        settings: the keyword arguments a user may set, each checked by its :class:`Setting`.
        presets: settings offered as entries of their own in the new-study form.
        needs_direction: whether the constructor takes ``direction`` (the study's objective
            sets it, users do not).
        needs_seed: whether the constructor takes ``seed`` (the study seed, per round).
    """

    name: ClassVar[str]
    label: ClassVar[str] = ""
    help: ClassVar[str] = ""
    settings: ClassVar[tuple[Setting, ...]] = ()
    presets: ClassVar[tuple[Preset, ...]] = ()
    needs_direction: ClassVar[bool] = False
    needs_seed: ClassVar[bool] = False

    @classmethod
    def check_settings(cls, settings: Mapping[str, object]) -> dict[str, SettingValue]:
        """The user's settings, each checked against its declaration.

        Raises:
            ValueError: naming the first unknown or refused setting, ``"<setting>: got ..."``.
        """
        declared = {s.name: s for s in cls.settings}
        out: dict[str, SettingValue] = {}
        for key, value in settings.items():
            if key not in declared:
                allowed = f"one of {', '.join(declared)}" if declared else "no settings"
                raise ValueError(f"{key}: got an unknown setting, allowed: {allowed}")
            out[key] = declared[key].check(value)
        return out

    @classmethod
    def build(
        cls, settings: Mapping[str, object], *, seed: int = 0, direction: Direction | None = None
    ) -> Self:
        """An instance from a study's stored settings, its seed and its objective's direction."""
        kwargs: dict[str, object] = dict(cls.check_settings(settings))
        if cls.needs_direction:
            kwargs["direction"] = Direction(direction or Direction.MINIMIZE)
        if cls.needs_seed:
            kwargs["seed"] = seed
        return cast(Callable[..., Self], cls)(**kwargs)

    @classmethod
    def _check(cls, name: str, value: _T) -> _T:
        """A constructor argument checked by its declared :class:`Setting`."""
        setting = next(s for s in cls.settings if s.name == name)
        return cast(_T, setting.check(value))


_A = TypeVar("_A", bound=Algorithm)

#: Every sampler and scheduler defined so far, by name, in the order they were defined
#: (``app.tuning.registry`` defines the built-in ones first, in the order they are offered).
SAMPLERS: dict[str, type[Sampler]] = {}
SCHEDULERS: dict[str, type[Scheduler]] = {}


def _register(registry: dict[str, type[_A]], cls: type[_A], kind: str) -> None:
    """Adds ``cls`` under its declared ``name`` (a class without one is a base, not added)."""
    if "name" not in vars(cls):
        return
    taken = registry.get(cls.name)
    if taken is not None and _where(taken) != _where(cls):  # a reloaded module may redefine
        raise ValueError(f"{kind} {cls.name!r}: the name is taken by {_where(taken)}")
    params = inspect.signature(cls).parameters
    wanted = [s.name for s in cls.settings]
    wanted += ["direction"] * cls.needs_direction + ["seed"] * cls.needs_seed
    missing = [w for w in wanted if w not in params]
    if missing:
        raise TypeError(f"{kind} {cls.name!r}: the constructor takes no {', '.join(missing)}")
    registry[cls.name] = cls


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Sampler(Algorithm, ABC):
    """Proposes hyperparameters for a new trial."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register(SAMPLERS, cls, "sampler")

    @abstractmethod
    def sample(
        self,
        space: SearchSpace,
        history: Sequence[TrialView],
        rng: np.random.Generator,
        *,
        index: int,
    ) -> dict[str, object]:
        """Return a complete hyperparameter dict (ranged draws plus the fixed values).

        Args:
            space: the round's search space.
            history: the study's stored trials (any state, any round).
            rng: a seeded generator, e.g. :func:`trial_rng`; the only source of randomness.
            index: the trial's position in its round (0, 1, ...), used by deterministic
                samplers (grid, Sobol).
        """


class Scheduler(Algorithm, ABC):
    """Decides, at each report, whether a running trial goes on."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register(SCHEDULERS, cls, "scheduler")

    #: Whether ``on_report`` may answer PAUSE; only then does the server ask ``promotions``.
    pauses: bool = False

    @classmethod
    def budget_defaults(
        cls, trials: int, max_epochs: int, given: Mapping[str, object]
    ) -> dict[str, SettingValue]:
        """Defaults fitted to a study of about ``trials`` trials of at most ``max_epochs``
        epochs, for the settings not in ``given``; a scheduler without such defaults has none.
        """
        return {}

    def plan(self, trials: int) -> str:
        """What the scheduler will do with about ``trials`` trials, in one line for the form."""
        return ""

    def decision_points(self) -> DecisionPoints:
        """Where ``on_report`` may stop or pause a trial: every epoch unless said otherwise."""
        return DecisionPoints(every_from=1)

    @abstractmethod
    def on_report(
        self,
        trial: TrialView,
        resource: int,
        value: float,
        history: Sequence[TrialView],
        records: Sequence[RungRecord],
    ) -> SchedulerStep:
        """Decide on one report of ``value`` at ``resource`` (epochs) by ``trial``.

        Args:
            trial: the reporting trial.
            resource: epochs trained so far.
            value: the objective at that resource.
            history: the study's stored trials.
            records: every rung record stored so far for the study, in insertion order.
        """

    def promotions(
        self, records: Sequence[RungRecord], waiting: Collection[int], *, final: bool = False
    ) -> list[int]:
        """Of the ``waiting`` trials (numbers of trials this scheduler PAUSEd), those to resume
        now, in order; ``final``: no new trial will start, this is their last chance.

        A scheduler that never answers PAUSE has nothing to promote.
        """
        return []
