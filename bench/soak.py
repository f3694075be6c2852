"""Soak: 16 reporting clients for 60 s while 4 dashboard readers poll curves and hold SSE streams.

Every client is its own process and speaks the worker protocol to a real server (uvicorn
subprocess, SQLite file, the WAL synced before every answer): it claims a trial, then
reports batches of points as fast as ``--interval`` allows, resending a batch until it gets
a 2xx. Every reader is a process too: it holds the study's SSE stream open and polls trial
lists and curves (``?since_step=``, ``?max_points=``). At the end the bench counts the points
the server stored against the points it acknowledged: a point acknowledged and not stored is
*lost*.

    python bench/soak.py                  # 60 s, the issue's numbers
    python bench/soak.py --seconds 10 --json   # what tests/e2e/test_soak.py runs

Printed: points sent/acknowledged/stored/lost, errors by kind (5xx, transport, "database is
locked" in answers or the server log), report latency p50/p95/max, reader requests and SSE
frames. Exit status 1 when anything was lost or any 5xx/lock was seen.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

METRICS = ("train_loss", "train_accuracy", "grad_norm", "learning_rate")
STEPS_PER_BATCH = 5  # 5 steps x 4 metrics = 20 points a report
# A dashboard page refreshes about this often (the SSE stream polls every 0.5 s).
READER_PAUSE_SECONDS = 1.0
HPARAMS = {"hidden_units": 32, "num_layers": 1, "batch_size": 64, "epochs": 1}


def _error_kind(response: httpx2.Response | None, exc: Exception | None) -> str:
    if exc is not None:
        return f"transport: {type(exc).__name__}"
    assert response is not None
    if LOCKED in response.text.lower():
        return LOCKED
    return f"http {response.status_code}"


def run_client(url: str, name: str, interval: float, until: float) -> dict[str, Any]:
    """One reporting client: claim a trial, report until ``until``; what it saw."""
    http = httpx2.Client(base_url=url, timeout=30.0)
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    claim = http.post("/api/workers/claim", json={"worker": name}).json()
    trial_id, attempt = int(claim["trial_id"]), int(claim["attempt"])
    step, sent, acked = 0, 0, 0
    while time.time() < until:
        steps = range(step + 1, step + 1 + STEPS_PER_BATCH)
        points = [[s, m, 1.0 / s] for s in steps for m in METRICS]
        body = {"attempt": attempt, "step": steps[-1], "epoch": 0.0, "points": points}
        while True:  # the same batch until it is acknowledged (as HttpReporter does)
            sent += len(points)
            t0 = time.perf_counter()
            response, exc = None, None
            try:
                response = http.post(f"/api/workers/trials/{trial_id}/report", json=body)
            except httpx2.TransportError as err:
                exc = err
            if response is not None and response.status_code == 200:
                latencies.append(time.perf_counter() - t0)
                break
            errors[_error_kind(response, exc)] += 1
            time.sleep(0.05)
        acked += len(points)
        step = steps[-1]
        time.sleep(interval)
    http.close()
    return {"trial_id": trial_id, "last_step": step, "sent": sent, "acked": acked,
            "errors": dict(errors), "latencies": latencies}  # fmt: skip


def _hold_stream(url: str, study_id: int, until: float, frames: list[int]) -> None:
    http = httpx2.Client(base_url=url, timeout=httpx2.Timeout(30.0, read=10.0))
    with http, http.stream("GET", f"/api/studies/{study_id}/stream") as response:
        for line in response.iter_lines():
            frames[0] += line.startswith("data:")
            if time.time() >= until:
                return


def run_reader(url: str, study_id: int, trial_ids: list[int], until: float) -> dict[str, Any]:
    """One dashboard: the study's SSE stream held open, trial lists and curves polled."""
    frames = [0]
    stream = threading.Thread(target=_hold_stream, args=(url, study_id, until, frames))
    stream.start()
    http = httpx2.Client(base_url=url, timeout=30.0)
    errors: Counter[str] = Counter()
    requests, since = 0, dict.fromkeys(trial_ids, 0)
    while time.time() < until:
        for trial_id in trial_ids:
            paths = [
                (f"/api/trials/{trial_id}/metrics", {"since_step": since[trial_id]}),
                (f"/api/trials/{trial_id}/metrics", {"max_points": 200}),
                (f"/api/studies/{study_id}/trials", {}),
            ]
            for path, params in paths:
                requests += 1
                try:
                    response = http.get(path, params=params)
                except httpx2.TransportError as exc:
                    errors[_error_kind(None, exc)] += 1
                    continue
                if response.status_code != 200:
                    errors[_error_kind(response, None)] += 1
                elif "since_step" in params:
                    curve = response.json().get("train_loss", [])
                    since[trial_id] = int(curve[-1][0]) if curve else since[trial_id]
            if time.time() >= until:
                break
        time.sleep(READER_PAUSE_SECONDS)
    http.close()
    stream.join(timeout=30)
    return {"requests": requests, "errors": dict(errors), "sse_frames": frames[0]}


Role = Callable[..., dict[str, Any]]


