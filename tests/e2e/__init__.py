"""End-to-end helpers: a real server process, real worker processes, a small API client.

Kept here rather than in ``conftest.py`` so tests outside this package
(``tests/worker/test_loop.py``) can start the same server.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx2

from trainer import TrainConfig
from trainer.data import load_task

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 60.0
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

T = TypeVar("T")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    probe: Callable[[], T | None], what: str, timeout: float = WAIT_SECONDS, poll: float = 0.05
) -> T:
    """Call ``probe`` until it returns something truthy; fail after a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def _end_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process, wait, then SIGKILL its whole session (its workers included)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class ServerProcess:
    """``python -m app.cli serve`` on a free loopback port with its own database and data dir.

    Args:
        data: a directory of its own (the SQLite file and checkpoints go there).
        workers: local workers the server's dispatcher keeps alive.
        env: extra ``PANDACAVIAR_*`` settings (lease seconds, reaper period...).
        processes: server processes on the port (``serve --processes``).
        database_url: a database URL (PostgreSQL) instead of the SQLite file in ``data``.
    """

    def __init__(
        self,
        data: Path,
        *,
        workers: int = 0,
        env: Mapping[str, str] | None = None,
        processes: int = 1,
        database_url: str | None = None,
    ) -> None:
        self.data = data
        self.database_url = database_url
        self.workers = workers
        self.processes = processes
        self.port = free_port()
        self.env = {**os.environ, **THREAD_ENV, **(env or {})}
        if "PANDACAVIAR_TOKEN" not in (env or {}):
            self.env.pop("PANDACAVIAR_TOKEN", None)
        self.log_path = data / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Start the server and wait until ``/api/health`` answers."""
        self.data.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "app.cli", "serve", "--port", str(self.port),
            "--db", self.database_url or str(self.data / "pandacaviar.db"),
            "--data-dir", str(self.data / "files"),
            "--workers", str(self.workers), "--processes", str(self.processes),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        wait_for(self._healthy, f"{self.url}/api/health\n{self.log_tail()}")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}\n{self.log_tail()}")
        try:
            return httpx2.get(f"{self.url}/api/health", timeout=2.0).status_code == 200
        except httpx2.TransportError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful shutdown (the dispatcher stops its workers), then kill what is left."""
        if self.proc is not None:
            _end_group(self.proc, timeout)
            self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _stat(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name: the state is [0], the start time [19]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def worker_processes(server: ServerProcess) -> dict[int, str]:
    """The server's worker processes now: pid -> start time (tells it from a later namesake)."""
    assert server.proc is not None
    pids = {int(pid) for children in Path(f"/proc/{server.proc.pid}/task").glob("*/children")
            for pid in children.read_text().split()}  # fmt: skip
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):  # ended meanwhile
            if b"app.cli\0worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found[pid] = _stat(pid)[19]
    return found


def process_alive(pid: int, start_time: str) -> bool:
    """Whether the process ``pid`` that started at ``start_time`` still runs (a zombie: no)."""
    try:
        fields = _stat(pid)
    except OSError:
        return False
    return fields[19] == start_time and fields[0] != "Z"


StartServer = Callable[..., ServerProcess]
"""The ``start_server`` fixture: ``start_server(workers=2, lease_seconds=3, ...)``."""


