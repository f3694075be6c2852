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

Goal (issue 3): >= 50,000 points/s with 8 clients, 0 lost, 0 locked.

Usage::

    python bench/ingest.py            # 8 clients, 20 s
    python bench/ingest.py --quick    # 8 clients, 4 s
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass, field
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

GOAL_POINTS_PER_SECOND = 50_000
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
    return result


def stored_points(client: httpx2.Client, trial_id: int) -> int:
    """Points of a trial as ``GET /api/trials/{id}/metrics`` returns them (no downsampling)."""
    response = client.get(f"/api/trials/{trial_id}/metrics", timeout=120.0)
    response.raise_for_status()
    return sum(len(points) for points in response.json().values())


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
    args = parser.parse_args(argv)
    seconds = 4.0 if args.quick else args.seconds

    with BenchServer() as server, httpx2.Client(base_url=server.url, timeout=60.0) as client:
        # A panda study: no sampler adds trials and no parallelism cap limits the claims.
        study = create_study(client, "bench-ingest")
        trial_ids = [create_trial(client, study, {"seed": i}) for i in range(args.clients)]
        ctx = mp.get_context("spawn")
        start_at = time.monotonic() + 3.0 + 0.3 * args.clients  # room for the spawns
        with ctx.Pool(args.clients) as pool:
            jobs = [
                pool.apply_async(
                    run_client, (server.url, start_at, seconds, args.steps, args.metrics)
                )
                for _ in range(args.clients)
            ]
            results = [job.get() for job in jobs]
        wall = time.monotonic() - start_at
        stored = {r.trial_id: stored_points(client, r.trial_id) for r in results}
        locked_in_log = server.count_in_log(LOCKED)
        log_5xx = server.count_in_log("Exception in ASGI application")

    assert sorted(stored) == sorted(trial_ids), "each client must have claimed its own trial"
    acked = sum(r.acked_points for r in results)
    lost = sum(max(0, r.acked_points - stored[r.trial_id]) for r in results)
    latencies = [t for r in results for t in r.latencies]
    rate = acked / wall
    failed = sum(r.failed_batches for r in results)
    answers_5xx = sum(r.status_5xx for r in results)
    locked = sum(r.locked_answers for r in results) + locked_in_log
    batch_points = args.steps * args.metrics

    print(
        f"\n## Ingest: {args.clients} reporting processes, {batch_points} points per batch "
        f"({args.steps} steps x {args.metrics} metrics), {seconds:g} s\n"
    )
    rows = [
        ("points/s accepted", f"{rate:,.0f}"),
        ("batches/s", f"{sum(r.batches for r in results) / wall:,.1f}"),
        ("points acknowledged (2xx)", f"{acked:,}"),
        ("points stored (GET metrics)", f"{sum(stored.values()):,}"),
        ("lost (acked, not stored)", lost),
        ("failed batches", failed),
        ("5xx answers", f"{answers_5xx} (server log tracebacks: {log_5xx})"),
        ("'database is locked'", locked),
        ("batch latency p50", f"{percentile(latencies, 50) * 1000:.1f} ms"),
        ("batch latency p95", f"{percentile(latencies, 95) * 1000:.1f} ms"),
        ("batch latency max", f"{max(latencies, default=float('nan')) * 1000:.1f} ms"),
    ]
    print(markdown_table(["measure", "value"], rows))
    errors = [e for r in results for e in r.errors]
    if errors:
        print(f"\nfirst errors: {errors[:3]}")
    ok = rate >= GOAL_POINTS_PER_SECOND and lost == 0 and locked == 0
    print(
        f"\nGoal: >= {GOAL_POINTS_PER_SECOND:,} points/s, 0 lost, 0 locked: "
        f"{rate:,.0f} points/s, {lost} lost, {locked} locked -> {verdict(ok)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
