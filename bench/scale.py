"""Scale-out: trials per hour and scheduling overhead with 1, 2, 4 and 8 workers.

For each launcher (``local``: ``pandacaviar worker`` processes; ``dask``: the server's Dask
launcher on its own ``distributed.LocalCluster``) and each worker count N, a real server runs
one caviar study of small-but-real trials (digits, a few epochs) with parallelism N.

- **trials/hour**: trials / (last trial's end - first trial's start), server timestamps, so
  worker start-up is left out.
- **overhead/trial**: worker-seconds spent outside any trial, per trial:
  (N x span - sum of trial durations) / trials (claims, feeding new trials, idle polls).
- **speed-up**: trials/hour against the same launcher's 1 worker.

Goal (on 2 cores): 2 workers give at least 1.8x the throughput of one. More workers than
cores cannot go faster; the rows show what it costs. Run: ``python bench/scale.py``
(``--quick``: 1 and 2 workers, fewer trials).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._ceiling import cpu_parallelism  # noqa: E402
from bench._server import BenchServer, markdown_table, verdict  # noqa: E402

SPACE: dict[str, Any] = {
    "learning_rate": {"dist": "log_uniform", "low": 1e-3, "high": 3e-2},
    "hidden_units": 64, "num_layers": 2, "batch_size": 16, "epochs": 20,
}  # fmt: skip
STUDY_TIMEOUT_SECONDS = 1800.0
GOAL_SPEEDUP = 1.8


def _has_dask() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def _server(launcher: str, workers: int) -> BenchServer:
    if launcher == "local":
        return BenchServer(workers=workers)
    # The server's own launcher places the workers on a LocalCluster of N processes.
    return BenchServer(env={"PANDACAVIAR_WORKERS": str(workers), "PANDACAVIAR_LAUNCHER": "dask"})


def _run(launcher: str, workers: int, trials: int) -> dict[str, float]:
    with (
        _server(launcher, workers) as server,
        httpx2.Client(base_url=server.url, timeout=60.0) as http,
    ):
        body = {
            "name": f"scale-{launcher}-{workers}",
            "mode": "caviar",
            "task": "digits",
            "space": SPACE,
            "sampler": "random",
            "budget": {"trials": trials},
            "parallelism": workers,
            "seed": 7,
        }
        created = http.post("/api/studies", json=body)
        created.raise_for_status()
        study_id = created.json()["id"]
        deadline = time.monotonic() + STUDY_TIMEOUT_SECONDS
        while http.get(f"/api/studies/{study_id}").json()["state"] != "completed":
            if time.monotonic() > deadline:
                raise RuntimeError(f"study not completed; log:\n{server.log()[-3000:]}")
            time.sleep(0.2)
        rows = http.get(f"/api/studies/{study_id}/trials", params={"limit": 1000}).json()
    done = [t for t in rows["data"] if t["state"] == "completed"]
    if len(done) != trials:
        raise RuntimeError(f"{launcher}/{workers}: {len(done)} of {trials} trials completed")
    starts = [datetime.fromisoformat(t["started_at"]) for t in done]
    ends = [datetime.fromisoformat(t["ended_at"]) for t in done]
    span = (max(ends) - min(starts)).total_seconds()
    busy = sum((e - s).total_seconds() for s, e in zip(starts, ends, strict=True))
    return {
        "per_hour": trials / span * 3600.0,
        "trial_seconds": busy / trials,
        "overhead": (workers * span - busy) / trials,
        "span": span,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 workers, 8 trials")
    parser.add_argument("--trials", type=int, help="trials per run (default 24, quick 8)")
    args = parser.parse_args(argv)
    counts = [1, 2] if args.quick else [1, 2, 4, 8]
    trials = args.trials or (8 if args.quick else 24)
    launchers = ["local"] + (["dask"] if _has_dask() else [])
    if "dask" not in launchers:
        print("dask not installed (pip install 'panda-caviar[dask]'): local rows only")
    print(
        f"{os.cpu_count()} cores; {trials} trials per run; digits, {SPACE['epochs']} epochs, "
        f"{SPACE['hidden_units']} hidden units\n"
    )
    before = cpu_parallelism()
    results: dict[tuple[str, int], dict[str, float]] = {}
    table = []
    for launcher in launchers:
        for n in counts:
            r = results[(launcher, n)] = _run(launcher, n, trials)
            base = results[(launcher, 1)]["per_hour"]
            table.append(
                [
                    launcher,
                    n,
                    f"{r['per_hour']:.0f}",
                    f"{r['per_hour'] / base:.2f}x",
                    f"{r['trial_seconds']:.2f}",
                    f"{r['overhead']:.3f}",
                ]
            )
            print(f"  {launcher} x{n}: {r['per_hour']:.0f} trials/hour", file=sys.stderr)
    print(
        markdown_table(
            ["launcher", "workers", "trials/hour", "speed-up", "s per trial", "overhead s/trial"],
            table,
        )
    )
    after = cpu_parallelism()
    print(
        f"\nthis machine, a CPU loop in 2 processes against 1: {before:.2f}x before the runs, "
        f"{after:.2f}x after (the ceiling of any 2-worker speed-up here)"
    )
    ok = True
    for launcher in launchers:
        speedup = results[(launcher, 2)]["per_hour"] / results[(launcher, 1)]["per_hour"]
        passed = speedup >= GOAL_SPEEDUP or (os.cpu_count() or 1) < 2
        ok &= passed
        print(
            f"\n{launcher}: 2 workers / 1 worker = {speedup:.2f}x (goal >= {GOAL_SPEEDUP}x)"
            f": {verdict(passed)}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
