"""``python -m trainer``: the engine alone, without server or database.

Examples::

    python -m trainer --task digits --epochs 30
    python -m trainer --task quadratic --optimizer sgd --learning-rate 0.01 --steps 1000 --json
    python -m trainer --task spirals --task-option n_classes=3 --num-layers 2 --json

Any hyperparameter of ``trainer.config.HPARAM_SPECS`` is accepted as ``--name value``
(dashes or underscores). One line per epoch is printed, with a progress bar when stdout is a
terminal; ``--json`` prints exactly one JSON object at the end instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

# One BLAS thread, as in worker processes: a multi-threaded BLAS spins on the small matrices
# of these networks and runs them several times slower on a busy machine. Set before NumPy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from trainer.config import HPARAM_SPECS, DType, TrainConfig  # noqa: E402
from trainer.reporting import CONTINUE, Directive  # noqa: E402


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as a file path
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.split("\n")[0])
    parser.add_argument("--task", required=True, help="digits, iris, wine, breast_cancer, ...")
    parser.add_argument(
        "--task-option",
        action="append",
        type=_parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="a task option, e.g. n_samples=3000",
    )
    parser.add_argument("--steps", type=int, help="train this many steps instead of --epochs")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--dtype", choices=[d.value for d in DType], default="float32")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    for name, spec in HPARAM_SPECS.items():
        flag = "--" + name.replace("_", "-")
        if spec.type is bool:
            parser.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=spec.help,
            )
        else:
            kind: Any = spec.type if not spec.choices else str
            parser.add_argument(
                flag,
                dest=name,
                type=kind,
                default=None,
                choices=spec.choices or None,
                help=spec.help,
            )
    return parser


class ConsoleReporter:
    """Prints one line per epoch; draws a progress bar on a terminal."""

    def __init__(self, total_epochs: float, out: TextIO, quiet: bool) -> None:
        self.total = total_epochs
        self.out = out
        self.quiet = quiet
        self.tty = out.isatty()

    def report(self, step: int, epoch: float, metrics: Mapping[str, float]) -> Directive:
        if self.quiet:
            return CONTINUE
        if "dev_loss" in metrics and float(epoch).is_integer():
            parts = [f"epoch {int(epoch):>4}", f"step {step:>6}"]
            parts += [f"{k} {metrics[k]:.4f}" for k in _SHOWN if k in metrics]
            prefix = "\r\033[K" if self.tty else ""
            print(prefix + "  ".join(parts), file=self.out, flush=True)
        elif self.tty and self.total > 0:
            done = min(epoch / self.total, 1.0)
            bar = "#" * int(30 * done)
            print(
                f"\r[{bar:<30}] {100 * done:5.1f}%  step {step}", end="", file=self.out, flush=True
            )
        return CONTINUE

    def checkpoint(self, step: int, data: bytes) -> None:
        return None

    def applied(self, directive: Directive, step: int) -> None:
        return None


_SHOWN = ("train_loss", "train_accuracy", "dev_loss", "dev_accuracy", "learning_rate")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    hparams = {n: getattr(args, n) for n in HPARAM_SPECS if getattr(args, n) is not None}
    return TrainConfig(
        task=args.task,
        hparams=hparams,
        task_options=dict(args.task_option),
        split_seed=args.split_seed,
        dtype=DType(args.dtype),
        max_steps=args.steps,
        report_every=10**9 if args.json else 50,
        report_seconds=0.0 if args.json else 0.2,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps is not None and args.epochs is not None:
        parser.error("give --epochs or --steps, not both")
    from trainer.loop import Trainer
    from trainer.metrics import DivergedError

    try:
        config = config_from_args(args)
        trainer = Trainer(config)
    except ValueError as exc:  # HParamError and DataError included
        parser.error(str(exc))
    total = float(config.hparams["epochs"]) if args.steps is None else 0.0
    start = time.perf_counter()
    try:
        result = trainer.fit(ConsoleReporter(total, sys.stdout, quiet=args.json))
    except DivergedError as exc:
        print(json.dumps({"error": str(exc)}) if args.json else f"error: {exc}", file=sys.stdout)
        return 1
    summary: dict[str, Any] = {
        "dev_accuracy": result.metrics.get("dev_accuracy"),
        "dev_loss": result.metrics.get("dev_loss"),
        "test_accuracy": result.metrics.get("test_accuracy"),
        "test_loss": result.metrics.get("test_loss"),
        "steps": result.step,
        "epochs": result.epoch,
        "seconds": round(time.perf_counter() - start, 4),
    }
    if "w" in trainer.model.params:
        summary["w"] = float(trainer.model.params["w"][0])
    if args.json:
        print(json.dumps(summary))
    else:
        print(" ".join(f"{k} {v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
