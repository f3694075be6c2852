"""The training loop: mini-batches, safe points, directives, checkpoints.

A :class:`Trainer` owns one trial's model, optimizer, schedule, data and random generator.
:meth:`Trainer.fit` runs mini-batch steps; every ``report_every`` steps, every
``report_seconds`` of wall time and at every epoch end it reaches a *safe point*: it hands the
metrics to a :class:`~trainer.reporting.Reporter` and obeys the returned directive. Safe points
never touch the random generator or the weights, so where they fall does not change training:
a run paused, checkpointed and resumed trains exactly like one run straight.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trainer import checkpoint as ckpt
from trainer.config import ARCHITECTURE, TrainConfig, check_combination, check_hparams
from trainer.data import Dataset, load_task
from trainer.metrics import Accumulator, DivergedError, check_finite
from trainer.model import MLP
from trainer.optimizers import Optimizer, make_optimizer
from trainer.quadratic import QuadraticModel
from trainer.reporting import Action, Directive, Reporter
from trainer.schedules import Schedule, make_schedule


class FitStatus(str, Enum):
    COMPLETED = "completed"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True)
class FitResult:
    status: FitStatus
    step: int
    epoch: float
    metrics: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Trains one configuration; pausable, adjustable and restorable between steps.

    Args:
        config: the trial's configuration (hyperparameters complete and validated).
        data: an already loaded data set (benchmarks share one); loaded from the config
            otherwise.
    """

    def __init__(self, config: TrainConfig, data: Dataset | None = None) -> None:
        self.config = config
        self.hp: dict[str, Any] = dict(config.hparams)
        self.dtype = np.dtype(config.dtype.value)
        self.rng = np.random.default_rng(self.hp["seed"])
        self.data = data or load_task(
            config.task, config.task_options, split_seed=config.split_seed, dtype=self.dtype
        )
        self.model: MLP | QuadraticModel = self._build_model()
        self.optimizer: Optimizer = make_optimizer(self.hp["optimizer"], self.hp)
        self.schedule: Schedule = self._build_schedule()
        self.step = 0
        self.epochs_done = 0
        self.order: NDArray[np.int64] | None = None
        self.pos = 0

    # -- construction -------------------------------------------------------------------

    def _build_model(self) -> MLP | QuadraticModel:
        if self.data.n_classes == 0:
            return QuadraticModel(self.dtype)
        hp = self.hp
        return MLP(
            self.data.n_features,
            self.data.n_classes,
            hidden_units=hp["hidden_units"],
            num_layers=hp["num_layers"],
            activation=hp["activation"],
            batch_norm=hp["batch_norm"],
            bn_momentum=hp["bn_momentum"],
            keep_prob=hp["keep_prob"],
            init=hp["init"],
            rng=self.rng,
            dtype=self.dtype,
        )

    def _build_schedule(self) -> Schedule:
        hp = self.hp
        return make_schedule(hp["decay_schedule"], hp["lr_decay"], hp["decay_every"])

    @property
    def n_train(self) -> int:
        return len(self.data.y_train)

    @property
    def epoch(self) -> float:
        """Epochs done, fractional within an epoch."""
        return self.epochs_done + (self.pos / self.n_train if self.order is not None else 0.0)

    @property
    def learning_rate(self) -> float:
        """The effective rate of the current epoch, after decay (course's 1-based epoch_num)."""
        return float(self.schedule(self.hp["learning_rate"], self.epochs_done + 1))

    def _done(self) -> bool:
        if self.config.max_steps is not None:
            return self.step >= self.config.max_steps
        return self.epochs_done >= int(self.hp["epochs"])

    # -- adjusting ----------------------------------------------------------------------

    def update_hparams(self, values: Mapping[str, Any]) -> int:
        """Apply new values of adjustable hyperparameters; returns the first step using them.

        Raises:
            NotAdjustableError: a name that defines the architecture (needs a new trial).
            HParamError: an unknown name or a value out of range.
        """
        changes = check_hparams(values, adjust=True)
        new = {**self.hp, **changes}
        check_combination(new)
        self.hp = new
        own = self.optimizer.hyperparameters
        self.optimizer.set(**{k: v for k, v in changes.items() if k in own})
        self.model.set_keep_prob(new["keep_prob"])
        self.model.set_bn_momentum(new["bn_momentum"])
        self.schedule = self._build_schedule()
        return self.step + 1

    # -- checkpoints --------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        # Through JSON so it compares equal to what a checkpoint's metadata decodes to.
        identity: dict[str, Any] = json.loads(
            json.dumps(
                {
                    "task": self.config.task,
                    "task_options": dict(self.config.task_options),
                    "split_seed": self.config.split_seed,
                    "dtype": self.dtype.name,
                    "architecture": {k: self.hp[k] for k in sorted(ARCHITECTURE)},
                }
            )
        )
        return identity

    def checkpoint_bytes(self) -> bytes:
        """Everything needed to continue bit for bit, as one ``.npz``."""
        return self.checkpoint_snapshot()()

    def checkpoint_snapshot(self) -> Callable[[], bytes]:
        """This moment's checkpoint, written when called: the state is copied now (a memcpy
        of the arrays), the ``.npz`` (8 MB and its CRCs for 784-512-512-10 with Adam) later,
        off the training thread, while training goes on. The bytes equal
        :meth:`checkpoint_bytes` taken now."""
        meta = {
            "step": self.step,
            "epochs_done": self.epochs_done,
            "pos": self.pos,
            "hparams": dict(self.hp),
            "identity": self._identity(),
            "rng": self.rng.bit_generator.state,
        }
        order = None if self.order is None else self.order.copy()
        return partial(
            ckpt.dumps, meta, self.model.state_dict(), self.optimizer.state_dict(), order
        )

    def _checkpoint_to(
        self, reporter: Reporter, *, before_update: bool = False, pausing: bool = False
    ) -> None:
        """Hand ``reporter`` this moment's checkpoint; written off this thread when the
        reporter takes it later (``checkpoint_later``, see :class:`Reporter`).

        ``pausing``: training pauses here, so this thread, with nothing else to do, writes the
        bytes itself while the reporter's thread sends what comes before them (the points up
        to this step); the reporter is told, as the pause may end with them.
        """
        later = getattr(reporter, "checkpoint_later", None)
        if later is None:
            reporter.checkpoint(self.step, self.checkpoint_bytes())
            return
        if not pausing:
            later(self.step, self.checkpoint_snapshot(), before_update=before_update)
            return
        written: Future[bytes] = Future()
        later(self.step, written.result, pausing=True)
        try:
            written.set_result(self.checkpoint_bytes())
        except BaseException as exc:
            written.set_exception(exc)  # the reporter's thread raises it too
            raise

    def load_checkpoint(self, data: bytes) -> None:
        """Restore a checkpoint of this run (same task, split, dtype and architecture).

        Raises:
            CheckpointError: a truncated, corrupt or foreign file, or one of another run.
        """
        state = ckpt.loads(data)
        meta = state.meta
        ckpt.check_identity(meta, self._identity())
        try:
            hp = {**self.hp, **check_hparams(meta["hparams"])}
            self.model.load_state_dict(state.model)
            self.optimizer = make_optimizer(hp["optimizer"], hp)
            self.optimizer.load_state_dict(state.optimizer)
            self.rng.bit_generator.state = meta["rng"]
            step, epochs_done, pos = int(meta["step"]), int(meta["epochs_done"]), int(meta["pos"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ckpt.CheckpointError(f"checkpoint content does not fit this run: {exc}") from exc
        if state.order is not None and len(state.order) != self.n_train:
            raise ckpt.CheckpointError("checkpoint's data order does not fit this data set")
        self.hp = hp
        self.model.set_keep_prob(hp["keep_prob"])
        self.model.set_bn_momentum(hp["bn_momentum"])
        self.schedule = self._build_schedule()
        self.step, self.epochs_done, self.pos = step, epochs_done, pos
        self.order = None if state.order is None else state.order.astype(np.int64)

    # -- evaluation ---------------------------------------------------------------------

    def evaluate(self, split: str) -> dict[str, float]:
        """Loss and accuracy on ``dev`` or ``test`` in eval mode (no state changes)."""
        x, y = getattr(self.data, f"X_{split}"), getattr(self.data, f"y_{split}")
        loss, acc = self.model.evaluate(x, y)
        out = {f"{split}_loss": float(loss)}
        if not math.isnan(acc):
            out[f"{split}_accuracy"] = float(acc)
        return out

    def _grad_norm(self) -> float:
        return math.sqrt(sum(float(np.vdot(g, g)) for g in self.model.grads.values()))

    # -- the loop -----------------------------------------------------------------------

    def fit(self, reporter: Reporter) -> FitResult:
        """Train until the epoch budget (or ``max_steps``) is spent or a directive ends it.

        Raises:
            DivergedError: the training loss became NaN or infinite.
        """
        cfg = self.config
        x_all, y_all = self.data.X_train, self.data.y_train
        acc = Accumulator()
        last_report, report_next = time.perf_counter(), False
        # A reporter may raise a flag between safe points (a directive waits on the server):
        # the next step is then a safe point, whatever report_every and report_seconds say.
        urgent = getattr(reporter, "urgent", None)
        while not self._done():
            if self.order is None:
                self.order = self.rng.permutation(self.n_train)
                self.pos = 0
            idx = self.order[self.pos : self.pos + self.hp["batch_size"]]
            xb, yb = x_all[idx], y_all[idx]
            t0 = time.perf_counter()
            loss, logits = self.model.loss_and_grads(xb, yb, l2=self.hp["l2"])
            if not math.isfinite(loss):
                raise DivergedError(self.step + 1)
            self.optimizer.step(self.model.params, self.model.grads, self.learning_rate)
            self.step += 1
            self.pos += len(idx)
            acc.add(loss, logits, yb, time.perf_counter() - t0)
            epoch_end = self.pos >= self.n_train
            lr_used = self.learning_rate
            if epoch_end:
                self.epochs_done += 1
                self.order = None
                self.pos = 0
            now = time.perf_counter()
            evaluate = (
                epoch_end
                or self._done()
                or (cfg.eval_every > 0 and self.step % cfg.eval_every == 0)
            )
            due = (
                evaluate
                or report_next
                or (urgent is not None and urgent.is_set())
                or self.step % cfg.report_every == 0
                or (cfg.report_seconds > 0 and now - last_report >= cfg.report_seconds)
            )
            if not due:
                continue
            last_report, report_next = now, False
            metrics = self._safe_point_metrics(acc, lr_used, evaluate)
            acc = Accumulator()
            if self._done():
                metrics.update(self.evaluate("test"))
                check_finite(metrics, self.step)
                reporter.report(self.step, self.epoch, metrics)
                reporter.checkpoint(self.step, self.checkpoint_bytes())
                return FitResult(FitStatus.COMPLETED, self.step, self.epoch, metrics)
            check_finite(metrics, self.step)
            directive = reporter.report(self.step, self.epoch, metrics)
            result = self._obey(directive, reporter, epoch_end)
            if result is not None:
                return result
            # After an update, show its effect at the very next step: the one who asked is
            # watching for it, and a safe point changes nothing in the training.
            report_next = directive.action is Action.UPDATE
        # Restored from a final checkpoint: nothing left to train.
        final = {**self.evaluate("dev"), **self.evaluate("test")}
        return FitResult(FitStatus.COMPLETED, self.step, self.epoch, final)

    def _safe_point_metrics(
        self, acc: Accumulator, lr_used: float, evaluate: bool
    ) -> dict[str, float]:
        metrics = acc.metrics()
        metrics["learning_rate"] = lr_used
        metrics["grad_norm"] = self._grad_norm()
        metrics.update(self.model.z_stats())
        if evaluate:
            metrics.update(self.evaluate("dev"))
        return metrics

    def _obey(self, directive: Directive, reporter: Reporter, epoch_end: bool) -> FitResult | None:
        action = directive.action
        if action is Action.STOP:
            return FitResult(FitStatus.STOPPED, self.step, self.epoch)
        if action is Action.PAUSE:
            self._checkpoint_to(reporter, pausing=True)
            return FitResult(FitStatus.PAUSED, self.step, self.epoch)
        periodic = (
            epoch_end
            and self.config.checkpoint_every > 0
            and self.epochs_done % self.config.checkpoint_every == 0
        )
        if action in (Action.UPDATE, Action.CHECKPOINT) or periodic:
            # Taken before an update is applied, so a rewind lands on the old values.
            self._checkpoint_to(reporter, before_update=action is Action.UPDATE)
        if action is Action.UPDATE:
            first_step = self.update_hparams(directive.hparams)
            reporter.applied(directive, first_step)
        return None
