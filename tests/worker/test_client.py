"""The worker's HTTP client: what it uploads with a checkpoint, in which order its reports,
uploads and applied entries reach the server, directives heard between reports, and the
cache of uploaded data sets.

A real trainer takes the checkpoints; what is decoded from each must equal the trainer's own
state at the moment it handed the checkpoint over (mid-epoch, at an epoch's end, before an
adjustment). The server is a fake here (an ``httpx2.MockTransport``) that records the order.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from app.worker import client as client_module
from app.worker.client import (
    DatasetCache,
    FinishStatus,
    HttpReporter,
    WorkerClient,
    checkpoint_progress,
)
from app.worker.loop import _LastData
from tests.factories import npz_bytes
from trainer import ADJUSTABLE, TrainConfig, Trainer
from trainer.checkpoint import CheckpointError
from trainer.loop import FitStatus
from trainer.reporting import Action, Directive, RecordingReporter


class Witness(RecordingReporter):
    """Records the trainer's epoch and adjustable values at every checkpoint it hands over."""

    def __init__(self, trainer: Trainer, script: dict[int, Directive]) -> None:
        super().__init__(script)
        self.trainer = trainer
        self.seen: list[tuple[int, float, dict[str, Any], bytes]] = []

    def checkpoint(self, step: int, data: bytes) -> None:
        hp = {k: v for k, v in self.trainer.hp.items() if k in ADJUSTABLE}
        self.seen.append((step, self.trainer.epoch, hp, data))


def test_progress_is_the_trainers_state_at_each_checkpoint() -> None:
    config = TrainConfig(
        task="digits",
        hparams={
            "hidden_units": 16,
            "num_layers": 1,
            "batch_size": 64,
            "epochs": 3,
            "learning_rate": 0.01,
        },
        report_every=5,
        checkpoint_every=1,
    )
    trainer = Trainer(config)
    per_epoch = math.ceil(trainer.n_train / 64)
    script = {
        10: Directive(Action.CHECKPOINT),
        25: Directive(Action.UPDATE, {"learning_rate": 0.002}, event_id=1),
    }
    witness = Witness(trainer, script)
    trainer.fit(witness)

    steps = [s for s, *_ in witness.seen]
    assert steps == sorted({10, 25, per_epoch, 2 * per_epoch, 3 * per_epoch})
    for step, epoch, hp, data in witness.seen:
        assert checkpoint_progress(data) == (epoch, hp), step
        if step % per_epoch == 0:
            assert epoch == step / per_epoch
        else:
            assert epoch == step // per_epoch + (step % per_epoch) * 64 / trainer.n_train
    lr = {step: hp["learning_rate"] for step, _, hp, _ in witness.seen}
    assert lr[25] == 0.01  # taken before the update applied: a rewind lands on the old value
    assert lr[3 * per_epoch] == 0.002


def test_foreign_bytes_are_refused() -> None:
    with pytest.raises(CheckpointError):
        checkpoint_progress(npz_bytes(3))


class SlowUploads:
    """A fake server: answers every report at once and each upload after ``upload_seconds``;
    records what it got in order ("report" with its points' steps, "applied", "checkpoint",
    "checkpoint, then paused", "finish" with its status)."""

    def __init__(self, answers: list[dict[str, Any]] | None = None, upload_seconds: float = 0.3):
        self.answers = list(answers or [])
        self.upload_seconds = upload_seconds
        self.log: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "PUT":
            time.sleep(self.upload_seconds)
            kind = "checkpoint"
            if request.url.params.get("finish") == "paused":
                kind = "checkpoint, then paused"
            with self.lock:
                self.log.append((kind, int(request.url.params["step"])))
            return httpx2.Response(201, json={})
        body = json.loads(request.content)
        if request.url.path.endswith("/finish"):
            with self.lock:
                self.log.append(("finish", body["status"]))
            return httpx2.Response(200, json={"next": None})
        with self.lock:
            self.log.append(("report", sorted({p[0] for p in body["points"]})))
            if body.get("applied"):
                self.log.append(("applied", [a["event_id"] for a in body["applied"]]))
            answer = self.answers.pop(0) if self.answers else {"action": "continue"}
        return httpx2.Response(200, json=answer)

    def reporter(self) -> HttpReporter:
        client = WorkerClient("http://server")
        client.http = httpx2.Client(base_url="http://server", transport=httpx2.MockTransport(self))
        return HttpReporter(client, trial_id=1, attempt=1)


