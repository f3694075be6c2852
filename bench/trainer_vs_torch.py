"""Our NumPy trainer against PyTorch on the CPU: epoch time, throughput and test accuracy.

Both sides run on ONE thread in float32, with the same network (Linear-BN-ReLU per hidden
layer, then Linear + softmax cross-entropy), Adam at lr 1e-3, the same data and the same loop
shape (shuffle each epoch, one optimizer step per mini-batch, training loss and accuracy
accumulated per step, dev evaluation at every epoch end). Our side is the product itself:
``Trainer(TrainConfig(...)).fit(...)`` with safe points only at epoch ends.

The two sides alternate epoch by epoch (ours, torch, ours, torch, ...: our reporter runs one
torch epoch at each of our epoch ends, off our clock), and each repeat is a fresh pair of runs,
so a load that comes and goes on a shared machine slows both sides alike. The result is the
ratio of the medians of the epoch times, in wall time (and in CPU time, which a preempted
process does not accrue).

The same run measures the machine's one-thread float32 GEMM rate (``numpy.matmul`` of two
1024 x 1024 matrices, the median of 5, before the first and after every repeat of a case) and
each side's achieved rate: the GEMM FLOPs a training step needs (``2 * rows * n_in * n_out``
per layer for the forward ``x @ W``, the same for ``dW = x.T @ dy`` and for ``dx = dy @ W.T``
below the first layer, which needs no ``dx``) over the epoch time. The goals of issue 21 are
printed with PASS or FAIL.

Usage::

    python bench/trainer_vs_torch.py            # full run
    python bench/trainer_vs_torch.py --quick    # smoke run: fewer rows, epochs and seeds
    python bench/trainer_vs_torch.py --profile  # cProfile one epoch of our side instead

``bench/profile_step.py`` times one step of ours per layer and operation.

Needs ``pip install torch==2.13.0`` (the CPU wheel; ``pip install -e .[bench]``).
"""

from __future__ import annotations

import os

# BLAS reads these when it loads, i.e. at the first numpy/torch import: set them first.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Mapping  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

try:
    import torch
    from torch import nn
except ImportError:
    sys.exit(
        "trainer_vs_torch: PyTorch is not installed; this bench compares against it.\n"
        "Install the CPU build with `pip install torch==2.13.0` (or `pip install -e .[bench]`)."
    )

from trainer.config import TrainConfig  # noqa: E402
from trainer.data import Dataset, load_task  # noqa: E402
from trainer.loop import Trainer  # noqa: E402
from trainer.reporting import CONTINUE, Directive  # noqa: E402

LR = 1e-3
BN_MOMENTUM = 0.9  # weight of the old running average (ours); torch's momentum is 1 - this
BN_EPS = 1e-5  # torch's default
BIG, DIGITS = "784-512-512-10 teacher", "64-128-128-10 digits"
# Issue 21's goals: ours/torch time at most this, per (network, batch size) ...
RATIO_GOALS = {(BIG, 64): 0.9, (BIG, 256): 0.9, (DIGITS, 64): 0.5, (DIGITS, 256): 0.6}
# ... and at batch 256 on the big network at least this share of the machine's GEMM rate.
GEMM_SHARE_GOAL = 0.75


@dataclass(frozen=True)
class Case:
    """One timing configuration: a data set, a network shape and a batch size."""

    label: str
    data: Dataset
    hidden_units: int
    num_layers: int
    batch_size: int
    epochs: int

    def gemm_flops_per_example(self) -> float:
        """GEMM FLOPs one training example costs: ``2 * n_in * n_out`` per layer for the
        forward, again for ``dW`` and again for ``dx`` of every layer but the first."""
        sizes = [
            self.data.n_features,
            *[self.hidden_units] * self.num_layers,
            self.data.n_classes,
        ]
        mats = [a * b for a, b in zip(sizes, sizes[1:], strict=False)]
        return 2.0 * (2 * sum(mats) + sum(mats[1:]))


