"""API latency: how fast a trial page's data requests answer on a big study.

What is measured: a real uvicorn server (``bench/_server.py``, dispatcher off) holds one study
of ``--trials`` trials x ``--steps`` steps x 6 metrics (1,000 x 500 x 6 = 3,000,000 points by
default). The study is built through the public API: trials are created with
``POST /api/studies/{id}/trials``; then ``--loaders`` processes act as workers, each claiming
trials, reporting all of a trial's points in one batch and finishing it as completed.

Then one keep-alive ``httpx2.Client`` requests, sequentially, for ``--samples`` random trials
the three calls a trial page and the study page make:

* ``GET /api/trials/{id}``
* ``GET /api/trials/{id}/metrics?max_points=1000``
* ``GET /api/studies/{id}/trials?limit=50&offset=<random>``

and prints p50/p95/max per call (client-side wall time, response fully read) and for the
three together ("page"). The first ``--warmup`` samples are not counted.

Goal (issue 3): p95 < 100 ms for each call.

Usage::

    python bench/api_latency.py            # 1,000 trials, 300 samples
    python bench/api_latency.py --quick    # 100 trials, 100 samples
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import sys
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench._server import (  # noqa: E402
    BenchServer,
    create_study,
    create_trial,
    markdown_table,
    percentile,
    verdict,
)

GOAL_P95_SECONDS = 0.100
METRIC_NAMES = (
    "train_loss",
    "train_accuracy",
    "learning_rate",
    "grad_norm",
    "dev_loss",
    "dev_accuracy",
)


def load_trials(url: str, steps: int, seed: int) -> int:
    """Worker-like loader: claim, report every point in one batch, finish; until 204.

    Returns:
        The number of trials this process filled.
    """
    rng = random.Random(seed)
    done = 0
    with httpx2.Client(base_url=url, timeout=120.0) as client:
        while True:
            claim = client.post("/api/workers/claim", json={"worker": f"bench-loader-{seed}"})
            claim.raise_for_status()
            if claim.status_code == 204:
                return done
            tid, attempt = claim.json()["trial_id"], claim.json()["attempt"]
            scale = rng.uniform(0.5, 2.0)
            points = [
                [step, name, scale * (i + 1) / (step + 1)]
                for step in range(1, steps + 1)
                for i, name in enumerate(METRIC_NAMES)
            ]
            body = {"attempt": attempt, "step": steps, "epoch": 1.0, "points": points}
            client.post(f"/api/workers/trials/{tid}/report", json=body).raise_for_status()
            finish = {"attempt": attempt, "status": "completed", "step": steps, "epoch": 1.0}
            client.post(f"/api/workers/trials/{tid}/finish", json=finish).raise_for_status()
            done += 1


def build_study(url: str, n_trials: int, steps: int, loaders: int) -> tuple[int, list[int]]:
    """The study and its trial ids, every trial completed with ``steps`` x 6 points."""
    with httpx2.Client(base_url=url, timeout=60.0) as client:
        # A panda study: no sampler adds trials and no parallelism cap limits the claims.
        study = create_study(client, "bench-api-latency")
        trial_ids = [create_trial(client, study, {"seed": i}) for i in range(n_trials)]
    with mp.get_context("spawn").Pool(loaders) as pool:
        filled = sum(pool.starmap(load_trials, [(url, steps, i) for i in range(loaders)]))
    if filled != n_trials:
        raise RuntimeError(f"filled {filled} trials, expected {n_trials}")
    return study, trial_ids


def timed_get(client: httpx2.Client, path: str) -> tuple[float, int]:
    """Seconds for one GET with the body fully read, and the body's size in bytes."""
    t0 = time.perf_counter()
    response = client.get(path)
    size = len(response.content)
    elapsed = time.perf_counter() - t0
    response.raise_for_status()
    return elapsed, size


def measure(
    url: str, study: int, trial_ids: list[int], samples: int, warmup: int, seed: int
) -> dict[str, tuple[list[float], list[int]]]:
    """Per call label: latencies (s) and response sizes (bytes) of the counted samples."""
    rng = random.Random(seed)
    out: dict[str, tuple[list[float], list[int]]] = {}
    with httpx2.Client(base_url=url, timeout=60.0) as client:
        for i in range(warmup + samples):
            tid = rng.choice(trial_ids)
            offset = rng.randrange(0, max(1, len(trial_ids) - 50) + 1)
            calls = {
                "GET /api/trials/{id}": f"/api/trials/{tid}",
                "GET /api/trials/{id}/metrics?max_points=1000": (
                    f"/api/trials/{tid}/metrics?max_points=1000"
                ),
                "GET /api/studies/{id}/trials?limit=50": (
                    f"/api/studies/{study}/trials?limit=50&offset={offset}"
                ),
            }
            page = 0.0
            for label, path in calls.items():
                elapsed, size = timed_get(client, path)
                page += elapsed
                if i >= warmup:
                    out.setdefault(label, ([], []))[0].append(elapsed)
                    out[label][1].append(size)
            if i >= warmup:
                out.setdefault("page (the three in a row)", ([], []))[0].append(page)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 trials, 100 samples")
    parser.add_argument("--trials", type=int, default=1000, help="trials in the study (1000)")
    parser.add_argument("--steps", type=int, default=500, help="steps per trial (500)")
    parser.add_argument("--samples", type=int, default=300, help="random trials timed (300)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed first samples (10)")
    parser.add_argument("--loaders", type=int, default=4, help="processes filling trials (4)")
    parser.add_argument("--seed", type=int, default=0, help="picks the sampled trials")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.samples = 100, 100

    with BenchServer() as server:
        t0 = time.perf_counter()
        study, trial_ids = build_study(server.url, args.trials, args.steps, args.loaders)
        build = time.perf_counter() - t0
        results = measure(server.url, study, trial_ids, args.samples, args.warmup, args.seed)
        db_mb = (server.data_dir / "bench.db").stat().st_size / 1e6

    points = args.trials * args.steps * len(METRIC_NAMES)
    print(
        f"\n## API latency: {args.trials:,} trials x {args.steps} steps x "
        f"{len(METRIC_NAMES)} metrics = {points:,} points (built in {build:.0f} s, "
        f"SQLite {db_mb:.0f} MB); {args.samples} random trials, sequential, keep-alive\n"
    )
    rows = []
    worst = 0.0
    for label, (times, sizes) in results.items():
        p95 = percentile(times, 95)
        if not label.startswith("page"):
            worst = max(worst, p95)
        size = f"{sum(sizes) / len(sizes) / 1000:.1f} kB" if sizes else "-"
        rows.append(
            (
                label,
                f"{percentile(times, 50) * 1000:.1f}",
                f"{p95 * 1000:.1f}",
                f"{max(times) * 1000:.1f}",
                size,
            )
        )
    print(markdown_table(["request", "p50 ms", "p95 ms", "max ms", "mean body"], rows))
    ok = worst < GOAL_P95_SECONDS
    print(
        f"\nGoal: p95 < {GOAL_P95_SECONDS * 1000:.0f} ms per request: worst p95 "
        f"{worst * 1000:.1f} ms -> {verdict(ok)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
