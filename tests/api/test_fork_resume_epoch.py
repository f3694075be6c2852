"""A forked or resumed trial shows where it really restarts, from its claim on.

The dashboard shows a trial's row until its worker's first real report, which may come long
after the claim (a big data set loads, a checkpoint downloads). The claim therefore sets the
row's step and epoch to the checkpoint's, hands the checkpoint's epoch to the worker, and the
worker reports that progress (not a made-up epoch 0) until its trainer is restored.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.storage.models import Checkpoint
from app.worker.client import WorkerClient
from app.worker.loop import Assignment, _keep_lease, hand_back
from tests.conftest import DB
from tests.factories import claim, finish, npz_bytes, report, running_trial

# Mid-epoch, and not what any report said (factories.report's epoch is step / 100): only the
# checkpoint row can be where these come from.
CKPT_STEP, CKPT_EPOCH = 200, 2 + 37 / 80


def upload_with_epoch(
    client: TestClient, tid: int, attempt: int, step: int, epoch: float
) -> dict[str, Any]:
    """PUT a checkpoint taken at ``step`` whose trainer was at ``epoch``, as a worker does."""
    r = client.put(
        f"/api/workers/trials/{tid}/checkpoints",
        params={"attempt": attempt, "step": step, "epoch": repr(epoch)},
        content=npz_bytes(step),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def progress(client: TestClient, tid: int) -> tuple[str, int, float]:
    """The trial's state, step and epoch as the dashboard fetches them."""
    trial = client.get(f"/api/trials/{tid}").json()
    return trial["state"], trial["step"], trial["epoch"]


def paused_past_its_checkpoint(client: TestClient) -> tuple[int, dict[str, Any]]:
    """A trial paused at step 260 whose latest checkpoint is at CKPT_STEP, queued again.

    Its pause checkpoint never arrived (say the disk was full: 507), so it resumes from the
    one before, 60 steps earlier than its last report.
    """
    tid, attempt = running_trial(client)
    report(client, tid, attempt, CKPT_STEP)
    ckpt = upload_with_epoch(client, tid, attempt, CKPT_STEP, CKPT_EPOCH)
    assert client.post(f"/api/trials/{tid}/pause").status_code == 200
    assert report(client, tid, attempt, 260).json()["action"] == "pause"
    assert finish(client, tid, attempt, "paused", 260).json()["state"] == "paused"
    assert client.post(f"/api/trials/{tid}/resume").status_code == 200
    assert progress(client, tid) == ("queued", 260, 2.6)  # nothing is known better yet
    return tid, ckpt


def test_fork_shows_its_checkpoints_step_and_epoch_while_queued_and_once_claimed(
    client: TestClient,
) -> None:
    tid, attempt = running_trial(client)
    report(client, tid, attempt, CKPT_STEP)
    ckpt = upload_with_epoch(client, tid, attempt, CKPT_STEP, CKPT_EPOCH)
    report(client, tid, attempt, 300)
    finish(client, tid, attempt, "completed", 300)

    child = client.post(f"/api/trials/{tid}/fork", json={"step": CKPT_STEP}).json()
    assert progress(client, child["id"]) == ("queued", CKPT_STEP, CKPT_EPOCH)

    got = claim(client)
    assert got["trial_id"] == child["id"]
    assert got["checkpoint"] == {
        "id": ckpt["id"],
        "step": CKPT_STEP,
        "epoch": CKPT_EPOCH,
        "sha256": ckpt["sha256"],
    }
    assert progress(client, child["id"]) == ("running", CKPT_STEP, CKPT_EPOCH)


def test_resumed_trial_shows_its_checkpoints_step_and_epoch_from_the_claim(
    client: TestClient,
) -> None:
    tid, ckpt = paused_past_its_checkpoint(client)

    got = claim(client)
    assert (got["trial_id"], got["attempt"]) == (tid, 2)
    assert got["checkpoint"]["id"] == ckpt["id"]
    assert (got["checkpoint"]["step"], got["checkpoint"]["epoch"]) == (CKPT_STEP, CKPT_EPOCH)
    assert progress(client, tid) == ("running", CKPT_STEP, CKPT_EPOCH)


def test_resumed_trial_whose_checkpoint_is_bad_shows_step_0(client: TestClient, db: DB) -> None:
    tid, ckpt = paused_past_its_checkpoint(client)
    Path(db.get(Checkpoint, ckpt["id"]).path).write_bytes(b"PK\x03\x04 truncated")

    got = claim(client)
    assert got["trial_id"] == tid and got["checkpoint"] is None  # it starts over
    assert progress(client, tid) == ("running", 0, 0.0)


def test_fork_whose_parent_checkpoint_is_bad_shows_step_0(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client)
    ckpt = upload_with_epoch(client, tid, attempt, CKPT_STEP, CKPT_EPOCH)
    child = client.post(f"/api/trials/{tid}/fork", json={"step": CKPT_STEP}).json()
    finish(client, tid, attempt, "completed", 300)
    Path(db.get(Checkpoint, ckpt["id"]).path).write_bytes(b"PK\x03\x04 truncated")

    got = claim(client)
    assert got["trial_id"] == child["id"] and got["checkpoint"] is None
    assert progress(client, child["id"]) == ("running", 0, 0.0)


def worker_client(client: TestClient) -> WorkerClient:
    """A worker's client that sends its calls to the test's app, in process."""
    worker = WorkerClient(str(client.base_url))
    worker.http.close()
    worker.http = client
    return worker


class Beats(threading.Event):
    """Lets a lease keeper send ``n`` renewals at once, then tells it to stop."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def wait(self, timeout: float | None = None) -> bool:
        self.left -= 1
        return self.left < 0


def test_lease_renewals_before_the_restore_report_the_checkpoints_epoch(
    client: TestClient,
) -> None:
    tid, _ = paused_past_its_checkpoint(client)
    worker = worker_client(client)
    claimed = worker.claim("slow-starter")
    assert claimed is not None
    a = Assignment.from_json(claimed)
    before = client.get(f"/api/trials/{tid}").json()["lease_expires_at"]

    stale = threading.Event()
    _keep_lease(worker, a, Beats(2), stale)

    assert not stale.is_set()
    assert client.get(f"/api/trials/{tid}").json()["lease_expires_at"] != before  # renewed
    assert progress(client, tid) == ("running", CKPT_STEP, CKPT_EPOCH)


def test_trial_handed_back_untouched_keeps_its_checkpoints_epoch(client: TestClient) -> None:
    tid, _ = paused_past_its_checkpoint(client)
    worker = worker_client(client)
    claimed = worker.claim("stopping")
    assert claimed is not None and claimed["trial_id"] == tid

    hand_back(worker, claimed)

    assert progress(client, tid) == ("queued", CKPT_STEP, CKPT_EPOCH)
