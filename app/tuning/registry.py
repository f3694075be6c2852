"""Samplers and schedulers by name, built from the names and settings a study stores.

Every sampler and scheduler registers itself when its class is defined, from what it declares
(:class:`~app.tuning.base.Algorithm`). This module imports the built-in ones, in the order
they are offered; a new built-in algorithm is one module, listed in :data:`BUILT_IN`, and a
third-party one is any module the server imports (``PANDACAVIAR_PLUGINS``).
"""

from __future__ import annotations

import importlib
from typing import Any

from app.tuning.base import SAMPLERS, SCHEDULERS, Direction, Sampler, Scheduler

__all__ = ["BUILT_IN", "SAMPLERS", "SCHEDULERS", "make_sampler", "make_scheduler"]

BUILT_IN = (
    "app.tuning.random_search",
    "app.tuning.grid",
    "app.tuning.sobol",
    "app.tuning.tpe",
    "app.tuning.no_stopping",
    "app.tuning.asha",
    "app.tuning.median",
)
for _module in BUILT_IN:
    importlib.import_module(_module)


def make_sampler(
    name: str, seed: int = 0, *, direction: Direction | str | None = None, **settings: Any
) -> Sampler:
    """A sampler by name (``"random"``, ``"grid"``, ...), its settings checked.

    Args:
        name: the registry name.
        seed: the study seed, for the samplers that declare ``needs_seed`` (Sobol's
            scrambling; the others draw from the trial's generator).
        direction: the objective's, for the samplers that declare ``needs_direction`` (tpe);
            minimise when not given.
        **settings: the user's settings, e.g. ``points_per_dim`` for grid.

    Raises:
        ValueError: an unknown name or setting, or a setting out of range.
    """
    cls = SAMPLERS.get(name)
    if cls is None:
        raise ValueError(f"sampler: got {name!r}, allowed: one of {', '.join(SAMPLERS)}")
    return cls.build(settings, seed=seed, direction=_direction(direction))


def make_scheduler(
    name: str, *, direction: Direction | str | None = None, **settings: Any
) -> Scheduler:
    """A scheduler by name (``"none"``, ``"asha"``, ...), its settings checked.

    Raises:
        ValueError: an unknown name or setting, or a setting out of range.
    """
    cls = SCHEDULERS.get(name)
    if cls is None:
        raise ValueError(f"scheduler: got {name!r}, allowed: one of {', '.join(SCHEDULERS)}")
    return cls.build(settings, direction=_direction(direction))


def _direction(direction: Direction | str | None) -> Direction | None:
    return None if direction is None else Direction(direction)
