"""One trial: read, curves, events, checkpoints; pause, resume, stop, adjust, fork."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.storage.models import Trial
from tests.conftest import DB
from tests.factories import (
    claim,
    create_trial,
    finish,
    npz_bytes,
    report,
    running_trial,
    upload,
)


def completed_trial(client: TestClient) -> int:
    tid, attempt = running_trial(client)
    finish(client, tid, attempt, "completed", 1)
    return tid


def test_get_trial(client: TestClient) -> None:
    trial = create_trial(client, learning_rate=0.02)
    body = client.get(f"/api/trials/{trial['id']}").json()
    for key in (
        "id",
        "study_id",
        "number",
        "state",
        "hparams",
        "step",
        "epoch",
        "attempt",
        "parent_id",
        "parent_step",
        "error",
    ):
        assert key in body
    assert body["hparams"]["learning_rate"] == 0.02
    assert body["round_id"] is None and body["round"] is None  # a panda trial has no round


@pytest.mark.parametrize("path", ["", "/metrics", "/events", "/checkpoints", "/checkpoints/1"])
def test_get_trial_not_found(client: TestClient, path: str) -> None:
    r = client.get(f"/api/trials/999{path}")
    assert r.status_code == 404 and "999" in r.json()["detail"]


def test_get_metrics_names_since_step(client: TestClient) -> None:
    tid, attempt = running_trial(client)
    points = [[s, n, float(s)] for s in range(1, 6) for n in ("train_loss", "dev_loss")]
    report(client, tid, attempt, 5, list(reversed(points)))
    everything = client.get(f"/api/trials/{tid}/metrics").json()
    assert everything["train_loss"] == [[s, float(s)] for s in range(1, 6)]
    assert all(type(step) is int for step, _ in everything["train_loss"])
    some = client.get(
        f"/api/trials/{tid}/metrics", params={"names": "dev_loss,missing", "since_step": 3}
    ).json()
    assert some == {"dev_loss": [[4, 4.0], [5, 5.0]], "missing": []}


def test_get_metrics_downsampled_keeps_first_last_and_extremes(client: TestClient) -> None:
    tid, attempt = running_trial(client)
    values = {s: 1.0 for s in range(1, 1001)}
    values[333], values[777] = 50.0, -50.0
    report(client, tid, attempt, 1000, [[s, "train_loss", v] for s, v in values.items()])
    got = client.get(
        f"/api/trials/{tid}/metrics", params={"names": "train_loss", "max_points": 20}
    ).json()["train_loss"]
    assert 2 <= len(got) <= 20
    steps = [p[0] for p in got]
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] == 1000
    assert [333, 50.0] in got and [777, -50.0] in got


@pytest.mark.parametrize("params", [{"max_points": 1}, {"since_step": -1}])
def test_get_metrics_invalid(client: TestClient, params: dict[str, Any]) -> None:
    tid = create_trial(client)["id"]
    r = client.get(f"/api/trials/{tid}/metrics", params=params)
    assert r.status_code == 422 and list(params)[0] in r.json()["detail"]


def test_get_events_and_checkpoints(client: TestClient) -> None:
    tid, attempt = running_trial(client)
    client.post(f"/api/trials/{tid}/pause")
    upload(client, tid, attempt, 8)
    events = client.get(f"/api/trials/{tid}/events").json()
    assert [(e["kind"], e["applied_at"]) for e in events] == [("pause", None)]
    (ckpt,) = client.get(f"/api/trials/{tid}/checkpoints").json()
    assert ckpt["step"] == 8 and ckpt["bytes"] == len(npz_bytes(8)) and "path" not in ckpt
    download = client.get(f"/api/trials/{tid}/checkpoints/8")
    assert download.status_code == 200 and download.content == npz_bytes(8)
    assert client.get(f"/api/trials/{tid}/checkpoints/9").status_code == 404


def test_pause_queued_trial_is_paused_at_once(client: TestClient) -> None:
    tid = create_trial(client)["id"]
    assert client.post(f"/api/trials/{tid}/pause").json()["state"] == "paused"
    assert client.post("/api/workers/claim", json={"worker": "w"}).status_code == 204


def test_pause_running_trial_is_requested(client: TestClient) -> None:
    tid, _ = running_trial(client)
    body = client.post(f"/api/trials/{tid}/pause").json()
    assert body["state"] == "running" and body["pause_requested"] is True
    client.post(f"/api/trials/{tid}/pause")  # asking twice records one request
    assert len(client.get(f"/api/trials/{tid}/events").json()) == 1


@pytest.mark.parametrize("action", ["pause", "resume", "stop", "fork"])
def test_control_not_found(client: TestClient, db: DB, action: str) -> None:
    before = db.snapshot()
    r = client.post(f"/api/trials/999/{action}", json={"step": 0})
    assert r.status_code == 404
    assert db.snapshot() == before


def test_pause_completed_trial_conflict(client: TestClient, db: DB) -> None:
    tid = completed_trial(client)
    before = db.snapshot()
    r = client.post(f"/api/trials/{tid}/pause")
    assert r.status_code == 409 and "completed" in r.json()["detail"]
    assert db.snapshot() == before


def test_resume_paused_trial(client: TestClient) -> None:
    tid = create_trial(client)["id"]
    client.post(f"/api/trials/{tid}/pause")
    assert client.post(f"/api/trials/{tid}/resume").json()["state"] == "queued"


@pytest.mark.parametrize("state", ["queued", "running", "completed"])
def test_resume_not_paused_conflict(client: TestClient, db: DB, state: str) -> None:
    tid = {
        "queued": lambda: create_trial(client)["id"],
        "running": lambda: running_trial(client)[0],
        "completed": lambda: completed_trial(client),
    }[state]()
    before = db.snapshot()
    r = client.post(f"/api/trials/{tid}/resume")
    assert r.status_code == 409 and state in r.json()["detail"]
    assert db.snapshot() == before


@pytest.mark.parametrize("paused", [False, True])
def test_stop_queued_or_paused_ends_at_once(client: TestClient, paused: bool) -> None:
    tid = create_trial(client)["id"]
    if paused:
        client.post(f"/api/trials/{tid}/pause")
    body = client.post(f"/api/trials/{tid}/stop").json()
    assert body["state"] == "stopped" and body["ended_at"] is not None


def test_stop_finished_conflict(client: TestClient, db: DB) -> None:
    tid = completed_trial(client)
    before = db.snapshot()
    assert client.post(f"/api/trials/{tid}/stop").status_code == 409
    assert db.snapshot() == before


def test_pause_while_stopping_conflict(client: TestClient, db: DB) -> None:
    tid, _ = running_trial(client)
    client.post(f"/api/trials/{tid}/stop")
    before = db.snapshot()
    assert client.post(f"/api/trials/{tid}/pause").status_code == 409
    assert db.snapshot() == before


def test_adjust_queued_trial(client: TestClient) -> None:
    tid = create_trial(client)["id"]
    r = client.patch(f"/api/trials/{tid}/hparams", json={"learning_rate": 0.3, "l2": 0.01})
    assert r.status_code == 200
    assert r.json()["pending_hparams"] == {"learning_rate": 0.3, "l2": 0.01}
    assert claim(client)["config"]["hparams"]["learning_rate"] == 0.3


def adjust_payloads(client: TestClient, tid: int) -> list[dict[str, Any]]:
    events = client.get(f"/api/trials/{tid}/events").json()
    return [e["payload"] for e in events if e["kind"] == "adjust"]


def test_adjust_records_the_values_it_replaces(client: TestClient) -> None:
    tid, attempt = running_trial(client, learning_rate=0.01)
    client.patch(f"/api/trials/{tid}/hparams", json={"learning_rate": 0.02})
    # Pending adjustments apply first: the second one replaces 0.02, not the 0.01 in force.
    client.patch(f"/api/trials/{tid}/hparams", json={"learning_rate": 0.03, "l2": 0.01})
    first, second = adjust_payloads(client, tid)
    assert first == {"hparams": {"learning_rate": 0.02}, "old": {"learning_rate": 0.01}}
    assert second["hparams"] == {"learning_rate": 0.03, "l2": 0.01}
    assert second["old"] == {"learning_rate": 0.02, "l2": 0.0}  # l2 at its default
    for _ in range(2):  # the worker applies both, oldest first
        event = report(client, tid, attempt, 5).json()["event_id"]
        report(client, tid, attempt, 5, applied=[{"event_id": event, "step": 6}])
    client.patch(f"/api/trials/{tid}/hparams", json={"learning_rate": 0.04})
    assert adjust_payloads(client, tid)[-1]["old"] == {"learning_rate": 0.03}


RAW_BAD_ADJUST = [
    (b'{"learning_rate": -0.001}', "learning_rate", "(0, 10]"),
    (b'{"learning_rate": NaN}', "learning_rate", "(0, 10]"),
    (b'{"learning_rate": "NaN"}', "learning_rate", "(0, 10]"),
    (b'{"learning_rate": 1e400}', "learning_rate", "(0, 10]"),
    (b'{"batch_size": 0}', "batch_size", "[1, 65536]"),
    (b'{"hidden_units": 256}', "hidden_units", "new trial"),
    (b'{"optimizer": "sgd"}', "optimizer", "new trial"),
    (b'{"warp": 1}', "warp", "unknown"),
    (b"{}", "hparams", "no hyperparameters"),
    (b'{"decay_schedule": "exponential"}', "lr_decay", "(0, 1]"),
    (b"[1, 2]", "body", "allowed: an object"),
]


@pytest.mark.parametrize(("raw", "field", "text"), RAW_BAD_ADJUST)
def test_adjust_invalid(client: TestClient, db: DB, raw: bytes, field: str, text: str) -> None:
    tid, _ = running_trial(client)
    before = db.snapshot()
    r = client.patch(
        f"/api/trials/{tid}/hparams", content=raw, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422
    assert field in r.json()["detail"] and text in r.json()["detail"]
    assert db.snapshot() == before


def test_adjust_not_found(client: TestClient) -> None:
    assert client.patch("/api/trials/999/hparams", json={"learning_rate": 0.1}).status_code == 404


def test_adjust_finished_conflict(client: TestClient, db: DB) -> None:
    tid = completed_trial(client)
    before = db.snapshot()
    r = client.patch(f"/api/trials/{tid}/hparams", json={"learning_rate": 0.1})
    assert r.status_code == 409 and "completed" in r.json()["detail"]
    assert db.snapshot() == before


def test_request_checkpoint_of_queued_trial_conflict(client: TestClient, db: DB) -> None:
    tid = create_trial(client)["id"]
    before = db.snapshot()
    assert client.post(f"/api/trials/{tid}/checkpoints").status_code == 409
    assert db.snapshot() == before


def test_fork_from_checkpoint(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client, learning_rate=0.01)
    ckpt = upload(client, tid, attempt, 10).json()
    upload(client, tid, attempt, 20)
    # An adjustment after step 10 must not leak into a fork from step 10.
    client.patch(f"/api/trials/{tid}/hparams", json={"learning_rate": 0.5})
    event = report(client, tid, attempt, 20).json()["event_id"]
    report(client, tid, attempt, 20, applied=[{"event_id": event, "step": 21}])
    finish(client, tid, attempt, "completed", 30)
    r = client.post(f"/api/trials/{tid}/fork", json={"step": 10, "hparams": {"momentum": 0.8}})
    assert r.status_code == 201
    child = r.json()
    assert child["parent_id"] == tid and child["parent_step"] == 10
    assert child["study_id"] == db.get(Trial, tid).study_id and child["state"] == "queued"
    assert child["hparams"]["learning_rate"] == 0.01 and child["hparams"]["momentum"] == 0.8
    got = claim(client)
    assert got["trial_id"] == child["id"]
    assert got["checkpoint"] == {
        "id": ckpt["id"],
        "step": 10,
        "epoch": 0.0,
        "sha256": ckpt["sha256"],
    }
    assert got["config"]["hparams"]["momentum"] == 0.8
    kinds = [e["kind"] for e in client.get(f"/api/trials/{tid}/events").json()]
    assert kinds[-1] == "fork"


def test_fork_starts_at_the_parents_step_and_epoch(client: TestClient) -> None:
    tid, attempt = running_trial(client)
    report(client, tid, attempt, 150)  # epoch 1.5 (factories.report: step / 100)
    upload(client, tid, attempt, 150)
    report(client, tid, attempt, 300)
    child = client.post(f"/api/trials/{tid}/fork", json={"step": 150}).json()
    assert (child["step"], child["epoch"]) == (150, 1.5)
    assert claim(client)["trial_id"] == child["id"]
    got = client.get(f"/api/trials/{child['id']}").json()
    assert (got["state"], got["step"], got["epoch"]) == ("running", 150, 1.5)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"step": 11}, "available steps: 10"),
        ({"step": 10, "hparams": {"hidden_units": 64}}, "hparams.hidden_units"),
        ({"step": 10, "hparams": {"learning_rate": -1}}, "(0, 10]"),
        ({"step": -1}, "step"),
        ({}, "step"),
    ],
)
def test_fork_invalid(client: TestClient, db: DB, body: dict[str, Any], named: str) -> None:
    tid, attempt = running_trial(client)
    upload(client, tid, attempt, 10)
    before = db.snapshot()
    r = client.post(f"/api/trials/{tid}/fork", json=body)
    assert r.status_code == 422
    assert named in r.json()["detail"]
    assert db.snapshot() == before


def test_fork_without_checkpoints_names_none(client: TestClient) -> None:
    tid = create_trial(client)["id"]
    r = client.post(f"/api/trials/{tid}/fork", json={"step": 0})
    assert r.status_code == 422 and "available steps: none" in r.json()["detail"]
