"""Remote workers: ``pandacaviar worker --server URL --token T`` from another "machine".

The worker runs in a working directory and a cache directory of its own, far from the
server's data directory, and reaches uploaded data sets only through the server: it
downloads one once, keeps it under its sha256, and fetches it again when the cached copy
went bad. ``--processes N`` runs N workers from one command and stops them gracefully.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from sklearn.datasets import load_iris

from tests.e2e import ROOT, THREAD_ENV, Api, ServerProcess, wait_for

pytestmark = pytest.mark.slow
TOKEN = "remote-worker-test-token"
SMALL = {"hidden_units": 16, "num_layers": 1, "batch_size": 16, "epochs": 3, "seed": 1}
# Long enough to be caught mid-training: ~100 steps an epoch on digits.
LONG = {"hidden_units": 64, "num_layers": 2, "batch_size": 8, "epochs": 30, "seed": 2}


def _iris_csv() -> bytes:
    data = load_iris()
    rows = [
        ",".join(f"{v:.2f}" for v in x) + f",{y}"
        for x, y in zip(data.data, data.target, strict=True)
    ]
    return ("a,b,c,d,label\n" + "\n".join(rows) + "\n").encode()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "server", workers=0, env={
        "PANDACAVIAR_TOKEN": TOKEN, "PANDACAVIAR_LEASE_SECONDS": "5",
        "PANDACAVIAR_REAPER_SECONDS": "0.5",
    }).start()  # fmt: skip
    yield srv
    srv.stop()
    print(f"--- server log ---\n{srv.log_tail(60)}")


@pytest.fixture
def api(server: ServerProcess) -> Iterator[Api]:
    client = Api(server.url, TOKEN)
    yield client
    client.close()


def _start_worker(server: ServerProcess, home: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A worker as on another machine: its own working and cache dirs, token by env."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **THREAD_ENV,
        "PANDACAVIAR_TOKEN": TOKEN,
        "PYTHONPATH": str(ROOT),
        "HOME": str(home),
    }
    env.pop("PANDACAVIAR_CACHE_DIR", None)
    with (home / "worker.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--server", server.url, *extra],
            cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_remote_worker_trains_an_upload_from_its_cache_and_refetches_a_bad_copy(
    server: ServerProcess, api: Api, tmp_path: Path
) -> None:
    csv = _iris_csv()
    upload = api.call("POST", "/api/uploads", 201, files={"file": ("iris.csv", csv)})
    sha = hashlib.sha256(csv).hexdigest()
    assert upload["sha256"] == sha
    # The download route is an /api route: no token, no data set.
    anonymous = httpx2.get(f"{server.url}/api/uploads/{upload['path']}/content")
    assert anonymous.status_code == 401
    study = api.create_study(task="file", task_options={"path": upload["path"]})
    home, cache = tmp_path / "elsewhere", tmp_path / "elsewhere-cache"
    worker = _start_worker(server, home, "--cache-dir", str(cache))
    try:
        first = api.create_trial(study["id"], SMALL)
        done = api.wait_state(first["id"], "completed", "failed")
        assert done["state"] == "completed", done
        cached = cache / "datasets" / f"{sha}.csv"
        assert cached.read_bytes() == csv
        log = (home / "worker.log").read_text()
        assert log.count("cached as") == 1

        cached.write_bytes(b"a,b,label\n1,2,x\n")  # the cached copy goes bad
        second = api.create_trial(study["id"], {**SMALL, "seed": 2})
        done = api.wait_state(second["id"], "completed", "failed")
        assert done["state"] == "completed", done
        log = (home / "worker.log").read_text()
        assert "does not match its sha256" in log and log.count("cached as") == 2
        assert cached.read_bytes() == csv
        # Same metrics as a trial trained on the server's own file would show: real training.
        assert api.metrics(second["id"], "dev_accuracy")["dev_accuracy"]
    finally:
        _end(worker)
    assert worker.returncode == 0


def test_worker_processes_hand_their_trials_back_on_sigterm(
    server: ServerProcess, api: Api, tmp_path: Path
) -> None:
    study = api.create_study(task="digits")
    trials = [api.create_trial(study["id"], {**LONG, "seed": s}) for s in (1, 2)]
    pool = _start_worker(server, tmp_path / "pool", "--processes", "2")
    try:
        for trial in trials:
            api.wait_trial(
                trial["id"], lambda t: t["state"] == "running" and t["step"] > 0, "training"
            )
        workers = {api.trial(t["id"])["worker"] for t in trials}
        assert len(workers) == 2  # two processes from one command
    finally:
        _end(pool)
    assert pool.returncode == 0
    for trial in trials:
        after = api.trial(trial["id"])
        assert after["state"] == "queued", after
        kinds = [e["kind"] for e in api.events(trial["id"])]
        assert "requeue" in kinds
    # Every child ended with the command: nothing still claims trials.
    pids = [int(w.rsplit("-", 1)[1]) for w in workers]
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), "children to exit")
