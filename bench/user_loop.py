"""The caviar loop as a user runs it, against plain random search and Optuna at the same epochs.

What is measured, per task (``digits``; ``spirals`` with 5 arms) and study seed (0-9):

* **loop** (ours, through the API of a real server with its two default local workers): the
  README's caviar example exactly, round 1 of 24 trials in the README's space (SGD with
  momentum; learning rate log-uniform [1e-4, 1], momentum on 1 - beta in [0.9, 0.999], hidden
  units 50-100; 27 epochs a trial; 4 at a time) with ``{"name": "asha", "mode": "pause"}``
  and no other setting (the budget-fitted defaults); then ``POST .../rounds`` with
  ``{"from_top": 3, "margin": 0.1, "trials": 12}``; then ``POST .../retest`` with
  ``{"top": 3, "seeds": 3}``; then ``GET .../best``: the configuration with the best re-tested
  mean. Its search epochs are every epoch trained by rounds 1 and 2 (pruned and parked trials
  count what they trained).
* **random**: our ``RandomSampler`` on the same space, every trial 27 epochs, no early stopping,
  until the loop's search epochs of that seed are spent (the last trial is cut there).
* **tpe+sh** and **tpe+median**: Optuna's ``TPESampler(seed=seed)`` with
  ``SuccessiveHalvingPruner()`` or ``MedianPruner()`` (their defaults), training the same
  trainer in process, the dev accuracy reported at every epoch end (the epoch is the step),
  until the same epochs are spent.

Each in-process method then does what the loop's re-test does: its top 3 completed trials by
final dev accuracy, each re-trained with 3 fresh seeds; its choice is the best mean. Every
method's choice (the loop's too, re-trained in process with its re-test runs' seeds, which
reproduce the server's runs bit for bit) is scored on the test split: the mean test accuracy of
its 3 re-test runs. The data split follows the server's rule (split seed = the study seed), so
all methods see the same data; in-process trial ``n`` of study seed ``s`` trains with seed
``s * 100_000 + n``, and every re-test seed is fresh.

Printed per task: epochs spent by the search, best single-seed dev accuracy, re-tested best
mean, the chosen configuration's test accuracy, per seed and as medians; the paired per-seed
differences loop - other; round 1 against round 2 of the loop.

Goals (issue 19): (1) round 2 completes trials and its best final dev accuracy is at least round
1's in at least 8 of 10 seeds, per task; (2) the loop's re-tested best mean is at least plain
random's and at least each Optuna pruner's, median over seeds, per task. The third goal of the
issue, ASHA reaching digits' 0.97 with at most a third of random's epochs, is
``bench/search_efficiency.py``'s.

Usage::

    python bench/user_loop.py                  # digits + spirals, seeds 0-9
    python bench/user_loop.py --quick          # digits, seeds 0-1
    python bench/user_loop.py --tasks spirals --seeds 0 3
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy is imported anywhere

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Mapping, Sequence  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx2  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from app.tuning import make_sampler, parse_space, trial_rng  # noqa: E402
from bench._server import BenchServer, markdown_table, verdict  # noqa: E402
from trainer import Action, Directive, DivergedError, TrainConfig, Trainer  # noqa: E402
from trainer.config import check_hparams  # noqa: E402
from trainer.data import Dataset, load_task  # noqa: E402

EPOCHS = 27
TASK_OPTIONS: dict[str, dict[str, Any]] = {
    "digits": {},
    "spirals": {"n_classes": 5, "noise": 0.2, "n_samples": 1500},
}
SPACE: dict[str, Any] = {  # the README's caviar example
    "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1},
    "momentum": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999},
    "hidden_units": {"dist": "int_uniform", "low": 50, "high": 100},
    "optimizer": "momentum",
}
ROUND_1 = {"budget": {"trials": 24}, "parallelism": 4}
ROUND_2 = {"from_top": 3, "margin": 0.1, "trials": 12}
RETEST_TOP, RETEST_SEEDS = 3, 3
METHODS = ("loop", "random", "tpe+sh", "tpe+median")
ROUND_GOAL_SEEDS = 0.8  # share of seeds where round 2 completes trials and matches round 1
POLL_SECONDS = 0.25
SEED_SPACE = 2**32 - 1


# -- the loop, through the API -------------------------------------------------------------


@dataclass
class LoopRun:
    """One study's loop: what the API answered, as plain numbers."""

    task: str
    seed: int
    epochs: float = 0.0  # rounds 1 + 2
    round_best: dict[int, float | None] = field(default_factory=dict)  # round -> best final
    round_completed: dict[int, int] = field(default_factory=dict)
    best_single: float = 0.0
    retest_mean: float = 0.0
    chosen: dict[str, Any] = field(default_factory=dict)  # hparams without the seed
    chosen_seeds: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _ok(response: httpx2.Response) -> Any:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.url} -> {response.status_code}: {response.text}")
    return response.json()


