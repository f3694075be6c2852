"""Control latency: how fast a running trial obeys a learning-rate edit and a pause.

What is measured, with a real uvicorn server and ONE real worker process
(``python -m app.cli worker``, started by ``bench/_server.py``; the dispatcher is off):

* **lr edit**: from sending ``PATCH /api/trials/{id}/hparams {"learning_rate": new}`` to the
  moment a poll of ``GET /api/trials/{id}/metrics?names=learning_rate&since_step=S`` (every
  ``--poll`` s, 10 ms by default) first returns a point carrying ``new``. This spans the
  worker's next report (which answers ``update``), the checkpoint it uploads before applying,
  the ``applied`` report, and the next safe point's report of the new value.
* **pause**: from sending ``POST /api/trials/{id}/pause`` to a poll of ``GET /api/trials/{id}``
  showing ``state == "paused"`` (next report -> ``pause`` -> checkpoint upload -> finish).
* **resume**: after each pause, from sending ``POST /api/trials/{id}/resume`` until the trial
  runs and has reported a step past the pause (the idle worker's waiting claim, the
  checkpoint download, the trainer rebuild, the first step and its report).

Each edit/pause starts at a random moment (a uniform wait of up to one report interval), so
it falls at a random phase of the worker's report cycle. Two networks:

* ``digits``: the default 64-128-128-10 network, batch 32 (steps well under a millisecond);
* ``big``: 784-512-512-10, batch 256, on 20,000 Gaussian-blob points in 10 classes. The
  ``blobs`` task allows at most 100 features, so the bench writes the same kind of data
  (centres in [-10, 10], unit noise) as an ``.npz`` into the server's upload directory and uses
  the ``file`` task.

The server's ``report_seconds`` (``PANDACAVIAR_REPORT_SECONDS``, default 0.5) makes a worker
report at least that often; workers also report every 20 steps. The server is started once per
``--report-seconds`` value.

Goals (issue 21): p95 < 100 ms for the lr edit and the pause on both networks; the big
network's resume p95 < 300 ms. (Issue 3's were p95 < 300 ms for the edit and the pause.)

Usage::

    python bench/control_latency.py                 # 20 repeats, report_seconds 0.5 and 0.1
    python bench/control_latency.py --quick         # 5 repeats, report_seconds 0.5 and 0.1
    python bench/control_latency.py --report-seconds 0.2 --networks big
    python bench/control_latency.py --networks big --against /tmp/base --rounds 4

With ``--against CHECKOUT`` the other checkout's server and worker and this one's take turns
(ABBA order, a fresh server each turn, ``--reps`` controls per turn), and the table gives each
side's p50 and p95 and their ratio: a change smaller than the run-to-run noise of a shared
2-core machine is still decided within one run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench._server import (  # noqa: E402
    BenchServer,
    create_study,
    create_trial,
    markdown_table,
    percentile,
    verdict,
)
from bench.ingest import control_server  # noqa: E402

GOAL_P95_SECONDS = 0.100  # lr edit and pause, both networks
GOAL_RESUME_P95_SECONDS = 0.300  # the big network's resume
# Named as the server names uploads (32 hex digits): workers download only such names.
BIG_FILE = "b10b5784" * 4 + ".npz"
TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Network:
    """A trial set-up: task, its options and the architecture hyperparameters."""

    name: str
    task: str
    task_options: dict[str, Any]
    hparams: dict[str, Any]


NETWORKS = {
    "digits": Network("digits 64-128-128-10, batch 32", "digits", {}, {}),
    "big": Network(
        "blobs 784-512-512-10, batch 256",
        "file",
        {"path": BIG_FILE},
        {"hidden_units": 512, "num_layers": 2, "batch_size": 256},
    ),
}


@dataclass
class Timings:
    """Seconds per control for one network at one report_seconds value."""

    lr: list[float] = field(default_factory=list)
    pause: list[float] = field(default_factory=list)
    resume: list[float] = field(default_factory=list)


def write_big_blobs(
    path: Path, n_samples: int = 20_000, n_features: int = 784, n_classes: int = 10, seed: int = 0
) -> None:
    """Gaussian blobs like the ``blobs`` task (centres in [-10, 10], noise 1) as X/y .npz."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10.0, 10.0, size=(n_classes, n_features))
    y = np.arange(n_samples) % n_classes
    X = centres[y] + rng.standard_normal((n_samples, n_features))
    np.savez(path, X=X.astype(np.float32), y=y.astype(np.int64))


