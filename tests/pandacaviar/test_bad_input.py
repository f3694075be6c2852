"""Bad reports from a user's loop: a clear error naming what is wrong, and nothing stored.

The client refuses them in the user's process, before anything is buffered; the server
refuses the same on its own, for any other client of the protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import pandacaviar
from tests.e2e import Api, ServerProcess

pytestmark = pytest.mark.slow
LIMIT = 4096  # the server's max_checkpoint_bytes here


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"PANDACAVIAR_MAX_CHECKPOINT_BYTES": str(LIMIT)}
    s = ServerProcess(tmp_path / "server", workers=0, env=env).start()
    yield s
    s.stop()


@pytest.fixture
def api(server: ServerProcess) -> Iterator[Api]:
    a = Api(server.url)
    yield a
    a.close()


def claimed(server: ServerProcess, api: Api) -> pandacaviar.Trial:
    study = api.create_study(task="external", epochs=3, space={"learning_rate": 0.1})
    api.create_trial(study["id"], {})
    trial = pandacaviar.Client(server.url).ask(study["id"], wait=False)
    assert trial is not None
    return trial


def test_each_bad_report_raises_in_the_users_loop_naming_it_and_nothing_is_stored(
    server: ServerProcess, api: Api
) -> None:
    trial = claimed(server, api)
    trial.report(10, epoch=1, dev_accuracy=0.5, train_loss=1.0)
    nan, inf = float("nan"), float("inf")
    cases = [
        (lambda: trial.report(11, dev_accuracy=nan), "dev_accuracy is nan; the objective"),
        (lambda: trial.report(11, train_loss=inf), "train_loss is inf; a metric"),
        (lambda: trial.report(11, train_loss="low"), "'train_loss' is 'low', allowed: a number"),
        (lambda: trial.report(5, train_loss=0.9), "step 5 is behind step 10"),
        (lambda: trial.report(11, epoch=0.5), "epoch 0.5 is not a finite number at least 1"),
        (lambda: trial.checkpoint(b"x" * (LIMIT + 1)), "4,097 bytes, allowed: at most 4,096"),
    ]
    for call, words in cases:
        with pytest.raises(ValueError, match=words.replace("(", r"\(")):
            call()
    trial.finish(0.75)

    stored = api.metrics(trial.id)
    assert stored["train_loss"] == [[10, 1.0]]
    assert stored["dev_accuracy"] == [[10, 0.75]]  # the final value replaces step 10's
    assert api.checkpoints(trial.id) == []
    done = api.trial(trial.id)
    assert done["state"] == "completed" and done["last_value"] == 0.75 and done["step"] == 10


def test_the_server_refuses_the_same_reports_from_any_client(
    server: ServerProcess, api: Api
) -> None:
    trial = claimed(server, api)
    trial.report(10, epoch=1, dev_accuracy=0.5)
    api.wait_trial(trial.id, lambda t: t["step"] == 10, "the report sent")
    path = f"/api/workers/trials/{trial.id}/report"
    body = {"attempt": trial.attempt, "step": 4, "epoch": 1.0, "points": []}
    back = api.http.post(path, json=body)
    assert back.status_code == 422 and back.json()["field"] == "step"
    assert "got 4, allowed: at least 10" in back.json()["detail"]

    nan = '{"attempt": %d, "step": 11, "epoch": 1.0, "points": [[11, "dev_accuracy", NaN]]}'
    refused = api.http.post(
        path, content=nan % trial.attempt, headers={"content-type": "application/json"}
    )
    assert refused.status_code == 422 and refused.json()["field"].startswith("points")

    big = api.http.put(
        f"/api/workers/trials/{trial.id}/checkpoints",
        params={"attempt": trial.attempt, "step": 10, "epoch": "1.0"},
        content=b"x" * (LIMIT + 1),
        headers={"content-type": "application/octet-stream"},
    )
    assert big.status_code == 413
    assert api.metrics(trial.id, "dev_accuracy")["dev_accuracy"] == [[10, 0.5]]
    assert api.checkpoints(trial.id) == []
    trial.finish()
