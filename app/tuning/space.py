"""A search space as data: ranged hyperparameters with their scale, plus fixed values.

JSON form (one object, hyperparameter name -> a plain scalar for a fixed value or a
distribution object)::

    {"learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1},
     "momentum": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999},
     "optimizer": "adam",
     "batch_size": {"dist": "log_int", "low": 16, "high": 256},
     "activation": {"dist": "choice", "values": ["relu", "tanh"]}}

The algorithms stay generic over names; the server passes ``check_value`` (built from
``trainer.config``) so a space can only produce values the trainer accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from app.tuning.discrete import Choice, IntUniform, LogInt
from app.tuning.distributions import (
    DistKind,
    Distribution,
    LogUniform,
    OneMinusLogUniform,
    Scalar,
    Uniform,
    is_number,
)

__all__ = [
    "Choice",
    "DistKind",
    "Distribution",
    "IntUniform",
    "LogInt",
    "LogUniform",
    "OneMinusLogUniform",
    "Scalar",
    "SearchSpace",
    "SpaceError",
    "Uniform",
    "dist_from_dict",
    "parse_space",
]

ValueChecker = Callable[[str, object], object]


_CLASSES: dict[DistKind, type[Distribution]] = {
    cls.kind: cls for cls in (Uniform, LogUniform, OneMinusLogUniform, IntUniform, LogInt, Choice)
}


def dist_from_dict(d: Mapping[str, object]) -> Distribution:
    """Rebuild a distribution from its JSON form (the inverse of ``to_dict``).

    Raises:
        ValueError: an unknown ``dist``, a missing or extra key, or a bad bound/value.
    """
    kinds = ", ".join(k.value for k in DistKind)
    try:
        kind = DistKind(d.get("dist"))
    except ValueError:
        raise ValueError(f"dist: got {d.get('dist')!r}, allowed: one of {kinds}") from None
    expected = {"dist", "values"} if kind is DistKind.CHOICE else {"dist", "low", "high"}
    missing, extra = expected - set(d), set(d) - expected
    if missing or extra:
        raise ValueError(
            f"keys: missing {sorted(missing)}, unexpected {sorted(extra)}; "
            f"allowed for {kind.value!r}: {sorted(expected)}"
        )
    if kind is DistKind.CHOICE:
        return Choice(d["values"])  # type: ignore[arg-type]
    return _CLASSES[kind](d["low"], d["high"])  # type: ignore[call-arg]


class SpaceError(ValueError):
    """A search space is invalid; ``name`` is the offending hyperparameter (a 422's field)."""

    def __init__(self, name: str, message: str) -> None:
        # Checkers often prefix their own message with the field name; do not say it twice.
        message = message.removeprefix(f"{name}: ")
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


@dataclass(frozen=True)
class SearchSpace:
    """Ranged hyperparameters (name -> distribution) and fixed ones (name -> value).

    Attributes:
        ranged: drawn per trial, in this order.
        fixed: the same in every trial.
    """

    ranged: Mapping[str, Distribution] = field(default_factory=dict)
    fixed: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        both = sorted(set(self.ranged) & set(self.fixed))
        if both:
            raise ValueError(f"fixed: got {both!r} also in ranged, allowed: each name once")
        object.__setattr__(self, "ranged", dict(self.ranged))
        object.__setattr__(self, "fixed", dict(self.fixed))

    @property
    def names(self) -> tuple[str, ...]:
        """Every hyperparameter name: the ranged ones first, then the fixed ones."""
        return (*self.ranged, *self.fixed)

    def sample(self, rng: np.random.Generator) -> dict[str, object]:
        """Independent draws of every ranged hyperparameter on its scale, plus the fixed ones."""
        out: dict[str, object] = {name: d.sample(rng) for name, d in self.ranged.items()}
        out.update(self.fixed)
        return out

    def complete(self, draws: Mapping[str, object]) -> dict[str, object]:
        """``draws`` for the ranged names followed by the fixed values (samplers' last step)."""
        out: dict[str, object] = {name: draws[name] for name in self.ranged}
        out.update(self.fixed)
        return out

    def contains(self, hparams: Mapping[str, object]) -> bool:
        """Whether every ranged value lies in its range and every fixed value matches."""
        return all(
            name in hparams and d.contains(hparams[name]) for name, d in self.ranged.items()
        ) and all(
            name in hparams and Choice((v,)).contains(hparams[name])
            for name, v in self.fixed.items()
        )

    def to_dict(self) -> dict[str, object]:
        """The JSON form; :func:`parse_space` inverts it."""
        out: dict[str, object] = {name: d.to_dict() for name, d in self.ranged.items()}
        out.update(self.fixed)
        return out


def parse_space(
    data: Mapping[str, object], *, check_value: ValueChecker | None = None
) -> SearchSpace:
    """Validate a JSON search space and build a :class:`SearchSpace`.

    Args:
        data: hyperparameter name -> a JSON scalar (fixed) or a distribution object.
        check_value: ``check_value(name, value)`` raises ValueError for an unknown name or a
            value the trainer rejects; it is called on every fixed value, both bounds of
            every range and every choice. Its return value is ignored.

    Raises:
        SpaceError: with ``.name`` the offending hyperparameter and a message naming the
            allowed range.
    """
    if not isinstance(data, Mapping):
        raise SpaceError("space", f"got {type(data).__name__}, allowed: an object")
    ranged: dict[str, Distribution] = {}
    fixed: dict[str, Scalar] = {}
    for name, spec in data.items():
        if not isinstance(name, str) or not name:
            raise SpaceError(str(name), "allowed: a non-empty hyperparameter name")
        if isinstance(spec, Mapping):
            ranged[name] = _parse_dist(name, spec, check_value)
        elif isinstance(spec, str | bool) or is_number(spec):
            _check(name, spec, check_value)
            fixed[name] = spec  # type: ignore[assignment]
        else:
            raise SpaceError(
                name,
                f"got {spec!r}, allowed: a fixed string/finite number/boolean or an "
                'object with a "dist" key',
            )
    return SearchSpace(ranged=ranged, fixed=fixed)


def _parse_dist(
    name: str, spec: Mapping[str, object], check_value: ValueChecker | None
) -> Distribution:
    try:
        dist = dist_from_dict(spec)
    except ValueError as exc:
        raise SpaceError(name, str(exc)) from None
    points: list[object] = (
        list(dist.values) if isinstance(dist, Choice) else [spec["low"], spec["high"]]
    )
    for v in points:
        _check(name, v, check_value)
    return dist


def _check(name: str, value: object, check_value: ValueChecker | None) -> None:
    if check_value is None:
        return
    try:
        check_value(name, value)
    except ValueError as exc:
        raise SpaceError(name, str(exc)) from None
