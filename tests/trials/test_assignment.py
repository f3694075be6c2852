"""A claim's assignment is read after the claim commits: out of the writers' turn when it can.

Another process holds the writers' lock (the ``flock`` that server processes sharing one
SQLite file queue on) while the assignment is built: a first attempt's must not wait for it;
a resumed trial's, which checks its checkpoints and may write, must.
"""

from __future__ import annotations

import subprocess
import threading
from contextlib import AbstractContextManager

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.schemas import ClaimOut
from app.storage.models import Trial, TrialState
from app.trials import claims
from app.trials.assignment import assignment
from tests.factories import claim, create_trial, finish, upload
from tests.flock import lock_held


@pytest.fixture
def engine(client: TestClient, app: FastAPI) -> Engine:
    return app.state.engine  # type: ignore[no-any-return]


def writers_lock_held(settings: Settings) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """Another process holds the writers' lock of the app's SQLite file."""
    return lock_held(settings.database_url.removeprefix("sqlite:///") + "-writer.lock")


def _take(engine: Engine, settings: Settings) -> claims.Taken:
    with Session(engine) as session:
        taken = claims.take(session, "w", settings)
        session.commit()
    assert taken is not None
    return taken


def _in_thread(
    engine: Engine, taken: claims.Taken, settings: Settings
) -> tuple[threading.Event, list[ClaimOut | None]]:
    done, out = threading.Event(), []

    def run() -> None:
        out.append(assignment(engine, taken, settings))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, out


def test_a_first_attempt_is_assigned_while_another_process_holds_the_writers_lock(
    client: TestClient, engine: Engine, settings: Settings
) -> None:
    trial = create_trial(client, learning_rate=0.02)
    taken = _take(engine, settings)
    assert taken == (trial["id"], 1)
    with writers_lock_held(settings):
        done, out = _in_thread(engine, taken, settings)
        assert done.wait(10), "a first attempt's assignment waited for the writers' lock"
    got = out[0]
    assert got is not None and (got.trial_id, got.attempt) == (trial["id"], 1)
    assert got.checkpoint is None and got.config["hparams"]["learning_rate"] == 0.02


def test_a_resumed_trial_waits_for_the_writers_turn_and_resumes_from_its_checkpoint(
    client: TestClient, engine: Engine, settings: Settings
) -> None:
    trial = create_trial(client)
    got = claim(client)
    assert upload(client, trial["id"], got["attempt"], 5).status_code == 201
    client.post(f"/api/trials/{trial['id']}/pause")
    assert finish(client, trial["id"], got["attempt"], "paused", 5).status_code == 200
    assert client.post(f"/api/trials/{trial['id']}/resume").status_code == 200
    taken = _take(engine, settings)
    assert taken == (trial["id"], 2)
    with writers_lock_held(settings) as other:
        done, out = _in_thread(engine, taken, settings)
        # It verifies the checkpoint's file and could have to forget a bad one: a write.
        assert not done.wait(0.5)
        assert other.stdin is not None
        other.stdin.close()
        assert done.wait(10)
    resumed = out[0]
    assert resumed is not None and resumed.checkpoint is not None
    assert resumed.checkpoint.step == 5


def test_a_trial_that_changed_hands_before_its_assignment_is_not_assigned(
    client: TestClient, engine: Engine, settings: Settings
) -> None:
    create_trial(client)
    taken = _take(engine, settings)
    with Session(engine) as session:  # as the reaper does to an expired lease
        session.execute(update(Trial).values(state=TrialState.QUEUED))
        session.commit()
    assert assignment(engine, taken, settings) is None
