"""The Dask launcher: our worker loops placed on a Dask cluster, replaced when they die.

Each worker slot is one long-running Dask task running :func:`app.worker.run_worker`; Dask
only decides *where* it runs and reruns it when its Dask worker dies. Trials still flow
through our HTTP protocol, so a killed Dask worker loses its trial the usual way: the lease
expires, the reaper requeues it, another worker resumes it from its last checkpoint.

The API token never travels as a task argument (task arguments are visible to anyone who can
reach the scheduler or its dashboard). A Dask worker reads it from its own environment,
``PANDACAVIAR_TOKEN``, or from the file named by ``PANDACAVIAR_TOKEN_FILE``. The
``LocalCluster`` started here sets that environment on its worker processes; on a real
cluster it is the environment of the ``dask worker`` process (e.g. dask-jobqueue's
``job_script_prologue``), see the README's "Scale out" section.

Start Dask workers with one thread each (``--nthreads 1``): one worker loop per process, one
BLAS thread per loop, as with local workers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.launchers.local import (
    CACHE_ENV,
    GRACE_SECONDS,
    RESTART_MAX_SECONDS,
    RESTART_MIN_SECONDS,
    SINGLE_THREAD_ENV,
    TOKEN_ENV,
)

log = logging.getLogger(__name__)
TOKEN_FILE_ENV = "PANDACAVIAR_TOKEN_FILE"
WATCH_SECONDS = 0.5
# How often a task looks at the launcher's stop event (a stop waits at most this long).
STOP_POLL_SECONDS = 1.0
_ROOT = Path(__file__).resolve().parents[2]


def worker_token() -> str | None:
    """The token as the Dask worker's side knows it: its environment, or a file it names."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    path = os.environ.get(TOKEN_FILE_ENV)
    if path:
        return Path(path).read_text().strip() or None
    return None


def dask_task(server_url: str, stop_event: str, slot: int) -> int:
    """One worker loop, run as a Dask task; returns when the launcher sets ``stop_event``.

    Runs in a Dask worker's thread, so the hand-back on stop comes from the launcher's
    distributed ``Event`` rather than from a signal.
    """
    from distributed import Event, get_client

    from app.worker.loop import default_name, run_worker

    stop = threading.Event()
    # The worker's client, named explicitly: the watch thread has no worker context.
    remote = Event(stop_event, client=get_client())

    def watch() -> None:
        while not stop.is_set():
            try:
                if remote.wait(STOP_POLL_SECONDS):
                    stop.set()
            except Exception:  # noqa: BLE001 - the scheduler is away: ask again later
                time.sleep(STOP_POLL_SECONDS)

    watcher = threading.Thread(target=watch, name="pandacaviar-stop", daemon=True)
    watcher.start()
    try:
        # The slot keeps names distinct when a Dask worker runs several threads.
        return run_worker(
            server_url, worker_token(), stop=stop, name=f"{default_name()}/dask{slot}"
        )
    finally:
        stop.set()


@dataclass
class _Slot:
    future: Any = None
    restart_at: float | None = None
    delay: float = RESTART_MIN_SECONDS
    restarts: int = 0


