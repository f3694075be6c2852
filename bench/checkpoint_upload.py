"""Checkpoint upload: how long a worker's PUT of the big network's checkpoint takes.

A pause of a running trial waits for its checkpoint to be stored (the PUT returns once the
bytes are on disk, fsynced, and their row committed), so the PUT of the 784-512-512-10
network's 8 MB checkpoint (weights and Adam's two moments) is the largest part of the pause's
latency in ``control_latency.py``. This bench times that PUT alone: a real server, the real
bytes (the product's trainer, two steps of the network), one client uploading one checkpoint
after another to a running trial, as a worker does.

With ``--against CHECKOUT`` it alternates rounds of the other checkout's server and this one's
(ABBA order, each round a fresh server) and prints the ratio of the medians, so a machine
whose disk and cores are shared decides the comparison in one run.

Usage::

    python bench/checkpoint_upload.py                         # 40 uploads
    python bench/checkpoint_upload.py --against /tmp/base --rounds 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench._server import BenchServer, create_study, create_trial, percentile  # noqa: E402
from bench.ingest import control_server  # noqa: E402
from bench.profile_step import random_data  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.loop import Trainer  # noqa: E402
from trainer.reporting import Action, Directive, RecordingReporter  # noqa: E402


def big_checkpoint() -> bytes:
    """The 784-512-512-10 network's checkpoint (Adam, batch norm) after two steps."""
    hparams = {"hidden_units": 512, "num_layers": 2, "batch_size": 256, "optimizer": "adam"}
    config = TrainConfig(task="blobs", hparams=hparams, report_every=2)
    trainer = Trainer(config, data=random_data(2048))
    trainer.fit(RecordingReporter({2: Directive(Action.PAUSE)}))
    return trainer.checkpoint_bytes()


def upload_times(server_class: Callable[[], BenchServer], data: bytes, n: int) -> list[float]:
    """Seconds of ``n`` PUTs of ``data`` to one running trial of a fresh server."""
    with server_class() as server, httpx2.Client(base_url=server.url, timeout=60) as client:
        trial_id = create_trial(client, create_study(client, "upload", task="digits"), {})
        claim = client.post("/api/workers/claim", json={"worker": "bench"}).json()
        path = f"/api/workers/trials/{trial_id}/checkpoints"
        times = []
        for step in range(1, n + 1):
            params = {"attempt": claim["attempt"], "step": step, "epoch": "0.5", "hparams": "{}"}
            t0 = time.perf_counter()
            r = client.put(
                path,
                params=params,
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
        return times


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=40, help="PUTs per round (40)")
    parser.add_argument("--against", help="another checkout to alternate with (a directory)")
    parser.add_argument("--rounds", type=int, default=4, help="with --against: rounds (4)")
    args = parser.parse_args(argv)
    if args.uploads < 2 or args.rounds < 1:
        parser.error("--uploads: allowed: >= 2; --rounds: allowed: >= 1")
    data = big_checkpoint()
    print(f"checkpoint: {len(data) / 1e6:.2f} MB (784-512-512-10, Adam, batch norm)")
    sides: dict[str, Callable[[], BenchServer]] = {"this": BenchServer}
    if args.against:
        sides = {"control": control_server(Path(args.against)), "this": BenchServer}
    times: dict[str, list[float]] = {label: [] for label in sides}
    for i in range(args.rounds if args.against else 1):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for label in order:
            got = upload_times(sides[label], data, args.uploads)[1:]  # the first warms up
            times[label].extend(got)
            print(f"round {i + 1} {label}: p50 {_ms(got, 50)} ms, p95 {_ms(got, 95)} ms")
    print("\n| server | PUTs | p50 ms | p95 ms | max ms |\n| --- | --- | --- | --- | --- |")
    for label, values in times.items():
        name = args.against if label == "control" else "this checkout"
        print(
            f"| {name} | {len(values)} | {_ms(values, 50)} | {_ms(values, 95)} | "
            f"{max(values) * 1000:.1f} |"
        )
    if args.against:
        ratio = statistics.median(times["this"]) / statistics.median(times["control"])
        print(f"\nthis / control, median PUT: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
