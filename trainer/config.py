"""Hyperparameters and run options: names, types, defaults, allowed ranges.

This module is the single source of truth for what a hyperparameter may be. The server
validates API input with :func:`check_hparams`, the trainer validates with
:class:`TrainConfig`, so a value accepted at the door is always one the engine can train with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any


class HParamError(ValueError):
    """A hyperparameter value is invalid; ``name`` is the offending field."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class NotAdjustableError(HParamError):
    """A hyperparameter that defines the architecture cannot change once a trial has started."""


class Optimizer(str, Enum):
    SGD = "sgd"
    MOMENTUM = "momentum"
    RMSPROP = "rmsprop"
    ADAM = "adam"


class DecaySchedule(str, Enum):
    NONE = "none"
    INVERSE_TIME = "inverse_time"
    EXPONENTIAL = "exponential"
    STEP = "step"
    SQRT = "sqrt"


class Activation(str, Enum):
    RELU = "relu"
    TANH = "tanh"
    SIGMOID = "sigmoid"


class Init(str, Enum):
    HE = "he"
    XAVIER = "xavier"


@dataclass(frozen=True)
class HParamSpec:
    """One hyperparameter: its type, default and allowed values.

    Float and int ranges are ``low <= v <= high``; ``low_open``/``high_open`` make a bound
    strict. ``choices`` lists the allowed strings of a categorical one.
    """

    name: str
    type: type
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    adjustable: bool = False
    help: str = ""

    def range_text(self) -> str:
        """The allowed values in words, as error messages show them."""
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.type is bool:
            return "true or false"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        kind = "an integer" if self.type is int else "a finite number"
        return f"{kind} in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"

    def check(self, value: Any) -> Any:
        """Return ``value`` coerced to this spec's type, or raise :class:`HParamError`."""
        if self.choices:
            if not isinstance(value, str) or value not in self.choices:
                raise HParamError(self.name, f"got {value!r}, allowed: {self.range_text()}")
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise HParamError(self.name, f"got {value!r}, allowed: {self.range_text()}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise HParamError(self.name, f"got {value!r}, allowed: {self.range_text()}")
        if self.type is int:
            if isinstance(value, float) and not value.is_integer():
                raise HParamError(self.name, f"got {value!r}, allowed: {self.range_text()}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise HParamError(self.name, f"got {value!r}, allowed: {self.range_text()}")
        assert self.low is not None and self.high is not None  # numeric specs always have both
        too_low = value <= self.low if self.low_open else value < self.low
        too_high = value >= self.high if self.high_open else value > self.high
        if too_low or too_high:
            raise HParamError(self.name, f"got {value!r}, allowed: {self.range_text()}")
        return value


def _fmt(x: float | None) -> str:
    if x is None:
        return "-inf"
    # Whole bounds in full (a seed's 4294967295, not 4.29497e+09); others short (1e-05).
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _choices(enum: type[Enum]) -> tuple[str, ...]:
    return tuple(str(m.value) for m in enum)


# Order follows the course notes' order of importance, then the rest.
HPARAM_SPECS: dict[str, HParamSpec] = {
    s.name: s
    for s in [
        HParamSpec(
            "learning_rate",
            float,
            1e-3,
            0.0,
            10.0,
            low_open=True,
            adjustable=True,
            help="alpha, the most important one; tune on a log scale, 1e-4 to 1",
        ),
        HParamSpec(
            "momentum",
            float,
            0.9,
            0.0,
            1.0,
            high_open=True,
            adjustable=True,
            help="momentum beta; tune 1-beta on a log scale, 0.9 to 0.999",
        ),
        HParamSpec(
            "batch_size", int, 32, 1, 65536, adjustable=True, help="mini-batch size; powers of two"
        ),
        HParamSpec("hidden_units", int, 128, 1, 4096, help="units in every hidden layer"),
        HParamSpec("num_layers", int, 2, 1, 10, help="number of hidden layers"),
        HParamSpec(
            "lr_decay",
            float,
            0.0,
            0.0,
            100.0,
            adjustable=True,
            help="decay rate (inverse_time), factor (exponential, step) or k (sqrt)",
        ),
        HParamSpec(
            "decay_schedule",
            str,
            "none",
            choices=_choices(DecaySchedule),
            adjustable=True,
            help="how the learning rate decays with the epoch",
        ),
        HParamSpec(
            "decay_every",
            int,
            10,
            1,
            100000,
            adjustable=True,
            help="epochs between drops of the step schedule",
        ),
        HParamSpec(
            "beta1",
            float,
            0.9,
            0.0,
            1.0,
            high_open=True,
            adjustable=True,
            help="Adam's first-moment decay; almost always left at 0.9",
        ),
        HParamSpec(
            "beta2",
            float,
            0.999,
            0.0,
            1.0,
            high_open=True,
            adjustable=True,
            help="Adam/RMSprop second-moment decay; almost always 0.999",
        ),
        HParamSpec(
            "epsilon",
            float,
            1e-8,
            0.0,
            1.0,
            low_open=True,
            adjustable=True,
            help="Adam/RMSprop denominator guard; almost always 1e-8",
        ),
        HParamSpec("optimizer", str, "adam", choices=_choices(Optimizer)),
        HParamSpec("batch_norm", bool, True, help="batch norm on Z before each hidden activation"),
        HParamSpec(
            "bn_momentum",
            float,
            0.9,
            0.0,
            1.0,
            high_open=True,
            adjustable=True,
            help="weight of the old value in batch norm's running averages",
        ),
        HParamSpec(
            "l2",
            float,
            0.0,
            0.0,
            10.0,
            adjustable=True,
            help="L2 penalty lambda: loss += lambda/2 * sum(W**2)",
        ),
        HParamSpec(
            "keep_prob",
            float,
            1.0,
            0.0,
            1.0,
            low_open=True,
            adjustable=True,
            help="inverted dropout keep probability on hidden activations",
        ),
        HParamSpec("activation", str, "relu", choices=_choices(Activation)),
        HParamSpec("init", str, "he", choices=_choices(Init)),
        HParamSpec("epochs", int, 20, 1, 100000, help="passes over the training split"),
        HParamSpec("seed", int, 0, 0, 2**32 - 1, help="seeds init, shuffling and dropout"),
    ]
}

ADJUSTABLE: frozenset[str] = frozenset(n for n, s in HPARAM_SPECS.items() if s.adjustable)
ARCHITECTURE: frozenset[str] = frozenset(
    {"hidden_units", "num_layers", "batch_norm", "activation", "init", "optimizer"}
)

# These schedules multiply the rate by lr_decay**k, so the factor must lie in (0, 1].
_FACTOR_SCHEDULES = {DecaySchedule.EXPONENTIAL.value, DecaySchedule.STEP.value}


def check_hparams(values: Mapping[str, Any], *, adjust: bool = False) -> dict[str, Any]:
    """Validate a (partial) hyperparameter mapping and return the coerced values.

    Args:
        values: hyperparameter name -> value.
        adjust: when true, only :data:`ADJUSTABLE` names are accepted (a running trial).

    Raises:
        HParamError: an unknown name or a value outside its range; the error names the field.
        NotAdjustableError: ``adjust`` and a name that needs a new trial.
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        spec = HPARAM_SPECS.get(name)
        if spec is None:
            raise HParamError(name, "unknown hyperparameter; known: " + ", ".join(HPARAM_SPECS))
        if adjust and not spec.adjustable:
            raise NotAdjustableError(
                name,
                "cannot change once a trial has started; start a new trial or fork instead "
                "(adjustable: " + ", ".join(sorted(ADJUSTABLE)) + ")",
            )
        out[name] = spec.check(value)
    return out


def check_combination(hp: Mapping[str, Any]) -> None:
    """Cross-field rules on a complete hyperparameter mapping."""
    if hp["decay_schedule"] in _FACTOR_SCHEDULES and not 0.0 < hp["lr_decay"] <= 1.0:
        raise HParamError(
            "lr_decay",
            f"got {hp['lr_decay']!r}, allowed: a factor in (0, 1] for decay_schedule "
            f"{hp['decay_schedule']!r}",
        )
    if hp["decay_schedule"] == DecaySchedule.SQRT.value and hp["lr_decay"] <= 0.0:
        raise HParamError("lr_decay", f"got {hp['lr_decay']!r}, allowed: k > 0 for 'sqrt'")


def default_hparams() -> dict[str, Any]:
    return {name: spec.default for name, spec in HPARAM_SPECS.items()}


def complete_hparams(values: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with validated ``values``; cross-field rules checked."""
    hp = default_hparams()
    hp.update(check_hparams(values))
    check_combination(hp)
    return hp


class DType(str, Enum):
    FLOAT32 = "float32"
    FLOAT64 = "float64"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a worker needs to build and run one trial.

    Attributes:
        task: a task name from :data:`trainer.data.TASKS`.
        hparams: a complete hyperparameter mapping (see :func:`complete_hparams`).
        task_options: task parameters (size, noise, classes, path, coefficients...).
        split_seed: fixes the train/dev/test split, shared by every trial of a study.
        dtype: float32 (fast, the default) or float64 (gradient checks).
        max_steps: stop after this many steps instead of after ``epochs`` epochs.
        eval_every: evaluate on the dev split every this many steps (0: epoch ends only).
        report_every: a safe point every this many steps...
        report_seconds: ...or once this much wall time passed since the last (0: off).
        checkpoint_every: checkpoint every this many epochs (0: off).
    """

    task: str = "digits"
    hparams: Mapping[str, Any] = field(default_factory=default_hparams)
    task_options: Mapping[str, Any] = field(default_factory=dict)
    split_seed: int = 0
    dtype: DType = DType.FLOAT32
    max_steps: int | None = None
    eval_every: int = 0
    report_every: int = 20
    report_seconds: float = 0.0
    checkpoint_every: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "hparams", complete_hparams(self.hparams))
        object.__setattr__(self, "dtype", DType(self.dtype))
        for name in ("eval_every", "report_every", "checkpoint_every", "split_seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: got {getattr(self, name)}, allowed: >= 0")
        if self.report_every < 1:
            raise ValueError(f"report_every: got {self.report_every}, allowed: >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps: got {self.max_steps}, allowed: >= 1")
        if not (math.isfinite(self.report_seconds) and self.report_seconds >= 0):
            raise ValueError(f"report_seconds: got {self.report_seconds}, allowed: >= 0")

    def with_hparams(self, **changes: Any) -> TrainConfig:
        return replace(self, hparams={**self.hparams, **changes})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form; :meth:`from_dict` inverts it."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["hparams"] = dict(self.hparams)
        out["task_options"] = dict(self.task_options)
        out["dtype"] = self.dtype.value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return cls(**dict(data))