class DaskLauncher:
    """Keeps ``n_workers`` worker loops running as tasks on a Dask cluster.

    Args:
        server_url: where the workers find the server (must be reachable from the cluster).
        n_workers: worker loops to keep running.
        token: the API token; only given to the ``LocalCluster`` this launcher starts, as
            its worker processes' environment. With ``scheduler`` the cluster's workers must
            have it in their own environment.
        scheduler: a scheduler address (``tcp://host:8786``); ``None`` starts a
            ``distributed.LocalCluster`` of ``n_workers`` one-thread processes.
        cache_dir: where the LocalCluster's workers cache uploaded data sets.
    """

    def __init__(
        self,
        server_url: str,
        n_workers: int,
        *,
        token: str | None = None,
        scheduler: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers: got {n_workers}, allowed: >= 1")
        self.server_url = server_url
        self.n_workers = n_workers
        self.token = token
        self.scheduler = scheduler
        self.cache_dir = cache_dir
        # Every (function, args, kwargs) submitted: what the scheduler sees (tests check it).
        self.submitted: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._stop_name = f"pandacaviar-stop-{uuid.uuid4().hex}"
        self._slots = [_Slot() for _ in range(n_workers)]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._cluster: Any = None
        self._client: Any = None

    def __repr__(self) -> str:
        where = self.scheduler or "LocalCluster"
        return f"DaskLauncher({self.server_url!r}, n_workers={self.n_workers}, on={where})"

    def worker_env(self) -> dict[str, str]:
        """The environment of the LocalCluster's worker processes (never task arguments)."""
        env = dict(SINGLE_THREAD_ENV)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        if self.cache_dir is not None:
            env[CACHE_ENV] = str(self.cache_dir)
        if self.token:
            env[TOKEN_ENV] = self.token
        return env

    def start(self) -> None:
        """Connect to (or start) the cluster and submit one task per worker slot."""
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise RuntimeError(
                "the dask launcher needs the dask extra: pip install 'panda-caviar[dask]'"
            ) from exc
        if self._watcher is not None:
            raise RuntimeError("launcher already started")
        if self.scheduler is None:
            self._cluster = LocalCluster(
                n_workers=self.n_workers, threads_per_worker=1, processes=True,
                env=self.worker_env(), dashboard_address=None,
            )  # fmt: skip
            self._client = Client(self._cluster)
        else:
            self._client = Client(self.scheduler)
        log.info("dask launcher: scheduler %s", self._client.scheduler.address)
        with self._lock:
            for index, slot in enumerate(self._slots):
                self._submit(index, slot)
        self._watcher = threading.Thread(target=self._watch, name="dask-launcher", daemon=True)
        self._watcher.start()

    def _submit(self, index: int, slot: _Slot) -> None:
        args = (self.server_url, self._stop_name, index)
        self.submitted.append((dask_task.__name__, args, {}))
        slot.future = self._client.submit(
            dask_task, *args, key=f"pandacaviar-worker-{index}-{uuid.uuid4().hex}", pure=False
        )

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_SECONDS):
            with self._lock:
                if self._stopping.is_set():
                    return
                now = time.monotonic()
                for index, slot in enumerate(self._slots):
                    self._revive(index, slot, now)

    def _revive(self, index: int, slot: _Slot, now: float) -> None:
        """Resubmit a task that ended: Dask reruns one whose worker died, up to its
        ``allowed-failures``; after that (or an error in the loop) it comes back here."""
        if slot.future is None or not slot.future.done():
            return
        if slot.restart_at is None:
            log.warning("dask worker task %s ended: %s", index, slot.future.status)
            slot.restart_at = now + slot.delay
            slot.delay = min(RESTART_MAX_SECONDS, slot.delay * 2)
        if now >= slot.restart_at:
            slot.restart_at = None
            slot.restarts += 1
            self._submit(index, slot)

    def status(self) -> dict[str, Any]:
        with self._lock:
            futures = [s.future for s in self._slots if s.future is not None]
            restarts = sum(s.restarts for s in self._slots)
        running = sum(not f.done() for f in futures)
        return {
            "launcher": "dask",
            "scheduler": self.scheduler or "LocalCluster",
            "workers": self.n_workers,
            "alive": running,
            "restarts": restarts,
        }

    def stop(self, timeout: float = GRACE_SECONDS) -> None:
        """Tell every task to hand its trial back, wait up to ``timeout``, then close."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
        if self._client is None:
            return
        from distributed import Event, wait

        futures = [s.future for s in self._slots if s.future is not None]
        try:
            Event(self._stop_name, client=self._client).set()
            wait(futures, timeout=timeout)
        except Exception:  # noqa: BLE001 - a timeout or a lost scheduler: end them anyway
            log.warning("dask worker tasks did not all hand back within %.0f s", timeout)
        try:
            self._client.cancel(futures)
            self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()
