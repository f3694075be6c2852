"""Fixtures for end-to-end tests: a real uvicorn server, real worker processes, an API client.

Every server gets its own SQLite file and data directory under ``tmp_path``; its log is printed
at teardown, which pytest shows only when the test failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import Api, ServerProcess, StartServer, WorkerProcesses


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """``start_server(workers=2, lease_seconds=3, ...)``: settings become PANDACAVIAR_* vars."""
    servers: list[ServerProcess] = []

    def start(workers: int = 2, **settings: Any) -> ServerProcess:
        env = {f"PANDACAVIAR_{name.upper()}": str(value) for name, value in settings.items()}
        server = ServerProcess(tmp_path / f"server{len(servers)}", workers=workers, env=env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
        print(f"--- server log ({server.url}) ---\n{server.log_tail(80)}")


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    """A server whose own dispatcher keeps two real worker processes."""
    return start_server(workers=2)


@pytest.fixture
def api(server: ServerProcess) -> Iterator[Api]:
    client = Api(server.url)
    yield client
    client.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[str, int], list[int]]]:
    """``workers(url, n)`` starts n ``pandacaviar worker`` processes; all stop at teardown."""
    pools: list[WorkerProcesses] = []

    def start(server_url: str, n: int = 1) -> list[int]:
        pool = WorkerProcesses(server_url, tmp_path)
        pools.append(pool)
        return pool.start(n)

    yield start
    for pool in pools:
        pool.stop()
