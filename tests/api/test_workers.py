"""The worker protocol driven through the TestClient acting as a worker."""

from __future__ import annotations

import hashlib
import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.api import checkpoints
from app.api.checkpoints import SPILL_BYTES
from app.storage.models import Checkpoint, Event, EventKind, Metric, Trial
from app.trials.leases import reap_once
from tests.conftest import DB
from tests.factories import (
    after_the_leases,
    claim,
    create_trial,
    finish,
    npz_bytes,
    report,
    running_trial,
    upload,
)


def test_claim_empty_queue_gives_204(client: TestClient, db: DB) -> None:
    before = db.snapshot()
    r = client.post("/api/workers/claim", json={"worker": "w"})
    assert r.status_code == 204
    assert db.snapshot() == before


def test_claim_invalid_body(client: TestClient, db: DB) -> None:
    create_trial(client)
    before = db.snapshot()
    r = client.post("/api/workers/claim", json={"worker": ""})
    assert r.status_code == 422
    assert "worker" in r.json()["detail"]
    assert db.snapshot() == before


def test_worker_lifecycle_pause_resume_complete(client: TestClient, db: DB) -> None:
    trial = create_trial(client, learning_rate=0.01)
    got = claim(client, "w1")
    tid, attempt = got["trial_id"], got["attempt"]
    assert (tid, attempt) == (trial["id"], 1)
    assert got["checkpoint"] is None
    assert got["config"]["task"] == "digits"
    assert got["config"]["hparams"]["learning_rate"] == 0.01
    assert got["lease_seconds"] > 0 and got["report_seconds"] > 0
    assert client.get(f"/api/trials/{tid}").json()["state"] == "running"

    points = [[s, "train_loss", 1.0 / s] for s in range(1, 11)]
    first = report(client, tid, attempt, 10, points)
    assert first.status_code == 200
    assert first.json() == {"action": "continue", "hparams": {}, "event_id": None}
    rows = db.rows(Metric.__table__.select().order_by(Metric.id))
    again = report(client, tid, attempt, 10, points)  # a retried batch changes nothing
    assert again.status_code == 200
    assert db.rows(Metric.__table__.select().order_by(Metric.id)) == rows
    assert db.count(Metric) == 10

    assert client.post(f"/api/trials/{tid}/pause").status_code == 200
    assert report(client, tid, attempt, 20, [[20, "train_loss", 0.05]]).json()["action"] == "pause"
    up = upload(client, tid, attempt, 20)
    assert up.status_code == 201
    assert up.json()["sha256"] == hashlib.sha256(npz_bytes(20)).hexdigest()
    assert finish(client, tid, attempt, "paused", 20).json()["state"] == "paused"
    paused = client.get(f"/api/trials/{tid}").json()
    assert paused["worker"] is None and paused["pause_requested"] is False

    assert client.post(f"/api/trials/{tid}/resume").json()["state"] == "queued"
    second = claim(client, "w2")
    assert second["trial_id"] == tid and second["attempt"] == 2
    assert second["checkpoint"] == {
        "id": up.json()["id"],
        "step": 20,
        "epoch": 0.2,
        "sha256": up.json()["sha256"],
    }

    before = db.snapshot()
    stale = report(client, tid, 1, 30, [[30, "train_loss", 9.0]])
    assert stale.status_code == 409
    assert "stale" in stale.json()["detail"]
    assert finish(client, tid, 1, "completed", 30).status_code == 409
    assert upload(client, tid, 1, 30).status_code == 409
    assert db.snapshot() == before

    assert report(client, tid, 2, 40, [[40, "dev_accuracy", 0.9]]).status_code == 200
    done = finish(client, tid, 2, "completed", 40, metrics={"dev_accuracy": 0.95})
    assert done.status_code == 200
    body = done.json()
    assert body["state"] == "completed" and body["ended_at"] is not None
    assert body["best_value"] == 0.95 and body["last_value"] == 0.95
    assert client.get(f"/api/trials/{tid}/metrics").json()["dev_accuracy"] == [[40, 0.95]]
    kinds = [e["kind"] for e in client.get(f"/api/trials/{tid}/events").json()]
    assert kinds == ["pause", "resume"]


