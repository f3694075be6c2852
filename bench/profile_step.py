"""Where one training step of the big network spends its time, per layer and per operation.

The step is the product's own (``Trainer`` builds the 784-512-512-10 network with batch norm,
ReLU and Adam, as ``trainer_vs_torch.py`` runs it) and is driven the way ``Trainer.fit``
drives it: gather the batch, ``MLP.loss_and_grads``, ``Optimizer.step``, accumulate the
metrics. Every layer's ``forward``/``backward``, the loss and the optimizer step are wrapped
with a timer that records *exclusive* time (a wrapped call inside another is subtracted from
it), so the rows add up to the step; what no wrapper covers (Python glue, the L2 loop, input
checks) is the row "other". Each row is the median over the timed steps; shares are of the sum
of the rows' medians.

GEMM rows carry their rate, ``2 * m * k * n / seconds``, and the summary compares the step's
GEMM rate (all GEMM FLOPs over the GEMM rows' time) and its whole-step rate (the same FLOPs over
the whole step) with the machine's one-thread float32 GEMM rate, measured in the same run
(``numpy.matmul`` of two 1024 x 1024 float32 matrices, the median of several, taken before
and after the steps).

Usage::

    python bench/profile_step.py                  # batches 64 and 256
    python bench/profile_step.py --batch 256 --steps 300
"""

from __future__ import annotations

import os

# BLAS reads these when it loads, i.e. at the first numpy import: set them first.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import trainer.model as model_module  # noqa: E402
from trainer.activations import Dropout  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.data import Dataset  # noqa: E402
from trainer.layers import Dense, Layer  # noqa: E402
from trainer.loop import Trainer  # noqa: E402
from trainer.metrics import Accumulator  # noqa: E402
from trainer.model import MLP  # noqa: E402

N_IN, HIDDEN, LAYERS, N_OUT = 784, 512, 2, 10
_LOSS = model_module.softmax_cross_entropy
Key = tuple[str, str]  # (layer, operation)


def gemm_rate(n: int = 1024, reps: int = 7) -> float:
    """The machine's one-thread float32 GEMM rate in GFLOP/s: the median of ``reps`` timed
    ``numpy.matmul`` calls of two ``(n, n)`` float32 matrices, ``2 * n**3`` FLOPs each."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)  # warm: pages touched, BLAS kernels chosen
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


class StepTimer:
    """Exclusive wall time per (layer, operation) for the current step.

    A wrapped call's time minus the time of the wrapped calls made inside it; a stack holds
    the inner time of each open call.
    """

    def __init__(self) -> None:
        self.step: dict[Key, float] = defaultdict(float)
        self._inner: list[float] = []

    def timed(self, key: Key, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with its exclusive time added to ``self.step[key]`` on every call."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._inner.append(0.0)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            dt = time.perf_counter() - t0
            inner = self._inner.pop()
            self.step[key] += dt - inner
            if self._inner:
                self._inner[-1] += dt
            return out

        return wrapper

    def take(self) -> dict[Key, float]:
        """This step's times; the next step starts from zero."""
        out, self.step = dict(self.step), defaultdict(float)
        return out


def _gemm_flops(model: MLP, batch: int) -> dict[Key, float]:
    """FLOPs of each GEMM row: ``2 * batch * n_in * n_out`` for ``x @ W``, ``dW = x.T @ dy``
    and ``dx = dy @ W.T`` (the first layer computes no ``dx``)."""
    flops: dict[Key, float] = {}
    for i, (name, block) in enumerate(model.blocks):
        dense = block[0]
        assert isinstance(dense, Dense)
        f = 2.0 * batch * dense.n_in * dense.n_out
        flops[(name, "forward GEMM x @ W")] = f
        flops[(name, "backward GEMM dW = x.T @ dy")] = f
        if i > 0:
            flops[(name, "backward GEMM dx = dy @ W.T")] = f
    return flops


