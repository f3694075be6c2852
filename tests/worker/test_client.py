"""``checkpoint_progress``: the epoch and hyperparameters a worker uploads with a checkpoint.

A real trainer takes the checkpoints; what is decoded from each must equal the trainer's own
state at the moment it handed the checkpoint over (mid-epoch, at an epoch's end, before an
adjustment).
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import httpx2
import pytest

from app.worker.client import HttpReporter, WorkerClient, checkpoint_progress
from app.worker.loop import _LastData
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


def test_an_adjustment_is_reported_applied_only_after_its_checkpoint_is_stored() -> None:
    # The server answers the upload slowly; the report that says "applied from step 11" must
    # not overtake it, or a worker lost in between leaves an applied step with no checkpoint.
    done: list[str] = []
    lock = threading.Lock()

    def server(request: httpx2.Request) -> httpx2.Response:
        if request.method == "PUT":
            time.sleep(0.3)
            with lock:
                done.append("checkpoint stored")
            return httpx2.Response(200, json={})
        body = json.loads(request.content)
        with lock:
            done.append("applied reported" if body.get("applied") else "report")
        return httpx2.Response(200, json={"action": "continue"})

    trainer = Trainer(TrainConfig(task="digits", hparams={"hidden_units": 8, "num_layers": 1}))
    client = WorkerClient("http://server")
    client.http = httpx2.Client(base_url="http://server", transport=httpx2.MockTransport(server))
    reporter = HttpReporter(client, trial_id=1, attempt=1)
    try:
        reporter.checkpoint(10, trainer.checkpoint_bytes())
        reporter.applied(Directive(action=Action.UPDATE, event_id=5), 11)
    finally:
        reporter.close()
        client.close()
    assert done == ["checkpoint stored", "applied reported"]


def test_a_worker_reuses_its_last_data_set_for_the_same_task_and_split_only() -> None:
    cache = _LastData()
    first = cache.get(TrainConfig(task="digits", split_seed=1))
    assert cache.get(TrainConfig(task="digits", split_seed=1)) is first
    other = cache.get(TrainConfig(task="digits", split_seed=2))
    assert other is not first and not (other.y_dev == first.y_dev).all()
