"""Training metrics gathered between two safe points, and the never-report-NaN rule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the message is "diverged at step N"."""

    def __init__(self, step: int) -> None:
        super().__init__(f"diverged at step {step}")
        self.step = step


class Accumulator:
    """Running sums between two safe points: loss, correct predictions, examples, time."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.correct = 0
        self.examples = 0
        self.steps = 0
        self.seconds = 0.0
        self.classifies = False

    def add(self, loss: float, logits: NDArray[Any], y: NDArray[Any], seconds: float) -> None:
        n = len(y)
        self.loss_sum += loss * n
        if logits.shape[1] > 0:
            self.classifies = True
            self.correct += int(np.count_nonzero(logits.argmax(axis=1) == y))
        self.examples += n
        self.steps += 1
        self.seconds += seconds

    def metrics(self) -> dict[str, float]:
        n = max(self.examples, 1)
        out = {"train_loss": self.loss_sum / n}
        if self.classifies:
            out["train_accuracy"] = self.correct / n
        out["examples_per_second"] = self.examples / self.seconds if self.seconds > 0 else 0.0
        return out


def check_finite(metrics: Mapping[str, float], step: int) -> None:
    """Never report NaN: a non-finite metric means the run diverged."""
    if not all(math.isfinite(v) for v in metrics.values()):
        raise DivergedError(step)
