"""Fixture ladder: backend -> database_url -> settings -> app -> client (lifespan runs) -> db.

``backend`` is "sqlite" (a file under tmp_path) unless a directory's conftest parametrizes it:
tests/api runs every test on SQLite and on a private PostgreSQL server (tests/pg.py), which
starts once per session and only when a test asks for it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.storage.db import read_engine
from app.storage.models import Base
from tests.pg import PostgresServer, start_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """The test run's own PostgreSQL server (skipped without binaries, a failure on CI)."""
    yield from start_server()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A migrated PostgreSQL database with no rows, for this test alone."""
    name = pg_server.acquire()
    yield pg_server.url(name)
    pg_server.release(name)


@pytest.fixture
def backend() -> str:
    """The database the test's server uses; tests/api/conftest.py runs both."""
    return "sqlite"


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "postgresql":
        # Looked up lazily: a SQLite-only run never starts PostgreSQL.
        return str(request.getfixturevalue("pg_url"))
    assert backend == "sqlite", backend
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        workers=0,
        start_dispatcher=False,
        # The reaper must not interfere unless a test asks for it.
        reaper_seconds=3600,
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


class DB:
    """Short read transactions on the test database, so no test ever holds a lock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def session(self) -> Session:
        return Session(read_engine(self.engine), expire_on_commit=False)

    def count(self, model: type[Any], *where: Any) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(model).where(*where)) or 0

    def get(self, model: type[Any], id_: int) -> Any:
        with self.session() as s:
            return s.get(model, id_)

    def all(self, stmt: Any) -> list[Any]:
        """ORM objects (detached, attributes loaded) for ``select(Model)``."""
        with self.session() as s:
            return list(s.scalars(stmt))

    def rows(self, stmt: Any) -> list[tuple[Any, ...]]:
        with self.session() as s:
            return [tuple(r) for r in s.execute(stmt)]

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table: equal snapshots mean nothing was written."""
        with self.engine.connect() as conn:
            out = {
                t.name: [tuple(r) for r in conn.execute(t.select().order_by(*t.primary_key))]
                for t in Base.metadata.sorted_tables
            }
            conn.rollback()
        return out


@pytest.fixture
def db(client: TestClient, app: FastAPI) -> DB:
    return DB(app.state.engine)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A real uvicorn server process on a free port (no dispatcher); yields its URL."""
    port = free_port()
    if backend == "postgresql":
        database_url = str(request.getfixturevalue("pg_url"))
    else:
        database_url = f"sqlite:///{tmp_path / 'live.db'}"
    env = {
        **os.environ,
        "PANDACAVIAR_DATABASE_URL": database_url,
        "PANDACAVIAR_DATA_DIR": str(tmp_path / "data"),
        "PANDACAVIAR_START_DISPATCHER": "false",
        "PANDACAVIAR_WORKERS": "0",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, tmp_path / "server.log")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            if httpx2.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not come up:\n{log.read_text()}")
