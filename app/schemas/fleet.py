"""The workers: what the server's launcher keeps alive, and what each busy worker trains."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class LauncherPublic(BaseModel):
    """The launcher of this server process (``pandacaviar serve`` starts one)."""

    launcher: str = Field(description="local (processes on this machine) or dask")
    workers: int = Field(description="the workers it keeps alive")
    alive: int = Field(description="those alive now")
    restarts: int = Field(description="workers it replaced after they died")
    scheduler: str | None = Field(None, description="the Dask scheduler (dask only)")


class BusyWorker(BaseModel):
    """A worker training a trial: the trial's worker name, the trial, how far it got."""

    worker: str | None
    trial_id: int
    number: int = Field(description="the trial's number in its study: 'Trial N'")
    study_id: int
    study: str = Field(description="the study's name")
    epoch: float
    since: datetime | None = Field(description="when the trial's current attempt started")


class FleetPublic(BaseModel):
    launcher: LauncherPublic | None = Field(
        description="null when this server process launches no workers (workers 0, another "
        "process of `serve --processes N` launches them, or workers run elsewhere)"
    )
    busy: list[BusyWorker] = Field(
        description="every running trial with its worker, any launcher's or remote"
    )
