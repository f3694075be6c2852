"""What this machine gives a second process: the ceilings a 2-vs-1 speed-up is read against.

Two controls, each measured in the same run as the bench that reports it, because on a shared
virtual machine how much of the second core is there moves within minutes:

* :func:`cpu_parallelism`: a pure CPU loop in 2 processes against 1. No communication at all.
* :func:`chain_parallelism`: our worker protocol's shape with nothing of ours in it. A chain is
  a client process and a server process on TCP loopback; a trial is one request and its answer,
  with a fixed amount of CPU work on each side (a counted loop, so a slower core takes longer
  rather than doing less). 2 chains against 1 is the most two workers and two server processes
  of *any* implementation of a one-round-trip protocol could get here: nothing is shared, there
  is no database, no lock and no disk.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event

# One trial of ours costs about 1 ms of CPU in the worker and 5 in the server (schedstat of
# `serve --processes 2` under the orchestration bench); the control keeps that 1:5 split.
CLIENT_LOOPS = 30_000
SERVER_LOOPS = 150_000
REQUEST, ANSWER = b"r" * 300, b"a" * 200


def cpu_ticks() -> tuple[int, int]:
    """(all, idle) CPU ticks of the whole machine so far, from ``/proc/stat`` (Linux).

    Idle counts ``iowait`` too: a core waiting on a disk is free for work. Two readings give
    the busy cores in between: ``(1 - d_idle / d_all) * os.cpu_count()``.
    """
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return sum(ticks), ticks[3] + ticks[4]


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Cores busy on average between two :func:`cpu_ticks` readings."""
    total, idle = after[0] - before[0], after[1] - before[1]
    return (1 - idle / max(total, 1)) * (os.cpu_count() or 1)


def _spin(n: int) -> None:
    total = 0
    for i in range(n):
        total += i


def cpu_parallelism(n: int = 30_000_000) -> float:
    """This machine's own 2-vs-1 throughput on a pure CPU loop."""
    ctx = mp.get_context("fork")

    def run(k: int) -> float:
        procs = [ctx.Process(target=_spin, args=(n,)) for _ in range(k)]
        t0 = time.perf_counter()
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        return time.perf_counter() - t0

    return 2 * run(1) / run(2)


@dataclass(frozen=True)
class ChainCeiling:
    """2 chains against 1: throughput ratio, and the machine's busy cores in each run."""

    speedup: float
    busy_one: float
    busy_two: float


def _serve(listener: socket.socket, trials: int) -> None:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(trials):
        conn.recv(4096)
        _spin(SERVER_LOOPS)
        conn.sendall(ANSWER)


def _ask(port: int, trials: int, go: Event) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    go.wait()
    for _ in range(trials):
        _spin(CLIENT_LOOPS)
        sock.sendall(REQUEST)
        sock.recv(4096)


def _chains(k: int, trials: int) -> tuple[float, float]:
    """Seconds per trial over ``k`` chains running at once, and the busy cores meanwhile."""
    ctx = mp.get_context("fork")
    go = ctx.Event()
    procs, listeners = [], []
    for _ in range(k):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listeners.append(listener)
        procs.append(ctx.Process(target=_serve, args=(listener, trials)))
        procs.append(ctx.Process(target=_ask, args=(listener.getsockname()[1], trials, go)))
    for proc in procs:
        proc.start()
    time.sleep(0.2)  # every client connected and waiting: forks are not timed
    before, t0 = cpu_ticks(), time.perf_counter()
    go.set()
    for proc in procs:
        proc.join()
    seconds, cores = time.perf_counter() - t0, busy_cores(before, cpu_ticks())
    for listener in listeners:
        listener.close()
    return seconds / (k * trials), cores


def chain_parallelism(trials: int = 300, two_first: bool = False) -> ChainCeiling:
    """2 client/server chains against 1, back to back (in either order)."""
    if two_first:
        (two, busy_two), (one, busy_one) = _chains(2, trials), _chains(1, trials)
    else:
        (one, busy_one), (two, busy_two) = _chains(1, trials), _chains(2, trials)
    return ChainCeiling(one / two, busy_one, busy_two)
