"""Health, the task catalogue, the hyperparameter catalogue and the search algorithms."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import text

from app.deps import SessionDep
from app.schemas import (
    AlgorithmPublic,
    AlgorithmsPublic,
    Health,
    HParamPublic,
    PresetPublic,
    SettingPublic,
    TaskPublic,
    TasksPublic,
)
from app.tuning import SAMPLERS, SCHEDULERS, Algorithm
from trainer.config import HPARAM_SPECS

router = APIRouter(tags=["meta"])


@cache
def _version() -> str:
    try:
        return version("panda-caviar")
    except PackageNotFoundError:
        return ""


@router.get("/health", response_model=Health)
def health(request: Request, session: SessionDep) -> Health:
    """Liveness: the database answers; how many live streams are open."""
    session.execute(text("SELECT 1"))
    return Health(
        version=_version() or request.app.version,
        database=session.get_bind().dialect.name,
        streams=request.app.state.streams,
        lease_seconds=request.app.state.settings.lease_seconds,
        max_failures=request.app.state.settings.max_failures,
    )


@router.get("/tasks", response_model=TasksPublic)
def tasks() -> TasksPublic:
    """The data sets trials can train on, with their options."""
    from trainer.data import TASKS  # NumPy and scikit-learn: loaded on first use only

    data = [TaskPublic.model_validate(info.to_dict()) for info in TASKS.values()]
    return TasksPublic(data=data, count=len(data))


@router.get("/hparams", response_model=list[HParamPublic])
def hparams() -> list[HParamPublic]:
    """Every hyperparameter: type, default, allowed range, adjustable while running."""
    return [_hparam(spec) for spec in HPARAM_SPECS.values()]


def _hparam(spec: Any) -> HParamPublic:
    return HParamPublic(
        name=spec.name,
        type=spec.type.__name__,
        default=spec.default,
        low=spec.low,
        high=spec.high,
        low_open=spec.low_open,
        high_open=spec.high_open,
        choices=list(spec.choices),
        adjustable=spec.adjustable,
        range=spec.range_text(),
        help=spec.help,
    )


@router.get("/algorithms", response_model=AlgorithmsPublic)
def algorithms() -> AlgorithmsPublic:
    """The samplers and schedulers a caviar study can use, with their settings, in the order
    the new-study form offers them; those of ``PANDACAVIAR_PLUGINS`` modules included."""
    return AlgorithmsPublic(
        samplers=[_algorithm(cls) for cls in SAMPLERS.values()],
        schedulers=[_algorithm(cls) for cls in SCHEDULERS.values()],
    )


def _algorithm(cls: type[Algorithm]) -> AlgorithmPublic:
    return AlgorithmPublic(
        name=cls.name,
        label=cls.label or cls.name,
        help=cls.help,
        needs_direction=cls.needs_direction,
        settings=[
            SettingPublic(
                name=s.name,
                type=s.type,
                default=s.default,
                low=s.low,
                high=s.high,
                low_open=s.low_open,
                high_open=s.high_open,
                choices=list(s.choices),
                range=s.allowed(),
                help=s.help,
            )
            for s in cls.settings
        ],
        presets=[
            PresetPublic(key=p.key, label=p.label, settings=dict(p.settings)) for p in cls.presets
        ],
    )
