"""``checkpoint_progress``: the epoch and hyperparameters a worker uploads with a checkpoint.

A real trainer takes the checkpoints; what is decoded from each must equal the trainer's own
state at the moment it handed the checkpoint over (mid-epoch, at an epoch's end, before an
adjustment).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from app.worker.client import checkpoint_progress
from tests.factories import npz_bytes
from trainer import ADJUSTABLE, TrainConfig, Trainer
from trainer.checkpoint import CheckpointError
from trainer.reporting import Action, Directive, RecordingReporter


class Witness(RecordingReporter):
    """Records the trainer's epoch and adjustable values at every checkpoint it hands over."""

    def __init__(self, trainer: Trainer, script: dict[int, Directive]) -> None:
        super().__init__(script)
        self.trainer = trainer
        self.seen: list[tuple[int, float, dict[str, Any], bytes]] = []

    def checkpoint(self, step: int, data: bytes) -> None:
        hp = {k: v for k, v in self.trainer.hp.items() if k in ADJUSTABLE}
        self.seen.append((step, self.trainer.epoch, hp, data))


def test_progress_is_the_trainers_state_at_each_checkpoint() -> None:
    config = TrainConfig(
        task="digits",
        hparams={
            "hidden_units": 16,
            "num_layers": 1,
            "batch_size": 64,
            "epochs": 3,
            "learning_rate": 0.01,
        },
        report_every=5,
        checkpoint_every=1,
    )
    trainer = Trainer(config)
    per_epoch = math.ceil(trainer.n_train / 64)
    script = {
        10: Directive(Action.CHECKPOINT),
        25: Directive(Action.UPDATE, {"learning_rate": 0.002}, event_id=1),
    }
    witness = Witness(trainer, script)
    trainer.fit(witness)

    steps = [s for s, *_ in witness.seen]
    assert steps == sorted({10, 25, per_epoch, 2 * per_epoch, 3 * per_epoch})
    for step, epoch, hp, data in witness.seen:
        assert checkpoint_progress(data) == (epoch, hp), step
        if step % per_epoch == 0:
            assert epoch == step / per_epoch
        else:
            assert epoch == step // per_epoch + (step % per_epoch) * 64 / trainer.n_train
    lr = {step: hp["learning_rate"] for step, _, hp, _ in witness.seen}
    assert lr[25] == 0.01  # taken before the update applied: a rewind lands on the old value
    assert lr[3 * per_epoch] == 0.002


def test_foreign_bytes_are_refused() -> None:
    with pytest.raises(CheckpointError):
        checkpoint_progress(npz_bytes(3))
