"""Launchers: what keeps the worker processes alive next to (or far from) the server.

A launcher only places and restarts workers; handing trials out stays the claim endpoint's
job, and control flows through the HTTP worker protocol whatever the launcher.

- ``local`` (:class:`app.launchers.local.Dispatcher`): child processes of the server.
- ``dask`` (:class:`app.launchers.dask.DaskLauncher`): tasks on a Dask cluster (a
  ``distributed.LocalCluster`` by default, or any scheduler; dask-jobqueue reaches SLURM).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, get_args

# Who keeps the workers alive: Settings.launcher and ``serve --launcher`` take these names.
LauncherName = Literal["local", "dask"]
LAUNCHERS: tuple[LauncherName, ...] = get_args(LauncherName)
DEFAULT_LAUNCHER: LauncherName = "local"


class Launcher(Protocol):
    """The little the server needs from a launcher."""

    def start(self) -> None:
        """Place the workers and begin replacing those that die."""

    def stop(self, timeout: float = ...) -> None:
        """Ask every worker to hand its trial back; end those still running after ``timeout``."""

    def status(self) -> dict[str, Any]:
        """``{"launcher", "workers", "alive", "restarts", ...}`` for logs and tests."""
