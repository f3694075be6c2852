"""Health, tasks, the hyperparameter catalogue and the search algorithms."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    database: str
    streams: int = Field(description="open SSE streams")
    lease_seconds: float = Field(
        description="a running trial whose worker is silent this long is queued again"
    )
    max_failures: int = Field(
        description="a trial fails after this many attempts in a row "
        "lost with their worker without a new checkpoint"
    )


class TaskPublic(BaseModel):
    name: str
    kind: str
    description: str
    options: dict[str, dict[str, Any]] = Field(
        description="option name -> {name, type, default, low, high, length, help, required}"
    )


class TasksPublic(BaseModel):
    data: list[TaskPublic]
    count: int


class HParamPublic(BaseModel):
    name: str
    type: str
    default: Any
    low: float | None
    high: float | None
    low_open: bool
    high_open: bool
    choices: list[str]
    adjustable: bool
    range: str
    help: str


class SettingPublic(BaseModel):
    """One setting of a sampler or scheduler: ``{"name": <algorithm>, <setting>: value}``."""

    name: str
    type: Literal["int", "float", "bool", "str"]
    default: Any = Field(description="null: the server fills it in from the study")
    low: float | None
    high: float | None
    low_open: bool
    high_open: bool
    choices: list[str]
    range: str = Field(description="the allowed values in words, as a 422 names them")
    help: str


class PresetPublic(BaseModel):
    """Settings the new-study form offers as an entry of their own, ``<name>-<key>``."""

    key: str
    label: str
    settings: dict[str, Any]


class AlgorithmPublic(BaseModel):
    name: str = Field(description="what a study's sampler or scheduler field takes")
    label: str
    help: str
    needs_direction: bool = Field(
        description="built with the objective's direction, which the study sets (not a setting)"
    )
    settings: list[SettingPublic]
    presets: list[PresetPublic]


class AlgorithmsPublic(BaseModel):
    samplers: list[AlgorithmPublic]
    schedulers: list[AlgorithmPublic]