def wait_for(check: Callable[[], Any], poll: float, what: str) -> tuple[Any, float]:
    """Call ``check`` every ``poll`` s until it returns something truthy; (value, when)."""
    deadline = time.perf_counter() + TIMEOUT_SECONDS
    while time.perf_counter() < deadline:
        value = check()
        if value:
            return value, time.perf_counter()
        time.sleep(poll)
    raise TimeoutError(f"no {what} after {TIMEOUT_SECONDS:.0f} s")


class TrialDriver:
    """Controls one trial over HTTP the way the dashboard does, timing each control."""

    def __init__(self, client: httpx2.Client, trial_id: int, poll: float) -> None:
        self.client = client
        self.id = trial_id
        self.poll = poll

    def trial(self) -> dict[str, Any]:
        response = self.client.get(f"/api/trials/{self.id}")
        response.raise_for_status()
        return dict(response.json())

    def lr_points(self, since_step: int) -> list[list[Any]]:
        response = self.client.get(
            f"/api/trials/{self.id}/metrics",
            params={"names": "learning_rate", "since_step": since_step},
        )
        response.raise_for_status()
        return list(response.json().get("learning_rate", []))

    def wait_training(self, after_step: int) -> float:
        """Until the trial runs and has reported a step above ``after_step``; the time."""

        def check() -> bool:
            t = self.trial()
            if t["state"] in ("failed", "completed", "stopped"):
                raise RuntimeError(f"trial {self.id} ended: {t['state']} {t.get('error')}")
            return t["state"] == "running" and bool(self.lr_points(after_step))

        return wait_for(check, self.poll, "training")[1]

    def time_lr_edit(self, new_lr: float) -> float:
        since = int(self.trial()["step"])
        t0 = time.perf_counter()
        self.client.patch(
            f"/api/trials/{self.id}/hparams", json={"learning_rate": new_lr}
        ).raise_for_status()

        def check() -> bool:
            return any(abs(v - new_lr) <= 1e-6 * new_lr for _, v in self.lr_points(since))

        return wait_for(check, self.poll, f"learning_rate {new_lr}")[1] - t0

    def time_pause(self) -> tuple[float, float]:
        """(pause latency, resume-to-training time)."""
        t0 = time.perf_counter()
        self.client.post(f"/api/trials/{self.id}/pause").raise_for_status()
        _, t1 = wait_for(lambda: self.trial()["state"] == "paused", self.poll, "paused state")
        paused_step = int(self.trial()["step"])
        t2 = time.perf_counter()
        self.client.post(f"/api/trials/{self.id}/resume").raise_for_status()
        return t1 - t0, self.wait_training(paused_step) - t2

    def stop(self) -> None:
        self.client.post(f"/api/trials/{self.id}/stop").raise_for_status()
        wait_for(lambda: self.trial()["state"] == "stopped", self.poll, "stopped state")


def run_network(
    client: httpx2.Client,
    net: Network,
    reps: int,
    poll: float,
    report_seconds: float,
    rng: random.Random,
) -> Timings:
    """One panda trial of ``net`` on the server's worker: ``reps`` lr edits, then pauses."""
    study = create_study(
        client,
        f"bench-control-{net.task}",
        task=net.task,
        task_options=net.task_options,
        epochs=100_000,
    )
    driver = TrialDriver(client, create_trial(client, study, net.hparams), poll)
    driver.wait_training(0)
    out = Timings()
    lr = 1e-3
    for _ in range(reps):
        time.sleep(rng.uniform(0.05, 0.05 + report_seconds))  # a random report phase
        lr *= 1.01
        out.lr.append(driver.time_lr_edit(lr))
    for _ in range(reps):
        time.sleep(rng.uniform(0.05, 0.05 + report_seconds))
        pause, resume = driver.time_pause()
        out.pause.append(pause)
        out.resume.append(resume)
    driver.stop()
    return out


def measure(
    server_class: Callable[..., BenchServer],
    args: argparse.Namespace,
    report_seconds: float,
    reps: int,
    rng: random.Random,
) -> dict[str, Timings]:
    """Timings per network on a fresh server (and worker) of ``server_class``."""
    env = {"PANDACAVIAR_REPORT_SECONDS": str(report_seconds)}
    out = {}
    with (
        server_class(workers=1, env=env) as server,
        httpx2.Client(base_url=server.url, timeout=60.0) as client,
    ):
        if "big" in args.networks:
            write_big_blobs(server.upload_dir / BIG_FILE)
        for key in args.networks:
            out[key] = run_network(client, NETWORKS[key], reps, args.poll, report_seconds, rng)
    return out