# -- our side ------------------------------------------------------------------------------


class EpochClock:
    """A reporter that stamps the wall time of every epoch end (the only safe points here)."""

    def __init__(self) -> None:
        self.stamps = [time.perf_counter()]

    def report(self, step: int, epoch: float, metrics: Mapping[str, float]) -> Directive:
        if "dev_loss" in metrics:  # evaluated safe points are the epoch ends
            self.stamps.append(time.perf_counter())
        return CONTINUE

    def checkpoint(self, step: int, data: bytes) -> None:
        return None

    def applied(self, directive: Directive, step: int) -> None:
        return None

    def epoch_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]


def our_config(case: Case, seed: int) -> TrainConfig:
    return TrainConfig(
        # The data set is handed to Trainer directly; the task name only labels checkpoints.
        task="digits" if case.data.name == "digits" else "blobs",
        hparams={
            "optimizer": "adam",
            "learning_rate": LR,
            "batch_size": case.batch_size,
            "hidden_units": case.hidden_units,
            "num_layers": case.num_layers,
            "batch_norm": True,
            "bn_momentum": BN_MOMENTUM,
            "epochs": case.epochs,
            "seed": seed,
        },
        report_every=10**9,  # safe points at epoch ends only, as the torch loop evaluates
        checkpoint_every=0,
    )


def ours_epochs(case: Case, seed: int) -> list[float]:
    trainer = Trainer(our_config(case, seed), data=case.data)
    clock = EpochClock()
    trainer.fit(clock)
    return clock.epoch_seconds()


def ours_accuracy(case: Case, seed: int) -> float:
    result = Trainer(our_config(case, seed), data=case.data).fit(EpochClock())
    return result.metrics["test_accuracy"]


# -- torch side ----------------------------------------------------------------------------


def torch_mlp(n_in: int, n_out: int, hidden: int, layers: int) -> nn.Sequential:
    """Linear (no bias: BN's beta replaces it) - BN - ReLU per hidden layer, He init."""
    mods: list[nn.Module] = []
    for i in range(layers):
        lin = nn.Linear(n_in if i == 0 else hidden, hidden, bias=False)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        mods += [lin, nn.BatchNorm1d(hidden, eps=BN_EPS, momentum=1.0 - BN_MOMENTUM), nn.ReLU()]
    head = nn.Linear(hidden, n_out)
    nn.init.kaiming_normal_(head.weight, nonlinearity="relu")
    nn.init.zeros_(head.bias)
    return nn.Sequential(*mods, head)


