"""Keeps N local worker processes alive next to the server.

Training never runs inside the web process: the dispatcher starts ``python -m app.cli worker``
children that talk to the server over the same HTTP protocol as remote workers, restarts any
that die, and ends them all on shutdown. Handing trials out is the claim endpoint's job; the
dispatcher only keeps the processes alive.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.launchers import Launcher

log = logging.getLogger(__name__)

# One BLAS thread per worker: N workers on N cores beat N workers fighting over N*N threads.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
TOKEN_ENV = "PANDACAVIAR_TOKEN"
CACHE_ENV = "PANDACAVIAR_CACHE_DIR"  # the same name as app.worker.client.CACHE_ENV
PARENT_ENV = "PANDACAVIAR_PARENT_PID"
_ROOT = Path(__file__).resolve().parent.parent

WATCH_SECONDS = 0.2
RESTART_MIN_SECONDS = 0.5
RESTART_MAX_SECONDS = 10.0
# A worker that lived at least this long was healthy: its next restart is immediate again.
HEALTHY_SECONDS = 10.0
# Time a worker gets to reach a safe point, checkpoint and hand its trial back on SIGTERM.
GRACE_SECONDS = 15.0


@dataclass
class _Slot:
    """One worker position: its current process and its restart backoff."""

    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay: float = RESTART_MIN_SECONDS
    restart_at: float | None = None
    restarts: int = 0


class Dispatcher:
    """Starts, watches and stops the local worker processes.

    Args:
        server_url: where the workers find the server, e.g. ``http://127.0.0.1:8000``.
        n_workers: how many worker processes to keep alive.
        token: the API token; handed to the children through the environment, never argv
            (other users can read a process's arguments).
        python: the interpreter that runs the workers.
        cache_dir: where the workers cache uploaded data sets (their default if None).
    """

    def __init__(
        self,
        server_url: str,
        n_workers: int,
        *,
        token: str | None = None,
        python: str = sys.executable,
        cache_dir: Path | None = None,
    ) -> None:
        if n_workers < 0:
            raise ValueError(f"n_workers: got {n_workers}, allowed: >= 0")
        self.server_url = server_url
        self.n_workers = n_workers
        self.token = token
        self.python = python
        self.cache_dir = cache_dir
        self._slots = [_Slot() for _ in range(n_workers)]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Dispatcher({self.server_url!r}, n_workers={self.n_workers}, pids={self.pids})"

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers alive now."""
        with self._lock:
            return [s.process.pid for s in self._slots if s.process and s.process.poll() is None]

    @property
    def restarts(self) -> int:
        """How many times a dead worker was replaced."""
        with self._lock:
            return sum(s.restarts for s in self._slots)

    def status(self) -> dict[str, Any]:
        """What the launcher reports: its kind, the workers wanted and alive, restarts."""
        pids = self.pids
        return {
            "launcher": "local",
            "workers": self.n_workers,
            "alive": len(pids),
            "pids": pids,
            "restarts": self.restarts,
        }

    def child_env(self) -> dict[str, str]:
        """The workers' environment: ours, one BLAS thread, the token, our package on the path."""
        env = {**os.environ, **SINGLE_THREAD_ENV}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        # Lets a worker notice that its server died (e.g. SIGKILL): it then hands its trial
        # back to the restarted server and exits (app.worker._retire_when_orphaned).
        env[PARENT_ENV] = str(os.getpid())
        if self.cache_dir is not None:
            env[CACHE_ENV] = str(self.cache_dir)
        if self.token:
            env[TOKEN_ENV] = self.token
        else:
            env.pop(TOKEN_ENV, None)
        return env

    def _spawn(self, slot: _Slot) -> None:
        slot.process = subprocess.Popen(
            [self.python, "-m", "app.cli", "worker", "--server", self.server_url],
            env=self.child_env(),
            stdin=subprocess.DEVNULL,
        )
        slot.started_at = time.monotonic()
        log.info("started worker pid %s", slot.process.pid)

    def start(self) -> None:
        """Spawn the workers and the thread that replaces any that die."""
        if self._watcher is not None:
            raise RuntimeError("dispatcher already started")
        with self._lock:
            for slot in self._slots:
                self._spawn(slot)
        self._watcher = threading.Thread(target=self._watch, name="dispatcher", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_SECONDS):
            with self._lock:
                if self._stopping.is_set():
                    return
                now = time.monotonic()
                for slot in self._slots:
                    self._revive(slot, now)

    def _revive(self, slot: _Slot, now: float) -> None:
        """Schedule, then perform, the restart of a dead worker (growing delay in a crash loop)."""
        proc = slot.process
        if proc is None or proc.poll() is None:
            return
        if slot.restart_at is None:
            log.warning("worker pid %s exited with %s", proc.pid, proc.returncode)
            if now - slot.started_at >= HEALTHY_SECONDS:
                slot.delay = RESTART_MIN_SECONDS
                slot.restart_at = now
            else:
                slot.restart_at = now + slot.delay
                slot.delay = min(RESTART_MAX_SECONDS, slot.delay * 2)
        if now >= slot.restart_at:
            slot.restart_at = None
            slot.restarts += 1
            self._spawn(slot)

    def stop(self, timeout: float = GRACE_SECONDS) -> None:
        """End every worker: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
        with self._lock:
            procs = [s.process for s in self._slots if s.process is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


SignalHandler = Callable[[int, FrameType | None], Any]


class _StopWorkersFirst:
    """A signal handler that stops the workers, then hands the signal to the one it replaced."""

    def __init__(self, dispatcher: Launcher, previous: dict[int, SignalHandler]) -> None:
        self.dispatcher = dispatcher
        self.previous = previous
        self.stopping = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:  # a second signal: do not wait for the workers any longer
            self.previous[signum](signum, frame)
            return
        self.stopping = True
        log.info("signal %s: workers hand their trials back before the server stops", signum)

        def stop_then_pass_on() -> None:
            self.dispatcher.stop()
            self.previous[signum](signum, None)

        threading.Thread(target=stop_then_pass_on, name="graceful-stop", daemon=True).start()


def stop_workers_first(dispatcher: Launcher) -> None:
    """On SIGTERM/SIGINT, stop the workers while the server still answers, then exit.

    uvicorn closes its listening socket before the app's shutdown runs, so workers stopped
    there could not hand their trials back. This wraps the handlers uvicorn installed before
    the lifespan started: the first signal stops the workers in a thread (each checkpoints at
    its next safe point and finishes "requeue"), then passes the signal on. Does nothing
    outside the main thread (an in-process TestClient) or without a Python-level handler.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    handlers: dict[int, SignalHandler] = {
        int(sig): h for sig, h in previous.items() if callable(h)
    }
    if not handlers:
        return
    relay = _StopWorkersFirst(dispatcher, handlers)
    for sig in handlers:
        signal.signal(sig, relay)