def _wait_completed(client: httpx2.Client, study_id: int, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while _ok(client.get(f"/api/studies/{study_id}"))["state"] != "completed":
        if time.monotonic() > deadline:
            raise TimeoutError(f"study {study_id} still active after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def _trials(client: httpx2.Client, study_id: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = _ok(client.get(f"/api/studies/{study_id}/trials?limit=200&offset={len(out)}"))
        out += page["data"]
        if len(out) >= page["count"] or not page["data"]:
            return out


def run_loop(client: httpx2.Client, task: str, seed: int) -> LoopRun:
    """Round 1, a ``from_top`` round and a re-test, as the README runs them."""
    start = time.perf_counter()
    body = {"name": f"{task} loop {seed}", "mode": "caviar", "task": task, "epochs": EPOCHS}
    body |= {"task_options": TASK_OPTIONS[task], "space": SPACE, "seed": seed, **ROUND_1}
    body["scheduler"] = {"name": "asha", "mode": "pause"}
    study_id = _ok(client.post("/api/studies", json=body))["id"]
    _wait_completed(client, study_id)
    _ok(client.post(f"/api/studies/{study_id}/rounds", json=ROUND_2))
    _wait_completed(client, study_id)
    _ok(
        client.post(
            f"/api/studies/{study_id}/retest", json={"top": RETEST_TOP, "seeds": RETEST_SEEDS}
        )
    )
    _wait_completed(client, study_id)
    best = _ok(client.get(f"/api/studies/{study_id}/best"))
    trials = _trials(client, study_id)
    run = LoopRun(task, seed, seconds=0.0)
    for number in (1, 2):
        finals = [
            t["last_value"]
            for t in trials
            if t["round"] == number and t["state"] == "completed" and t["last_value"] is not None
        ]
        run.epochs += sum(t["epoch"] for t in trials if t["round"] == number)
        run.round_completed[number] = len(finals)
        run.round_best[number] = max(finals) if finals else None
    run.best_single = max(v for v in run.round_best.values() if v is not None)
    if not best["retested"]:
        raise RuntimeError(f"study {study_id}: best is not a re-tested configuration: {best}")
    run.retest_mean = float(best["value"])
    run.chosen = {k: v for k, v in best["hparams"].items() if k != "seed"}
    run.chosen_seeds = [int(s) for s in best["seeds"]]
    run.seconds = time.perf_counter() - start
    return run


# -- in process: the trainer, random search and Optuna ---------------------------------------

_DATA: dict[tuple[str, int], Dataset] = {}


def _data(task: str, split_seed: int) -> Dataset:
    key = (task, split_seed)
    if key not in _DATA:
        _DATA[key] = load_task(task, TASK_OPTIONS[task], split_seed=split_seed)
    return _DATA[key]


class _Epochs:
    """Calls ``on_epoch(epoch, dev_accuracy)`` at every epoch end; a True answer stops."""

    def __init__(self, on_epoch: Callable[[int, float], bool]) -> None:
        self.on_epoch = on_epoch

    def report(self, step: int, epoch: float, metrics: Mapping[str, float]) -> Directive:
        if "dev_accuracy" in metrics and self.on_epoch(round(epoch), metrics["dev_accuracy"]):
            return Directive(Action.STOP)
        return Directive()

    def checkpoint(self, step: int, data: bytes) -> None:
        return None

    def applied(self, directive: Directive, step: int) -> None:
        return None


def train(
    task: str,
    split_seed: int,
    hparams: Mapping[str, Any],
    on_epoch: Callable[[int, float], bool] = lambda e, v: False,
) -> tuple[Trainer, float | None]:
    """Train one configuration (``hparams`` with its ``seed``); returns the trainer, final dev."""
    config = TrainConfig(
        task=task,
        task_options=TASK_OPTIONS[task],
        hparams={**hparams, "epochs": EPOCHS},
        split_seed=split_seed,
        report_every=10**9,
        checkpoint_every=0,
    )
    trainer = Trainer(config, data=_data(task, split_seed))
    final: list[float] = []

    def seen(epoch: int, value: float) -> bool:
        final[:] = [value]
        return on_epoch(epoch, value)

    try:
        trainer.fit(_Epochs(seen))
    except DivergedError:
        return trainer, None
    return trainer, (final[0] if final and round(trainer.epoch) >= EPOCHS else None)


@dataclass
class Found:
    """What one in-process search found within its epochs, before its re-test."""

    epochs: float = 0.0
    finals: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # value, hparams


def search_random(task: str, seed: int, budget: float) -> Found:
    """Random configurations of 27 epochs each until ``budget`` epochs are trained."""

    def check(name: str, value: object) -> None:
        check_hparams({name: value})

    space = parse_space({**SPACE, "epochs": EPOCHS}, check_value=check)
    sampler, found, number = make_sampler("random", seed), Found(), 0
    while found.epochs < budget - 1e-9:
        hparams = sampler.sample(space, [], trial_rng(seed, number), index=number)
        hparams["seed"] = _trial_seed(seed, number)
        number += 1
        _, value = train(task, seed, hparams, _charge(found, budget))
        if value is not None:
            found.finals.append((value, hparams))
    return found


def _charge(found: Found, budget: float) -> Callable[[int, float], bool]:
    """Counts one epoch per call; stops the trial when the budget is spent."""

    def on_epoch(epoch: int, value: float) -> bool:
        found.epochs += 1
        return found.epochs >= budget - 1e-9 and epoch < EPOCHS

    return on_epoch


def search_optuna(task: str, seed: int, budget: float, pruner_name: str) -> Found:
    """Optuna's TPE with ``pruner_name`` ("sh" or "median") until ``budget`` epochs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (
        optuna.pruners.SuccessiveHalvingPruner()
        if pruner_name == "sh"
        else optuna.pruners.MedianPruner()
    )
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner
    )
    found = Found()
    while found.epochs < budget - 1e-9:
        trial = study.ask()
        hparams: dict[str, Any] = {
            "optimizer": "momentum",
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1.0, log=True),
            "momentum": 1 - trial.suggest_float("one_minus_momentum", 1e-3, 0.1, log=True),
            "hidden_units": trial.suggest_int("hidden_units", 50, 100),
            "seed": _trial_seed(seed, trial.number),
        }
        judge = _OptunaJudge(trial, _charge(found, budget))
        _, value = train(task, seed, hparams, judge)
        if value is not None:
            study.tell(trial, value)
            found.finals.append((value, hparams))
        else:
            state = (
                optuna.trial.TrialState.PRUNED if judge.pruned else optuna.trial.TrialState.FAIL
            )
            study.tell(trial, state=state)
    return found


class _OptunaJudge:
    """Reports each epoch to an Optuna trial; stops on the budget or when Optuna prunes."""

    def __init__(self, trial: Any, charge: Callable[[int, float], bool]) -> None:
        self.trial, self.charge, self.pruned = trial, charge, False

    def __call__(self, epoch: int, value: float) -> bool:
        self.trial.report(value, epoch)
        if self.charge(epoch, value):
            return True
        self.pruned = epoch < EPOCHS and self.trial.should_prune()
        return self.pruned


def _trial_seed(study_seed: int, number: int) -> int:
    return study_seed * 100_000 + number


def _retest_seed(study_seed: int, rank: int, k: int) -> int:
    # Fresh seeds, never a search trial's (those are study_seed * 100_000 + n, n < 100_000).
    return int(trial_rng(study_seed + 7_919, rank * 100 + k).integers(10**9, SEED_SPACE))


def score(task: str, seed: int, hparams: Mapping[str, Any], seeds: Sequence[int]) -> list[float]:
    """Test accuracy of ``hparams`` trained with each of ``seeds`` (diverged: 0)."""
    out = []
    for s in seeds:
        trainer, value = train(task, seed, {**hparams, "seed": s})
        out.append(trainer.evaluate("test")["test_accuracy"] if value is not None else 0.0)
    return out


@dataclass
class MethodRun:
    """One method's result on one (task, seed): the row of the tables."""

    method: str
    task: str
    seed: int
    epochs: float
    best_single: float
    retest_mean: float
    test: float
    seconds: float = 0.0


def run_in_process(method: str, task: str, seed: int, budget: float) -> MethodRun:
    """Search, re-test the top 3 with 3 fresh seeds, score the best mean on the test split."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        start = time.perf_counter()
        if method == "random":
            found = search_random(task, seed, budget)
        else:
            found = search_optuna(task, seed, budget, method.split("+")[1])
        top = sorted(found.finals, key=lambda f: -f[0])[:RETEST_TOP]
        best_mean, chosen, seeds = -1.0, {}, []
        for rank, (_, hparams) in enumerate(top):
            fresh = [_retest_seed(seed, rank, k) for k in range(RETEST_SEEDS)]
            values = [train(task, seed, {**hparams, "seed": s})[1] or 0.0 for s in fresh]
            if statistics.fmean(values) > best_mean:
                best_mean, chosen, seeds = statistics.fmean(values), hparams, fresh
        test = statistics.fmean(score(task, seed, chosen, seeds)) if chosen else 0.0
        best_single = max((f[0] for f in found.finals), default=0.0)
        seconds = time.perf_counter() - start
        return MethodRun(method, task, seed, found.epochs, best_single, best_mean, test, seconds)


def score_loop(run: LoopRun) -> MethodRun:
    """The loop's row: its choice re-trained in process with its re-test seeds, on test."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        test = statistics.fmean(score(run.task, run.seed, run.chosen, run.chosen_seeds))
    return MethodRun(
        "loop", run.task, run.seed, run.epochs, run.best_single, run.retest_mean, test, run.seconds
    )


# -- report ------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def report(task: str, loops: Sequence[LoopRun], rows: Sequence[MethodRun]) -> bool:
    """Print the task's tables and goals; True when both goals pass."""
    seeds = [r.seed for r in loops]
    print(f"\n## {task}: seeds {seeds[0]}-{seeds[-1]}, 27 epochs a trial\n")
    by = {(r.method, r.seed): r for r in rows if r.task == task}
    table = []
    for m in METHODS:
        mine = [by[(m, s)] for s in seeds]
        table.append(
            [
                m,
                f"{_median([r.epochs for r in mine]):.0f}",
                f"{_median([r.best_single for r in mine]):.4f}",
                f"{_median([r.retest_mean for r in mine]):.4f}",
                f"{_median([r.test for r in mine]):.4f}",
                ", ".join(f"{r.retest_mean:.3f}" for r in mine),
            ]
        )
    header = ["method", "epochs", "best 1 seed", "re-tested mean", "test acc", "re-tested/seed"]
    print("Medians over seeds:\n\n" + markdown_table(header, table) + "\n")
    ok = True
    for m in METHODS[1:]:
        diffs = [by[("loop", s)].retest_mean - by[(m, s)].retest_mean for s in seeds]
        tdiffs = [by[("loop", s)].test - by[(m, s)].test for s in seeds]
        loop_med, other_med = (
            _median([by[(x, s)].retest_mean for s in seeds]) for x in ("loop", m)
        )
        passed = loop_med >= other_med
        ok &= passed
        print(
            f"- loop - {m}, re-tested mean per seed: {', '.join(f'{d:+.3f}' for d in diffs)}"
            f" (wins {sum(d > 0 for d in diffs)}, ties {sum(d == 0 for d in diffs)});"
            f" test: {', '.join(f'{d:+.3f}' for d in tdiffs)}."
            f" Goal median loop {loop_med:.4f} >= {m} {other_med:.4f}: {verdict(passed)}"
        )
    rounds = [
        (r.round_completed[2] > 0 and (r.round_best[2] or 0) >= (r.round_best[1] or 0))
        for r in loops
    ]
    need = round(ROUND_GOAL_SEEDS * len(loops))
    detail = "; ".join(
        f"{r.seed}: {_fmt(r.round_best[1])} ({r.round_completed[1]}) -> "
        f"{_fmt(r.round_best[2])} ({r.round_completed[2]})"
        for r in loops
    )
    passed = sum(rounds) >= need
    print(
        f"- round 1 -> round 2 best final dev accuracy (trials completed), per seed: {detail}."
        f" Goal round 2 completes trials and >= round 1 in >= {need} of {len(loops)}:"
        f" {sum(rounds)} -> {verdict(passed)}"
    )
    return ok and passed


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASK_OPTIONS), choices=TASK_OPTIONS)
    parser.add_argument("--seeds", nargs=2, type=int, default=(0, 10), metavar=("FIRST", "END"))
    parser.add_argument("--jobs", type=int, default=2, help="in-process searches side by side")
    parser.add_argument("--quick", action="store_true", help="digits, seeds 0-1")
    args = parser.parse_args(argv)
    tasks, seeds = args.tasks, list(range(*args.seeds))
    if args.quick:
        tasks, seeds = ["digits"], [0, 1]
    start = time.perf_counter()
    loops: list[LoopRun] = []
    with (
        BenchServer(env={"PANDACAVIAR_WORKERS": "2"}) as server,
        httpx2.Client(base_url=server.url, timeout=60) as client,
    ):
        for task in tasks:
            for seed in seeds:
                loops.append(r := run_loop(client, task, seed))
                print(
                    f"loop {task} seed {seed}: {r.epochs:.0f} epochs, rounds "
                    f"{_fmt(r.round_best[1])} -> {_fmt(r.round_best[2])}, re-tested "
                    f"{r.retest_mean:.4f} ({r.seconds:.0f} s)",
                    flush=True,
                )
    rows: list[MethodRun] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(score_loop, r) for r in loops]
        futures += [
            pool.submit(run_in_process, m, r.task, r.seed, r.epochs)
            for r in loops
            for m in METHODS[1:]
        ]
        for f in futures:
            rows.append(f.result())
    ok = all([report(t, [r for r in loops if r.task == t], rows) for t in tasks])
    print(f"\n{time.perf_counter() - start:.0f} s in all. Goals: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
