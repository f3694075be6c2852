"""Batches that span epochs, and finishes that carry the worker's last buffered points.

A worker sends what it gathered at most every report interval (0.1 s), so one batch of a small
network may hold several epochs' ends, and a trial shorter than the interval sends its points
with the finish. Early stopping must still see every epoch's end.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.storage.models import IntermediateValue, Metric, RungRecordRow, Trial
from tests.api.test_caviar import caviar_study, claim_one, epoch_report
from tests.conftest import DB
from tests.factories import finish, running_trial

ASHA = {"name": "asha", "min_resource": 1, "reduction_factor": 2}  # rungs at epochs 1, 2, 4


def _epochs(first: int, last: int, value: float) -> tuple[list[list[Any]], list[list[int]]]:
    """Points and epoch ends of epochs ``first..last`` (10 steps an epoch)."""
    points = [[10 * e, "dev_accuracy", value] for e in range(first, last + 1)]
    return points, [[10 * e, e] for e in range(first, last + 1)]


def test_a_batch_spanning_two_epochs_reaches_the_scheduler_at_both(
    client: TestClient, db: DB
) -> None:
    caviar_study(client, scheduler=ASHA)
    tid, attempt = claim_one(client)
    points, ends = _epochs(1, 2, 0.8)
    body = {"attempt": attempt, "step": 25, "epoch": 2.5, "points": points, "epoch_ends": ends}
    r = client.post(f"/api/workers/trials/{tid}/report", json=body)
    assert r.status_code == 200, r.text
    values = db.all(select(IntermediateValue).where(IntermediateValue.trial_id == tid))
    assert sorted((v.resource, v.value) for v in values) == [(1, 0.8), (2, 0.8)]
    rungs = db.all(select(RungRecordRow).where(RungRecordRow.trial_id == tid))
    assert sorted(r.rung for r in rungs) == [0, 1]


def test_a_prune_decided_inside_a_batch_is_answered_by_that_batch(client: TestClient) -> None:
    caviar_study(client, scheduler=ASHA)
    (a, att_a), (b, att_b) = claim_one(client), claim_one(client)
    assert epoch_report(client, a, att_a, 1, 0.9) == "continue"
    points, ends = _epochs(1, 2, 0.1)  # b is below a at epoch 1: out of rung 0's top half
    body = {"attempt": att_b, "step": 20, "epoch": 2.0, "points": points, "epoch_ends": ends}
    r = client.post(f"/api/workers/trials/{b}/report", json=body)
    assert r.json()["action"] == "stop"


def test_finish_stores_the_buffered_points_and_their_epoch_ends(
    client: TestClient, db: DB
) -> None:
    caviar_study(client, scheduler=ASHA)
    (a, att_a), (b, att_b) = claim_one(client), claim_one(client)
    # a ran its 4 epochs inside one report interval: everything comes with the finish.
    points, ends = _epochs(1, 4, 0.9)
    r = finish(
        client,
        a,
        att_a,
        "completed",
        40,
        epoch=4.0,
        points=points,
        epoch_ends=ends,
        metrics={"dev_accuracy": 0.9, "test_accuracy": 0.88},
    )
    assert r.status_code == 200 and r.json()["state"] == "completed", r.text
    curve = db.all(select(Metric).where(Metric.trial_id == a, Metric.name == "dev_accuracy"))
    assert [(m.step, m.value) for m in sorted(curve, key=lambda m: m.step)] == [
        (10, 0.9),
        (20, 0.9),
        (30, 0.9),
        (40, 0.9),
    ]
    assert db.get(Trial, a).best_value == 0.9
    assert db.count(IntermediateValue, IntermediateValue.trial_id == a) == 4
    # a's rung records count for b: without them b would be alone at rung 0 and continue.
    assert epoch_report(client, b, att_b, 1, 0.5) == "stop"


def test_final_metrics_win_over_a_buffered_point_at_the_same_step(
    client: TestClient, db: DB
) -> None:
    tid, attempt = running_trial(client)
    points = [[7, "train_loss", 0.5], [9, "dev_loss", 0.3]]
    r = finish(client, tid, attempt, "completed", 9, points=points, metrics={"dev_loss": 0.25})
    assert r.status_code == 200, r.text
    rows = db.rows(select(Metric.step, Metric.name, Metric.value).where(Metric.trial_id == tid))
    assert sorted(rows) == [(7, "train_loss", 0.5), (9, "dev_loss", 0.25)]


def test_bad_epoch_ends_are_refused_naming_the_field_and_write_nothing(
    client: TestClient, db: DB
) -> None:
    tid, attempt = running_trial(client)
    before = db.snapshot()
    for ends in ([[10, 0]], [[-1, 1]], [[10]], "x"):
        body = {
            "attempt": attempt,
            "step": 10,
            "epoch": 1.0,
            "points": [[10, "train_loss", 0.5]],
            "epoch_ends": ends,
        }
        r = client.post(f"/api/workers/trials/{tid}/report", json=body)
        assert r.status_code == 422, r.text
        assert "epoch_ends" in r.text
        r = finish(client, tid, attempt, "completed", 10, epoch_ends=ends)
        assert r.status_code == 422 and "epoch_ends" in r.text
    assert db.snapshot() == before


def test_a_step_beyond_32_bits_is_refused_naming_the_field(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client)
    before = db.snapshot()
    big = 2**31
    bodies = {
        "step": {"attempt": attempt, "step": big, "epoch": 1.0},
        "points": {
            "attempt": attempt,
            "step": 1,
            "epoch": 1.0,
            "points": [[big, "train_loss", 0.5]],
        },
        "attempt": {"attempt": big, "step": 1, "epoch": 1.0},
    }
    for field, body in bodies.items():
        r = client.post(f"/api/workers/trials/{tid}/report", json=body)
        assert r.status_code == 422, r.text
        assert field in r.text and str(2**31 - 1) in r.text
    r = finish(client, tid, attempt, "completed", big)
    assert r.status_code == 422 and "step" in r.text
    assert db.snapshot() == before