def instrument(trainer: Trainer, timer: StepTimer) -> None:
    """Wrap the model's layers, its loss and the optimizer's step with ``timer``."""
    model = trainer.model
    assert isinstance(model, MLP)
    for name, block in model.blocks:
        for layer in block:
            _wrap_layer(name, layer, timer)
    # The module attribute is patched for this profile only: profile() puts it back.
    model_module.softmax_cross_entropy = timer.timed(  # type: ignore[assignment]
        ("loss", "softmax cross-entropy + dlogits"), _LOSS
    )
    trainer.optimizer.step = timer.timed(  # type: ignore[method-assign]
        ("optimizer", f"{type(trainer.optimizer).__name__} update, all parameters"),
        trainer.optimizer.step,
    )


def _wrap_layer(name: str, layer: Layer, timer: StepTimer) -> None:
    kind = type(layer).__name__
    if isinstance(layer, Dropout):
        return  # keep_prob 1: the identity, nothing to time
    if isinstance(layer, Dense):
        fwd = "forward GEMM x @ W" + (" + b" if layer.bias else "")
        layer.forward = timer.timed((name, fwd), layer.forward)  # type: ignore[method-assign]
        layer.backward_params = timer.timed(  # type: ignore[method-assign]
            (name, "backward GEMM dW = x.T @ dy" + (" + db" if layer.bias else "")),
            layer.backward_params,
        )
        layer.backward = timer.timed(  # type: ignore[method-assign]
            (name, "backward GEMM dx = dy @ W.T"), layer.backward
        )
        return
    layer.forward = timer.timed((name, f"{kind} forward"), layer.forward)  # type: ignore[method-assign]
    layer.backward = timer.timed((name, f"{kind} backward"), layer.backward)  # type: ignore[method-assign]


