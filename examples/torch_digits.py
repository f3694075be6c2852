"""Your own PyTorch loop, tuned from the dashboard: a small MLP on scikit-learn's digits.

The loop is plain PyTorch (SGD with momentum, one hidden layer, mini-batches of 32); what
panda-caviar adds is five lines of it:

* ``trial.hparams["learning_rate"]`` and ``["momentum"]`` are read at every step and set on the
  optimizer's ``param_groups``, so an adjustment made on the dashboard applies at the next step;
* ``trial.report(train_loss=...)`` at every step, and ``dev_accuracy`` (the objective) at each
  epoch's end with ``epoch=<whole epochs done>``: early stopping (ASHA) compares trials there;
* the loop returns when ``trial.should_stop`` (paused, stopped or pruned), and a diverged run
  ends its trial with ``trial.fail(...)`` (a report takes finite numbers only);
* ``save()`` writes the model, the optimizer's state and the position in the loop (epoch and
  batch) with ``torch.save`` into bytes; a paused, parked or forked trial resumes from them
  through ``trial.restore()`` at exactly the batch it left.

The data split is fixed (seed 0, 360 dev images); a trial's initial weights and its batch order
follow its ``seed`` (the epoch's order is drawn from ``(seed, epoch)``, so a resumed trial sees
the batches an uninterrupted one would).

Run it against a server (``pandacaviar serve``), from the repository root::

    python -m examples.torch_digits --server http://127.0.0.1:8000
        # creates a caviar study of its own (8 trials, 10 epochs, ASHA), prints its page and
        # runs its trials; a second process can share the work:
    python -m examples.torch_digits --server http://127.0.0.1:8000 --study 7

The default study takes well under a minute (11-18 s measured on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import pandacaviar

BATCH_SIZE = 32
HIDDEN_UNITS = 64
DEV_SIZE = 360
SPLIT_SEED = 0
SPACE: dict[str, Any] = {
    "learning_rate": {"dist": "log_uniform", "low": 1e-3, "high": 1.0},
    # beta near 1 matters on the 1 - beta scale: 0.9, 0.99, 0.999 are equally far apart.
    "momentum": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999},
}


@dataclass(frozen=True)
class Digits:
    """The digits split: ``x`` (n, 64) pixels scaled to [0, 1], ``y`` (n,) labels 0-9."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_dev: torch.Tensor
    y_dev: torch.Tensor