def _role(role: Role, args: tuple[Any, ...], seconds: float, barrier: Any, out: Any) -> None:
    """A process: wait until every process is up, then play ``role`` for ``seconds``."""
    barrier.wait()  # spawning 20 interpreters takes seconds: the clock starts after
    out.put((args, role(*args, time.time() + seconds)))


def _run_together(roles: list[tuple[Role, tuple[Any, ...]]], seconds: float) -> list[Any]:
    """Run every (function, args) in its own process at once; their results, in order."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(len(roles)), ctx.Queue()
    procs = [ctx.Process(target=_role, args=(role, args, seconds, barrier, out))
             for role, args in roles]  # fmt: skip
    for proc in procs:
        proc.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join()
    order = [args for _, args in roles]
    # Results arrive as processes end; identical reader args are interchangeable.
    ranked = sorted(results, key=lambda r: order.index(r[0]))
    return [result for _, result in ranked]


def _stored(http: httpx2.Client, trial_id: int, last_step: int) -> tuple[int, int]:
    """(points stored, acknowledged points missing) of a client's trial."""
    curves = http.get(f"/api/trials/{trial_id}/metrics", params={"names": ",".join(METRICS)})
    curves.raise_for_status()
    data = curves.json()
    stored = sum(len(data.get(m, [])) for m in METRICS)
    missing = sum(len(set(range(1, last_step + 1)) - {int(p[0]) for p in data.get(m, [])})
                  for m in METRICS)  # fmt: skip
    return stored, missing


def soak(
    seconds: float, n_clients: int, n_readers: int, interval: float, keep: bool = False
) -> dict[str, Any]:
    """Run the soak against a fresh server; the summary as a dict."""
    env = {"PANDACAVIAR_LEASE_SECONDS": "600", "PANDACAVIAR_REAPER_SECONDS": "1"}
    server = BenchServer(env=env, keep=keep)
    with server, httpx2.Client(base_url=server.url, timeout=30) as http:
        study_id = create_study(http, "soak", mode="panda", task="digits", epochs=1)
        trial_ids = [create_trial(http, study_id, {**HPARAMS, "seed": i})
                     for i in range(n_clients)]  # fmt: skip
        clients = [(run_client, (server.url, f"soak-{i}", interval)) for i in range(n_clients)]
        readers = [(run_reader, (server.url, study_id, trial_ids))] * n_readers
        outs = _run_together([*clients, *readers], seconds)
        client_out, reader_out = outs[:n_clients], outs[n_clients:]
        stored = [_stored(http, c["trial_id"], c["last_step"]) for c in client_out]
        locked_in_log = server.count_in_log(LOCKED)
        # Informative only: a reader that goes away mid-stream leaves one in the log too.
        asgi_exceptions = server.count_in_log("Exception in ASGI application")
    latencies = [x for c in client_out for x in c["latencies"]]
    errors: Counter[str] = Counter()
    for out in [*client_out, *reader_out]:
        errors.update(out["errors"])
    return {
        "seconds": seconds, "clients": n_clients, "readers": n_readers,
        "points_sent": sum(c["sent"] for c in client_out),
        "points_acked": sum(c["acked"] for c in client_out),
        "points_stored": sum(s for s, _ in stored),
        "points_lost": sum(m for _, m in stored),
        "reports": len(latencies),
        "report_p50_ms": 1000 * percentile(latencies, 50),
        "report_p95_ms": 1000 * percentile(latencies, 95),
        "report_max_ms": 1000 * max(latencies, default=float("nan")),
        "errors": dict(errors),
        "errors_5xx": sum(n for k, n in errors.items() if k.startswith("http 5")),
        "locked": errors[LOCKED] + locked_in_log,
        "asgi_exceptions": asgi_exceptions,
        "reader_requests": sum(r["requests"] for r in reader_out),
        "sse_frames": sum(r["sse_frames"] for r in reader_out),
        "data_dir": str(server.data_dir) if keep else None,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument(
        "--interval",
        type=float,
        default=0.05,
        help="pause between a client's reports (a real worker: 0.5 s)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    parser.add_argument("--keep", action="store_true", help="keep the server's data and log")
    args = parser.parse_args(argv)
    out = soak(args.seconds, args.clients, args.readers, args.interval, args.keep)
    ok = out["points_lost"] == 0 and out["locked"] == 0 and out["errors_5xx"] == 0
    rows = [
        ["points sent / acknowledged", f"{out['points_sent']} / {out['points_acked']}"],
        ["points stored / lost", f"{out['points_stored']} / {out['points_lost']}"],
        ["reports acknowledged", out["reports"]],
        ["report latency p50 / p95 / max (ms)",
         f"{out['report_p50_ms']:.1f} / {out['report_p95_ms']:.1f} / {out['report_max_ms']:.1f}"],
        ["errors", out["errors"] or "none"],
        ['"database is locked"', out["locked"]],
        ["reader requests / SSE frames", f"{out['reader_requests']} / {out['sse_frames']}"],
        ["server log: exceptions (SSE disconnects included)", out["asgi_exceptions"]],
        ["verdict", verdict(ok)],
    ]  # fmt: skip
    print(f"soak: {args.clients} clients, {args.readers} readers, {args.seconds:.0f} s")
    print(markdown_table(["measure", "value"], rows))
    if args.json:
        print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
