"""The worker and its HTTP reporter against a real server process (no dispatcher workers).

Outages are real (the server process is stopped and started again on the same port and
database); stale attempts are real (a worker process is frozen with SIGSTOP until its lease
expires and another worker takes the trial over).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.worker.client import FinishStatus, HttpReporter, StaleAttempt, WorkerClient
from app.worker.loop import Assignment, hand_back, run_trial, run_worker
from tests.e2e import (
    FAST,
    ROOT,
    SLOW,
    Api,
    ServerProcess,
    WorkerProcesses,
    assert_whole_curve,
    total_steps,
    wait_for,
)
from trainer.reporting import Action

pytestmark = pytest.mark.slow

POINTS = {"train_loss": 0.5, "train_accuracy": 0.75}


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Servers a test started; stopped (and their log shown on failure) at teardown."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()
        print(f"--- server log ---\n{server.log_tail(60)}")


def _server(servers: list[ServerProcess], data: Path, **settings: Any) -> ServerProcess:
    env = {f"PANDACAVIAR_{k.upper()}": str(v) for k, v in settings.items()}
    server = ServerProcess(data, workers=0, env=env)
    servers.append(server)
    return server.start()


def _queue_trial(api: Api, hparams: dict[str, Any], epochs: int = 2) -> int:
    study = api.create_study(epochs=epochs)
    return int(api.create_trial(study["id"], {**hparams, "epochs": epochs})["id"])


def _claim(client: WorkerClient) -> Assignment:
    claim = client.claim("test-worker")
    assert claim is not None, "nothing to claim"
    return Assignment.from_json(claim)


def test_reporter_resends_buffered_points_after_an_outage(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    server = _server(servers, tmp_path / "srv", lease_seconds=300)
    api = Api(server.url)
    trial_id = _queue_trial(api, FAST)
    client = WorkerClient(server.url)
    assignment = _claim(client)
    assert assignment.trial_id == trial_id and assignment.attempt == 1
    reporter = HttpReporter(client, trial_id, assignment.attempt)
    assert reporter.report(1, 0.05, POINTS).action is Action.CONTINUE

    server.stop()
    answers: list[Any] = []
    sender = threading.Thread(target=lambda: answers.append(reporter.report(2, 0.1, POINTS)))
    sender.start()
    wait_for(lambda: client.retries >= 2, "the reporter to retry against the stopped server")
    assert len(reporter.points) == len(POINTS)  # still buffered: not acknowledged yet

    server.start()  # the same port, database and data directory
    sender.join(timeout=60)
    assert not sender.is_alive()
    assert answers[0].action is Action.CONTINUE
    assert reporter.points == []
    metrics = Api(server.url).metrics(trial_id)
    for name, value in POINTS.items():
        assert metrics[name] == [[1, value], [2, value]]
    client.close()


def test_a_trial_inside_one_report_interval_costs_two_round_trips(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    server = _server(servers, tmp_path / "srv", report_seconds=60)
    api = Api(server.url)
    trial_id = _queue_trial(api, FAST, epochs=10)
    client = WorkerClient(server.url)
    sent: list[str] = []
    client.http.event_hooks["request"].append(lambda request: sent.append(request.url.path))
    assignment = _claim(client)
    reporter = HttpReporter(
        client, trial_id, assignment.attempt, min_interval=float(assignment.report_seconds or 0)
    )
    for step in range(1, 11):  # one report per epoch, all inside the 60 s interval
        reporter.report(step, float(step), {"dev_accuracy": step / 10})
    reporter.finish(FinishStatus.COMPLETED, 10, 10.0, {"dev_accuracy": 1.0})
    reporter.close()
    client.close()
    base = f"/api/workers/trials/{trial_id}"
    assert sent == ["/api/workers/claim", f"{base}/finish"]
    curve = api.metrics(trial_id, "dev_accuracy")["dev_accuracy"]
    assert curve == [[s, s / 10] for s in range(1, 11)]
    assert api.trial(trial_id)["state"] == "completed"


def test_each_finish_claims_the_next_trial_for_the_worker(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    server = _server(servers, tmp_path / "srv", report_seconds=60)
    api = Api(server.url)
    ids = [_queue_trial(api, FAST, epochs=1) for _ in range(3)]
    client = WorkerClient(server.url)
    sent: list[str] = []
    client.http.event_hooks["request"].append(lambda request: sent.append(request.url.path))
    claim = client.claim("w")
    seen = []
    while claim is not None:
        assignment = Assignment.from_json(claim)
        seen.append(assignment.trial_id)
        run = run_trial(client, assignment, claim_for="w")
        assert run.status is FinishStatus.COMPLETED
        claim = run.next_claim
        if claim is not None:
            # Claimed for "w" by the finish: running already, as a claim would have left it.
            taken = api.trial(claim["trial_id"])
            assert (taken["state"], taken["worker"]) == ("running", "w")
    client.close()
    assert seen == ids
    # One claim, then each finish carried the next (checkpoint uploads aside); the points
    # before each final checkpoint went ahead of it, so a resume from it leaves no hole. A
    # panda trial's first step is reported at once (someone watches its chart fill); a trial
    # longer than 0.1 s also holds a directive request (tests/worker/test_long_polls.py).
    calls = [p for p in sent if not p.endswith(("/checkpoints", "/directive"))]
    per_trial = [
        [f"/api/workers/trials/{i}/report"] * 2 + [f"/api/workers/trials/{i}/finish"] for i in ids
    ]
    assert calls == ["/api/workers/claim", *(path for pair in per_trial for path in pair)]
    assert all(api.trial(i)["state"] == "completed" for i in ids)


def test_a_trial_claimed_by_a_stopping_worker_goes_back_untouched(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    server = _server(servers, tmp_path / "srv")
    api = Api(server.url)
    trial_id = _queue_trial(api, FAST)
    client = WorkerClient(server.url)
    claim = client.claim("stopping")
    assert claim is not None
    hand_back(client, claim)
    client.close()
    back = api.trial(trial_id)
    assert (back["state"], back["step"]) == ("queued", 0)
    assert run_worker(server.url, once=True) == 1
    assert api.trial(trial_id)["state"] == "completed"


def test_stale_attempt_raises_and_is_never_written(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    server = _server(servers, tmp_path / "srv", lease_seconds=1, reaper_seconds=0.2)
    api = Api(server.url)
    trial_id = _queue_trial(api, FAST)
    client = WorkerClient(server.url)
    assignment = _claim(client)
    api.wait_trial(trial_id, lambda t: t["state"] == "queued", "the lease to expire")

    reporter = HttpReporter(client, trial_id, assignment.attempt)
    with pytest.raises(StaleAttempt):
        reporter.report(5, 0.25, POINTS)
    assert api.metrics(trial_id) in ({}, {name: [] for name in POINTS})

    # A worker picks the requeued trial up as a second attempt and trains it to the end.
    assert run_worker(server.url, once=True) == 1
    done = api.trial(trial_id)
    assert done["state"] == "completed" and done["attempt"] == 2
    client.close()


def test_frozen_worker_drops_its_trial_on_409_and_claims_the_next(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    server = _server(servers, tmp_path / "srv", lease_seconds=2, reaper_seconds=0.2)
    api = Api(server.url)
    pool = WorkerProcesses(server.url, tmp_path)
    try:
        long_id = _queue_trial(api, SLOW, epochs=6)
        (frozen,) = pool.start(1)
        frozen_name = f"{socket.gethostname()}-{frozen}"
        assert api.wait_state(long_id, "running")["worker"] == frozen_name
        api.wait_trial(long_id, lambda t: t["state"] == "running" and t["step"] >= 50, "start")
        os.kill(frozen, signal.SIGSTOP)
        try:
            next_id = _queue_trial(api, FAST)
            api.wait_trial(long_id, lambda t: t["state"] == "queued", "the lease to expire")
            pool.start(1)
            api.wait_trial(long_id, lambda t: t["attempt"] == 2 and t["worker"] != frozen_name,
                           "the other worker to take it over")  # fmt: skip
        finally:
            os.kill(frozen, signal.SIGCONT)

        nxt = api.wait_state(next_id, "completed", "failed")
        assert nxt["state"] == "completed", nxt
        done = api.wait_state(long_id, "completed", "failed")
        assert done["state"] == "completed" and done["attempt"] == 2, done
        assert done["error"] is None
        assert_whole_curve(api.metrics(long_id, "train_loss")["train_loss"], done["step"])
        assert done["step"] == total_steps(SLOW, 6)
        # The thawed worker dropped its stale attempt, then took the next trial.
        log = pool.log(0)
        stale_at = log.index(f"trial {long_id} attempt 1 is stale")
        assert log.index(f"claimed trial {next_id} attempt 1") > stale_at
    finally:
        pool.stop()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow on the way to NaN
def test_divergence_ends_the_trial_failed_with_its_step(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    server = _server(servers, tmp_path / "srv")
    api = Api(server.url)
    hparams = {"optimizer": "sgd", "learning_rate": 10.0, "batch_norm": False, "seed": 0}
    trial_id = _queue_trial(api, hparams)
    assert run_worker(server.url, once=True) == 1
    failed = api.trial(trial_id)
    assert failed["state"] == "failed"
    assert failed["error"].startswith("diverged at step ")


def test_worker_stops_when_told_while_the_server_is_away(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    stop = threading.Event()
    runner = threading.Thread(target=lambda: run_worker(url, stop=stop))
    runner.start()
    stop.set()
    runner.join(timeout=30)
    assert not runner.is_alive()


def test_token_guards_the_server_and_reaches_dispatcher_workers(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    token = "e2e-s3cret"
    server = ServerProcess(tmp_path / "srv", workers=1, env={"PANDACAVIAR_TOKEN": token})
    servers.append(server)
    server.start()
    anonymous = WorkerProcesses(server.url, tmp_path / "anon")
    (tmp_path / "anon").mkdir()
    anonymous.start(1, "--once")
    assert anonymous.procs[0].wait(timeout=60) == 1
    assert "401" in anonymous.log(0) and "token" in anonymous.log(0)

    api = Api(server.url, token=token)
    trial_id = _queue_trial(api, FAST)
    done = api.wait_state(trial_id, "completed", "failed")  # trained by the dispatcher's worker
    assert done["state"] == "completed", done


def test_worker_path_imports_no_web_or_database_code() -> None:
    probe = (
        "import sys, app.cli, app.worker.loop, app.launchers.local; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'fastapi', 'starlette', 'sqlalchemy', 'pydantic', 'uvicorn'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_worker_path_imports_nothing_of_the_server() -> None:
    # app.hashing and app.defaults are shared with the server: standard library only.
    probe = (
        "import json, sys, app.cli, app.worker.loop; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('app.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = json.loads(out.stdout)
    allowed = ("app.cli", "app.defaults", "app.hashing", "app.launchers", "app.worker")
    assert [m for m in loaded if not m.startswith(allowed)] == []
