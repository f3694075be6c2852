"""A checkpoint keeps the epoch and hyperparameters its worker sends with the upload.

The trial's own epoch and hyperparameters are those of the last report that reached the
server, which may be at another step: reports are batched by time, and the report that applies
an adjustment can overtake the upload of the checkpoint taken just before it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import DB
from tests.factories import npz_bytes, report, running_trial


def upload_at(client: TestClient, trial_id: int, attempt: int, step: int, **params: Any) -> Any:
    """PUT a checkpoint with extra query parameters (``epoch``, ``hparams``) as given."""
    return client.put(
        f"/api/workers/trials/{trial_id}/checkpoints",
        params={"attempt": attempt, "step": step, **params},
        content=npz_bytes(step),
        headers={"Content-Type": "application/octet-stream"},
    )


def listed(client: TestClient, trial_id: int) -> dict[int, dict[str, Any]]:
    """The trial's checkpoints as the API lists them, by step."""
    r = client.get(f"/api/trials/{trial_id}/checkpoints")
    assert r.status_code == 200, r.text
    return {c["step"]: c for c in r.json()}


def test_stored_epoch_is_the_uploaded_one_not_the_last_reports(client: TestClient) -> None:
    tid, attempt = running_trial(client)
    assert report(client, tid, attempt, 250).status_code == 200  # the factory's epoch: 2.5
    assert client.get(f"/api/trials/{tid}").json()["epoch"] == 2.5

    assert upload_at(client, tid, attempt, 200, epoch=5.0).status_code == 201
    assert upload_at(client, tid, attempt, 2600, epoch="65").status_code == 201
    mid = upload_at(client, tid, attempt, 210, epoch=repr(5 + 320 / 1437))
    assert mid.status_code == 201

    ckpts = listed(client, tid)
    assert {s: c["epoch"] for s, c in ckpts.items()} == {200: 5.0, 210: 5 + 320 / 1437, 2600: 65.0}
    assert client.get(f"/api/trials/{tid}").json()["epoch"] == 2.5  # the trial's is its own


def test_retried_upload_replaces_the_epoch(client: TestClient) -> None:
    tid, attempt = running_trial(client)
    first = upload_at(client, tid, attempt, 40, epoch=0.5).json()
    second = upload_at(client, tid, attempt, 40, epoch=1.0).json()
    assert second["id"] == first["id"]
    assert listed(client, tid)[40]["epoch"] == 1.0


def test_without_epoch_an_older_worker_gets_the_last_reported_one(client: TestClient) -> None:
    tid, attempt = running_trial(client, learning_rate=0.01)
    report(client, tid, attempt, 30)
    assert upload_at(client, tid, attempt, 30).status_code == 201
    ckpt = listed(client, tid)[30]
    assert ckpt["epoch"] == 0.3
    assert ckpt["hparams"] == client.get(f"/api/trials/{tid}").json()["hparams"]


def test_hparams_are_the_uploaded_ones_even_after_the_adjustment_applied(
    client: TestClient,
) -> None:
    tid, attempt = running_trial(client, learning_rate=0.01)
    client.patch(f"/api/trials/{tid}/hparams", json={"learning_rate": 0.001})
    directive = report(client, tid, attempt, 10).json()
    assert directive["action"] == "update"
    # The report that applies the change overtakes the upload of the checkpoint before it.
    applied = [{"event_id": directive["event_id"], "step": 11}]
    assert report(client, tid, attempt, 10, applied=applied).status_code == 200
    trial = client.get(f"/api/trials/{tid}").json()
    assert trial["hparams"]["learning_rate"] == 0.001
    sent = {"learning_rate": 0.01, "l2": 0.0}
    up = upload_at(client, tid, attempt, 10, epoch=0.25, hparams=json.dumps(sent))
    assert up.status_code == 201, up.text

    ckpt = listed(client, tid)[10]
    assert ckpt["hparams"] == {**trial["hparams"], **sent}

    # A rewind to it starts on the old values, at its epoch.
    child = client.post(f"/api/trials/{tid}/fork", json={"step": 10})
    assert child.status_code == 201, child.text
    assert child.json()["hparams"]["learning_rate"] == 0.01
    assert (child.json()["step"], child.json()["epoch"]) == (10, 0.25)


@pytest.mark.parametrize(
    "bad", ["-1", "-0.5", "nan", "NaN", "inf", "-inf", "1e400", "abc", "", "3e9"]
)
def test_bad_epoch_is_a_422_naming_it_and_writes_nothing(
    client: TestClient, db: DB, app: FastAPI, bad: str
) -> None:
    tid, attempt = running_trial(client)
    ckpt_dir: Path = app.state.settings.checkpoint_dir
    before = db.snapshot()
    r = upload_at(client, tid, attempt, 40, epoch=bad)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "epoch"
    assert r.json()["detail"].startswith("epoch: ")
    assert "allowed: a finite number in [0, 2147483647]" in r.json()["detail"]
    assert db.snapshot() == before
    assert not ckpt_dir.exists() or list(ckpt_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ("not json", "hparams"),
        ("[0.1]", "hparams"),
        ('{"learning_rate": -1}', "hparams.learning_rate"),
        ('{"learning_rate": "fast"}', "hparams.learning_rate"),
        ('{"hidden_units": 64}', "hparams.hidden_units"),  # not adjustable mid-run
        ('{"no_such_thing": 1}', "hparams.no_such_thing"),
        ('{"decay_schedule": "exponential", "lr_decay": 0}', "hparams.lr_decay"),
    ],
)
def test_bad_hparams_are_a_422_naming_them_and_write_nothing(
    client: TestClient, db: DB, app: FastAPI, bad: str, field: str
) -> None:
    tid, attempt = running_trial(client)
    ckpt_dir: Path = app.state.settings.checkpoint_dir
    before = db.snapshot()
    r = upload_at(client, tid, attempt, 40, epoch=1.0, hparams=bad)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert r.json()["detail"].startswith(f"{field}: ")
    assert db.snapshot() == before
    assert not ckpt_dir.exists() or list(ckpt_dir.iterdir()) == []
