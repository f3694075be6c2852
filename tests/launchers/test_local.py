"""The dispatcher with real worker processes: starts N, replaces the dead, stops them all.

The workers point at a port nobody listens on: they keep retrying their claim with backoff,
which is all these tests need from them (no server involved).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.launchers.local import PARENT_ENV, TOKEN_ENV, Dispatcher

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 30.0

pytestmark = pytest.mark.slow


def _unused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def _wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    d = Dispatcher(_unused_url(), 2, token="s3cret-token")
    d.start()
    yield d
    d.stop()


def test_start_spawns_n_workers(dispatcher: Dispatcher) -> None:
    _wait_until(lambda: len(dispatcher.pids) == 2, "two workers")
    assert all(_alive(pid) for pid in dispatcher.pids)


def test_sigkilled_worker_is_replaced(dispatcher: Dispatcher) -> None:
    _wait_until(lambda: len(dispatcher.pids) == 2, "two workers")
    victim, survivor = dispatcher.pids
    os.kill(victim, signal.SIGKILL)
    _wait_until(
        lambda: len(dispatcher.pids) == 2 and victim not in dispatcher.pids, "a replacement"
    )
    assert survivor in dispatcher.pids
    assert dispatcher.restarts == 1


def test_stop_leaves_no_worker_alive() -> None:
    d = Dispatcher(_unused_url(), 3)
    d.start()
    _wait_until(lambda: len(d.pids) == 3, "three workers")
    pids = d.pids
    d.stop()
    assert d.pids == []
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_workers_get_one_blas_thread_and_the_token_only_in_env(dispatcher: Dispatcher) -> None:
    _wait_until(lambda: len(dispatcher.pids) == 2, "two workers")
    for pid in dispatcher.pids:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        env = dict(
            item.split(b"=", 1)
            for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if b"=" in item
        )
        assert b"s3cret-token" not in b" ".join(argv)
        assert env[TOKEN_ENV.encode()] == b"s3cret-token"
        for name in (b"OMP_NUM_THREADS", b"OPENBLAS_NUM_THREADS", b"MKL_NUM_THREADS"):
            assert env[name] == b"1"
        assert env[PARENT_ENV.encode()] == str(os.getpid()).encode()


def test_workers_end_when_their_server_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed server cannot stop its workers: they notice and end by themselves."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from app.launchers.local import Dispatcher
        d = Dispatcher({_unused_url()!r}, 2)
        d.start()
        while len(d.pids) < 2:
            time.sleep(0.05)
        print(*d.pids, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    finally:
        parent.kill()
        parent.wait()
    _wait_until(lambda: not any(_alive(pid) for pid in pids), "orphaned workers to exit")
