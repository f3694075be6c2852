"""Client overhead: what ``pandacaviar`` costs a user's own training loop, against Optuna.

What is measured, against a real server subprocess (``pandacaviar serve``, see
``bench/_server.py``: no workers of its own, a free loopback port, a temporary SQLite file):

* **a report**: one trial of an external study is claimed with ``Client.ask``, then the loop
  calls ``trial.report(epoch=..., train_loss=..., grad_norm=..., learning_rate=...)`` (3
  metrics, a new step each call, an epoch end every 100 calls) ``--reports`` times back to back
  (after ``--warmup-reports`` untimed ones): the worst case, and the judged one. Reports are
  buffered and sent in batches every ``report_seconds`` (0.1 s, the server's default), and a
  batch is sent by the report that finds it due, in the loop's thread: its round trip is part of
  what the loop pays. The cost of a report is the wall time of all calls / the calls. The
  table splits the calls into those that sent a batch (the loop's report requests, counted on
  the wire from its thread) and the others, which only buffer (each call timed with
  ``perf_counter_ns``). A second column does the same with ``--work-ms`` of the loop's own
  work (a busy wait) before each report, ``--work-reports`` reports: a small network's step.
* **a trial**: claim, 10 reports, finish. Ours: ``client.ask(study, wait=False)`` claims one
  of the trials queued beforehand (not timed, as in ``orchestration_vs_optuna.py``),
  10 x ``trial.report(epoch=e, dev_accuracy=v)`` (an epoch end each), ``client.tell(trial, v)``;
  one ``Client`` (a keep-alive HTTP connection) for all trials. Optuna: ``study.ask()``,
  10 x ``trial.report(v, step)``, ``study.tell(trial, v)`` on an ``RDBStorage`` SQLite file
  in a temporary directory. Both sequential, in this process, ``--trials`` trials each after
  ``--warmup`` untimed ones; ms per trial is the mean over the timed trials, split into its
  three phases.

Everything runs ``--repeats`` times, ours and Optuna's trials one after the other (the order
swapped every repeat) so background load hits both alike, then the two report loops; the tables
give the median over repeats. The machine's load average is printed: these are wall times, on
a shared box they carry its load.

Also ``client.run(train, study)``, the hand-over style, with the same 10 reports in
``train``: there each finish claims the next trial in the same request, as the server's
workers do, so a trial costs one request; judged, since it is how a user runs many trials.

Goals: a report costs the loop under 20 us; a trial costs at most a third of Optuna's time.

Usage::

    python bench/client_overhead.py            # 20,000 reports, 200 trials, 3 repeats
    python bench/client_overhead.py --quick    # 5,000 reports, 50 trials, 1 repeat
    python bench/client_overhead.py --work-ms 5 --work-reports 1000
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import pandacaviar  # noqa: E402
from bench._server import (  # noqa: E402
    BenchServer,
    create_trial,
    markdown_table,
    percentile,
    verdict,
)

GOAL_REPORT_US = 20.0
GOAL_TRIAL_RATIO = 1 / 3
REPORTS_PER_TRIAL = 10
STEPS_PER_EPOCH = 100
SPACE = {"learning_rate": 0.1, "momentum": 0.9}


@dataclass
class ReportRun:
    """One timed run of ``trial.report`` calls.

    ``sending_ns`` are the calls that sent a batch (the request is made inside the call, in
    the loop's thread); ``buffering_ns`` the others, which only append to the buffer.
    """

    calls: int
    seconds: float
    work_seconds: float
    sending_ns: list[int]
    buffering_ns: list[int]

    @property
    def wall_us(self) -> float:
        """Wall time less the loop's own work, per call (the loop's overhead included)."""
        return (self.seconds - self.work_seconds) / self.calls * 1e6

    @property
    def in_calls_us(self) -> float:
        """Time inside ``trial.report`` per call (a busy loop's preemptions left out)."""
        return (sum(self.sending_ns) + sum(self.buffering_ns)) / self.calls / 1e3


@dataclass
class TrialRun:
    """One timed run of whole trials: seconds per phase, summed over the trials."""

    trials: int
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    def ms(self, phase: str | None = None) -> float:
        total = self.phases[phase] if phase else sum(self.phases.values())
        return total / self.trials * 1e3


PHASES = ("claim", "10 reports", "finish")


def external_study(client: pandacaviar.Client, http: httpx2.Client, trials: int) -> int:
    """A panda study of the user's loop with ``trials`` trials queued (not timed)."""
    study = client.create_study("client overhead", SPACE, mode="panda", epochs=10_000)
    for _ in range(trials):
        create_trial(http, study, SPACE)
    return study


def count_report_requests(client: pandacaviar.Client) -> list[int]:
    """A counter (``[n]``) of the report requests ``client`` sends from this thread on: the
    batches the loop itself sends (the lease thread's and the directive watch's not counted)."""
    sent = [0]
    me = threading.get_ident()

    def hook(request: httpx2.Request) -> None:
        if threading.get_ident() == me and request.url.path.endswith("/report"):
            sent[0] += 1

    client.worker.http.event_hooks["request"].append(hook)
    return sent


def busy(seconds: float) -> None:
    """The loop's own work: a busy wait (a sleep would hand the core to the server)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def time_reports(
    url: str, http: httpx2.Client, calls: int, warmup: int, work: float = 0.0
) -> ReportRun:
    """``warmup`` then ``calls`` reports of 3 metrics in one claimed trial, ``work`` seconds
    of the loop's own work before each."""
    with pandacaviar.Client(url, name="bench-reports") as client:
        study = external_study(client, http, 1)
        trial = client.ask(study, wait=False)
        assert trial is not None
        report = trial.report
        for i in range(warmup):
            report(epoch=i / STEPS_PER_EPOCH, train_loss=1.0, grad_norm=0.5, learning_rate=0.1)
        sent = count_report_requests(client)
        sending: list[int] = []
        buffering: list[int] = []
        clock = time.perf_counter_ns
        start = time.perf_counter()
        for i in range(warmup, warmup + calls):
            if work:
                busy(work)
            before, t0 = sent[0], clock()
            report(
                epoch=i / STEPS_PER_EPOCH,
                train_loss=1.0 / (1 + i),
                grad_norm=0.5,
                learning_rate=0.1,
            )
            (sending if sent[0] != before else buffering).append(clock() - t0)
        seconds = time.perf_counter() - start
        client.tell(trial)
    return ReportRun(calls, seconds, work * calls, sending, buffering)


def time_ours(url: str, http: httpx2.Client, trials: int, warmup: int) -> TrialRun:
    """Whole trials through ``client.ask`` / ``trial.report`` x 10 / ``client.tell``."""
    with pandacaviar.Client(url, name="bench-trials") as client:
        study = external_study(client, http, warmup + trials)
        run = TrialRun(trials)
        for n in range(warmup + trials):
            t0 = time.perf_counter()
            trial = client.ask(study, wait=False)
            assert trial is not None
            t1 = time.perf_counter()
            for epoch in range(1, REPORTS_PER_TRIAL + 1):
                trial.report(epoch=epoch, dev_accuracy=0.5 + epoch / 100)
            t2 = time.perf_counter()
            client.tell(trial, 0.6)
            t3 = time.perf_counter()
            if n >= warmup:
                for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    run.phases[phase] += seconds
    return run


def time_ours_run(url: str, http: httpx2.Client, trials: int, warmup: int) -> float:
    """Seconds per trial through ``client.run(train, study)``: the hand-over style, where each
    finish claims the next trial (one request a trial); ``train`` makes the same 10 reports."""

    def train(trial: pandacaviar.Trial) -> float:
        for epoch in range(1, REPORTS_PER_TRIAL + 1):
            trial.report(epoch=epoch, dev_accuracy=0.5 + epoch / 100)
        return 0.6

    with pandacaviar.Client(url, name="bench-run") as client:
        study = external_study(client, http, warmup + trials)
        client.run(train, study, n_trials=warmup)
        t0 = time.perf_counter()
        client.run(train, study, n_trials=trials)
        return (time.perf_counter() - t0) / trials


def time_optuna(trials: int, warmup: int) -> TrialRun:
    """Whole trials through ``study.ask`` / ``trial.report`` x 10 / ``study.tell``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-optuna-") as tmp:
        storage = optuna.storages.RDBStorage(f"sqlite:///{Path(tmp) / 'optuna.db'}")
        study = optuna.create_study(storage=storage, direction="maximize")
        run = TrialRun(trials)
        for n in range(warmup + trials):
            t0 = time.perf_counter()
            trial = study.ask()
            t1 = time.perf_counter()
            for epoch in range(1, REPORTS_PER_TRIAL + 1):
                trial.report(0.5 + epoch / 100, epoch)
            t2 = time.perf_counter()
            study.tell(trial, 0.6)
            t3 = time.perf_counter()
            if n >= warmup:
                for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    run.phases[phase] += seconds
        storage.engine.dispose()
    return run


def report_table(setups: dict[str, list[ReportRun]]) -> str:
    """The reports table: one column per setup, medians over its repeats."""

    def med(runs: list[ReportRun], value: Callable[[ReportRun], float]) -> float:
        return statistics.median([value(r) for r in runs])

    def mean_ms(values: list[int]) -> float:
        return statistics.fmean(values) / 1e6 if values else float("nan")

    def sending_share(r: ReportRun) -> float:
        return sum(r.sending_ns) / (sum(r.sending_ns) + sum(r.buffering_ns))

    lines: list[tuple[str, str, Callable[[ReportRun], float]]] = [
        ("reports timed", ",.0f", lambda r: r.calls),
        ("**time in trial.report / reports (us)**", ".2f", lambda r: r.in_calls_us),
        ("wall time less the loop's work / reports (us)", ".2f", lambda r: r.wall_us),
        ("reports that sent a batch", ".0f", lambda r: len(r.sending_ns)),
        ("... reports per batch", ",.0f", lambda r: r.calls / max(1, len(r.sending_ns))),
        ("... mean time of such a report (ms)", ".2f", lambda r: mean_ms(r.sending_ns)),
        ("the other reports (buffered): mean (us)", ".2f",
         lambda r: mean_ms(r.buffering_ns) * 1e3),
        ("... median (us)", ".2f", lambda r: percentile(r.buffering_ns, 50) / 1e3),
        ("... p99 (us)", ".2f", lambda r: percentile(r.buffering_ns, 99) / 1e3),
        ("share of the reports' time spent sending", ".0%", sending_share),
    ]  # fmt: skip
    rows = [
        [label, *(format(med(runs, value), fmt) for runs in setups.values())]
        for label, fmt, value in lines
    ]
    return markdown_table(["trial.report(3 metrics)", *setups], rows)


def trial_table(ours: list[TrialRun], theirs: list[TrialRun]) -> tuple[str, float, float]:
    """The per-trial table (medians over repeats) and the judged ms per trial of each."""
    rows = []
    totals = []
    setups = (("ours (pandacaviar client)", ours), ("optuna (RDBStorage SQLite)", theirs))
    for name, runs in setups:
        cells = [f"{statistics.median([r.ms(p) for r in runs]):.2f}" for p in PHASES]
        total = statistics.median([r.ms() for r in runs])
        totals.append(total)
        rows.append([name, *cells, f"**{total:.2f}**"])
    rows.append(["ours / optuna", "", "", "", f"**{totals[0] / totals[1]:.2f}**"])
    header = ["ms per trial", "claim / ask", "10 reports", "finish / tell", "trial"]
    return markdown_table(header, rows), totals[0], totals[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=20_000, help="back to back")
    parser.add_argument("--warmup-reports", type=int, default=2_000)
    parser.add_argument("--work-ms", type=float, default=1.0, help="the busy loop's step")
    parser.add_argument("--work-reports", type=int, default=2_000, help="in the busy loop")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="5,000 reports, 50 trials, once")
    args = parser.parse_args()
    if args.quick:
        args.reports, args.warmup_reports, args.work_reports = 5_000, 500, 500
        args.trials, args.warmup, args.repeats = 50, 5, 1
    logging.basicConfig(level=logging.WARNING)
    work = args.work_ms / 1e3
    tight, busy_loop = "back to back (judged)", f"{args.work_ms:g} ms of work a step"

    reports: dict[str, list[ReportRun]] = {tight: [], busy_loop: []}
    ours: list[TrialRun] = []
    ours_run: list[float] = []
    theirs: list[TrialRun] = []
    with BenchServer() as server, httpx2.Client(base_url=server.url, timeout=60.0) as http:
        url = server.url
        for repeat in range(args.repeats):
            print(f"repeat {repeat + 1}/{args.repeats}", file=sys.stderr, flush=True)
            steps: list[Callable[[], Any]] = [
                lambda: ours.append(time_ours(url, http, args.trials, args.warmup)),
                lambda: ours_run.append(time_ours_run(url, http, args.trials, args.warmup)),
                lambda: theirs.append(time_optuna(args.trials, args.warmup)),
            ]
            for step in steps if repeat % 2 == 0 else steps[::-1]:
                step()
            reports[tight].append(time_reports(url, http, args.reports, args.warmup_reports))
            runs = reports[busy_loop]
            runs.append(time_reports(url, http, args.work_reports, args.warmup_reports, work))
        errors = server.count_in_log("Traceback")

    load = os.getloadavg()
    print(f"## client_overhead ({args.repeats} repeats; medians over them)\n")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min)")
    print(f"server tracebacks: {errors}\n")
    print(report_table(reports) + "\n")
    table, ours_ms, optuna_ms = trial_table(ours, theirs)
    print(table + "\n")
    report_us = statistics.median([r.wall_us for r in reports[tight]])
    print(
        f"- a report costs the loop < {GOAL_REPORT_US:.0f} us (wall time / reports, back to "
        f"back): {report_us:.2f} us "
        f"-> {verdict(report_us < GOAL_REPORT_US)}"
    )
    run_ms = statistics.median(ours_run) * 1e3
    ratio = run_ms / optuna_ms
    print(f"- (info) ask / tell: {ours_ms:.2f} ms a trial, {ours_ms / optuna_ms:.2f} of Optuna's")
    print(
        f"- a trial (claim, 10 reports, finish) at most 1/3 of Optuna's, through run(): "
        f"{run_ms:.2f} ms vs {optuna_ms:.2f} ms = {ratio:.2f} -> "
        f"{verdict(ratio <= GOAL_TRIAL_RATIO)}"
    )


if __name__ == "__main__":
    main()
