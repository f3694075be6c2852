"""GET /api/workers: the launcher's status and what each busy worker trains."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories import claim, create_study, create_trial, report


def test_nothing_running_lists_no_busy_worker(client: TestClient) -> None:
    create_trial(client)  # queued: no worker holds it
    r = client.get("/api/workers")
    assert r.status_code == 200, r.text
    # The tests' server launches no workers: no launcher to report.
    assert r.json() == {"launcher": None, "busy": []}


def test_a_running_trial_shows_up_with_its_worker(client: TestClient) -> None:
    study = create_study(client, name="digits search")
    trial = create_trial(client, study["id"])
    create_trial(client, study["id"])  # queued behind it
    got = claim(client, worker="vm-123")
    assert report(client, got["trial_id"], got["attempt"], 420).status_code == 200
    (busy,) = client.get("/api/workers").json()["busy"]
    assert busy["since"] is not None
    del busy["since"]
    assert busy == {
        "worker": "vm-123", "trial_id": trial["id"], "number": trial["number"],
        "study_id": study["id"], "study": "digits search", "epoch": 4.2,
    }  # fmt: skip


def test_the_launchers_status_is_reported(client: TestClient) -> None:
    class Launcher:
        def status(self) -> dict[str, object]:
            return {"launcher": "local", "workers": 2, "alive": 2, "pids": [1, 2], "restarts": 0}

    client.app.state.dispatcher = Launcher()  # type: ignore[attr-defined]
    launcher = client.get("/api/workers").json()["launcher"]
    assert launcher == {
        "launcher": "local", "workers": 2, "alive": 2, "restarts": 0, "scheduler": None,
    }  # fmt: skip