def load_split(seed: int = SPLIT_SEED) -> Digits:
    """scikit-learn's 1,797 digits, shuffled by ``seed``; the last ``DEV_SIZE`` are dev."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x = torch.tensor(x[order] / 16.0, dtype=torch.float32)
    y = torch.tensor(y[order], dtype=torch.long)
    return Digits(x[:-DEV_SIZE], y[:-DEV_SIZE], x[-DEV_SIZE:], y[-DEV_SIZE:])


class DigitsLoop:
    """One trial's model, optimizer and place in the loop; ``save``/``load`` round-trip all."""

    def __init__(self, data: Digits) -> None:
        self.data = data
        self.n_batches = -(-len(data.y_train) // BATCH_SIZE)
        self.model = nn.Sequential()
        self.optimizer = torch.optim.SGD([torch.zeros(1)])
        self.seed = 0
        self.done_epochs = 0  # whole epochs trained
        self.batch = 0  # the next batch of the epoch under way

    def start(self, hparams: dict[str, Any]) -> None:
        """A fresh model for a trial: weights drawn from its seed, the optimizer at step 0."""
        self.seed = int(hparams.get("seed", 0))
        torch.manual_seed(self.seed)
        self.model = nn.Sequential(
            nn.Linear(64, HIDDEN_UNITS), nn.ReLU(), nn.Linear(HIDDEN_UNITS, 10)
        )
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=float(hparams["learning_rate"]),
            momentum=float(hparams["momentum"]),
        )
        self.done_epochs = self.batch = 0

    def save(self) -> bytes:
        """Everything a resume needs: weights, momentum buffers, the epoch and the batch."""
        buf = io.BytesIO()
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "epochs": self.done_epochs,
                "batch": self.batch,
            },
            buf,
        )
        return buf.getvalue()

    def load(self, data: bytes) -> None:
        """Continue from :meth:`save`'s bytes (after :meth:`start` built the model)."""
        state = torch.load(io.BytesIO(data), weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.done_epochs, self.batch = int(state["epochs"]), int(state["batch"])

    def epoch_order(self) -> torch.Tensor:
        """The training rows of the epoch under way, in the order ``(seed, epoch)`` draws."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.done_epochs)
        return torch.randperm(len(self.data.y_train), generator=generator)

    def step(self, rows: torch.Tensor, hparams: dict[str, Any]) -> float:
        """One SGD step on ``rows`` with the learning rate and momentum in force now."""
        for group in self.optimizer.param_groups:  # a dashboard adjustment lands here
            group["lr"] = float(hparams["learning_rate"])
            group["momentum"] = float(hparams["momentum"])
        self.model.train()
        loss = nn.functional.cross_entropy(
            self.model(self.data.x_train[rows]), self.data.y_train[rows]
        )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.item())

    @torch.no_grad()
    def dev_accuracy(self) -> float:
        self.model.eval()
        predicted = self.model(self.data.x_dev).argmax(dim=1)
        return float((predicted == self.data.y_dev).float().mean())

    def train(self, trial: pandacaviar.Trial) -> None:
        """The loop ``pandacaviar.run`` calls for each trial this process claims."""
        self.start(trial.hparams)
        if (data := trial.restore()) is not None:  # a resumed, promoted or forked trial
            self.load(data)
        while self.done_epochs < trial.epochs:
            order = self.epoch_order()
            for batch in range(self.batch, self.n_batches):
                rows = order[batch * BATCH_SIZE : (batch + 1) * BATCH_SIZE]
                loss = self.step(rows, trial.hparams)
                if not math.isfinite(loss):  # a report takes finite numbers only
                    trial.fail(f"diverged: train loss {loss} at epoch {self.done_epochs + 1}")
                    return
                metrics = {"train_loss": loss}
                self.batch = batch + 1
                epoch = self.done_epochs + self.batch / self.n_batches
                if self.batch == self.n_batches:  # the epoch's end: the objective
                    self.done_epochs, self.batch = self.done_epochs + 1, 0
                    epoch = float(self.done_epochs)
                    metrics["dev_accuracy"] = self.dev_accuracy()
                # The position moved before the report: a pause there saves this very step.
                trial.report(epoch=epoch, **metrics)
                if trial.should_stop:
                    return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--study", type=int, help="run this study's trials (default: a new one)")
    parser.add_argument("--trials", type=int, default=8, help="a new study's trials")
    parser.add_argument("--epochs", type=int, default=10, help="a new study's epochs a trial")
    parser.add_argument("--parallelism", type=int, default=2, help="a new study's trials at once")
    parser.add_argument("--seed", type=int, default=0, help="a new study's seed")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a small MLP: more threads only contend with the other trial

    study = args.study
    if study is None:
        with pandacaviar.Client(args.server) as client:
            study = client.create_study(
                "torch digits MLP", SPACE, epochs=args.epochs, seed=args.seed,
                budget={"trials": args.trials}, parallelism=args.parallelism,
                scheduler={"name": "asha"},
            )  # fmt: skip
        print(f"study {study}: {args.server.rstrip('/')}/studies/{study}", flush=True)
        print(f"  (another process can share it: --study {study})", flush=True)
    loop = DigitsLoop(load_split())
    n = pandacaviar.run(loop.train, study=study, server=args.server, save=loop.save)
    print(f"ran {n} trials of study {study}", flush=True)


if __name__ == "__main__":
    main()
