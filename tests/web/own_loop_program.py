"""A user's own loop for the browser tests, reporting a metric of its own name.

Softmax regression with plain SGD on the three Gaussian blobs of
:mod:`tests.pandacaviar.loop_program`, in a few lines as a user would write it: it reads
``learning_rate`` and ``dropout`` (a hyperparameter of the user's own name) from
``trial.hparams``, and reports ``train_loss`` at every step and, at each epoch's end,
``dev_accuracy`` and ``dev_confidence`` (the mean probability of the predicted class on the dev
split: a name no built-in chart knows).

    python -m tests.web.own_loop_program --server URL --study 3 [--n-trials N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import pandacaviar
from tests.pandacaviar.loop_program import N_CLASSES, N_FEATURES, blobs

STEPS_PER_EPOCH = 10


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, classes) scores."""
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def train(trial: pandacaviar.Trial) -> None:
    x, y, x_dev, y_dev = blobs()
    rng = np.random.default_rng(trial.number)
    w = np.zeros((N_FEATURES, N_CLASSES))
    for epoch in range(int(trial.epoch), trial.epochs):
        for i, rows in enumerate(np.array_split(rng.permutation(len(y)), STEPS_PER_EPOCH)):
            keep = rng.random(N_FEATURES) >= float(trial.hparams["dropout"])  # input dropout
            p = softmax((x[rows] * keep) @ w)
            loss = float(-np.log(p[np.arange(len(rows)), y[rows]] + 1e-12).mean())
            p[np.arange(len(rows)), y[rows]] -= 1.0
            w -= float(trial.hparams["learning_rate"]) * (x[rows] * keep).T @ p / len(rows)
            metrics = {"train_loss": loss}
            if i == STEPS_PER_EPOCH - 1:
                dev = softmax(x_dev @ w)
                metrics["dev_accuracy"] = float((dev.argmax(axis=1) == y_dev).mean())
                metrics["dev_confidence"] = float(dev.max(axis=1).mean())
            trial.report(epoch=epoch + (i + 1) / STEPS_PER_EPOCH, **metrics)
            if trial.should_stop:
                return
            time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--study", type=int, required=True)
    parser.add_argument("--n-trials", type=int, default=None)
    args = parser.parse_args()
    pandacaviar.run(train, study=args.study, server=args.server, n_trials=args.n_trials)


if __name__ == "__main__":
    main()
