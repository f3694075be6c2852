"""The client end to end: a real server, the user's loop in real processes (``loop_program``).

The loop is NumPy softmax regression, nothing of ``trainer/``: what these tests prove is that
every control of the dashboard reaches a loop the product did not write.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import ROOT, THREAD_ENV, Api, ServerProcess, wait_for

pytestmark = pytest.mark.slow
SPACE = {"learning_rate": 0.1, "momentum": 0.5}


class Loop:
    """One user process running ``tests/pandacaviar/loop_program.py``, and its log."""

    def __init__(self, server: ServerProcess, study: int, log: Path, *args: str) -> None:
        self.log_path = log
        cmd = [sys.executable, "-m", "tests.pandacaviar.loop_program", "--server", server.url]
        cmd += ["--study", str(study), "--log", str(log), *args]
        env = {**os.environ, **THREAD_ENV}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE)

    def entries(self, event: str | None = None) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        lines = [json.loads(x) for x in self.log_path.read_text().splitlines() if x]
        return [e for e in lines if event is None or e["event"] == event]

    def wait(self, timeout: float = 120.0) -> int:
        code = self.proc.wait(timeout)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read().decode()
        return code


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """``start(workers=2, **settings)`` -> (server, api); everything stops at teardown."""
    made: list[tuple[ServerProcess, Api]] = []

    def go(workers: int = 2, **settings: Any) -> tuple[ServerProcess, Api]:
        env = {f"PANDACAVIAR_{k.upper()}": str(v) for k, v in settings.items()}
        server = ServerProcess(tmp_path / f"server{len(made)}", workers=workers, env=env)
        made.append((server.start(), Api(server.url)))
        return made[-1]

    yield go
    for server, api in made:
        api.close()
        server.stop()
        print(f"--- server log ---\n{server.log_tail(60)}")


def loop(server: ServerProcess, study: int, tmp: Path, name: str, *args: str) -> Loop:
    return Loop(server, study, tmp / f"{name}.jsonl", *args)


def panda(api: Api, epochs: int, **hparams: Any) -> tuple[int, int]:
    """An external panda study with one queued trial: (study id, trial id)."""
    study = api.create_study(task="external", epochs=epochs, space=SPACE)
    trial = api.create_trial(study["id"], hparams)
    return study["id"], trial["id"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checkpoint_bytes(api: Api, trial_id: int, step: int) -> bytes:
    response = api.http.get(f"/api/trials/{trial_id}/checkpoints/{step}")
    assert response.status_code == 200, response.text
    return response.content


@pytest.mark.parametrize("scheduler", ["asha", "median"])
def test_a_caviar_study_of_user_trials_runs_in_user_processes_and_early_stopping_prunes_some(
    start: Any, tmp_path: Path, scheduler: str
) -> None:
    server, api = start(workers=2)  # the server's own workers are up and must leave them be
    space = {"learning_rate": {"dist": "log_uniform", "low": 1e-3, "high": 1.0}, "momentum": 0.9}
    study = api.create_study(
        mode="caviar", task="external", epochs=9, space=space, budget={"trials": 12},
        parallelism=2, scheduler={"name": scheduler}, seed=4,
    )  # fmt: skip
    loops = [loop(server, study["id"], tmp_path, f"user{i}") for i in range(2)]
    assert [u.wait() for u in loops] == [0, 0], [u.stderr for u in loops]

    final = api.call("GET", f"/api/studies/{study['id']}")
    assert final["state"] == "completed"
    assert final["counts"].get("pruned", 0) >= 1 and final["counts"].get("completed", 0) >= 1
    assert sum(final["counts"].values()) == 12
    claimed = [e["trial"] for u in loops for e in u.entries("claimed")]
    trials = api.call("GET", f"/api/studies/{study['id']}/trials?limit=50")["data"]
    assert sorted(claimed) == sorted(t["id"] for t in trials)  # every one ran in a user loop
    for t in trials:
        curve = api.metrics(t["id"], "dev_accuracy")["dev_accuracy"]
        assert len(curve) == round(t["epoch"])  # the objective at every epoch end
        if t["state"] == "pruned":
            assert t["stopped_because"]["scheduler"] == scheduler


def test_a_paused_user_trial_resumes_in_a_new_process_from_its_exact_bytes_with_its_adjustment(
    start: Any, tmp_path: Path
) -> None:
    server, api = start(workers=0)
    study, trial = panda(api, epochs=12, learning_rate=0.1, momentum=0.5)
    first = loop(server, study, tmp_path, "first", "--n-trials", "1", "--step-seconds", "0.03")
    api.wait_trial(trial, lambda t: t["state"] == "running" and t["step"] >= 15, "running")
    api.call("PATCH", f"/api/trials/{trial}/hparams", json={"learning_rate": 0.05})
    event = wait_for(
        lambda: next(
            (e for e in api.events(trial) if e["kind"] == "adjust" and e["applied_step"]), None
        ),
        "the adjustment applied",
    )
    api.call("POST", f"/api/trials/{trial}/pause")
    assert first.wait() == 0, first.stderr
    paused = api.wait_state(trial, "paused")

    updates = first.entries("update")
    assert updates == [
        {"event": "update", "step": event["applied_step"] - 1, "changes": {"learning_rate": 0.05}}
    ]
    saved = first.entries("saved")[-1]["sha256"]
    (ckpt,) = [c for c in api.checkpoints(trial) if c["step"] == paused["step"]]
    assert sha(checkpoint_bytes(api, trial, ckpt["step"])) == saved

    api.call("POST", f"/api/trials/{trial}/resume")
    second = loop(server, study, tmp_path, "second", "--n-trials", "1", "--style", "with")
    assert second.wait() == 0, second.stderr
    (claim,) = second.entries("claimed")
    assert claim["restored"] == saved and claim["hparams"]["learning_rate"] == 0.05
    assert claim["step"] == ckpt["step"]
    done = api.wait_state(trial, "completed")
    assert done["attempt"] == 2 and done["epoch"] == 12
    steps = [p[0] for p in api.metrics(trial, "train_loss")["train_loss"]]
    assert steps == list(range(1, 121))  # no step lost or repeated across the two processes


def test_a_fork_from_a_user_checkpoint_starts_from_those_bytes_with_the_new_values(
    start: Any, tmp_path: Path
) -> None:
    server, api = start(workers=0)
    study, parent = panda(api, epochs=4, learning_rate=0.1, momentum=0.5)
    run = loop(server, study, tmp_path, "parent", "--n-trials", "1", "--checkpoint-every-epoch")
    assert run.wait() == 0, run.stderr
    assert [c["step"] for c in api.checkpoints(parent)] == [10, 20, 30, 40]
    at_20 = checkpoint_bytes(api, parent, 20)

    child = api.call(
        "POST", f"/api/trials/{parent}/fork", 201,
        json={"step": 20, "hparams": {"learning_rate": 0.2}},
    )  # fmt: skip
    fork = loop(server, study, tmp_path, "fork", "--n-trials", "1", "--style", "ask")
    assert fork.wait() == 0, fork.stderr
    (claim,) = fork.entries("claimed")
    assert claim["trial"] == child["id"] and claim["restored"] == sha(at_20)
    assert claim["epochs"] == 2 and claim["hparams"]["learning_rate"] == 0.2
    done = api.wait_state(child["id"], "completed")
    assert done["step"] == 40 and done["last_value"] is not None


def test_a_killed_user_process_loses_its_lease_and_the_next_resumes_from_the_last_checkpoint(
    start: Any, tmp_path: Path
) -> None:
    server, api = start(workers=0, lease_seconds=2, reaper_seconds=0.5)
    study, trial = panda(api, epochs=40, learning_rate=0.1, momentum=0.5)
    args = ("--n-trials", "1", "--step-seconds", "0.02", "--checkpoint-every-epoch")
    victim = loop(server, study, tmp_path, "victim", *args)
    wait_for(lambda: len(api.checkpoints(trial)) >= 2, "two checkpoints")
    victim.proc.send_signal(signal.SIGKILL)
    victim.wait()
    last = api.checkpoints(trial)[-1]
    api.wait_state(trial, "queued")  # the lease ran out: requeued

    heir = loop(server, study, tmp_path, "heir", "--n-trials", "1", "--checkpoint-every-epoch")
    assert heir.wait() == 0, heir.stderr
    (claim,) = heir.entries("claimed")
    assert claim["step"] == last["step"]
    assert claim["restored"] == sha(checkpoint_bytes(api, trial, last["step"]))
    done = api.wait_state(trial, "completed")
    assert done["attempt"] == 2 and done["failures"] == 0


def test_a_stale_attempt_ends_its_users_loop_cleanly_while_the_new_owner_finishes(
    start: Any, tmp_path: Path
) -> None:
    server, api = start(workers=0, lease_seconds=2, reaper_seconds=0.5)
    study, trial = panda(api, epochs=30, learning_rate=0.1, momentum=0.5)
    frozen = loop(server, study, tmp_path, "frozen", "--n-trials", "1", "--step-seconds", "0.03")
    api.wait_trial(trial, lambda t: t["step"] >= 10, "reports")
    frozen.proc.send_signal(signal.SIGSTOP)  # past its lease: the trial goes to the next one
    api.wait_state(trial, "queued")
    owner = loop(server, study, tmp_path, "owner", "--n-trials", "1", "--step-seconds", "0.03")
    api.wait_trial(trial, lambda t: t["attempt"] == 2 and t["state"] == "running", "re-claim")
    frozen.proc.send_signal(signal.SIGCONT)

    assert frozen.wait() == 0, frozen.stderr  # its next report got 409: the loop just ends
    assert frozen.entries("end")[-1]["how"] == "stop"
    assert owner.wait() == 0, owner.stderr
    done = api.wait_state(trial, "completed")
    assert done["attempt"] == 2 and done["epoch"] == 30


def test_sigterm_hands_a_user_trial_back_checkpointed_for_the_next_process(
    start: Any, tmp_path: Path
) -> None:
    server, api = start(workers=0)
    study, trial = panda(api, epochs=30, learning_rate=0.1, momentum=0.5)
    leaving = loop(server, study, tmp_path, "leaving", "--n-trials", "1", "--step-seconds", "0.03")
    api.wait_trial(trial, lambda t: t["step"] >= 10, "reports")
    leaving.proc.send_signal(signal.SIGTERM)
    assert leaving.wait() == 0, leaving.stderr
    back = api.wait_state(trial, "queued")
    saved = leaving.entries("saved")[-1]["sha256"]
    assert sha(checkpoint_bytes(api, trial, back["step"])) == saved
    assert [e["kind"] for e in api.events(trial)][-1] == "requeue"

    heir = loop(server, study, tmp_path, "heir", "--n-trials", "1")
    assert heir.wait() == 0, heir.stderr
    assert heir.entries("claimed")[0]["restored"] == saved
    assert api.wait_state(trial, "completed")["failures"] == 0


def test_the_servers_own_workers_never_claim_a_user_trial(start: Any) -> None:
    server, api = start(workers=2)
    study, trial = panda(api, epochs=3, learning_rate=0.1)
    digits = api.create_study(name="built-in")
    built_in = api.create_trial(digits["id"], {"epochs": 1, "hidden_units": 16})
    api.wait_state(built_in["id"], "completed")  # the server's workers were free all along
    assert api.trial(trial)["state"] == "queued"

    refused = api.http.post(
        "/api/workers/claim", json={"worker": "mine", "study_id": digits["id"]}
    )
    assert refused.status_code == 422 and refused.json()["field"] == "study_id"
    assert "server's workers" in refused.json()["detail"]