def test_checkpoint_download_matches_upload(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client)
    data = npz_bytes(7)
    ckpt = upload(client, tid, attempt, 7, data).json()
    r = client.get(f"/api/workers/checkpoints/{ckpt['id']}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["x-checkpoint-sha256"] == hashlib.sha256(data).hexdigest()
    assert client.get("/api/workers/checkpoints/999").status_code == 404


def test_checkpoint_file_is_server_named_under_data_dir(
    client: TestClient, db: DB, app: FastAPI
) -> None:
    tid, attempt = running_trial(client)
    upload(client, tid, attempt, 3)
    (row,) = db.all(select(Checkpoint))
    path = Path(row.path)
    assert path.parent == app.state.settings.checkpoint_dir
    assert path.suffix == ".npz" and len(path.stem) == 32
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_checkpoint_retry_of_same_step_replaces_file(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client)
    first = upload(client, tid, attempt, 5).json()
    second = upload(client, tid, attempt, 5, npz_bytes(99)).json()
    assert second["id"] == first["id"] and second["sha256"] != first["sha256"]
    assert db.count(Checkpoint) == 1
    (row,) = db.all(select(Checkpoint))
    assert Path(row.path).read_bytes() == npz_bytes(99)


def test_checkpoint_upload_rejections_write_nothing(
    client: TestClient, db: DB, app: FastAPI
) -> None:
    tid, attempt = running_trial(client)
    ckpt_dir: Path = app.state.settings.checkpoint_dir
    before = db.snapshot()
    assert upload(client, 999, 1, 1).status_code == 404
    not_npz = upload(client, tid, attempt, 1, b"not a zip archive")
    assert not_npz.status_code == 422 and "npz" in not_npz.json()["detail"]
    app.state.settings.max_checkpoint_bytes = 100
    too_big = upload(client, tid, attempt, 1, b"PK\x03\x04" + b"0" * 200)
    assert too_big.status_code == 413
    assert db.snapshot() == before
    assert list(ckpt_dir.iterdir()) == []


def _in_pieces(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    """``data`` as a streamed (chunked) body of ``size``-byte pieces."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def big_npz(megabytes: float) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, w=rng.standard_normal(int(megabytes * 2**20 / 8)))
    return buf.getvalue()


def test_a_checkpoint_of_several_spills_is_stored_byte_for_byte(
    client: TestClient, db: DB
) -> None:
    tid, attempt = running_trial(client)
    data = big_npz(3.3)  # three full batches on their way to disk and a partial one
    assert len(data) > 3 * SPILL_BYTES
    r = upload(client, tid, attempt, 4, _in_pieces(data))
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
    (row,) = db.all(select(Checkpoint))
    assert Path(row.path).read_bytes() == data


def test_an_upload_cut_off_after_several_spills_leaves_no_file(
    client: TestClient, db: DB, app: FastAPI
) -> None:
    tid, attempt = running_trial(client)
    app.state.settings.max_checkpoint_bytes = int(2.5 * SPILL_BYTES)
    before = db.snapshot()
    r = upload(client, tid, attempt, 4, _in_pieces(big_npz(4)))  # refused mid-stream
    assert r.status_code == 413
    assert db.snapshot() == before
    assert list(app.state.settings.checkpoint_dir.iterdir()) == []


@pytest.mark.skipif(sys.platform != "linux", reason="sync_file_range is a Linux call")
def test_an_uploads_pages_are_sent_to_disk_without_waiting_on_linux(tmp_path: Path) -> None:
    start = checkpoints._START_WRITEBACK
    assert start is not None
    with open(tmp_path / "pages", "wb") as fh:
        fh.write(b"x" * 2**20)
        fh.flush()
        assert start(fh.fileno()) == 0  # the binding's argument types are right


def test_a_pauses_checkpoint_can_end_the_attempt_paused(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client)
    client.post(f"/api/trials/{tid}/pause")
    assert upload(client, tid, attempt, 12, epoch="0.5", finish="paused").status_code == 201
    paused = client.get(f"/api/trials/{tid}").json()
    assert paused["state"] == "paused" and paused["step"] == 12 and paused["worker"] is None
    assert paused["pause_requested"] is False
    (event,) = [e for e in client.get(f"/api/trials/{tid}/events").json() if e["kind"] == "pause"]
    assert event["applied_step"] == 12
    assert finish(client, tid, attempt, "paused", 12).status_code == 409  # the attempt is over
    resumed = client.post(f"/api/trials/{tid}/resume").json()
    assert resumed["state"] == "queued"
    assert claim(client, "w2")["checkpoint"]["step"] == 12


def test_a_stop_asked_during_a_pause_outranks_it(client: TestClient) -> None:
    tid, attempt = running_trial(client)
    client.post(f"/api/trials/{tid}/pause")
    client.post(f"/api/trials/{tid}/stop")
    assert upload(client, tid, attempt, 12, epoch="0.5", finish="paused").status_code == 201
    assert client.get(f"/api/trials/{tid}").json()["state"] == "stopped"


def test_a_checkpoint_cannot_end_an_attempt_otherwise(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client)
    before = db.snapshot()
    r = upload(client, tid, attempt, 12, epoch="0.5", finish="completed")
    assert r.status_code == 422
    assert "finish" in r.json()["detail"] and "paused" in r.json()["detail"]
    assert db.snapshot() == before


def test_report_rejections_write_nothing(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client)
    before = db.snapshot()
    assert report(client, 999, 1, 1).status_code == 404
    for value in (b"NaN", b"1e400", b"-Infinity"):
        raw = client.post(
            f"/api/workers/trials/{tid}/report",
            content=b'{"attempt": 1, "step": 1, "epoch": 0, "points": [[1, "loss", %s]]}' % value,
            headers={"Content-Type": "application/json"},
        )
        assert raw.status_code == 422, value
        assert "points" in raw.json()["detail"]
    assert report(client, tid, attempt, -1).status_code == 422
    unknown_event = report(client, tid, attempt, 1, applied=[{"event_id": 12345, "step": 2}])
    assert unknown_event.status_code == 422
    assert db.snapshot() == before


def test_adjust_running_trial_applies_through_directive(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client, learning_rate=0.01)
    r = client.patch(f"/api/trials/{tid}/hparams", json={"learning_rate": 0.001})
    assert r.status_code == 200
    assert r.json()["pending_hparams"] == {"learning_rate": 0.001}
    assert r.json()["hparams"]["learning_rate"] == 0.01
    directive = report(client, tid, attempt, 10).json()
    assert directive["action"] == "update"
    assert directive["hparams"] == {"learning_rate": 0.001}
    upload(client, tid, attempt, 10)  # the worker checkpoints just before applying
    applied = [{"event_id": directive["event_id"], "step": 11}]
    assert report(client, tid, attempt, 10, applied=applied).json()["action"] == "continue"
    assert report(client, tid, attempt, 10, applied=applied).status_code == 200  # retry
    trial = client.get(f"/api/trials/{tid}").json()
    assert trial["hparams"]["learning_rate"] == 0.001 and trial["pending_hparams"] == {}
    event = db.get(Event, directive["event_id"])
    assert event.kind is EventKind.ADJUST and event.applied_step == 11
    ckpts = client.get(f"/api/trials/{tid}/checkpoints").json()
    assert [c["step"] for c in ckpts] == [10]


def test_the_directive_request_passes_over_adjustments_the_worker_obeyed(
    client: TestClient,
) -> None:
    # The worker applied the first edit; its "applied" entry waits behind a checkpoint's
    # upload. Meanwhile the user's second edit, then a pause, must still be heard.
    tid, attempt = running_trial(client, learning_rate=0.01)
    for lr in (0.005, 0.002):
        client.patch(f"/api/trials/{tid}/hparams", json={"learning_rate": lr})
    url = f"/api/workers/trials/{tid}/directive"
    first = client.get(url, params={"attempt": attempt}).json()
    assert (first["action"], first["hparams"]) == ("update", {"learning_rate": 0.005})
    second = client.get(url, params={"attempt": attempt, "obeyed": [first["event_id"]]}).json()
    assert (second["action"], second["hparams"]) == ("update", {"learning_rate": 0.002})
    both = {"attempt": attempt, "obeyed": [first["event_id"], second["event_id"]]}
    assert client.get(url, params=both).json()["action"] == "continue"
    client.post(f"/api/trials/{tid}/pause")
    assert client.get(url, params=both).json()["action"] == "pause"
    assert report(client, tid, attempt, 5).json()["action"] == "pause"
    bad = client.get(url, params={"attempt": attempt, "obeyed": [0]})
    assert bad.status_code == 422 and "obeyed" in bad.text


def test_adjust_paused_trial_applies_at_claim(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client, learning_rate=0.01)
    client.post(f"/api/trials/{tid}/pause")
    upload(client, tid, attempt, 15)
    finish(client, tid, attempt, "paused", 15)
    event_id = client.patch(f"/api/trials/{tid}/hparams", json={"learning_rate": 0.002})
    assert event_id.status_code == 200
    client.post(f"/api/trials/{tid}/resume")
    got = claim(client)
    assert got["config"]["hparams"]["learning_rate"] == 0.002
    assert got["checkpoint"]["step"] == 15
    (adjust,) = db.all(select(Event).where(Event.kind == EventKind.ADJUST))
    assert adjust.applied_step == 16 and adjust.applied_at is not None
    assert report(client, tid, got["attempt"], 16).json()["action"] == "continue"


def test_stop_directive_and_finish_stopped(client: TestClient) -> None:
    tid, attempt = running_trial(client)
    assert client.post(f"/api/trials/{tid}/stop").json()["stop_requested"] is True
    assert report(client, tid, attempt, 5).json()["action"] == "stop"
    assert finish(client, tid, attempt, "stopped", 5).json()["state"] == "stopped"


def test_stop_wins_over_pause(client: TestClient) -> None:
    tid, attempt = running_trial(client)
    client.post(f"/api/trials/{tid}/pause")
    client.post(f"/api/trials/{tid}/stop")
    assert report(client, tid, attempt, 5).json()["action"] == "stop"
    assert finish(client, tid, attempt, "paused", 5).json()["state"] == "stopped"


def test_checkpoint_request_directive(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client)
    assert client.post(f"/api/trials/{tid}/checkpoints").status_code == 202
    assert report(client, tid, attempt, 5).json()["action"] == "checkpoint"
    upload(client, tid, attempt, 5)
    assert report(client, tid, attempt, 6).json()["action"] == "continue"
    (event,) = db.all(select(Event).where(Event.kind == EventKind.CHECKPOINT))
    assert event.applied_step == 5


def test_finish_failed_records_error(client: TestClient) -> None:
    tid, attempt = running_trial(client)
    r = finish(client, tid, attempt, "failed", 3, error="diverged at step 3")
    assert r.json()["state"] == "failed" and r.json()["error"] == "diverged at step 3"
    assert client.get(f"/api/trials/{tid}/events").json()[-1]["kind"] == "fail"


def test_finish_rejections_write_nothing(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client)
    before = db.snapshot()
    assert finish(client, 999, 1, "completed", 1).status_code == 404
    assert finish(client, tid, attempt, "exploded", 1).status_code == 422
    bad_metric = finish(client, tid, attempt, "completed", 1, metrics={"dev_loss": "x"})
    assert bad_metric.status_code == 422
    assert db.snapshot() == before


def test_report_renews_lease(client: TestClient, app: FastAPI, db: DB) -> None:
    tid, attempt = running_trial(client)
    first = db.get(Trial, tid).lease_expires_at
    app.state.settings.lease_seconds *= 2  # a renewed lease ends later, whatever the clock did
    report(client, tid, attempt, 1)
    assert db.get(Trial, tid).lease_expires_at > first


def test_reaper_requeues_expired_lease_then_fails(
    client: TestClient, app: FastAPI, db: DB
) -> None:
    app.state.settings.max_failures = 2
    tid, attempt = running_trial(client)
    upload(client, tid, attempt, 4)
    assert reap_once(app, now=after_the_leases(app)) == 1
    trial = client.get(f"/api/trials/{tid}").json()
    assert trial["state"] == "queued" and trial["worker"] is None and trial["failures"] == 1
    assert client.get(f"/api/trials/{tid}/events").json()[-1]["kind"] == "requeue"
    again = claim(client)
    assert again["attempt"] == 2 and again["checkpoint"]["step"] == 4
    assert report(client, tid, 1, 5).status_code == 409  # the dead worker's attempt
    assert reap_once(app) == 0  # the second attempt's lease runs on
    assert reap_once(app, now=after_the_leases(app)) == 1
    failed = client.get(f"/api/trials/{tid}").json()
    assert failed["state"] == "failed" and failed["failures"] == 2
    assert failed["error"] == (
        "lost its worker 2 times in a row without a new checkpoint (attempt 2; the limit is 2)"
    )


def test_reaper_pauses_an_expired_trial_with_a_pending_pause(
    client: TestClient, app: FastAPI
) -> None:
    tid, _ = running_trial(client)
    client.post(f"/api/trials/{tid}/pause")
    reap_once(app, now=after_the_leases(app))
    assert client.get(f"/api/trials/{tid}").json()["state"] == "paused"


def test_reaper_task_runs_in_the_lifespan(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from app.main import create_app

    settings.lease_seconds = 0.05
    settings.reaper_seconds = 0.05
    app = create_app(settings)
    with TestClient(app) as client:
        tid, _ = running_trial(client)
        for _ in range(200):  # waits for the background reaper; no timing is asserted
            if client.get(f"/api/trials/{tid}").json()["state"] == "queued":
                break
            time.sleep(0.05)
        assert client.get(f"/api/trials/{tid}").json()["state"] == "queued"