def compare(args: argparse.Namespace, reps: int, rng: random.Random) -> None:
    """This checkout against ``args.against``, turn about (ABBA), per report_seconds."""
    sides: dict[str, Callable[..., BenchServer]] = {
        "control": control_server(Path(args.against)),
        "this": BenchServer,
    }
    rows = []
    for report_seconds in args.report_seconds:
        got: dict[tuple[str, str], Timings] = {}
        for i in range(args.rounds):
            for side in list(sides) if i % 2 == 0 else list(reversed(sides)):
                for key, t in measure(sides[side], args, report_seconds, reps, rng).items():
                    total = got.setdefault((side, key), Timings())
                    total.lr += t.lr
                    total.pause += t.pause
                    total.resume += t.resume
                print(f"report_seconds {report_seconds:g}, round {i + 1}: {side} done", flush=True)
        for key in args.networks:
            control, this = got[("control", key)], got[("this", key)]
            for label, a, b in (
                ("lr edit", control.lr, this.lr),
                ("pause", control.pause, this.pause),
                ("resume", control.resume, this.resume),
            ):
                ratio50 = percentile(b, 50) / percentile(a, 50)
                ratio95 = percentile(b, 95) / percentile(a, 95)
                rows.append(
                    (
                        f"{report_seconds:g}",
                        NETWORKS[key].name,
                        label,
                        len(b),
                        f"{_ms(a, 50)} / {_ms(a, 95)}",
                        f"{_ms(b, 50)} / {_ms(b, 95)}",
                        f"{ratio50:.2f} / {ratio95:.2f}",
                    )
                )
    print(f"\n## Control latency against {args.against}: {args.rounds} rounds of {reps}\n")
    header = [
        "report_seconds",
        "network",
        "control",
        "n",
        "control p50 / p95 ms",
        "this p50 / p95 ms",
        "this / control",
    ]
    print(markdown_table(header, rows))


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats instead of --reps")
    parser.add_argument("--reps", type=int, default=20, help="edits and pauses per network")
    parser.add_argument(
        "--report-seconds",
        type=float,
        nargs="+",
        default=[0.5, 0.1],
        help="PANDACAVIAR_REPORT_SECONDS values to run (0.5 0.1)",
    )
    parser.add_argument(
        "--networks",
        nargs="+",
        choices=sorted(NETWORKS),
        default=["digits", "big"],
        help="networks to run (digits big)",
    )
    parser.add_argument("--poll", type=float, default=0.010, help="poll interval, s (0.01)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random waits")
    parser.add_argument("--against", help="another checkout to take turns with (a directory)")
    parser.add_argument("--rounds", type=int, default=4, help="with --against: turns (4)")
    args = parser.parse_args(argv)
    reps = 5 if args.quick else args.reps
    rng = random.Random(args.seed)

    if args.against:
        compare(args, reps, rng)
        return 0
    results = [
        (report_seconds, NETWORKS[key], timings)
        for report_seconds in args.report_seconds
        for key, timings in measure(BenchServer, args, report_seconds, reps, rng).items()
    ]

    print(
        f"\n## Control latency: 1 worker process, {reps} repeats, poll every "
        f"{args.poll * 1000:.0f} ms\n"
    )
    rows = []
    goals: list[tuple[str, float, float]] = []  # (what, p95, goal)
    for report_seconds, net, t in results:
        for label, values, goal in (
            ("lr edit -> new lr reported", t.lr, GOAL_P95_SECONDS),
            ("pause -> state paused", t.pause, GOAL_P95_SECONDS),
            (
                "resume -> reporting again",
                t.resume,
                GOAL_RESUME_P95_SECONDS if net is NETWORKS["big"] else None,
            ),
        ):
            p95 = percentile(values, 95)
            if goal is not None:
                goals.append(
                    (f"{net.name}, report_seconds {report_seconds:g}: {label}", p95, goal)
                )
            rows.append(
                (
                    f"{report_seconds:g}",
                    net.name,
                    label,
                    _ms(values, 50),
                    _ms(values, 95),
                    f"{max(values) * 1000:.0f}",
                )
            )
    print(
        markdown_table(
            ["report_seconds", "network", "control", "p50 ms", "p95 ms", "max ms"], rows
        )
    )
    print()
    print(
        markdown_table(
            ["goal (issue 21)", "p95 ms", "result"],
            [
                (f"{what} < {goal * 1000:.0f} ms", f"{p95 * 1000:.0f}", verdict(p95 < goal))
                for what, p95, goal in goals
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
