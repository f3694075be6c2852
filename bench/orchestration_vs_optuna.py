"""Orchestration overhead: per-trial cost of our server's worker protocol against Optuna's.

What is measured (no training at all, only the bookkeeping a trial costs):

* **ours**: a real server subprocess (``pandacaviar serve``, see ``bench/_server.py``: no
  workers of its own, a free loopback port, a temporary data directory and SQLite file). Before
  each run a fresh study is created and enough trials are queued over HTTP (not timed). One
  trial is then what ``app.worker.loop`` does for one, minus the trainer: ``WorkerClient.claim``,
  10 x ``HttpReporter.report`` of one ``dev_accuracy`` value each (an epoch end each), and
  ``HttpReporter.finish`` (completed, with the final value), one ``WorkerClient`` (a keep-alive
  ``httpx2.Client``) per client process. The reporter sends at most every ``report_seconds``
  counted from the claim (0.1 s, the server's default), so here the 10 values leave with the
  finish, and the finish claims the worker's next trial, as ``app.worker.loop``'s finish does: one
  round trip and one durable commit a trial (the WAL synced before the answer; see
  ``app/storage/db.py``). The HTTP requests per trial are counted on the wire.
* Setups of ours: ``ours`` is ``pandacaviar serve --processes 2`` (the judged one);
  ``ours, 1 server process``; ``ours, a request per value`` sends every value at once (a
  report interval of 0), 11 round trips a trial, to show what batching saves.
* **optuna**: ``optuna.load_study`` on a SQLite ``RDBStorage`` file in a temporary directory
  (a fresh study per run); one trial is ``study.ask()``, 10 x ``trial.report(value, step)``
  and ``study.tell(trial, value)``.

Each setup runs with 1 and with 2 client PROCESSES at once (1 first in even repeats, 2 first in
odd ones), in one invocation, ``--repeats`` times (setups interleaved, so background load hits
all alike). Each process first does ``--warmup`` untimed trials (connections, imports, caches),
then all processes start together at a barrier and each runs ``--trials`` trials. ms per trial
= wall time from the common start to the last process's end / all trials done; the tables show
the median over repeats. The 2-vs-1 speed-up is throughput with 2 processes / throughput with
1, taken per repeat (the two runs back to back) and then the median: on this shared machine how
much of the second core is there moves within minutes (a CPU loop, measured before each repeat,
got 1.13x to 2.20x in one run), so a ratio of two medians would compare runs made under
different loads; it is shown too. Each run also reads the machine's busy cores over its timed
section (``/proc/stat``, every process on the machine) and gives CPU ms per trial = busy cores
x ms per trial. For ours the mean time of each call kind is shown too, next to a ``GET
/api/health`` round trip (the HTTP + framework floor).

Two controls run before each repeat (``bench/_ceiling.py``): a CPU loop in 2 processes against
1, and the protocol's own shape with nothing of ours in it, 2 client/server chains on loopback
against 1, one request a trial and a fixed amount of CPU work on each side. The second is what
any one-round-trip server and worker pair could get from this machine at that moment; ours'
speed-up is shown over it, repeat by repeat.

Goals (issue 4): ours at most a third of Optuna's per-trial time (1 process), and our 2
processes at least 1.8x one.

Usage::

    python bench/orchestration_vs_optuna.py            # 500 trials per process, 5 repeats
    python bench/orchestration_vs_optuna.py --quick    # 30 trials per process, 1 repeat
    python bench/orchestration_vs_optuna.py --postgres # and ours on PostgreSQL
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from app.worker.client import FinishStatus, HttpReporter, WorkerClient  # noqa: E402
from app.worker.loop import Assignment  # noqa: E402
from bench._ceiling import (  # noqa: E402
    ChainCeiling,
    busy_cores,
    chain_parallelism,
    cpu_parallelism,
    cpu_ticks,
)
from bench._server import (  # noqa: E402
    LOCKED,
    BenchServer,
    create_study,
    create_trial,
    markdown_table,
    verdict,
)

REPORTS_PER_TRIAL = 10
GOAL_RATIO = 1 / 3
GOAL_SPEEDUP = 1.8
CALLS = ("claim", "report", "finish", "health")


@dataclass
class ClientResult:
    """What one client process saw in its timed section."""

    start: float = 0.0
    end: float = 0.0
    trials: int = 0
    errors: int = 0
    first_error: str = ""
    requests: int = 0
    call_seconds: dict[str, list[float]] = field(default_factory=dict)

    def count_request(self) -> None:
        self.requests += 1

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` and add its duration to ``call_seconds[name]``."""
        t0 = time.perf_counter()
        out = fn()
        self.call_seconds.setdefault(name, []).append(time.perf_counter() - t0)
        return out


