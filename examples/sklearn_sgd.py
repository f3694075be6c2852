"""Your own scikit-learn loop, tuned from the dashboard: ``SGDClassifier`` on the digits.

One ``partial_fit`` over the training split is one epoch (and one step). What panda-caviar
adds to the loop:

* ``trial.hparams["eta0"]`` (the constant learning rate) is set with ``clf.set_params`` before
  every epoch, so an adjustment made on the dashboard applies to the next one; ``alpha`` (the
  L2 penalty) is read when the model is made;
* ``trial.report(epoch=<whole epochs done>, train_loss=..., dev_accuracy=...)`` at each epoch's
  end: ``dev_accuracy`` is the objective, and early stopping (ASHA) compares trials there;
* the loop returns when ``trial.should_stop`` (paused, stopped or pruned), and a diverged run
  ends its trial with ``trial.fail(...)``;
* ``save()`` pickles the classifier and the epochs done; a paused, parked or forked trial
  resumes from them through ``trial.restore()``. (Unpickle only bytes you trust: these come
  from your own server, which stores your process's checkpoints as they were sent.)

The data split is fixed (seed 0, 360 dev images); each epoch's order is drawn from the trial's
``(seed, epoch)``, so a resumed trial sees the order an uninterrupted one would.

Run it against a server (``pandacaviar serve``), from the repository root::

    python -m examples.sklearn_sgd --server http://127.0.0.1:8000
        # creates a caviar study of its own (16 trials, 20 epochs, ASHA), prints its page and
        # runs its trials; a second process can share the work:
    python -m examples.sklearn_sgd --server http://127.0.0.1:8000 --study 7

The default study takes well under a minute (6-34 s measured on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import pickle
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss

import pandacaviar

DEV_SIZE = 360
SPLIT_SEED = 0
CLASSES = np.arange(10)
SPACE: dict[str, Any] = {
    "alpha": {"dist": "log_uniform", "low": 1e-6, "high": 1e-1},
    "eta0": {"dist": "log_uniform", "low": 1e-3, "high": 1.0},
}


@dataclass(frozen=True)
class Digits:
    """The digits split: ``x`` (n, 64) pixels scaled to [0, 1], ``y`` (n,) labels 0-9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_dev: np.ndarray
    y_dev: np.ndarray


def load_split(seed: int = SPLIT_SEED) -> Digits:
    """scikit-learn's 1,797 digits, shuffled by ``seed``; the last ``DEV_SIZE`` are dev."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order] / 16.0, y[order]
    return Digits(x[:-DEV_SIZE], y[:-DEV_SIZE], x[-DEV_SIZE:], y[-DEV_SIZE:])


class SgdLoop:
    """One trial's classifier and epochs done; ``save``/``load`` round-trip both."""

    def __init__(self, data: Digits) -> None:
        self.data = data
        self.clf = SGDClassifier()
        self.seed = 0
        self.done_epochs = 0

    def start(self, hparams: dict[str, Any]) -> None:
        """A fresh classifier for a trial (its weights start at zero)."""
        self.seed = int(hparams.get("seed", 0))
        self.clf = SGDClassifier(
            loss="log_loss",
            alpha=float(hparams["alpha"]),
            learning_rate="constant",
            eta0=float(hparams["eta0"]),
            shuffle=False,  # the loop shuffles, from (seed, epoch): see epoch_order
            random_state=self.seed,
        )
        self.done_epochs = 0

    def save(self) -> bytes:
        """The fitted classifier (weights, classes, its settings) and the epochs done."""
        return pickle.dumps({"clf": self.clf, "epochs": self.done_epochs})

    def load(self, data: bytes) -> None:
        """Continue from :meth:`save`'s bytes."""
        state = pickle.loads(data)  # our own checkpoint, from our own server
        self.clf, self.done_epochs = state["clf"], int(state["epochs"])

    def epoch_order(self) -> np.ndarray:
        """The training rows of the epoch under way, in the order ``(seed, epoch)`` draws."""
        rng = np.random.default_rng([self.seed, self.done_epochs])
        return rng.permutation(len(self.data.y_train))

    def fit_epoch(self, eta0: float) -> bool:
        """One pass over the training split at learning rate ``eta0``; False if it diverged."""
        self.clf.set_params(eta0=eta0)  # a dashboard adjustment lands here
        rows = self.epoch_order()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow: caught just below
            self.clf.partial_fit(self.data.x_train[rows], self.data.y_train[rows], CLASSES)
        self.done_epochs += 1
        return bool(np.isfinite(self.clf.coef_).all() and np.isfinite(self.clf.intercept_).all())

    def train(self, trial: pandacaviar.Trial) -> None:
        """The loop ``pandacaviar.run`` calls for each trial this process claims."""
        self.start(trial.hparams)
        if (data := trial.restore()) is not None:  # a resumed, promoted or forked trial
            self.load(data)
        while self.done_epochs < trial.epochs:
            if not self.fit_epoch(float(trial.hparams["eta0"])):
                trial.fail(f"diverged: weights not finite after epoch {self.done_epochs}")
                return
            d = self.data
            train_loss = log_loss(d.y_train, self.clf.predict_proba(d.x_train), labels=CLASSES)
            # The epochs moved before the report: a pause there saves this very epoch.
            trial.report(
                epoch=self.done_epochs,
                train_loss=train_loss,
                dev_accuracy=self.clf.score(d.x_dev, d.y_dev),
            )
            if trial.should_stop:
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--study", type=int, help="run this study's trials (default: a new one)")
    parser.add_argument("--trials", type=int, default=16, help="a new study's trials")
    parser.add_argument("--epochs", type=int, default=20, help="a new study's epochs a trial")
    parser.add_argument("--parallelism", type=int, default=2, help="a new study's trials at once")
    parser.add_argument("--seed", type=int, default=0, help="a new study's seed")
    args = parser.parse_args()

    study = args.study
    if study is None:
        with pandacaviar.Client(args.server) as client:
            study = client.create_study(
                "sklearn digits SGD", SPACE, epochs=args.epochs, seed=args.seed,
                budget={"trials": args.trials}, parallelism=args.parallelism,
                scheduler={"name": "asha"},
            )  # fmt: skip
        print(f"study {study}: {args.server.rstrip('/')}/studies/{study}", flush=True)
        print(f"  (another process can share it: --study {study})", flush=True)
    loop = SgdLoop(load_split())
    n = pandacaviar.run(loop.train, study=study, server=args.server, save=loop.save)
    print(f"ran {n} trials of study {study}", flush=True)


if __name__ == "__main__":
    main()