@torch.no_grad()
def torch_eval(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    model.train()
    return loss, acc


def torch_epochs(case: Case, seed: int) -> Iterator[tuple[float, float]]:
    """Train like our loop, one epoch per ``next()``: yields its (wall, CPU) seconds; the
    final test accuracy is the generator's return value."""
    torch.manual_seed(seed)
    d = case.data
    x, y = torch.from_numpy(d.X_train), torch.from_numpy(d.y_train)
    x_dev, y_dev = torch.from_numpy(d.X_dev), torch.from_numpy(d.y_dev)
    model = torch_mlp(d.n_features, d.n_classes, case.hidden_units, case.num_layers)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    n, bs = len(y), case.batch_size
    for _ in range(case.epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        order = torch.randperm(n)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            xb, yb = x[idx], y[idx]
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
        torch_eval(model, x_dev, y_dev)
        yield time.perf_counter() - t0, time.process_time() - c0
    _, test_acc = torch_eval(model, torch.from_numpy(d.X_test), torch.from_numpy(d.y_test))
    return test_acc


def torch_run(case: Case, seed: int) -> tuple[list[float], float]:
    """Train like our loop; returns the epoch (wall) times and the final test accuracy."""
    epochs = torch_epochs(case, seed)
    times: list[float] = []
    while True:
        try:
            times.append(next(epochs)[0])
        except StopIteration as stop:
            return times, float(stop.value)


# -- data ----------------------------------------------------------------------------------


def teacher_data(n_train: int, n_features: int = 784, n_classes: int = 10) -> Dataset:
    """Gaussian features, labels from a random linear teacher (argmax of X @ T)."""
    rng = np.random.default_rng(0)
    n_eval = max(n_train // 60, 100)
    x = rng.standard_normal((n_train + 2 * n_eval, n_features), dtype=np.float32)
    teacher = rng.standard_normal((n_features, n_classes), dtype=np.float32)
    y = (x @ teacher).argmax(axis=1).astype(np.int64)
    a, b = n_train, n_train + n_eval
    return Dataset(
        name="teacher",
        X_train=x[:a],
        y_train=y[:a],
        X_dev=x[a:b],
        y_dev=y[a:b],
        X_test=x[b:],
        y_test=y[b:],
        n_features=n_features,
        n_classes=n_classes,
        class_names=tuple(str(c) for c in range(n_classes)),
        feature_names=tuple(f"x{j}" for j in range(n_features)),
    )


# -- harness -------------------------------------------------------------------------------


def gemm_rate(n: int = 1024, reps: int = 5) -> float:
    """This machine's one-thread float32 GEMM rate now, GFLOP/s: the median of ``reps``
    ``numpy.matmul`` calls of two ``(n, n)`` float32 matrices (``2 * n**3`` FLOPs each)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


class Interleaved:
    """Our reporter: at each of our epoch ends it stops our clocks, runs one torch epoch and
    restarts them, so the sides alternate epoch by epoch."""

    def __init__(self, theirs: Iterator[tuple[float, float]]) -> None:
        self.theirs = theirs
        self.ours: list[tuple[float, float]] = []
        self.torch: list[tuple[float, float]] = []
        self._start = (time.perf_counter(), time.process_time())

    def report(self, step: int, epoch: float, metrics: Mapping[str, float]) -> Directive:
        if "dev_loss" in metrics:  # evaluated safe points are the epoch ends
            wall, cpu = time.perf_counter(), time.process_time()
            self.ours.append((wall - self._start[0], cpu - self._start[1]))
            self.torch.append(next(self.theirs))
            self._start = (time.perf_counter(), time.process_time())
        return CONTINUE

    def checkpoint(self, step: int, data: bytes) -> None:
        return None

    def applied(self, directive: Directive, step: int) -> None:
        return None


@dataclass(frozen=True)
class Timing:
    """Epoch times (wall, CPU) of both sides over all repeats, and the machine's GEMM rate."""

    case: Case
    ours: list[tuple[float, float]]
    torch: list[tuple[float, float]]
    machine_gflops: float

    def median(self, side: str, clock: int = 0) -> float:
        return statistics.median(t[clock] for t in getattr(self, side))

    @property
    def ratio(self) -> float:
        return self.median("ours") / self.median("torch")

    @property
    def cpu_ratio(self) -> float:
        return self.median("ours", 1) / self.median("torch", 1)

    def gflops(self, side: str) -> float:
        flops = self.case.gemm_flops_per_example() * len(self.case.data.y_train)
        return flops / self.median(side) / 1e9


def time_case(case: Case, repeats: int) -> Timing:
    """``repeats`` fresh pairs of runs (seed = repeat), interleaved epoch by epoch."""
    gemm = [gemm_rate()]
    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    for seed in range(repeats):
        trainer = Trainer(our_config(case, seed), data=case.data)
        clock = Interleaved(torch_epochs(case, seed))
        trainer.fit(clock)
        ours += clock.ours
        theirs += clock.torch
        gemm.append(gemm_rate())
    return Timing(case, ours, theirs, statistics.median(gemm))


def timing_rows(cases: list[Case], repeats: int) -> tuple[list[str], list[Timing]]:
    rows = [
        "| config | rows | batch | ours s/epoch | torch s/epoch | ours ex/s | torch ex/s "
        "| ours/torch time | ours/torch CPU | ours GFLOP/s | torch GFLOP/s | machine GFLOP/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    timings = []
    for case in cases:
        t = time_case(case, repeats)
        timings.append(t)
        t_ours, t_torch = t.median("ours"), t.median("torch")
        n = len(case.data.y_train)
        rows.append(
            f"| {case.label} | {n} | {case.batch_size} | {t_ours:.3f} | {t_torch:.3f} "
            f"| {n / t_ours:,.0f} | {n / t_torch:,.0f} | {t.ratio:.2f} | {t.cpu_ratio:.2f} "
            f"| {t.gflops('ours'):.1f} | {t.gflops('torch'):.1f} | {t.machine_gflops:.1f} |"
        )
        print(rows[-1], flush=True)
    return rows, timings


def goal_lines(timings: list[Timing]) -> list[str]:
    """Issue 21's goals with the measured values and PASS or FAIL."""
    lines = []
    for t in timings:
        goal = RATIO_GOALS.get((t.case.label, t.case.batch_size))
        if goal is not None:
            verdict = "PASS" if t.ratio <= goal else "FAIL"
            lines.append(
                f"{t.case.label}, batch {t.case.batch_size}: ours/torch {t.ratio:.3f} "
                f"(goal <= {goal}) {verdict}"
            )
        if (t.case.label, t.case.batch_size) == (BIG, 256):
            share = t.gflops("ours") / t.machine_gflops
            verdict = "PASS" if share >= GEMM_SHARE_GOAL else "FAIL"
            lines.append(
                f"{t.case.label}, batch 256: ours {t.gflops('ours'):.1f} GFLOP/s = {share:.0%} "
                f"of the machine's one-thread float32 GEMM {t.machine_gflops:.1f} GFLOP/s "
                f"(goal >= {GEMM_SHARE_GOAL:.0%}) {verdict}"
            )
    return lines


def accuracy_row(case: Case, seeds: list[int]) -> str:
    ours = [ours_accuracy(case, seed) for seed in seeds]
    theirs = [torch_run(case, seed)[1] for seed in seeds]

    def fmt(xs: list[float]) -> str:
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return f"{statistics.mean(xs):.4f} +- {sd:.4f}"

    return (
        f"digits test accuracy, {case.label}, batch {case.batch_size}, {case.epochs} epochs, "
        f"seeds {seeds[0]}-{seeds[-1]}: ours {fmt(ours)} | torch {fmt(theirs)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small and short")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per config")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile one run of our side on 784-512-512-10 and exit",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats: allowed: an integer >= 1")
    torch.set_num_threads(1)
    quick = args.quick
    rows_big = 6_000 if quick else 60_000
    big = teacher_data(rows_big)
    digits = load_task("digits", split_seed=0, dtype=np.float32)
    print(f"numpy {np.__version__}, torch {torch.__version__}, 1 thread, float32", flush=True)

    if args.profile:
        case = Case("784-512-512-10", big, 512, 2, 64, 1)
        prof = cProfile.Profile()
        prof.runcall(ours_epochs, case, 0)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return 0

    big_epochs, digit_epochs = (2, 3) if quick else (3, 20)
    cases = [Case(BIG, big, 512, 2, bs, big_epochs) for bs in (64, 256)] + [
        Case(DIGITS, digits, 128, 2, bs, digit_epochs) for bs in (64, 256)
    ]
    repeats = 1 if quick else args.repeats
    rows, timings = timing_rows(cases, repeats)
    acc_case = Case("64-128-128-10", digits, 128, 2, 64, 5 if quick else 50)
    acc = accuracy_row(acc_case, [0, 1] if quick else [0, 1, 2, 3, 4])
    print()
    print("\n".join(rows))
    print()
    print(f"Goals (issue 21), medians over {repeats} repeat(s) interleaved epoch by epoch:")
    print("\n".join(goal_lines(timings)))
    print()
    print(acc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