# -- our server ---------------------------------------------------------------------------


def _ours_trial(
    client: WorkerClient,
    me: str,
    res: ClientResult,
    batched: bool,
    claim: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """One trial the way ``app.worker.loop`` runs one: claim, 10 reports, finish.

    The calls are the worker's own (``WorkerClient.claim``, ``HttpReporter.report`` and
    ``HttpReporter.finish``); only the trainer is left out. As in the worker, the finish
    claims the next trial (returned), so only the first trial of a process sends a claim of
    its own. ``batched`` keeps the reporter's send interval from the claim (the server's
    ``report_seconds``), so the 10 values, which come in microseconds here, leave with the
    finish; ``batched=False`` sends each value in a request of its own (every report a round
    trip and a commit).
    """
    if claim is None:
        claim = res.timed("claim", lambda: client.claim(me))
    if claim is None:
        raise RuntimeError("queue empty: not enough trials were queued")
    a = Assignment.from_json(claim)
    interval = (a.report_seconds or 0.0) if batched else 0.0
    reporter = HttpReporter(client, a.trial_id, a.attempt, min_interval=interval)
    try:
        value = 0.0
        for step in range(1, REPORTS_PER_TRIAL + 1):
            value = 1.0 - 1.0 / (step + 1)
            metrics = {"dev_accuracy": value}
            res.timed("report", lambda s=step, m=metrics: reporter.report(s, float(s), m))
        return res.timed(
            "finish",
            lambda: reporter.finish(
                FinishStatus.COMPLETED,
                REPORTS_PER_TRIAL,
                float(REPORTS_PER_TRIAL),
                {"dev_accuracy": value},
                claim_for=me,
            ),
        )
    finally:
        reporter.close()


def ours_client(
    url: str,
    batched: bool,
    warmup: int,
    trials: int,
    barrier: Barrier,
    queue: mp.Queue[ClientResult],
) -> None:
    """One worker-like process: warm up, wait for the others, run the timed trials."""
    res = ClientResult()
    me = f"bench-{mp.current_process().pid}"
    client = WorkerClient(url)
    # Round trips per trial, counted on the wire (retries included).
    client.http.event_hooks["request"].append(lambda request: res.count_request())
    try:
        scratch, claim = ClientResult(), None
        for _ in range(warmup):
            claim = _ours_trial(client, me, scratch, batched, claim)
        res.requests = 0
        barrier.wait()
        res.start = time.perf_counter()
        for _ in range(trials):
            try:
                claim = _ours_trial(client, me, res, batched, claim)
                res.trials += 1
            except (httpx2.HTTPError, RuntimeError) as exc:
                claim = None
                res.errors += 1
                res.first_error = res.first_error or repr(exc)[:300]
        res.end = time.perf_counter()
        barrier.wait()  # the timed section's end, for the parent's CPU reading
        requests = res.requests
        # The HTTP + framework floor: round trips with no database work.
        for _ in range(min(trials, 50) * 3):
            res.timed("health", lambda: client.http.get("/api/health"))
        res.requests = requests
    finally:
        client.close()
    queue.put(res)


# -- optuna -------------------------------------------------------------------------------


def optuna_client(
    url: str,
    name: str,
    warmup: int,
    trials: int,
    barrier: Barrier,
    queue: mp.Queue[ClientResult],
) -> None:
    """One Optuna process: ``load_study`` on the SQLite storage, then ask/report/tell."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=url)

    def one(res: ClientResult) -> None:
        trial = res.timed("ask", study.ask)
        value = 0.0
        for step in range(1, REPORTS_PER_TRIAL + 1):
            value = 1.0 - 1.0 / (step + 1)
            res.timed("report", lambda v=value, s=step: trial.report(v, s))
        res.timed("tell", lambda: study.tell(trial, value))

    scratch = ClientResult()
    for _ in range(warmup):
        one(scratch)
    barrier.wait()
    res = ClientResult(start=time.perf_counter())
    for _ in range(trials):
        try:
            one(res)
            res.trials += 1
        except Exception as exc:  # noqa: BLE001 - count storage errors (locked...) and go on
            res.errors += 1
            res.first_error = res.first_error or repr(exc)[:300]
    res.end = time.perf_counter()
    barrier.wait()  # the timed section's end, for the parent's CPU reading
    queue.put(res)


# -- runs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """One way of running a system: the label the tables use and what it takes."""

    label: str
    system: str  # "ours" or "optuna"
    server_processes: int = 0
    batched: bool = True
    judged: bool = False
    postgres: bool = False


SETUPS = (
    Setup("ours", "ours", server_processes=2, judged=True),
    Setup("ours, 1 server process", "ours", server_processes=1),
    Setup("ours, a request per value", "ours", server_processes=2, batched=False),
    Setup("optuna", "optuna", judged=True),
)
# --postgres: the same worker calls with the server on PostgreSQL, whose row locks let two
# server processes write at once (SQLite has one write lock for the whole file).
POSTGRES_SETUP = Setup("ours on PostgreSQL", "ours", server_processes=2, postgres=True)


@dataclass
class RunResult:
    setup: Setup
    clients: int
    ms_per_trial: float
    trials: int
    errors: int
    first_error: str
    requests_per_trial: float
    call_ms: dict[str, float]
    # Cores the whole machine kept busy in the timed section (all processes, ours or not).
    busy_cores: float = 0.0

    @property
    def cpu_ms_per_trial(self) -> float:
        """CPU time the machine spent per trial: busy cores x wall time per trial."""
        return self.busy_cores * self.ms_per_trial


def _spawn(
    target: Callable[..., None], args: tuple[Any, ...], clients: int
) -> tuple[list[ClientResult], float]:
    """The clients' results, and the machine's busy cores in their timed section.

    This process joins the clients' barrier, which they pass at the start of the timed
    section and again at its end, and reads the CPU counters each time.
    """
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, queue)) for _ in range(clients)]
    for p in procs:
        p.start()
    barrier.wait(timeout=1800)
    before = cpu_ticks()
    barrier.wait(timeout=1800)
    cores = busy_cores(before, cpu_ticks())
    out = [queue.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    return out, cores


def _summarise(
    setup: Setup, clients: int, spawned: tuple[Sequence[ClientResult], float]
) -> RunResult:
    results, cores = spawned
    wall = max(r.end for r in results) - min(r.start for r in results)
    done = sum(r.trials for r in results)
    calls: dict[str, list[float]] = {}
    for r in results:
        for name, secs in r.call_seconds.items():
            calls.setdefault(name, []).extend(secs)
    errors = [r.first_error for r in results if r.first_error]
    return RunResult(
        setup,
        clients,
        1000 * wall / max(done, 1),
        done,
        sum(r.errors for r in results),
        errors[0] if errors else "",
        sum(r.requests for r in results) / max(done, 1),
        {k: 1000 * statistics.fmean(v) for k, v in calls.items()},
        cores,
    )


def run_ours(
    server: BenchServer, setup: Setup, clients: int, warmup: int, trials: int, tag: str
) -> RunResult:
    """A fresh study with enough queued trials, then ``clients`` processes through it."""
    with httpx2.Client(base_url=server.url, timeout=60.0) as client:
        study = create_study(client, f"orchestration-{tag}", epochs=REPORTS_PER_TRIAL)
        # +1 a process: its last finish claims one more.
        for _ in range(clients * (warmup + trials + 1)):
            create_trial(client, study, {})
    results = _spawn(ours_client, (server.url, setup.batched, warmup, trials), clients)
    return _summarise(setup, clients, results)


def run_optuna(
    storage: str, setup: Setup, clients: int, warmup: int, trials: int, tag: str
) -> RunResult:
    """A fresh Optuna study in the shared SQLite file, then ``clients`` processes on it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"orchestration-{tag}"
    optuna.create_study(study_name=name, storage=storage, direction="maximize")
    results = _spawn(optuna_client, (storage, name, warmup, trials), clients)
    return _summarise(setup, clients, results)


# -- report ---------------------------------------------------------------------------------


def _mine(runs: Sequence[RunResult], label: str, clients: int) -> list[RunResult]:
    return [r for r in runs if r.setup.label == label and r.clients == clients]


def speedup(runs: Sequence[RunResult], label: str) -> tuple[float, list[float]]:
    """2-vs-1 throughput: the median over repeats of each repeat's own (paired) ratio."""
    pairs = [
        one.ms_per_trial / two.ms_per_trial
        for one, two in zip(_mine(runs, label, 1), _mine(runs, label, 2), strict=True)
    ]
    return statistics.median(pairs), pairs


def _median_ms(runs: Sequence[RunResult], label: str, clients: int) -> float:
    return statistics.median(r.ms_per_trial for r in _mine(runs, label, clients))


def breakdown(runs: Sequence[RunResult]) -> None:
    """Where one of our trials goes (1 process): the calls, and the no-database HTTP floor."""
    mine = _mine(runs, "ours", 1)
    if not mine:
        return
    ms = {k: statistics.fmean(r.call_ms.get(k, 0.0) for r in mine) for k in CALLS}
    trips = statistics.fmean(r.requests_per_trial for r in mine)
    # No claim of its own: the previous trial's finish claimed this one.
    total = REPORTS_PER_TRIAL * ms["report"] + ms["finish"]
    floor = trips * ms["health"]
    print(
        f"\nours, 1 process, per trial: {REPORTS_PER_TRIAL} x report {ms['report']:.2f} + "
        f"finish with the next claim {ms['finish']:.2f} = {total:.2f} ms in {trips:.1f} "
        f"round trips; as many round trips to GET /api/health (no database) cost "
        f"{floor:.2f} ms ({100 * floor / total:.0f}%)."
    )


def report(
    runs: Sequence[RunResult],
    setups: Sequence[Setup],
    servers: Sequence[BenchServer],
    trials: int,
    ceilings: Sequence[float],
    chains: Sequence[ChainCeiling],
) -> None:
    """Print the tables and the goals."""
    rows = []
    for setup in setups:
        for clients in (1, 2):
            mine = _mine(runs, setup.label, clients)
            ms = _median_ms(runs, setup.label, clients)
            rows.append(
                [
                    setup.label,
                    clients,
                    f"{ms:.2f}",
                    f"{1000 / ms:.0f}",
                    f"{statistics.fmean(r.requests_per_trial for r in mine):.1f}"
                    if setup.system == "ours"
                    else "",
                    f"{statistics.median(r.busy_cores for r in mine):.2f}",
                    f"{statistics.median(r.cpu_ms_per_trial for r in mine):.2f}",
                    ", ".join(f"{r.ms_per_trial:.2f}" for r in mine),
                    sum(r.errors for r in mine),
                ]
            )
    print(
        f"\n## Per-trial overhead ({REPORTS_PER_TRIAL} values/trial, {trials} trials per "
        "process, median over repeats)\n"
    )
    print(
        markdown_table(
            [
                "setup",
                "processes",
                "ms/trial",
                "trials/s",
                "HTTP requests/trial",
                "busy cores",
                "CPU ms/trial",
                "ms/trial per repeat",
                "errors",
            ],
            rows,
        )
    )
    print("\n## Speed-up and ratio\n")
    p1 = _median_ms(runs, "optuna", 1)
    ratio_rows = []
    for setup in setups:
        o1, o2 = _median_ms(runs, setup.label, 1), _median_ms(runs, setup.label, 2)
        up, pairs = speedup(runs, setup.label)
        ratio_rows.append(
            [
                setup.label,
                f"{o1:.2f}",
                f"{o2:.2f}",
                f"{up:.2f}x",
                ", ".join(f"{x:.2f}" for x in pairs),
                f"{o1 / o2:.2f}x",
                f"{o1 / p1:.3f}",
            ]
        )
    print(
        markdown_table(
            [
                "setup",
                "ms/trial, 1 process",
                "ms/trial, 2 processes",
                "speed-up 2 vs 1",
                "speed-up per repeat",
                "ratio of the medians",
                "1 process / optuna's",
            ],
            ratio_rows,
        )
    )
    breakdown(runs)

    print("\n## Mean time per call (ms), all repeats\n")
    call_rows = []
    for setup in setups:
        for clients in (1, 2):
            mine = _mine(runs, setup.label, clients)
            for name in sorted({k for r in mine for k in r.call_ms}):
                call_rows.append(
                    [
                        setup.label,
                        clients,
                        name,
                        f"{statistics.fmean(r.call_ms[name] for r in mine):.3f}",
                    ]
                )
    print(markdown_table(["setup", "processes", "call", "mean ms"], call_rows))
    first = next((r.first_error for r in runs if r.first_error), "")
    if first:
        print(f"\nfirst error: {first}")
    locked = sum(s.count_in_log(LOCKED) for s in servers)
    print(f"\n'database is locked' lines in the server logs: {locked}")

    o1 = _median_ms(runs, "ours", 1)
    up, pairs = speedup(runs, "ours")
    print("\n## Goals (ours: the worker's own client, `pandacaviar serve --processes 2`)\n")
    print(
        f"- ours {o1:.2f} ms/trial vs optuna {p1:.2f} ms/trial (1 process): ratio "
        f"{o1 / p1:.3f}, goal <= {GOAL_RATIO:.3f}: {verdict(o1 / p1 <= GOAL_RATIO)}"
    )
    print(
        f"- ours 2 processes vs 1: {up:.2f}x (median of the repeats' "
        f"{', '.join(f'{x:.2f}' for x in pairs)}), goal >= {GOAL_SPEEDUP}x: "
        f"{verdict(up >= GOAL_SPEEDUP)}"
    )
    print(f"- (info) optuna 2 processes vs 1: {speedup(runs, 'optuna')[0]:.2f}x")
    busy = statistics.median(r.busy_cores for r in _mine(runs, "ours", 1))
    print(
        "- (info) this machine, a CPU loop in 2 processes against 1, measured before each "
        f"repeat: {', '.join(f'{c:.2f}' for c in ceilings)} (how much of the second core "
        f"is there); one process of ours keeps {busy:.2f} cores busy."
    )
    control(pairs, chains)


def control(pairs: Sequence[float], chains: Sequence[ChainCeiling]) -> None:
    """Ours against the same-shape control with nothing shared (``bench/_ceiling.py``)."""
    ups = [c.speedup for c in chains]
    print(
        f"- (info) the same shape with nothing of ours (2 client/server chains on loopback, "
        f"1 request a trial, fixed CPU work; bench/_ceiling.py), 2 vs 1, per repeat: "
        f"{', '.join(f'{x:.2f}' for x in ups)} (median {statistics.median(ups):.2f}); busy "
        f"cores with 2 chains: {', '.join(f'{c.busy_two:.2f}' for c in chains)}"
    )
    # Each repeat's speed-up over the control's just before it: what our code makes of what
    # the machine gives this shape at that moment (1.0 = as much as nothing shared gets).
    share = [p / c for p, c in zip(pairs, ups, strict=True)]
    print(
        f"- (info) ours' speed-up over the control's, per repeat: "
        f"{', '.join(f'{x:.2f}' for x in share)} (median {statistics.median(share):.2f})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 trials/process, 1 repeat")
    parser.add_argument("--trials", type=int, default=None, help="timed trials per process")
    parser.add_argument("--warmup", type=int, default=5, help="untimed trials per process (5)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per setting (5)")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also run ours on a private PostgreSQL server (started like the "
        "tests start theirs: needs the postgresql binaries)",
    )
    args = parser.parse_args(argv)
    trials = args.trials or (30 if args.quick else 500)
    repeats = args.repeats or (1 if args.quick else 5)
    setups = SETUPS + ((POSTGRES_SETUP,) if args.postgres else ())
    runs: list[RunResult] = []
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="optuna-bench-"))
        servers = {(n, False): stack.enter_context(BenchServer(processes=n)) for n in (1, 2)}
        if args.postgres:
            servers[(2, True)] = stack.enter_context(_postgres_server(2))
        storage = f"sqlite:///{Path(tmp) / 'optuna.db'}"
        ceilings: list[float] = []
        chains: list[ChainCeiling] = []
        for rep in range(repeats):
            # Measured every repeat: how much of the second core is there moves in minutes.
            ceilings.append(cpu_parallelism())
            chains.append(chain_parallelism(two_first=rep % 2 == 1))
            # 1 and 2 processes of a setup back to back: the speed-up compares runs under the
            # same background load, which here drifts within minutes.
            for i, setup in enumerate(setups):
                # 1 then 2 in even repeats, 2 then 1 in odd ones: a drift cancels out.
                for clients in (1, 2) if rep % 2 == 0 else (2, 1):
                    tag = f"{rep}-{clients}-{i}"
                    if setup.system == "ours":
                        server = servers[(setup.server_processes, setup.postgres)]
                        run = run_ours(server, setup, clients, args.warmup, trials, tag)
                    else:
                        run = run_optuna(storage, setup, clients, args.warmup, trials, tag)
                    runs.append(run)
                    print(
                        f"repeat {rep}: {setup.label} x{clients}: {run.ms_per_trial:.2f} "
                        f"ms/trial ({run.trials} trials, {run.errors} errors)",
                        flush=True,
                    )
        report(runs, setups, list(servers.values()), trials, ceilings, chains)
    return 0


@contextlib.contextmanager
def _postgres_server(processes: int) -> Iterator[BenchServer]:
    """Our server on an empty database of a private PostgreSQL server (tests/pg.py's)."""
    from tests.pg import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("--postgres: no PostgreSQL binaries (apt-get install postgresql)")
    pg = PostgresServer(bin_dir).start()
    try:
        url = pg.url(pg.create_database(migrated=False))
        with BenchServer(processes=processes, env={"PANDACAVIAR_DATABASE_URL": url}) as server:
            yield server
    finally:
        pg.stop()


if __name__ == "__main__":
    sys.exit(main())
