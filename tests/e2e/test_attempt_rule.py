"""The attempt rule and the checkpoint order, with a real server and real worker processes.

- a babysitter's pauses and resumes spend nothing: ten of them, then two workers lost in a
  row, and the trial still completes (``failures`` counts lost attempts since the last new
  checkpoint; ``max_failures`` is 3);
- a checkpoint is stored only after every point up to its step: a worker that dies right
  after a checkpoint (a fault switch read only by the worker) leaves no hole in the curve.

(A trial that kills every worker still fails at the limit: tests/e2e/test_faults.py.)
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.e2e import (
    FAST,
    SLOW,
    Api,
    StartServer,
    assert_whole_curve,
    final_dev_loss,
    total_steps,
)
from tests.e2e.test_faults import _worker_pid

pytestmark = pytest.mark.slow


def _pause_and_resume(api: Api, trial_id: int) -> None:
    """Pause the running trial, wait until it is paused, resume it, wait until it runs."""
    api.call("POST", f"/api/trials/{trial_id}/pause")
    api.wait_state(trial_id, "paused")
    api.call("POST", f"/api/trials/{trial_id}/resume")
    api.wait_state(trial_id, "running")


def _kill_its_worker(api: Api, trial_id: int, attempt: int) -> dict[str, object]:
    """SIGKILL the worker running ``attempt``; the trial once the reaper queued it again."""
    running = api.wait_trial(
        trial_id, lambda t: t["state"] == "running" and t["attempt"] == attempt, "running"
    )
    os.kill(_worker_pid(str(running["worker"])), signal.SIGKILL)
    return api.wait_trial(
        trial_id,
        lambda t: t["attempt"] > attempt or t["state"] != "running",
        "the lost attempt to be reaped",
    )


def test_pauses_and_resumes_spend_nothing_and_two_lost_workers_do_not_fail_a_trial(
    start_server: StartServer,
) -> None:
    server = start_server(workers=1, lease_seconds=2, reaper_seconds=0.3)
    api = Api(server.url)
    assert api.call("GET", "/api/health")["max_failures"] == 3
    epochs = 8  # checkpoints every 5 epochs: none between the two kills below
    study = api.create_study(epochs=epochs)
    trial_id = int(api.create_trial(study["id"], {**SLOW, "epochs": epochs})["id"])
    api.wait_state(trial_id, "running")
    for _ in range(10):
        _pause_and_resume(api, trial_id)
    resumed = api.trial(trial_id)
    assert (resumed["attempt"], resumed["failures"]) == (11, 0), resumed

    first = _kill_its_worker(api, trial_id, 11)
    assert first["failures"] == 1 and first["state"] in ("queued", "running"), first
    second = _kill_its_worker(api, trial_id, 12)
    assert second["failures"] == 2 and second["state"] in ("queued", "running"), second

    done = api.wait_state(trial_id, "completed", "failed", timeout=120)
    assert done["state"] == "completed", done
    # The last attempt checkpointed (every 5 epochs, and at the end): progress again.
    assert (done["attempt"], done["failures"]) == (13, 0), done
    assert_whole_curve(api.metrics(trial_id, "train_loss")["train_loss"], done["step"])
    api.close()


def test_a_worker_lost_right_after_a_checkpoint_leaves_no_hole_in_the_curve(
    start_server: StartServer,
) -> None:
    # Points go out every 2 s at most, and 5 epochs of FAST take far less: with the points
    # still buffered when the epoch-5 checkpoint is stored, the worker of trial 1 dies.
    server = start_server(
        workers=1, lease_seconds=4, reaper_seconds=0.3, report_seconds=2,
        fault_exit_after_checkpoint=1,
    )  # fmt: skip
    api = Api(server.url)
    epochs = 8
    study = api.create_study(epochs=epochs)
    hparams = {**FAST, "epochs": epochs}
    victim = int(api.create_trial(study["id"], hparams)["id"])
    twin = int(api.create_trial(study["id"], hparams)["id"])  # the same, never disturbed
    assert victim == 1

    done = api.wait_state(victim, "completed", "failed", timeout=120)
    assert done["state"] == "completed" and done["attempt"] == 2, done
    assert "checkpointed at" in server.log_tail(400)  # the fault did strike
    requeues = [e for e in api.events(victim) if e["kind"] == "requeue"]
    assert [e["payload"]["failures"] for e in requeues] == [1], requeues
    last = total_steps(FAST, epochs)
    assert done["step"] == last
    assert_whole_curve(api.metrics(victim, "train_loss")["train_loss"], last)
    # Every epoch's end has its dev accuracy, the epochs before the checkpoint included.
    dev_steps = [int(p[0]) for p in api.metrics(victim, "dev_accuracy")["dev_accuracy"]]
    per_epoch = total_steps(FAST, 1)
    assert set(range(per_epoch, last + 1, per_epoch)) <= set(dev_steps), dev_steps

    assert api.wait_state(twin, "completed", "failed", timeout=120)["state"] == "completed"
    assert final_dev_loss(api, victim) == final_dev_loss(api, twin)
    api.close()
