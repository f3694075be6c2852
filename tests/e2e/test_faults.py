"""Faults with real processes: a worker SIGKILLed mid-trial; a server refusing to start.

The lease is short (3 s) and the reaper quick (0.5 s), so the dead worker's trial is requeued
soon; the dispatcher replaces the dead process; another worker resumes the trial from its last
checkpoint and it completes exactly as if nothing had happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e import (
    ROOT,
    SLOW,
    Api,
    StartServer,
    assert_whole_curve,
    final_dev_loss,
    free_port,
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

    # Past the first periodic checkpoint (epoch 5), well before the end.
    past_checkpoint = total_steps(SLOW, 5) + 50
    running = api.wait_trial(
        victim_id, lambda t: t["state"] == "running" and t["step"] >= past_checkpoint, "progress"
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


def test_serve_refuses_a_wide_bind_without_a_token() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PANDACAVIAR_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--host", "0.0.0.0", "--port", str(port)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "PANDACAVIAR_TOKEN" in done.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2.0)