def small_checkpoint() -> bytes:
    config = TrainConfig(task="digits", hparams={"hidden_units": 8, "num_layers": 1})
    return Trainer(config).checkpoint_bytes()


def test_an_adjustment_is_reported_applied_only_after_its_checkpoint_is_stored() -> None:
    # The server answers the upload slowly. The report that shows the new value goes out at
    # once, but the entry that says "applied from step 11" must not overtake the upload, or a
    # worker lost in between leaves an applied step with no checkpoint to rewind to.
    server = SlowUploads()
    reporter = server.reporter()
    try:
        reporter.checkpoint(10, small_checkpoint())
        reporter.applied(Directive(action=Action.UPDATE, event_id=5), 11)
        reporter.report(11, 0.5, {"learning_rate": 0.002})  # due at once: the new value
        reporter.drain()
        reporter.flush()
    finally:
        reporter.close()
    assert server.log == [
        ("report", [11]),
        ("checkpoint", 10),
        ("report", []),
        ("applied", [5]),
    ]


def test_the_points_before_a_checkpoint_are_stored_before_it_and_before_later_points() -> None:
    # Steps 1-10 are buffered when the checkpoint at 10 is taken: they go first (a resume
    # from 10 reports only later steps), and step 11's report waits for them.
    server = SlowUploads(upload_seconds=0.2)
    reporter = server.reporter()
    reporter.min_interval = 60.0  # nothing goes out unless due for another reason
    try:
        for step in range(1, 11):
            reporter.report(step, step / 100, {"train_loss": 1.0})
        assert server.log == []
        reporter.checkpoint(10, small_checkpoint())
        reporter.urgent.set()  # step 11 is due at once
        reporter.report(11, 0.11, {"train_loss": 0.9})
        reporter.drain()
    finally:
        reporter.close()
    assert server.log == [("report", list(range(1, 11))), ("report", [11]), ("checkpoint", 10)]


def test_an_updates_checkpoint_waits_for_the_report_that_shows_the_new_values() -> None:
    # 8 MB arriving beside that report would slow it; other checkpoints go at once.
    server = SlowUploads(upload_seconds=0.0)
    reporter = server.reporter()
    reporter.min_interval = 60.0
    try:
        reporter.report(1, 0.01, {"train_loss": 1.0})
        reporter.checkpoint_later(1, small_checkpoint, before_update=True)
        time.sleep(0.3)
        assert server.log == [("report", [1])]  # the points went; the bytes wait
        reporter.urgent.set()
        reporter.report(2, 0.02, {"learning_rate": 0.5})
        reporter.drain()
        reporter.checkpoint_later(2, small_checkpoint)  # no update follows: it goes at once
        deadline = time.monotonic() + 30
        while ("checkpoint", 2) not in server.log and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        reporter.close()
    assert server.log == [("report", [1]), ("report", [2]), ("checkpoint", 1), ("checkpoint", 2)]


def test_a_pauses_checkpoint_ends_the_attempt_and_no_finish_follows() -> None:
    # The pause's upload carries finish=paused: the server ends the attempt with it, and
    # the pause costs one request fewer. A checkpoint taken at the end of training does not.
    server = SlowUploads(answers=[{"action": "pause"}], upload_seconds=0.0)
    reporter = server.reporter()
    config = TrainConfig(task="digits", hparams={"hidden_units": 8, "num_layers": 1})
    try:
        result = Trainer(config).fit(reporter)
        reporter.drain()
        claimed = reporter.finish(FinishStatus.PAUSED, result.step, result.epoch)
    finally:
        reporter.close()
    assert result.status is FitStatus.PAUSED and claimed is None
    assert server.log[-1] == ("checkpoint, then paused", result.step)
    assert not any(kind == "finish" for kind, _ in server.log)