class WorkerProcesses:
    """Real ``python -m app.cli worker --server URL`` processes started by a test."""

    def __init__(self, server_url: str, log_dir: Path) -> None:
        self.server_url = server_url
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, n: int = 1, *extra: str) -> list[int]:
        """Start ``n`` more workers; returns their pids."""
        started = []
        for _ in range(n):
            log = (self.log_dir / f"worker-{len(self.procs)}.log").open("ab")
            with log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "app.cli", "worker", "--server", self.server_url,
                     *extra],
                    cwd=ROOT, env={**os.environ, **THREAD_ENV}, stdout=log,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            self.procs.append(proc)
            started.append(proc.pid)
        return started

    def log(self, index: int) -> str:
        """What worker ``index`` (in start order) logged."""
        return (self.log_dir / f"worker-{index}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs:
            _end_group(proc, 10.0)
        self.procs.clear()


class Api:
    """The REST calls the end-to-end tests make, failing loudly on any unexpected status."""

    def __init__(self, url: str, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx2.Client(base_url=url, timeout=30.0, headers=headers)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == expect, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json() if response.content else None

    def create_study(self, **fields: Any) -> dict[str, Any]:
        body = {"name": "e2e", "mode": "panda", "task": "digits", **fields}
        return dict(self.call("POST", "/api/studies", 201, json=body))

    def create_trial(self, study_id: int, hparams: Mapping[str, Any]) -> dict[str, Any]:
        body = {"hparams": dict(hparams)}
        return dict(self.call("POST", f"/api/studies/{study_id}/trials", 201, json=body))

    def trial(self, trial_id: int) -> dict[str, Any]:
        return dict(self.call("GET", f"/api/trials/{trial_id}"))

    def wait_trial(
        self,
        trial_id: int,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = WAIT_SECONDS,
    ) -> dict[str, Any]:
        """Poll the trial until ``predicate`` holds; the last state is in the failure message."""
        last: dict[str, Any] = {}

        def probe() -> dict[str, Any] | None:
            last.clear()
            last.update(self.trial(trial_id))
            return dict(last) if predicate(last) else None

        try:
            return wait_for(probe, f"trial {trial_id}: {what}", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen: {last}") from None

    def wait_state(
        self, trial_id: int, *states: str, timeout: float = WAIT_SECONDS
    ) -> dict[str, Any]:
        return self.wait_trial(
            trial_id, lambda t: t["state"] in states, f"state in {states}", timeout
        )

    def metrics(self, trial_id: int, *names: str) -> dict[str, list[list[float]]]:
        params = {"names": ",".join(names)} if names else {}
        return dict(self.call("GET", f"/api/trials/{trial_id}/metrics", params=params))

    def events(self, trial_id: int) -> list[dict[str, Any]]:
        data = self.call("GET", f"/api/trials/{trial_id}/events")
        return list(data["data"] if isinstance(data, dict) else data)

    def checkpoints(self, trial_id: int) -> list[dict[str, Any]]:
        data = self.call("GET", f"/api/trials/{trial_id}/checkpoints")
        return list(data["data"] if isinstance(data, dict) else data)


# -- trial configurations and curve checks shared by the end-to-end tests ------------------

REPORT_EVERY = TrainConfig().report_every
# 20 steps an epoch on digits: done in a blink.
FAST: dict[str, Any] = {"hidden_units": 32, "num_layers": 1, "batch_size": 64, "seed": 3}
# ~160 steps an epoch: long enough to act on it mid-run, short enough for a test.
SLOW: dict[str, Any] = {"hidden_units": 64, "num_layers": 2, "batch_size": 8, "seed": 5}
OLD_LR, NEW_LR = 0.001, 0.0003


@functools.cache
def _n_train() -> int:
    return len(load_task("digits", {}, split_seed=0).y_train)


def total_steps(hparams: Mapping[str, Any], epochs: int) -> int:
    """Optimizer steps of a digits trial (the study's seed 0 fixes the split)."""
    return epochs * math.ceil(_n_train() / hparams["batch_size"])


def curve_steps(points: list[list[float]]) -> list[int]:
    """The steps of a ``[[step, value], ...]`` curve."""
    return [int(p[0]) for p in points]


def assert_whole_curve(points: list[list[float]], last_step: int, first_step: int = 0) -> None:
    """Steps strictly increasing (none duplicated), no hole wider than a report interval."""
    steps = curve_steps(points)
    assert steps == sorted(set(steps)), "duplicated or unordered steps"
    assert first_step < steps[0] <= first_step + REPORT_EVERY
    holes = [b - a for a, b in zip(steps, steps[1:], strict=False) if b - a > REPORT_EVERY]
    assert not holes, f"steps missing: gaps {holes}"
    assert steps[-1] == last_step


def assert_epoch_end_points(points: list[list[float]], per_epoch: int, epochs: int) -> None:
    """An epoch-end metric's curve (dev loss, dev accuracy): a point at every epoch end."""
    assert curve_steps(points) == [e * per_epoch for e in range(1, epochs + 1)]


def final_dev_loss(api: Api, trial_id: int) -> tuple[int, float]:
    """(step, value) of the last dev loss point: compared exactly between equal runs."""
    step, value = api.metrics(trial_id, "dev_loss")["dev_loss"][-1]
    return int(step), float(value)


def adjust_when_running(api: Api, trial_id: int, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Once the trial runs (step >= 50), PATCH ``hparams``; the adjust event once applied."""
    api.wait_trial(trial_id, lambda t: t["state"] == "running" and t["step"] >= 50, "running")
    api.call("PATCH", f"/api/trials/{trial_id}/hparams", json=dict(hparams))

    def applied() -> dict[str, Any] | None:
        adjusts = [e for e in api.events(trial_id) if e["kind"] == "adjust"]
        return adjusts[0] if adjusts and adjusts[0]["applied_step"] is not None else None

    return wait_for(applied, "the adjustment to be applied")
