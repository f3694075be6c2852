"""Directives between reports and claims without a poll interval, against a real server.

The server here batches reports every 60 s (``report_seconds``): anything that reaches the
trainer sooner came by the worker's directive request, not by a scheduled report.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.e2e import SLOW, Api, ServerProcess, WorkerProcesses, wait_for

pytestmark = pytest.mark.slow
QUIET = {"PANDACAVIAR_REPORT_SECONDS": "60"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path / "server", workers=0, env=QUIET).start()
    yield s
    s.stop()
    print(f"--- server log ---\n{s.log_tail(60)}")


@pytest.fixture
def api(server: ServerProcess) -> Iterator[Api]:
    a = Api(server.url)
    yield a
    a.close()


def slow_trial(api: Api, epochs: int = 30) -> int:
    study = api.create_study(epochs=epochs)
    return int(api.create_trial(study["id"], {**SLOW, "epochs": epochs})["id"])


def test_a_pause_and_an_edit_reach_the_trainer_long_before_its_next_batched_report(
    server: ServerProcess, api: Api, tmp_path: Path
) -> None:
    pool = WorkerProcesses(server.url, tmp_path)
    pool.start(1)
    try:
        trial = slow_trial(api)
        api.wait_trial(trial, lambda t: t["state"] == "running" and t["step"] >= 1, "running")
        api.call("PATCH", f"/api/trials/{trial}/hparams", json={"learning_rate": 0.0005})
        # Applied and reported well inside the 60 s the batched reports would take.
        event = wait_for(
            lambda: next(
                (e for e in api.events(trial) if e["kind"] == "adjust" and e["applied_step"]),
                None,
            ),
            "the adjustment applied",
            timeout=20,
        )
        api.call("POST", f"/api/trials/{trial}/pause")
        paused = api.wait_state(trial, "paused", timeout=20)
        assert paused["step"] > event["applied_step"]
        lrs = api.metrics(trial, "learning_rate")["learning_rate"]
        assert [v for s, v in lrs if s >= event["applied_step"]][0] == 0.0005
    finally:
        pool.stop()


def test_a_waiting_claim_takes_a_trial_the_moment_it_is_queued(
    server: ServerProcess, api: Api
) -> None:
    answers: list[httpx2.Response] = []
    body: dict[str, Any] = {"worker": "idle", "wait": 5}

    def claim() -> None:
        answers.append(httpx2.post(f"{server.url}/api/workers/claim", json=body, timeout=30))

    waiting = threading.Thread(target=claim)
    waiting.start()
    empty = httpx2.post(f"{server.url}/api/workers/claim", json={"worker": "peek"}, timeout=5)
    assert empty.status_code == 204  # nothing queued yet: the waiting claim is still waiting
    trial = slow_trial(api, epochs=1)
    waiting.join(timeout=15)  # taken before its 5 s wait ran out: not a 204
    assert not waiting.is_alive()
    (answer,) = answers
    assert answer.status_code == 200 and answer.json()["trial_id"] == trial
    assert answer.json()["report_first"] is True  # a panda trial: its first step goes at once


def test_a_directive_request_answers_continue_after_its_wait_and_409_once_stale(
    server: ServerProcess, api: Api
) -> None:
    trial = slow_trial(api, epochs=1)
    claim = httpx2.post(f"{server.url}/api/workers/claim", json={"worker": "w"}).json()
    path = f"{server.url}/api/workers/trials/{trial}/directive"
    quiet = httpx2.get(path, params={"attempt": claim["attempt"], "wait": 0.3}, timeout=5)
    assert quiet.status_code == 200 and quiet.json()["action"] == "continue"

    answers: list[httpx2.Response] = []
    params = {"attempt": claim["attempt"], "wait": 5}
    waiting = threading.Thread(target=lambda: answers.append(httpx2.get(path, params=params)))
    waiting.start()
    api.call("POST", f"/api/trials/{trial}/stop")
    waiting.join(timeout=15)
    assert answers[0].json()["action"] == "stop"

    finish = {"attempt": claim["attempt"], "status": "stopped", "step": 0, "epoch": 0.0}
    httpx2.post(f"{server.url}/api/workers/trials/{trial}/finish", json=finish)
    stale = httpx2.get(path, params={"attempt": claim["attempt"], "wait": 0})
    assert stale.status_code == 409


def test_a_panda_trial_reports_its_first_step_at_once(
    server: ServerProcess, api: Api, tmp_path: Path
) -> None:
    pool = WorkerProcesses(server.url, tmp_path)
    pool.start(1)
    try:
        trial = slow_trial(api)
        first = wait_for(lambda: api.metrics(trial, "train_loss")["train_loss"], "a point")
        assert first[0][0] == 1  # step 1, not the 20th step or the 60 s report
        api.call("POST", f"/api/trials/{trial}/stop")
        api.wait_state(trial, "stopped")
    finally:
        pool.stop()
