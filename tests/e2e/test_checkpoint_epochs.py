"""Checkpoints carry the trainer's epoch and hyperparameters at their step, whatever was reported.

A real server and its dispatcher's real worker process train digits trials. A worker batches
its reports by time (``report_seconds``), so the server's idea of a trial's epoch lags; the
checkpoint rows must not: the dashboard's timeline and every fork start from them.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest

from tests.e2e import (
    FAST,
    NEW_LR,
    OLD_LR,
    SLOW,
    Api,
    StartServer,
    adjust_when_running,
    total_steps,
    wait_for,
)
from trainer.data import load_task

pytestmark = pytest.mark.slow


@functools.cache
def n_train() -> int:
    """Training rows of digits under the study's default seed 0 (which fixes the split)."""
    return len(load_task("digits", {}, split_seed=0).y_train)


def epoch_at(step: int, batch_size: int) -> float:
    """The trainer's epoch after ``step`` steps: whole epochs plus the rows seen in this one."""
    steps_per_epoch = math.ceil(n_train() / batch_size)
    whole, into = divmod(step, steps_per_epoch)
    return whole + into * batch_size / n_train() if into else float(whole)


def start_trial(api: Api, hparams: dict[str, Any], epochs: int) -> int:
    study = api.create_study(epochs=epochs)
    return int(api.create_trial(study["id"], {**hparams, "epochs": epochs})["id"])


def completed(api: Api, trial_id: int) -> dict[str, Any]:
    done = api.wait_state(trial_id, "completed", "failed")
    assert done["state"] == "completed", done
    return done


def by_step(api: Api, trial_id: int) -> dict[int, dict[str, Any]]:
    return {int(c["step"]): c for c in api.checkpoints(trial_id)}


def test_epoch_end_checkpoints_and_a_fork_carry_the_trainers_epoch(
    start_server: StartServer,
) -> None:
    # Reports sent at most once a minute: the trial ends inside one interval, so the server
    # hears of no epoch before the finish. The periodic checkpoints upload meanwhile.
    server = start_server(workers=1, report_seconds=60)
    api = Api(server.url)
    per_epoch = total_steps(FAST, 1)  # steps per epoch: ceil(rows / batch size)
    parent_id = start_trial(api, FAST, epochs=12)  # checkpoints at epochs 5, 10 and 12
    parent = completed(api, parent_id)
    ckpts = by_step(api, parent_id)
    assert sorted(ckpts) == [5 * per_epoch, 10 * per_epoch, 12 * per_epoch]
    assert {s: c["epoch"] for s, c in ckpts.items()} == {s: s / per_epoch for s in ckpts}
    assert parent["epoch"] == 12.0

    body = {"step": 5 * per_epoch, "hparams": {"learning_rate": NEW_LR}}
    child = api.call("POST", f"/api/trials/{parent_id}/fork", 201, json=body)
    assert (child["step"], child["epoch"]) == (5 * per_epoch, 5.0)
    done = completed(api, child["id"])
    assert (done["step"], done["epoch"]) == (12 * per_epoch, 12.0)
    child_ckpts = by_step(api, child["id"])
    assert sorted(child_ckpts) == [10 * per_epoch, 12 * per_epoch]
    assert all(c["epoch"] == s / per_epoch for s, c in child_ckpts.items())
    assert all(c["hparams"]["learning_rate"] == NEW_LR for c in child_ckpts.values())
    api.close()


def test_mid_epoch_checkpoints_carry_their_epoch_and_the_values_before_an_adjustment(
    start_server: StartServer,
) -> None:
    server = start_server(workers=1)
    api = Api(server.url)
    trial_id = start_trial(api, {**SLOW, "learning_rate": OLD_LR}, epochs=30)
    before = int(adjust_when_running(api, trial_id, {"learning_rate": NEW_LR})["applied_step"]) - 1
    # Taken just before the change; its upload may land after the report that applied it.
    wait_for(lambda: before in by_step(api, trial_id), "the checkpoint before the adjustment")
    api.call("POST", f"/api/trials/{trial_id}/pause")
    paused = api.wait_state(trial_id, "paused", "failed")
    assert paused["state"] == "paused", paused

    ckpts = by_step(api, trial_id)
    assert before in ckpts and paused["step"] in ckpts
    for step, ckpt in ckpts.items():
        assert ckpt["epoch"] == epoch_at(step, SLOW["batch_size"]), (step, ckpt["epoch"])
    assert ckpts[before]["hparams"]["learning_rate"] == OLD_LR
    assert ckpts[paused["step"]]["hparams"]["learning_rate"] == NEW_LR

    # A rewind to just before the change starts on the old value, at that checkpoint's epoch.
    rewind = api.call("POST", f"/api/trials/{trial_id}/fork", 201, json={"step": before})
    assert rewind["hparams"]["learning_rate"] == OLD_LR
    assert (rewind["step"], rewind["epoch"]) == (before, epoch_at(before, SLOW["batch_size"]))
    api.call("POST", f"/api/trials/{rewind['id']}/stop")
    api.close()