def test_a_worker_handing_a_trial_back_finishes_it_with_a_requeue() -> None:
    server = SlowUploads(upload_seconds=0.0)
    reporter = server.reporter()
    reporter.client.retire.set()  # the worker is leaving: its pause hands the trial back
    config = TrainConfig(task="digits", hparams={"hidden_units": 8, "num_layers": 1})
    try:
        result = Trainer(config).fit(reporter)
        reporter.drain()
        reporter.finish(FinishStatus.REQUEUE, result.step, result.epoch)
    finally:
        reporter.close()
    assert server.log[-2:] == [("checkpoint", result.step), ("finish", "requeue")]


def test_a_directive_heard_by_the_watch_is_obeyed_without_asking_again() -> None:
    # The server has an edit waiting: the directive request hears it, and the trainer's next
    # step obeys it with no report in between; the same edit, answered again by the next
    # report before its "applied" entry is stored, is not obeyed twice.
    edit = {"action": "update", "hparams": {"learning_rate": 0.5}, "event_id": 7}
    server = SlowUploads(answers=[edit], upload_seconds=0.0)

    def directive_server(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/directive"):
            return httpx2.Response(200, json=edit)
        return server(request)

    client = WorkerClient("http://server")
    client.http = httpx2.Client(
        base_url="http://server", transport=httpx2.MockTransport(directive_server)
    )
    reporter = HttpReporter(client, trial_id=1, attempt=1, min_interval=60.0)
    reporter.watch_directives()
    try:
        assert reporter.urgent.wait(5), "the watch heard nothing"
        heard = reporter.report(1, 0.01, {"train_loss": 1.0})
        assert heard == Directive(Action.UPDATE, {"learning_rate": 0.5}, event_id=7)
        assert server.log == []  # obeyed without a round trip
        reporter.checkpoint(1, small_checkpoint())
        reporter.applied(heard, 2)
        again = reporter.report(2, 0.02, {"learning_rate": 0.5})
        assert again == Directive()  # the server still answers the edit: obeyed already
    finally:
        reporter.close()
        client.close()
    assert ("report", [2]) in server.log


def test_a_worker_reuses_its_last_data_set_for_the_same_task_and_split_only() -> None:
    cache = _LastData()
    first = cache.get(TrainConfig(task="digits", split_seed=1))
    assert cache.get(TrainConfig(task="digits", split_seed=1)) is first
    other = cache.get(TrainConfig(task="digits", split_seed=2))
    assert other is not first and not (other.y_dev == first.y_dev).all()


def test_a_cached_data_set_is_hashed_once_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = b"a,b,label\n1,2,0\n3,4,1\n"
    digest = hashlib.sha256(content).hexdigest()
    asked: list[str] = []

    def server(request: httpx2.Request) -> httpx2.Response:
        asked.append(request.url.path)
        if request.url.path.endswith("/content"):
            return httpx2.Response(200, content=content)
        return httpx2.Response(200, json={"sha256": digest})

    hashed: list[Path] = []
    real_hash = client_module.file_sha256
    monkeypatch.setattr(
        client_module, "file_sha256", lambda path: hashed.append(path) or real_hash(path)
    )
    client = WorkerClient("http://server")
    client.http = httpx2.Client(base_url="http://server", transport=httpx2.MockTransport(server))
    cache = DatasetCache(client, tmp_path)
    name = "0123456789abcdef0123456789abcdef.csv"
    path = cache.local_path(f"/server/uploads/{name}")  # fetched: its bytes hashed as they came
    assert path.read_bytes() == content
    for _ in range(3):
        assert cache.local_path(name) == path
    assert (hashed, cache.downloads) == ([], 1)
    assert asked == [f"/api/uploads/{name}", f"/api/uploads/{name}/content"]

    path.write_bytes(content.replace(b"1,2", b"9,9"))  # same size, other bytes, a new mtime
    assert cache.local_path(name) == path
    assert (hashed, cache.downloads) == ([path], 2)
    assert path.read_bytes() == content
