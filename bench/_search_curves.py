"""Sensitivity of ``search_efficiency.py``'s ASHA goal, replayed on lazily trained curves.

``python bench/_search_curves.py`` prints, per task, target and max resource, the median
epochs to target of ``random`` and of ``random+asha`` for several reduction factors (eta) and
min resources, and their ratio, over many study seeds in minutes instead of hours.

Why a replay gives exactly the bench's numbers: trial ``n`` of the random sampler is drawn with
``trial_rng(seed, n)`` and trains with seed ``seed * 100_000 + n``; the ``epochs``
hyperparameter only decides when the loop ends (``Trainer._done``) and safe points never touch
the weights or the generator, so a trial ASHA stops after ``k`` epochs has exactly the first
``k`` dev accuracies of the same trial trained longer. One :class:`_LazyTrial` per trial,
extended only as far as some setting asks, serves every setting at once. The charging rules
are the bench's (random: earlier trials in full plus the crossing trial up to its crossing
epoch; ASHA: every epoch of every trial it started; a diverged trial: the fraction of an epoch
it trained), and ASHA is the real :class:`~app.tuning.AshaScheduler`. Only epochs to target are
replayed, not best dev accuracy (that needs the whole budget). Checked against
``run_study``: random and random+asha, both tasks, seed 100, identical epochs to target.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import search_efficiency as se  # before NumPy: it sets one BLAS thread per process
from threadpoolctl import threadpool_limits

from app.tuning import (
    Decision,
    RungRecord,
    TrialStatus,
    TrialView,
    make_sampler,
    trial_rng,
)
from trainer import Action, Directive, DivergedError, TrainConfig, Trainer

LONGEST = max(81, se.EPOCHS)  # epochs a lazy trial may be asked for: the largest max resource


@dataclass(frozen=True)
class Grid:
    """The settings replayed: every combination of these (min resource x eta < max resource)."""

    max_resources: tuple[int, ...]
    etas: tuple[int, ...]
    min_resources: tuple[int, ...]
    targets: Mapping[str, tuple[float, ...]]
    space: str = "notes"  # a key of search_efficiency.SPACES


# Default: the bench's own settings (every ASHA method's eta and first rung; each method is
# replayed at each of them), to check its goal on many seeds. ``--sensitivity``: around it,
# the ASHA paper's usual etas (3, 4), and easier targets (plus a harder one on digits; on
# spirals 0.97 is already within a point of the best configurations).
BENCH = Grid(
    (se.EPOCHS,),
    tuple(sorted({eta for _, eta in se.ASHA_SETTINGS.values()})),
    tuple(sorted({r0 for r0, _ in se.ASHA_SETTINGS.values()})),
    {t: (target,) for t, (_, target) in se.TASKS.items()},
)
SENSITIVITY = Grid(
    (9, 27, LONGEST),
    (3, 4),
    (1, 3),
    {"digits": (0.96, 0.97, 0.975), "spirals": (0.95, 0.96, 0.97)},
)
Key = tuple[str, int, int, int, float]  # (method, max resource, eta, min resource, target)
METHODS = se.ASHA_METHODS  # search_efficiency's ASHA methods, all replayed


def _label(method: str) -> str:
    """A column's and a result key's name: ``random+asha-pause`` -> ``asha-pause``."""
    return method.removeprefix("random+")


class _LazyTrial:
    """Trial ``n`` of a random study, trained only as far as asked (a Reporter for ``fit``)."""

    def __init__(self, task: str, seed: int, n: int, longest: int, space: str) -> None:
        hp = make_sampler("random", seed).sample(
            se._space(longest, space), [], trial_rng(seed, n), index=n
        )
        # Same draws as the bench's whatever ``longest`` is: a fixed value consumes no random
        # numbers, and ``epochs`` only says when the loop would end.
        hp["seed"] = seed * 100_000 + n  # as in ``run_study``
        self.hparams = hp
        config = TrainConfig(
            task=task,
            task_options=se.TASKS[task][0],
            hparams=hp,
            report_every=10**9,
            checkpoint_every=0,
        )
        self.trainer = Trainer(config, data=se._data(task))
        self.longest = longest
        self.curve: list[float] = []  # dev accuracy after epoch 1, 2, ...
        self.diverged_part: float | None = None  # fraction of the epoch it diverged in
        self._want = 0

    def upto(self, k: int) -> list[float]:
        """The first ``k`` dev accuracies (fewer when the trial diverged before epoch ``k``)."""
        if len(self.curve) < min(k, self.longest) and self.diverged_part is None:
            self._want = k
            try:
                self.trainer.fit(self)  # resumes where the last call stopped
            except DivergedError:
                self.diverged_part = self.trainer.epoch - len(self.curve)
        return self.curve[:k]

    def report(self, step: int, epoch: float, metrics: Mapping[str, float]) -> Directive:
        if "dev_accuracy" not in metrics:
            return Directive()
        self.curve.append(float(metrics["dev_accuracy"]))
        return Directive(Action.STOP if len(self.curve) >= self._want else Action.CONTINUE)

    def checkpoint(self, step: int, data: bytes) -> None:
        return None

    def applied(self, directive: Directive, step: int) -> None:
        return None


class _Study:
    """The random draws of one (task, study seed), created on demand and shared by settings."""

    def __init__(self, task: str, seed: int, space: str) -> None:
        self.task, self.seed, self.space = task, seed, space
        self.trials: list[_LazyTrial] = []

    def trial(self, n: int) -> _LazyTrial:
        while len(self.trials) <= n:
            self.trials.append(
                _LazyTrial(self.task, self.seed, len(self.trials), LONGEST, self.space)
            )
        return self.trials[n]


def replay_random(study: _Study, epochs: int, target: float, budget: float) -> float:
    """Epochs to target of ``random`` with ``epochs``-epoch trials; ``inf`` past the budget."""
    spent = 0.0
    for n in itertools.count():
        trial = study.trial(n)
        curve = trial.upto(epochs)
        for e, value in enumerate(curve, 1):
            if value >= target:
                return spent + e
        spent += len(curve) + (trial.diverged_part or 0.0)
        if spent >= budget:
            return math.inf
    raise AssertionError("unreachable")


def replay_asha(
    study: _Study,
    epochs: int,
    eta: int,
    min_resource: int,
    target: float,
    budget: float,
    method: str = "random+asha",
) -> float:
    """Epochs to target of ASHA ``method`` (``random+asha``, ``random+asha-pause`` or
    ``random+asha-eager``), deciding with the real scheduler at every epoch and, in pause
    mode, resuming the trial it promotes before starting a new one (``run_study``'s loop)."""
    scheduler = se.asha_scheduler(method, min_resource, eta, epochs)
    records: list[RungRecord] = []
    parked: dict[int, int] = {}  # trial number -> epochs trained when it was parked
    spent, fresh = 0.0, itertools.count()
    while True:
        promoted = scheduler.promotions(records, set(parked))
        n = promoted[0] if promoted else next(fresh)
        trial, start = study.trial(n), parked.pop(n, 0)
        for e in range(start + 1, epochs + 1):
            curve = trial.upto(e)
            if len(curve) < e:  # diverged during epoch e
                spent += trial.diverged_part or 0.0
                break
            spent += 1
            if curve[-1] >= target:
                return spent
            if spent >= budget:
                return math.inf
            view = TrialView(n, 0, TrialStatus.RUNNING, trial.hparams, None, {})
            step = scheduler.on_report(view, e, curve[-1], [], records)
            records.extend(step.new_records)
            if step.decision is Decision.STOP:
                break
            if step.decision is Decision.PAUSE and e < epochs:
                parked[n] = e
                break
        if spent >= budget:
            return math.inf


def replay(args: tuple[str, int, float, Grid]) -> tuple[str, int, dict[Key, float]]:
    """Every setting of ``grid`` on one (task, seed)."""
    task, seed, budget, grid = args
    out: dict[Key, float] = {}
    with threadpool_limits(1):
        study = _Study(task, seed, grid.space)
        for target, epochs in itertools.product(grid.targets[task], grid.max_resources):
            out[("random", epochs, 0, 0, target)] = replay_random(study, epochs, target, budget)
            for eta, r0, method in itertools.product(grid.etas, grid.min_resources, METHODS):
                if r0 * eta < epochs:  # at least two rungs
                    out[(_label(method), epochs, eta, r0, target)] = replay_asha(
                        study, epochs, eta, r0, target, budget, method
                    )
    return task, seed, out


def _fmt(v: float, budget: float) -> str:
    return f">{budget:g}" if math.isinf(v) else f"{v:.0f}"


def print_tables(
    results: Sequence[tuple[str, int, dict[Key, float]]], grid: Grid, budget: float
) -> None:
    """Per task: rows (target, max resource); random's median, then ASHA's and the ratio."""
    settings = list(itertools.product(grid.etas, grid.min_resources, METHODS))
    for task, targets in grid.targets.items():
        runs = [out for t, _, out in results if t == task]
        if not runs:
            continue
        seeds = sorted(s for t, s, _ in results if t == task)
        print(
            f"\n## {task}: median epochs to target, seeds {seeds[0]}..{seeds[-1]} "
            f"({len(runs)}); random / random+asha in brackets\n"
        )
        header = ["target", "epochs/trial", "random"]
        header += [f"{_label(m)} eta={e} min={r}" for e, r, m in settings]
        rows = []
        for target, epochs in itertools.product(targets, grid.max_resources):
            rnd = statistics.median(o[("random", epochs, 0, 0, target)] for o in runs)
            row = [target, epochs, _fmt(rnd, budget)]
            for eta, r0, method in settings:
                key = (_label(method), epochs, eta, r0, target)
                if key not in runs[0]:
                    row.append("-")
                    continue
                a = statistics.median(o[key] for o in runs)
                ratio = se._ratio(rnd, a)  # nan: neither reached the target
                row.append(f"{_fmt(a, budget)} ({'-' if math.isnan(ratio) else f'{ratio:.2f}x'})")
            rows.append(row)
        print(se.markdown_table(header, rows))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds",
        type=int,
        nargs=2,
        default=(0, 20),
        metavar=("FIRST", "END"),
        help="study seeds FIRST..END-1 (0 20)",
    )
    parser.add_argument(
        "--sensitivity",
        action="store_true",
        help="max resource 9/27/81 x eta 3/4 x min resource 1/3 x 3 targets",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=2187.0,
        help="epochs after which a run counts as not reaching the target",
    )
    parser.add_argument("--tasks", nargs="+", default=list(se.TASKS), choices=list(se.TASKS))
    parser.add_argument("--jobs", type=int, default=2, help="processes (2)")
    parser.add_argument(
        "--space",
        default="notes",
        choices=list(se.SPACES),
        help="search space, as in search_efficiency.py (notes)",
    )
    parser.add_argument(
        "--etas",
        type=int,
        nargs="+",
        default=None,
        help="reduction factors to replay (the bench's, or --sensitivity's)",
    )
    parser.add_argument(
        "--min-resources",
        type=int,
        nargs="+",
        default=None,
        help="first rungs to replay (the bench's, or --sensitivity's)",
    )
    args = parser.parse_args(argv)
    grid = SENSITIVITY if args.sensitivity else BENCH
    grid = Grid(
        grid.max_resources,
        tuple(args.etas or grid.etas),
        tuple(args.min_resources or grid.min_resources),
        {t: grid.targets[t] for t in args.tasks},
        args.space,
    )
    work = [(t, s, args.budget, grid) for s in range(*args.seeds) for t in args.tasks]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(replay, work))
    print_tables(results, grid, args.budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
