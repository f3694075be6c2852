"""Build samplers and schedulers from the names and settings a study stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.tuning.asha import AshaScheduler
from app.tuning.base import Sampler, Scheduler
from app.tuning.grid import GridSampler
from app.tuning.median import MedianStoppingScheduler
from app.tuning.no_stopping import NoStoppingScheduler
from app.tuning.random_search import RandomSampler
from app.tuning.sobol import SobolSampler
from app.tuning.tpe import TpeSampler


def _random(seed: int, **settings: Any) -> Sampler:
    return RandomSampler(**settings)


def _grid(seed: int, **settings: Any) -> Sampler:
    return GridSampler(**settings)


def _sobol(seed: int, **settings: Any) -> Sampler:
    return SobolSampler(seed, **settings)


def _tpe(seed: int, **settings: Any) -> Sampler:
    return TpeSampler(**settings)


SAMPLERS: dict[str, Callable[..., Sampler]] = {
    "random": _random,
    "grid": _grid,
    "sobol": _sobol,
    "tpe": _tpe,
}
SCHEDULERS: dict[str, Callable[..., Scheduler]] = {
    "none": NoStoppingScheduler,
    "asha": AshaScheduler,
    "median": MedianStoppingScheduler,
}


def make_sampler(name: str, seed: int = 0, **settings: Any) -> Sampler:
    """A sampler by name: ``"random"``, ``"grid"``, ``"sobol"`` or ``"tpe"``.

    Args:
        name: the registry name.
        seed: the study seed (Sobol's scrambling; the others draw from the trial's generator).
        **settings: constructor arguments, e.g. ``points_per_dim`` for grid, ``direction``
            for tpe.

    Raises:
        ValueError: an unknown name or setting, or a setting out of range.
    """
    factory = SAMPLERS.get(name)
    if factory is None:
        raise ValueError(f"sampler: got {name!r}, allowed: one of {', '.join(SAMPLERS)}")
    try:
        return factory(seed, **settings)
    except TypeError as exc:  # an unknown keyword
        raise ValueError(f"sampler {name!r} settings: {exc}") from None


def make_scheduler(name: str, **settings: Any) -> Scheduler:
    """A scheduler by name: ``"none"``, ``"asha"`` or ``"median"``, with its settings.

    Raises:
        ValueError: an unknown name or setting, or a setting out of range.
    """
    factory = SCHEDULERS.get(name)
    if factory is None:
        raise ValueError(f"scheduler: got {name!r}, allowed: one of {', '.join(SCHEDULERS)}")
    try:
        return factory(**settings)
    except TypeError as exc:
        raise ValueError(f"scheduler {name!r} settings: {exc}") from None
