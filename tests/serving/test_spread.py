"""app.serving.spread: when a server process hands a worker connection to the others.

The other processes are count files written the way theirs would be; the clock is explicit.
The end-to-end check, real processes and sockets, is in tests/serving/test_processes.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx2
import pytest
from starlette.types import Receive, Scope, Send

from app.serving.spread import CLOSE_SECONDS, STALE, WINDOW, Spread, SpreadMiddleware


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def other(directory: Path, pid: int, count: int, at: float) -> None:
    """Another process's count file, written at ``at``."""
    path = directory / str(pid)
    path.write_text(str(count))
    os.utime(path, (at, at))


def test_a_process_alone_keeps_every_connection(tmp_path: Path, clock: Clock) -> None:
    spread = Spread(tmp_path, clock)
    for port in range(5):
        spread.served(("127.0.0.1", port))
    spread.publish()
    assert (tmp_path / str(os.getpid())).read_text() == "5"
    assert not any(spread.served(("127.0.0.1", port)) for port in range(5))


def test_two_more_clients_than_the_least_busy_process_closes_one_per_interval(
    tmp_path: Path, clock: Clock
) -> None:
    spread = Spread(tmp_path, clock)
    other(tmp_path, 1, 0, clock.now)
    spread.publish()
    assert spread.served("a") is False  # 1 against 0: moving it would only swap
    assert spread.served("b") is True  # 2 against 0
    assert spread.seen.keys() == {"a"}  # b comes back on a new connection
    assert spread.served("c") is False  # 2 again, but one was just closed
    clock.now += CLOSE_SECONDS
    assert spread.served("c") is True


def test_balanced_processes_keep_their_connections(tmp_path: Path, clock: Clock) -> None:
    spread = Spread(tmp_path, clock)
    other(tmp_path, 1, 2, clock.now)
    other(tmp_path, 2, 1, clock.now)
    spread.publish()
    assert spread.least_other == 1
    assert [spread.served(c) for c in "abc"] == [False, False, True]  # 3 against 1


def test_a_process_that_stopped_writing_is_not_counted(tmp_path: Path, clock: Clock) -> None:
    spread = Spread(tmp_path, clock)
    other(tmp_path, 1, 0, clock.now - STALE - 0.1)
    other(tmp_path, 2, 3, clock.now)
    (tmp_path / "2.tmp").write_text("0")  # a count being written is not one yet
    spread.publish()
    assert spread.least_other == 3


def test_quiet_clients_are_forgotten_after_the_window(tmp_path: Path, clock: Clock) -> None:
    spread = Spread(tmp_path, clock)
    spread.served("a")
    clock.now += WINDOW / 2
    spread.served("b")
    clock.now += WINDOW / 2 + 0.01
    spread.publish()
    assert spread.seen.keys() == {"b"}
    spread.remove()
    assert not (tmp_path / str(os.getpid())).exists()


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"connection", b"keep-alive")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_answer_that_moves_a_worker_says_connection_close(
    tmp_path: Path, clock: Clock, anyio_backend: str
) -> None:
    spread = Spread(tmp_path, clock)
    other(tmp_path, 1, 0, clock.now)
    spread.publish()
    spread.served(("127.0.0.1", 1))  # one client already
    app = SpreadMiddleware(_ok, spread)
    transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 2))
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
        page = await client.get("/api/studies")  # not a worker's call: left alone
        moved = await client.post("/api/workers/claim")
    assert page.headers["connection"] == "keep-alive"
    assert moved.headers["connection"] == "close"
