"""Worker faults with real processes, each against a real server with a short lease.

- a worker SIGKILLed mid-trial: the trial resumes from its last checkpoint elsewhere;
- a worker SIGKILLed between its claim and its first report: requeued, trained from scratch;
- every worker dead and none started: the server's own reaper requeues their trials;
- a trial that kills every worker taking it: failed after ``max_failures``, the rest completes;
- a trial that diverges: failed with "diverged at step N" on its first attempt, not retried.

(A worker frozen with SIGSTOP past its lease is in tests/worker/test_loop.py.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import (
    FAST,
    ROOT,
    SLOW,
    Api,
    StartServer,
    WorkerProcesses,
    assert_whole_curve,
    final_dev_loss,
    total_steps,
)

pytestmark = pytest.mark.slow


def _worker_pid(worker_name: str) -> int:
    """The pid in a ``host-pid`` worker name, checked to be one of our worker processes."""
    pid = int(worker_name.rsplit("-", 1)[1])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    assert b"app.cli worker" in cmdline, cmdline
    return pid


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_sigkilled_worker_trial_resumes_from_checkpoint(start_server: StartServer) -> None:
    server = start_server(workers=2, lease_seconds=3, reaper_seconds=0.5)
    api = Api(server.url)
    epochs = 12
    study = api.create_study(epochs=epochs)
    hparams = {**SLOW, "epochs": epochs, "seed": 21}
    victim_id = int(api.create_trial(study["id"], hparams)["id"])
    twin_id = int(api.create_trial(study["id"], hparams)["id"])  # the same, never disturbed

    # Past the first periodic checkpoint (epoch 5), well before the end. The checkpoint
    # uploads while training goes on, so a report of later steps may reach the server first:
    # wait for both.
    past_checkpoint = total_steps(SLOW, 5) + 50
    running = api.wait_trial(
        victim_id,
        lambda t: (
            t["state"] == "running"
            and t["step"] >= past_checkpoint
            and bool(api.checkpoints(victim_id))
        ),
        "progress past a stored checkpoint",
    )
    checkpoint_steps = [c["step"] for c in api.checkpoints(victim_id)]
    assert checkpoint_steps and running["step"] < total_steps(SLOW, epochs)
    os.kill(_worker_pid(running["worker"]), signal.SIGKILL)

    requeued = api.wait_trial(victim_id, lambda t: t["attempt"] >= 2, "a second attempt")
    assert requeued["worker"] != running["worker"], (requeued, api.events(victim_id))
    done = api.wait_state(victim_id, "completed", "failed", timeout=120)
    assert done["state"] == "completed", done
    assert done["attempt"] == 2
    assert done["step"] == total_steps(SLOW, epochs)
    assert any(e["kind"] == "requeue" for e in api.events(victim_id))
    assert_whole_curve(api.metrics(victim_id, "train_loss")["train_loss"], done["step"])

    twin = api.wait_state(twin_id, "completed", "failed", timeout=120)
    assert twin["state"] == "completed", twin
    # Resumed from a checkpoint after a crash, training ended exactly where a clean run did.
    assert final_dev_loss(api, victim_id) == final_dev_loss(api, twin_id)
    api.close()


# A real process that claims like a worker, says what it got, and dies before any report.
CLAIM_THEN_DIE = """
import json, os, signal, sys
from app.worker.client import WorkerClient
claim = WorkerClient(sys.argv[1]).claim("doomed-worker")
print(json.dumps(claim), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _requeues(api: Api, trial_id: int) -> list[dict[str, object]]:
    return [e["payload"] for e in api.events(trial_id) if e["kind"] == "requeue"]


def test_worker_sigkilled_between_claim_and_first_report_is_requeued(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(workers=0, lease_seconds=2, reaper_seconds=0.3)
    api = Api(server.url)
    study = api.create_study(epochs=2)
    trial_id = int(api.create_trial(study["id"], {**FAST, "epochs": 2})["id"])

    died = subprocess.run(
        [sys.executable, "-c", CLAIM_THEN_DIE, server.url],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert died.returncode == -signal.SIGKILL, died.stderr
    claim = json.loads(died.stdout)
    assert (claim["trial_id"], claim["attempt"]) == (trial_id, 1)

    # Nobody reports for it: the lease runs out and the reaper puts it back in the queue.
    queued = api.wait_state(trial_id, "queued")
    assert queued["attempt"] == 1 and queued["worker"] is None
    assert _requeues(api, trial_id) == [{"attempt": 1, "worker": "doomed-worker", "failures": 1}]
    assert api.metrics(trial_id, "train_loss").get("train_loss", []) == []

    pool = WorkerProcesses(server.url, tmp_path)
    try:
        pool.start(1)
        done = api.wait_state(trial_id, "completed", "failed")
        assert done["state"] == "completed" and done["attempt"] == 2, done
        assert_whole_curve(api.metrics(trial_id, "train_loss")["train_loss"], done["step"])
    finally:
        pool.stop()
        api.close()


def test_reaper_requeues_when_every_worker_is_dead(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(workers=0, lease_seconds=2, reaper_seconds=0.3)
    api = Api(server.url)
    epochs = 60  # a few seconds each: certainly still running when the workers die
    study = api.create_study(epochs=epochs)
    ids = [int(api.create_trial(study["id"], {**SLOW, "epochs": epochs, "seed": s})["id"])
           for s in (1, 2)]  # fmt: skip
    pool = WorkerProcesses(server.url, tmp_path)
    try:
        pool.start(2)
        running = [
            api.wait_trial(i, lambda t: t["state"] == "running" and t["step"] >= 40, "progress")
            for i in ids
        ]
        for proc in pool.procs:
            proc.kill()
            proc.wait()
        # No worker is left and none starts: only the server's reaper acts.
        for trial_id, before in zip(ids, running, strict=True):
            queued = api.wait_state(trial_id, "queued")
            assert queued["attempt"] == 1 and queued["worker"] is None, queued
            assert _requeues(api, trial_id) == [
                {"attempt": 1, "worker": before["worker"], "failures": 1}
            ]
            # What the dead attempt reported stays: only unreported steps are redone.
            assert api.metrics(trial_id, "train_loss")["train_loss"]
    finally:
        pool.stop()
        api.close()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_trial_that_kills_its_workers_fails_and_the_queue_completes(
    start_server: StartServer,
) -> None:
    # Trial 1 of this fresh database kills whichever worker claims it (see app/worker/loop.py).
    server = start_server(
        workers=2, lease_seconds=2, reaper_seconds=0.3, max_failures=3,
        fault_exit_on_trial=1,
    )  # fmt: skip
    api = Api(server.url)
    study = api.create_study(epochs=3)
    killer = int(api.create_trial(study["id"], {**FAST, "epochs": 3})["id"])
    assert killer == 1
    diverging = {"optimizer": "sgd", "learning_rate": 10.0, "batch_norm": False, "seed": 0}
    diverges = int(api.create_trial(study["id"], diverging)["id"])
    healthy = [int(api.create_trial(study["id"], {**FAST, "epochs": 3, "seed": s})["id"])
               for s in (1, 2, 3)]  # fmt: skip

    failed = api.wait_state(killer, "completed", "failed", "stopped", timeout=120)
    assert failed["state"] == "failed" and failed["attempt"] == 3, failed
    assert failed["failures"] == 3 and failed["error"] == (
        "lost its worker 3 times in a row without a new checkpoint (attempt 3; the limit is 3)"
    )
    kinds = [e["kind"] for e in api.events(killer)]
    assert kinds.count("requeue") == 2 and kinds.count("fail") == 1, kinds

    # A divergence is final: failed on its first attempt with the step, never requeued.
    diverged = api.wait_state(diverges, "completed", "failed", timeout=120)
    assert diverged["state"] == "failed" and diverged["attempt"] == 1, diverged
    assert re.fullmatch(r"diverged at step \d+", diverged["error"]), diverged["error"]
    assert "requeue" not in [e["kind"] for e in api.events(diverges)]

    for trial_id in healthy:
        done = api.wait_state(trial_id, "completed", "failed", timeout=120)
        assert done["state"] == "completed" and done["attempt"] == 1, done
    assert "exited with 70" in server.log_tail(400)  # the dispatcher replaced the dead ones
    api.close()
