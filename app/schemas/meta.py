"""Health, tasks and the hyperparameter catalogue."""

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
