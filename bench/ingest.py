"""Metric ingest: points per second a real server accepts from concurrent reporting workers.

What is measured: a real uvicorn server (``bench/_server.py``, dispatcher off) gets a study
with one queued trial per client. Each client is a separate PROCESS acting as a worker: it
claims a trial through ``POST /api/workers/claim``, then POSTs ``/api/workers/trials/{id}/report``
batches of ``--steps`` steps x ``--metrics`` metrics (200 x 6 = 1,200 points, as a worker
buffering between safe points sends them) back to back for ``--seconds`` seconds. Points
count as accepted only when their batch got a 2xx. Throughput = accepted points / the
wall time from the common start to the last client's end.

Afterwards every trial's curves are read back with ``GET /api/trials/{id}/metrics``: stored
points must equal acknowledged points (lost = acknowledged - stored, when positive), and the
5xx answers and "database is locked" lines in the server log are counted.

The server's CPU seconds over the measured window (Linux ``/proc``) and the clients' are
printed per 1,000 accepted points: on a machine shared with other jobs the rate moves with
their load, the CPU a point costs much less.

Goals: issue 3, >= 50,000 points/s with 8 clients, 0 lost, 0 locked; issue 21, >= 150,000.

Usage::

    python bench/ingest.py            # 8 clients, 20 s
    python bench/ingest.py --quick    # 8 clients, 4 s
    git worktree add /tmp/ingest-base <commit>
    python bench/ingest.py --against /tmp/ingest-base --rounds 3 --seconds 10
        # that checkout's server and this one's, alternated (ABBA), the same clients: the
        # ratio of this checkout's median rate to the control's
    python bench/ingest.py --server-processes 2 --against-processes 1 --rounds 2
        # serve --processes 2 against one process, alternated the same way
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench._server import (  # noqa: E402
    LOCKED,
    BenchServer,
    create_study,
    create_trial,
    markdown_table,
    percentile,
    verdict,
)

# (issue, points/s): issue 3's floor and issue 21's goal, both with 0 lost and 0 locked.
GOALS = ((3, 50_000), (21, 150_000))
METRIC_NAMES = (
    "train_loss",
    "train_accuracy",
    "learning_rate",
    "grad_norm",
    "dev_loss",
    "dev_accuracy",
    "z1_mean",
    "z1_std",
    "z2_mean",
    "z2_std",
)


@dataclass
class ClientResult:
    """What one reporting process saw."""

    trial_id: int
    acked_points: int = 0
    batches: int = 0
    failed_batches: int = 0
    status_5xx: int = 0
    locked_answers: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # CPU seconds this process spent in its reporting loop (building and sending batches).
    cpu_seconds: float = 0.0


def _batch(first_step: int, steps: int, names: tuple[str, ...]) -> list[list[object]]:
    """``steps`` consecutive steps from ``first_step``, every name once per step."""
    return [
        [step, name, 1.0 / (step + i + 1)]
        for step in range(first_step, first_step + steps)
        for i, name in enumerate(names)
    ]


def run_client(
    url: str, start_at: float, seconds: float, steps: int, n_metrics: int
) -> ClientResult:
    """One worker-like process: claim a trial, then report batches until the deadline.

    ``start_at`` is a ``time.monotonic()`` instant (system-wide on Linux), so every client
    starts together after the slowest one has claimed and warmed its connection.
    """
    names = METRIC_NAMES[:n_metrics]
    with httpx2.Client(base_url=url, timeout=60.0) as client:
        me = {"worker": f"bench-{mp.current_process().pid}"}
        claim = client.post("/api/workers/claim", json=me)
        if claim.status_code != 200:
            raise RuntimeError(f"claim -> {claim.status_code}: {claim.text[:300]}")
        data = claim.json()
        result = ClientResult(trial_id=int(data["trial_id"]))
        attempt = int(data["attempt"])
        path = f"/api/workers/trials/{result.trial_id}/report"
        next_step = 1
        time.sleep(max(0.0, start_at - time.monotonic()))
        deadline = start_at + seconds
        cpu_start = time.process_time()
        while time.monotonic() < deadline:
            points = _batch(next_step, steps, names)
            next_step += steps
            body = {"attempt": attempt, "step": next_step - 1, "epoch": 0.0, "points": points}
            t0 = time.perf_counter()
            try:
                response = client.post(path, json=body)
            except httpx2.TransportError as exc:
                result.failed_batches += 1
                result.errors.append(repr(exc))
                continue
            result.latencies.append(time.perf_counter() - t0)
            result.batches += 1
            if 200 <= response.status_code < 300:
                result.acked_points += len(points)
                continue
            result.failed_batches += 1
            result.status_5xx += response.status_code >= 500
            result.locked_answers += LOCKED in response.text.lower()
            result.errors.append(f"{response.status_code}: {response.text[:200]}")
        result.cpu_seconds = time.process_time() - cpu_start
    return result


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds so far of a process and its live descendants (Linux
    ``/proc``; None elsewhere): ``serve --processes N`` answers from N children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(process_cpu_seconds(int(child)) or 0.0 for child in children)


def stored_points(client: httpx2.Client, trial_id: int) -> int:
    """Points of a trial as ``GET /api/trials/{id}/metrics`` returns them (no downsampling)."""
    response = client.get(f"/api/trials/{trial_id}/metrics", timeout=120.0)
    response.raise_for_status()
    return sum(len(points) for points in response.json().values())


def _cpu_per_kpoint(cpu_seconds: float | None, points: int) -> str:
    """CPU milliseconds per 1,000 accepted points: what a change costs, whatever the load."""
    if cpu_seconds is None or not points:
        return "-"
    return f"{cpu_seconds * 1000 / (points / 1000):.2f} ms"


@dataclass
class Run:
    """One measurement: a server, ``clients`` reporting processes, then the read-back."""

    seconds: float
    wall: float
    results: list[ClientResult]
    stored: dict[int, int]
    locked_in_log: int
    log_5xx: int
    server_cpu: float | None

    @property
    def acked(self) -> int:
        return sum(r.acked_points for r in self.results)

    @property
    def rate(self) -> float:
        return self.acked / self.wall

    @property
    def lost(self) -> int:
        return sum(max(0, r.acked_points - self.stored[r.trial_id]) for r in self.results)

    @property
    def locked(self) -> int:
        return sum(r.locked_answers for r in self.results) + self.locked_in_log

    @property
    def latencies(self) -> list[float]:
        return [t for r in self.results for t in r.latencies]

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.locked == 0

    def server_cpu_per_kpoint(self) -> str:
        return _cpu_per_kpoint(self.server_cpu, self.acked)


def measure(
    make_server: Callable[[], BenchServer], args: argparse.Namespace, seconds: float
) -> Run:
    """Start the server ``make_server`` makes (its checkout's code), report into it, read back."""
    with make_server() as server, httpx2.Client(base_url=server.url, timeout=60.0) as client:
        # A panda study: no sampler adds trials and no parallelism cap limits the claims.
        study = create_study(client, "bench-ingest")
        trial_ids = [create_trial(client, study, {"seed": i}) for i in range(args.clients)]
        ctx = mp.get_context("spawn")
        start_at = time.monotonic() + 3.0 + 0.3 * args.clients  # room for the spawns
        assert server.server is not None
        server_pid = server.server.pid
        with ctx.Pool(args.clients) as pool:
            jobs = [
                pool.apply_async(
                    run_client, (server.url, start_at, seconds, args.steps, args.metrics)
                )
                for _ in range(args.clients)
            ]
            time.sleep(max(0.0, start_at - time.monotonic()))
            server_cpu_start = process_cpu_seconds(server_pid)
            results = [job.get() for job in jobs]
        wall = time.monotonic() - start_at
        server_cpu_end = process_cpu_seconds(server_pid)
        stored = {r.trial_id: stored_points(client, r.trial_id) for r in results}
        locked_in_log = server.count_in_log(LOCKED)
        log_5xx = server.count_in_log("Exception in ASGI application")
    assert sorted(stored) == sorted(trial_ids), "each client must have claimed its own trial"
    server_cpu = (
        None
        if server_cpu_start is None or server_cpu_end is None
        else server_cpu_end - server_cpu_start
    )
    return Run(seconds, wall, results, stored, locked_in_log, log_5xx, server_cpu)


def print_run(run: Run, args: argparse.Namespace) -> None:
    results = run.results
    print(
        f"\n## Ingest: {args.clients} reporting processes, {args.steps * args.metrics} points "
        f"per batch ({args.steps} steps x {args.metrics} metrics), {run.seconds:g} s\n"
    )
    answers_5xx = sum(r.status_5xx for r in results)
    rows = [
        ("points/s accepted", f"{run.rate:,.0f}"),
        ("batches/s", f"{sum(r.batches for r in results) / run.wall:,.1f}"),
        ("points acknowledged (2xx)", f"{run.acked:,}"),
        ("points stored (GET metrics)", f"{sum(run.stored.values()):,}"),
        ("lost (acked, not stored)", run.lost),
        ("failed batches", sum(r.failed_batches for r in results)),
        ("5xx answers", f"{answers_5xx} (server log tracebacks: {run.log_5xx})"),
        ("'database is locked'", run.locked),
        ("server CPU per 1,000 points", run.server_cpu_per_kpoint()),
        (
            "clients' CPU per 1,000 points",
            _cpu_per_kpoint(sum(r.cpu_seconds for r in results), run.acked),
        ),
        ("batch latency p50", f"{percentile(run.latencies, 50) * 1000:.1f} ms"),
        ("batch latency p95", f"{percentile(run.latencies, 95) * 1000:.1f} ms"),
        ("batch latency max", f"{max(run.latencies, default=float('nan')) * 1000:.1f} ms"),
    ]
    print(markdown_table(["measure", "value"], rows))
    errors = [e for r in results for e in r.errors]
    if errors:
        print(f"\nfirst errors: {errors[:3]}")


def print_goals(rate: float, ok: bool, what: str) -> None:
    for issue, goal in GOALS:
        print(
            f"Goal (issue {issue}): >= {goal:,} points/s, 0 lost, 0 locked: "
            f"{what}{rate:,.0f} points/s -> {verdict(ok and rate >= goal)}"
        )


def control_server(checkout: Path) -> type[BenchServer]:
    """``BenchServer`` as the other checkout defines it: its servers run that checkout's app."""
    path = checkout.resolve() / "bench" / "_server.py"
    spec = importlib.util.spec_from_file_location("_control_bench_server", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--against: no {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server_class: type[BenchServer] = module.BenchServer
    return server_class


def compare(args: argparse.Namespace, seconds: float) -> None:
    """Alternate runs of the control and this one (ABBA order against drift): the control is
    another checkout's server, or this one's with ``--against-processes`` server processes."""
    this = partial(BenchServer, processes=args.server_processes)
    if args.against_processes:
        control = partial(BenchServer, processes=args.against_processes)
        against = f"{args.against_processes} server process(es)"
    else:
        control = partial(control_server(Path(args.against)), processes=args.server_processes)
        against = args.against
    runs: dict[str, list[Run]] = {"control": [], "this": []}
    rows = []
    for i in range(args.rounds):
        order = ["control", "this"] if i % 2 == 0 else ["this", "control"]
        for label in order:
            run = measure(control if label == "control" else this, args, seconds)
            runs[label].append(run)
            rows.append(
                (
                    i + 1,
                    label,
                    f"{run.rate:,.0f}",
                    f"{run.acked:,} / {sum(run.stored.values()):,}",
                    f"{run.lost} / {run.locked} / {run.log_5xx}",
                    run.server_cpu_per_kpoint(),
                    f"{percentile(run.latencies, 95) * 1000:.0f} ms",
                )
            )
            print(f"round {i + 1} {label}: {run.rate:,.0f} points/s", flush=True)
    print(
        f"\n## Ingest against {against}: {args.clients} reporting processes, "
        f"{args.steps} steps x {args.metrics} metrics a batch, {seconds:g} s a run, "
        f"{args.rounds} rounds alternated\n"
    )
    header = [
        "round",
        "checkout",
        "points/s",
        "acked / stored",
        "lost / locked / 5xx",
        "server CPU per 1,000 points",
        "batch p95",
    ]
    print(markdown_table(header, rows))
    median = {k: statistics.median(r.rate for r in v) for k, v in runs.items()}
    ratios = [t.rate / c.rate for t, c in zip(runs["this"], runs["control"], strict=True)]
    print(
        f"\nmedian points/s: this {median['this']:,.0f}, control {median['control']:,.0f}, "
        f"ratio {median['this'] / median['control']:.2f} (per round: "
        f"{', '.join(f'{r:.2f}' for r in ratios)})"
    )
    print_goals(max(r.rate for r in runs["this"]), all(r.ok for r in runs["this"]), "best run ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s instead of --seconds")
    parser.add_argument("--clients", type=int, default=8, help="reporting processes (8)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured duration (20)")
    parser.add_argument("--steps", type=int, default=200, help="steps per batch (200)")
    parser.add_argument(
        "--metrics",
        type=int,
        default=6,
        choices=range(1, len(METRIC_NAMES) + 1),
        metavar="N",
        help="metrics per step (6)",
    )
    parser.add_argument(
        "--against",
        metavar="CHECKOUT",
        help="another checkout (git worktree add /tmp/base <commit>): alternate its server "
        "with this one's, same clients, and print the ratio",
    )
    parser.add_argument(
        "--against-processes",
        type=int,
        metavar="N",
        help="alternate this checkout's server with N processes against --server-processes",
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --against: rounds (3)")
    parser.add_argument(
        "--server-processes",
        type=int,
        default=1,
        metavar="N",
        help="serve --processes N: server processes on the one port and database (1)",
    )
    args = parser.parse_args(argv)
    seconds = 4.0 if args.quick else args.seconds
    if args.against or args.against_processes:
        compare(args, seconds)
        return 0
    run = measure(partial(BenchServer, processes=args.server_processes), args, seconds)
    print_run(run, args)
    print()
    print_goals(run.rate, run.ok, "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
