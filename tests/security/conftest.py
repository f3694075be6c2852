"""A real uvicorn server with chosen settings: binding, Host headers and peers need a socket."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, _wait_until_up, free_port


class Uvicorn:
    """``uvicorn app.main:create_app --factory`` on ``bind`` with ``PANDACAVIAR_*`` ``env``."""

    def __init__(self, data: Path, bind: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.data = data
        self.log = data / "server.log"
        data.mkdir(parents=True, exist_ok=True)
        full = {k: v for k, v in os.environ.items() if not k.startswith("PANDACAVIAR_")}
        full.update(
            {
                "PANDACAVIAR_DATABASE_URL": f"sqlite:///{data / 'sec.db'}",
                "PANDACAVIAR_DATA_DIR": str(data / "files"),
                "PANDACAVIAR_WORKERS": "0",
                "PANDACAVIAR_START_DISPATCHER": "false",
                "PANDACAVIAR_PORT": str(self.port),
                "PYTHONPATH": str(ROOT),
                **env,
            }
        )
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:create_app",
            "--factory",
            "--host",
            bind,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=full, stdout=log, stderr=subprocess.STDOUT
            )
        self.url = f"http://127.0.0.1:{self.port}"
        _wait_until_up(self.url, self.proc, self.log)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


StartUvicorn = Callable[..., Uvicorn]


@pytest.fixture
def start_uvicorn(tmp_path: Path) -> Iterator[StartUvicorn]:
    """``start_uvicorn(bind="127.0.0.1", PANDACAVIAR_TOKEN="t")``; stopped after the test."""
    started: list[Uvicorn] = []

    def start(bind: str = "127.0.0.1", **env: str) -> Uvicorn:
        server = Uvicorn(tmp_path / f"srv{len(started)}", bind, env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
