"""Shared bench helper: a real uvicorn server (and real worker processes) on loopback.

:class:`BenchServer` starts ``uvicorn app.main:create_app --factory`` as a subprocess on a free
127.0.0.1 port with its own temporary data directory and SQLite file, waits for
``/api/health``, optionally starts ``python -m app.cli worker --server URL`` processes, and
stops everything (workers first, then the server; SIGTERM, then SIGKILL after a grace period)
when the ``with`` block ends. The server's dispatcher is always off (``PANDACAVIAR_WORKERS=0``):
a bench decides itself which workers exist. Server output goes to ``server.log`` in the data
directory so a bench can count errors such as "database is locked" afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx2

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 10.0
LOCKED = "database is locked"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    if q <= 0:
        return float(min(values))
    if q >= 100:
        return float(max(values))
    return float(cuts[int(q) - 1])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


class BenchServer:
    """A real server subprocess (plus optional worker subprocesses) for one bench run.

    Args:
        workers: worker processes to start once the server answers (``app.cli worker``).
        env: extra ``PANDACAVIAR_*`` (or other) environment variables for the server.
        access_log: keep uvicorn's access log (off by default: it costs throughput and is
            not what is measured).
        keep: keep the data directory after stopping (for post-mortems).
        processes: server processes on the port (``pandacaviar serve --processes``).
    """

    def __init__(
        self,
        *,
        workers: int = 0,
        env: Mapping[str, str] | None = None,
        access_log: bool = False,
        keep: bool = False,
        processes: int = 1,
    ) -> None:
        self.n_workers = workers
        self.processes = processes
        self.extra_env = dict(env or {})
        self.access_log = access_log
        self.keep = keep
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="pandacaviar-bench-"))
        self.log_path = self.data_dir / "server.log"
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    @property
    def upload_dir(self) -> Path:
        """Where the server accepts ``task_options.path`` files from (created on start)."""
        return self.data_dir / "uploads"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "PANDACAVIAR_DATABASE_URL": f"sqlite:///{self.data_dir / 'bench.db'}",
                "PANDACAVIAR_DATA_DIR": str(self.data_dir),
                "PANDACAVIAR_HOST": "127.0.0.1",
                "PANDACAVIAR_PORT": str(self.port),
                "PANDACAVIAR_WORKERS": "0",
            }
        )
        env.pop("PANDACAVIAR_TOKEN", None)
        env["PYTHONUNBUFFERED"] = "1"  # tracebacks reach server.log while it runs
        env.update(self.extra_env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def start(self) -> BenchServer:
        """Start the server, wait until it is healthy, then start the workers."""
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        # The real command: `pandacaviar serve` (settings from the environment above).
        cmd = [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--processes",
            str(self.processes),
        ]
        if self.access_log:
            cmd.append("--access-log")
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it until it exits
        self.server = subprocess.Popen(
            cmd, cwd=ROOT, env=self._env(), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self._wait_healthy()
        for _ in range(self.n_workers):
            self.add_worker()
        return self

    def add_worker(self) -> subprocess.Popen[bytes]:
        """One more ``python -m app.cli worker --server URL`` process (output to the log)."""
        log = open(self.log_path, "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--server", self.url],
            cwd=ROOT,
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.workers.append(proc)
        return proc

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self.server is not None
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited early; see {self.log_path}:\n{self.log()}")
            try:
                if httpx2.get(f"{self.url}/api/health", timeout=1.0).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not healthy after {START_TIMEOUT_SECONDS}s: {self.log()}")

    def log(self) -> str:
        """Everything the server and workers printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def count_in_log(self, text: str) -> int:
        """How many lines of the server/worker output contain ``text`` (case-insensitive)."""
        needle = text.lower()
        return sum(needle in line.lower() for line in self.log().splitlines())

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Stop the workers, then the server; remove the data directory unless ``keep``."""
        for proc in self.workers:
            self._terminate(proc)
        self.workers.clear()
        if self.server is not None:
            self._terminate(self.server)
            self.server = None
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> BenchServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def create_study(client: httpx2.Client, name: str, **fields: object) -> int:
    """POST a study; returns its id (raises on a non-2xx answer)."""
    response = client.post("/api/studies", json={"name": name, **fields})
    if response.status_code != 201:
        raise RuntimeError(f"POST /api/studies -> {response.status_code}: {response.text[:500]}")
    return int(response.json()["id"])


def create_trial(client: httpx2.Client, study_id: int, hparams: Mapping[str, object]) -> int:
    """POST a queued trial to a study; returns its id."""
    response = client.post(f"/api/studies/{study_id}/trials", json={"hparams": dict(hparams)})
    if response.status_code != 201:
        raise RuntimeError(f"POST trials -> {response.status_code}: {response.text[:500]}")
    return int(response.json()["id"])
