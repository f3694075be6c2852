"""A user's own training loop, run as a separate process by the client's end-to-end tests.

Plain NumPy, nothing of ``trainer/``: softmax regression with SGD + momentum on three Gaussian
blobs, ``learning_rate`` and ``momentum`` read from ``trial.hparams`` at every step (so an
adjustment takes effect at the next one), the objective ``dev_accuracy`` reported at each
epoch's end. A checkpoint is an ``.npz`` of the weights, the velocity and the epoch.

What the process saw goes to ``--log`` as JSON lines, for the test to compare with the server:
``claimed`` (trial, attempt, the sha256 of ``restore()``'s bytes), ``saved`` (step, sha256),
``update`` (step, changes), ``end`` (how the loop ended).

    python -m tests.pandacaviar.loop_program --server URL --study 3 --log out.jsonl \
        [--n-trials N] [--step-seconds 0.02] [--style run|with|ask] [--no-save]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import pandacaviar

STEPS_PER_EPOCH = 10
N_CLASSES, N_FEATURES = 3, 4


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and dev splits of three Gaussian blobs: (n, 4) features, (n,) labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 1.5, size=(N_CLASSES, N_FEATURES))
    y = rng.integers(0, N_CLASSES, size=600)
    x = centers[y] + rng.normal(0.0, 1.0, size=(600, N_FEATURES))
    return x[:500], y[:500], x[500:], y[500:]


def sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


class Program:
    """The loop, and the log of what it saw."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.log_path = Path(args.log)
        self.x, self.y, self.x_dev, self.y_dev = blobs()
        self.w = np.zeros((N_FEATURES, N_CLASSES))
        self.v = np.zeros_like(self.w)
        self.done_epochs = 0
        self.pos = 0  # the next batch of the epoch under way

    def log(self, **entry: Any) -> None:
        with self.log_path.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def save(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, w=self.w, v=self.v, epochs=np.array(self.done_epochs), pos=self.pos)
        data = buf.getvalue()
        self.log(event="saved", sha256=sha(data), epochs=self.done_epochs)
        return data

    def load(self, data: bytes) -> None:
        with np.load(io.BytesIO(data)) as f:
            self.w, self.v, self.done_epochs = f["w"], f["v"], int(f["epochs"])
            self.pos = int(f["pos"])

    def train(self, trial: pandacaviar.Trial) -> None:
        self.w = np.zeros((N_FEATURES, N_CLASSES))
        self.v = np.zeros_like(self.w)
        self.done_epochs = self.pos = 0
        restored = trial.restore()
        if restored is not None:
            self.load(restored)
        self.log(
            event="claimed", trial=trial.id, attempt=trial.attempt, restored=sha(restored),
            epochs=self.done_epochs, step=trial.step, hparams=trial.hparams,
        )  # fmt: skip
        batches = np.array_split(np.arange(len(self.y)), STEPS_PER_EPOCH)
        while self.done_epochs < trial.epochs:
            while self.pos < STEPS_PER_EPOCH:
                i, rows = self.pos, batches[self.pos]
                loss = self._step(trial.hparams, rows)
                self.pos += 1
                metrics = {"train_loss": loss}
                epoch = self.done_epochs + (i + 1) / STEPS_PER_EPOCH
                if i == STEPS_PER_EPOCH - 1:
                    self.done_epochs, self.pos = self.done_epochs + 1, 0
                    metrics["dev_accuracy"] = self.accuracy()
                changes = trial.report(epoch=epoch, **metrics)
                if changes:
                    self.log(event="update", step=trial.step, changes=changes)
                if trial.should_stop:
                    self.log(event="end", how="stop", paused=trial.paused, step=trial.step)
                    return
                time.sleep(self.args.step_seconds)
                if self.pos == 0:
                    break
            if self.args.checkpoint_every_epoch:
                trial.checkpoint(self.save())
        self.log(event="end", how="completed", step=trial.step)

    def _step(self, hparams: dict[str, Any], rows: np.ndarray) -> float:
        x, y = self.x[rows], self.y[rows]
        z = x @ self.w
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
        p[np.arange(len(y)), y] -= 1.0
        grad = x.T @ p / len(y)
        beta = float(hparams.get("momentum", 0.0))
        self.v = beta * self.v + (1 - beta) * grad
        self.w = self.w - float(hparams["learning_rate"]) * self.v
        return loss

    def accuracy(self) -> float:
        return float(((self.x_dev @ self.w).argmax(axis=1) == self.y_dev).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--study", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--n-trials", type=int, default=None)
    parser.add_argument("--step-seconds", type=float, default=0.0)
    parser.add_argument("--style", choices=("run", "with", "ask"), default="run")
    parser.add_argument("--no-save", action="store_true", help="no save function")
    parser.add_argument("--checkpoint-every-epoch", action="store_true")
    args = parser.parse_args()
    program = Program(args)
    save = None if args.no_save else program.save
    if args.style == "run":
        n = pandacaviar.run(
            program.train, study=args.study, server=args.server, n_trials=args.n_trials,
            save=save,
        )  # fmt: skip
    else:
        client = pandacaviar.Client(args.server, handle_signals=True)
        if args.style == "with":
            with client.trial(args.study, save=save) as trial:
                program.train(trial)
        else:
            trial = client.ask(args.study, save=save)
            assert trial is not None
            program.train(trial)
            client.tell(trial, program.accuracy())
        n = 1
    program.log(event="exit", trials=n)


if __name__ == "__main__":
    main()
