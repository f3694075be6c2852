"""``pandacaviar serve --processes N``: N server processes on one port and one database.

Real processes throughout: the server command, its uvicorn processes, the workers one of them
launches, and claim loops racing through the shared port.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import time
from pathlib import Path

import httpx2
import pytest

from app.serving import spread
from app.serving.run import NoDelayConfig, multiprocess_config
from app.worker.client import WorkerClient
from tests.e2e import FAST, Api, ServerProcess, wait_for

N_RACE = 60


def test_the_shared_socket_hands_no_delay_to_every_connection() -> None:
    # Without TCP_NODELAY a response written in two parts waits for the client's delayed ACK.
    config = NoDelayConfig("app.main:create_app", factory=True, host="127.0.0.1", port=0)
    listener = config.bind_socket()
    try:
        listener.listen(1)
        client = socket.create_connection(listener.getsockname()[:2])
        accepted, _ = listener.accept()
        with client, accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (read from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The field after the parenthesised command name: state, then the parent's pid.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _servers(pid: int) -> list[int]:
    """The uvicorn processes of the ``serve`` command ``pid`` (not multiprocessing's helper)."""
    return [c for c in _children(pid) if "spawn_main" in _cmdline(c)]


def _claim_until_empty(url: str, worker: str) -> list[tuple[int, int]]:
    """Claim, each time on a new connection (so the kernel spreads them over the processes)."""
    won: list[tuple[int, int]] = []
    while True:
        r = httpx2.post(f"{url}/api/workers/claim", json={"worker": worker}, timeout=30)
        if r.status_code == 204:
            return won
        r.raise_for_status()
        won.append((r.json()["trial_id"], r.json()["attempt"]))


@pytest.mark.slow
def test_claims_racing_through_two_server_processes_take_each_trial_once(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path, processes=2).start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        assert len(wait_for(lambda: _servers(pid), "the server processes")) == 2
        api = Api(server.url)
        study = api.create_study(name="race")
        ids = [api.create_trial(study["id"], {"seed": i})["id"] for i in range(N_RACE)]
        with mp.get_context("spawn").Pool(3) as pool:
            results = pool.starmap(_claim_until_empty, [(server.url, w) for w in ("a", "b", "c")])
        claimed = [tid for result in results for tid, _ in result]
        assert sorted(claimed) == sorted(ids)  # none lost, none twice
        assert all(attempt == 1 for result in results for _, attempt in result)
    finally:
        server.stop()
    assert "database is locked" not in server.log_tail(400)


@pytest.mark.slow
def test_of_two_server_processes_one_launches_the_workers(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, processes=2, workers=2).start()
    try:
        assert server.proc is not None
        pid = server.proc.pid

        def workers() -> list[int]:
            return [
                c for u in _servers(pid) for c in _children(u) if " app.cli worker " in _cmdline(c)
            ]

        assert len(wait_for(lambda: _servers(pid), "the server processes")) == 2
        launched = wait_for(lambda: len(workers()) >= 2 and workers(), "the 2 workers")
        api = Api(server.url)
        study = api.create_study(name="two processes", epochs=1)
        ids = [api.create_trial(study["id"], {**FAST, "seed": i})["id"] for i in range(6)]
        for tid in ids:
            api.wait_state(tid, "completed")
        assert len(workers()) == 2, [(w, _cmdline(w)) for w in workers()]
        parents = {
            int((Path("/proc") / str(w) / "stat").read_text().rsplit(")", 1)[1].split()[1])
            for w in launched
        }
        assert len(parents) == 1 and parents <= set(_servers(pid))
    finally:
        server.stop()
    assert os.path.exists(tmp_path / "files") and not list((tmp_path / "files").glob("serve-*"))


def _established(pid: int, port: int) -> int:
    """Established TCP connections to ``port`` that process ``pid`` holds (from /proc)."""
    inodes = set()
    for fd in (Path("/proc") / str(pid) / "fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for line in (Path("/proc") / str(pid) / "net" / "tcp").read_text().splitlines()[1:]:
        fields = line.split()  # local address:port (hex), remote, state (01 established)...
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count


@pytest.mark.slow
def test_worker_connections_move_to_an_idle_server_process(tmp_path: Path) -> None:
    # The idle process stays stopped a few seconds: past uvicorn's default 5 s health check on
    # a loaded machine, the supervisor would kill and replace it mid-test.
    env = {"PANDACAVIAR_PROCESS_HEALTHCHECK_SECONDS": "60"}
    server = ServerProcess(tmp_path, processes=2, env=env).start()
    clients: list[WorkerClient] = []
    try:
        assert server.proc is not None
        busy, idle = wait_for(
            lambda: (
                len(_servers(server.proc.pid)) == 2  # type: ignore[union-attr]
                and _servers(server.proc.pid)
            ),
            "the server processes",
        )  # type: ignore[union-attr]
        os.kill(idle, signal.SIGSTOP)  # so the other process accepts every connection
        try:
            # Until its count goes stale the other would already move them (tested below).
            time.sleep(spread.STALE + 0.5)
            clients = [WorkerClient(server.url) for _ in range(4)]
            assert all(c.claim(f"w{i}") is None for i, c in enumerate(clients))
        finally:
            os.kill(idle, signal.SIGCONT)
        assert (_established(busy, server.port), _established(idle, server.port)) == (4, 0)

        def spread_out() -> bool:
            # Workers with nothing to do keep claiming, as between trials.
            assert all(c.claim(f"w{i}") is None for i, c in enumerate(clients))
            return [_established(p, server.port) for p in (busy, idle)] == [2, 2]

        wait_for(spread_out, "two worker connections on each server process")
    finally:
        for c in clients:
            c.close()
        server.stop()


def test_the_supervisor_health_check_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert multiprocess_config("127.0.0.1", 0, processes=2).timeout_worker_healthcheck == 5
    monkeypatch.setenv("PANDACAVIAR_PROCESS_HEALTHCHECK_SECONDS", "60")
    assert multiprocess_config("127.0.0.1", 0, processes=2).timeout_worker_healthcheck == 60
    monkeypatch.setenv("PANDACAVIAR_PROCESS_HEALTHCHECK_SECONDS", "0")
    with pytest.raises(ValueError, match="process_healthcheck_seconds"):
        multiprocess_config("127.0.0.1", 0, processes=2)