def random_data(n: int, seed: int = 0) -> Dataset:
    """``n`` standard normal rows of 784 features, labels from a random linear teacher."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_IN), dtype=np.float32)
    y = (x @ rng.standard_normal((N_IN, N_OUT), dtype=np.float32)).argmax(axis=1)
    y = y.astype(np.int64)
    return Dataset(
        name="teacher",
        X_train=x,
        y_train=y,
        X_dev=x[:100],
        y_dev=y[:100],
        X_test=x[:100],
        y_test=y[:100],
        n_features=N_IN,
        n_classes=N_OUT,
        class_names=tuple(str(c) for c in range(N_OUT)),
        feature_names=tuple(f"x{j}" for j in range(N_IN)),
    )


@dataclass(frozen=True)
class Profile:
    """Median exclusive seconds per (layer, operation) over the timed steps."""

    batch: int
    rows: dict[Key, float]
    step_seconds: float  # median wall time of a whole step
    gemm_flops: dict[Key, float]


def profile(batch: int, steps: int, warmup: int, data: Dataset) -> Profile:
    """Time ``steps`` training steps (after ``warmup``) at ``batch``, one BLAS thread."""
    config = TrainConfig(
        task="blobs",
        hparams={
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "batch_size": batch,
            "hidden_units": HIDDEN,
            "num_layers": LAYERS,
            "batch_norm": True,
            "bn_momentum": 0.9,
            "epochs": 1,
            "seed": 0,
        },
    )
    trainer = Trainer(config, data=data)
    timer = StepTimer()
    instrument(trainer, timer)
    try:
        return _run(trainer, timer, batch, steps, warmup)
    finally:
        model_module.softmax_cross_entropy = _LOSS


def _run(trainer: Trainer, timer: StepTimer, batch: int, steps: int, warmup: int) -> Profile:
    data = trainer.data
    model = trainer.model
    assert isinstance(model, MLP)
    x_all, y_all = data.X_train, data.y_train
    order = np.random.default_rng(1).permutation(len(y_all))
    acc = Accumulator()
    per_step: list[dict[Key, float]] = []
    walls: list[float] = []
    gather = timer.timed(("batch", "gather x[idx], y[idx]"), lambda i: (x_all[i], y_all[i]))
    metrics = timer.timed(("batch", "metrics: loss sum, argmax"), acc.add)
    pos = 0
    for s in range(warmup + steps):
        if pos + batch > len(order):
            pos = 0
        idx = order[pos : pos + batch]
        pos += batch
        t0 = time.perf_counter()
        xb, yb = gather(idx)
        loss, logits = model.loss_and_grads(xb, yb, l2=trainer.hp["l2"])
        trainer.optimizer.step(model.params, model.grads, trainer.learning_rate)
        metrics(loss, logits, yb, 0.0)
        wall = time.perf_counter() - t0
        times = timer.take()
        if s >= warmup:
            times[("step", "other: Python glue, checks")] = wall - sum(times.values())
            per_step.append(times)
            walls.append(wall)
    keys = list(per_step[0])
    rows = {k: statistics.median(t.get(k, 0.0) for t in per_step) for k in keys}
    return Profile(batch, rows, statistics.median(walls), _gemm_flops(model, batch))


def _group(key: Key) -> str:
    layer, op = key
    if "GEMM" in op:
        return "GEMM"
    if layer in ("optimizer", "loss", "batch", "step"):
        return {"optimizer": "optimizer", "loss": "loss", "batch": "batch", "step": "other"}[layer]
    return op.split()[0]  # BatchNorm, ReLU, ...


def table(p: Profile, machine_gflops: float) -> list[str]:
    """The per-operation table and the group summary as markdown lines."""
    total = sum(p.rows.values())
    lines = [
        f"batch {p.batch}: step {p.step_seconds * 1e3:.3f} ms (median), "
        f"rows sum {total * 1e3:.3f} ms",
        "",
        "| layer | operation | ms | share | GFLOP/s |",
        "|---|---|---:|---:|---:|",
    ]
    for key, sec in p.rows.items():
        flops = p.gemm_flops.get((key[0], key[1].removesuffix(" + b").removesuffix(" + db")))
        rate = f"{flops / sec / 1e9:.0f}" if flops and sec > 0 else ""
        lines.append(f"| {key[0]} | {key[1]} | {sec * 1e3:.3f} | {sec / total:.1%} | {rate} |")
    groups: dict[str, float] = defaultdict(float)
    for key, sec in p.rows.items():
        groups[_group(key)] += sec
    lines += ["", "| group | ms | share |", "|---|---:|---:|"]
    for g, sec in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {g} | {sec * 1e3:.3f} | {sec / total:.1%} |")
    flops = sum(p.gemm_flops.values())
    gemm_rate_ = flops / groups["GEMM"] / 1e9
    step_rate = flops / p.step_seconds / 1e9
    lines += [
        "",
        f"GEMM FLOPs per step {flops / 1e6:.1f} M; machine one-thread float32 GEMM "
        f"(n=1024) {machine_gflops:.1f} GFLOP/s",
        f"GEMM rows: {gemm_rate_:.1f} GFLOP/s = {gemm_rate_ / machine_gflops:.0%} of the machine; "
        f"whole step: {step_rate:.1f} GFLOP/s = {step_rate / machine_gflops:.0%}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, action="append", help="batch size (repeatable)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per batch size")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    args = parser.parse_args(argv)
    batches = args.batch or [64, 256]
    if args.steps < 1 or args.warmup < 0 or min(batches) < 1:
        parser.error("--steps and --batch: allowed: integers >= 1; --warmup >= 0")
    data = random_data(max(8192, 4 * max(batches)))
    print(f"numpy {np.__version__}, 1 BLAS thread, float32, {N_IN}-512-512-{N_OUT}, BN, Adam")
    for batch in batches:
        before = gemm_rate()
        p = profile(batch, args.steps, args.warmup, data)
        machine = statistics.median([before, gemm_rate()])
        print()
        print("\n".join(table(p, machine)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
