"""GET /api/studies/{id}/curves: every trial's objective on one epoch axis."""

from __future__ import annotations

import math
from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_caviar import claim_one, trials_of
from tests.factories import create_study, finish, upload

N_TRAIN = 1000  # examples an epoch: ceil(1000 / batch) steps
EPOCHS = 3


def steps_per_epoch(batch_size: int) -> int:
    return math.ceil(N_TRAIN / batch_size)


def batch_study(client: TestClient) -> dict[str, Any]:
    """A caviar grid over batch sizes 32 and 256: two trials, one 8 times the other's steps."""
    space = {"batch_size": {"dist": "log_int", "low": 32, "high": 256}, "epochs": EPOCHS}
    return create_study(
        client, mode="caviar", space=space, sampler={"name": "grid", "points_per_dim": 2},
        budget={"trials": 2}, parallelism=2, objective={"metric": "dev_accuracy"},
    )  # fmt: skip


def report(
    client: TestClient, trial_id: int, attempt: int, step: int, epoch: float, value: float
) -> None:
    body = {
        "attempt": attempt,
        "step": step,
        "epoch": epoch,
        "points": [[step, "dev_accuracy", value], [step, "train_loss", 1 - value]],
    }
    r = client.post(f"/api/workers/trials/{trial_id}/report", json=body)
    assert r.status_code == 200, r.text


def train(
    client: TestClient, trial_id: int, attempt: int, batch: int, values: list[float]
) -> None:
    """Report like a worker: a point mid-epoch (left out of the curves), one at each end."""
    per = steps_per_epoch(batch)
    for epoch, value in enumerate(values, start=1):
        report(client, trial_id, attempt, per * epoch - per // 2, epoch - 0.5, 0.0)
        report(client, trial_id, attempt, per * epoch, float(epoch), value)
    r = finish(client, trial_id, attempt, "completed", per * len(values), epoch=len(values))
    assert r.status_code == 200, r.text


def curves_of(client: TestClient, study_id: int, **params: Any) -> dict[int, list[list[Any]]]:
    r = client.get(f"/api/studies/{study_id}/curves", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["data"])
    return {c["trial_id"]: c["points"] for c in body["data"]}


def test_get_curves_puts_trials_of_different_batch_sizes_on_one_epoch_axis(
    client: TestClient,
) -> None:
    sid = batch_study(client)["id"]
    values = {32: [0.5, 0.7, 0.8], 256: [0.3, 0.4, 0.6]}
    batches = {}
    for _ in range(2):
        tid, attempt = claim_one(client)
        batch = next(t for t in trials_of(client, sid) if t["id"] == tid)["hparams"]["batch_size"]
        batches[tid] = batch
        train(client, tid, attempt, batch, values[batch])
    assert sorted(batches.values()) == [32, 256]  # 32 and 4 steps an epoch

    body = client.get(f"/api/studies/{sid}/curves").json()
    assert body["metric"] == "dev_accuracy"
    got = curves_of(client, sid)
    assert set(got) == set(batches)
    for tid, batch in batches.items():
        # Epoch ends, not steps (32 * 3 = 96 for the small batch), and no mid-epoch point.
        assert got[tid] == [[e, v] for e, v in zip([1, 2, 3], values[batch], strict=True)]

    small = next(t for t, b in batches.items() if b == 32)
    assert curves_of(client, sid, trials=str(small)) == {small: got[small]}
    assert curves_of(client, sid, trials=str(small), max_points=2) == {
        small: [got[small][0], got[small][-1]]
    }


def test_get_curves_lists_trials_without_points_and_only_the_studys(client: TestClient) -> None:
    sid = batch_study(client)["id"]
    other = batch_study(client)["id"]
    ids = [t["id"] for t in trials_of(client, sid)]
    foreign = trials_of(client, other)[0]["id"]
    got = curves_of(client, sid, trials=",".join(map(str, [*ids, foreign])))
    assert got == {ids[0]: [], ids[1]: []}


def test_get_curves_panda_steps_become_epochs_between_checkpoints(client: TestClient) -> None:
    sid = create_study(client, objective={"metric": "dev_loss"})["id"]
    r = client.post(f"/api/studies/{sid}/trials", json={"hparams": {"batch_size": 100}})
    assert r.status_code == 201, r.text
    tid, attempt = claim_one(client)
    # 10 steps an epoch; the batch becomes 250 (4 steps an epoch) after a checkpoint at 20.
    reports = [(10, 1.0, 0.9), (20, 2.0, 0.8), (24, 3.0, 0.7), (28, 4.0, 0.6)]
    for step, epoch, value in reports:
        if step == 24:
            assert upload(client, tid, attempt, 20).status_code == 201
        body = {"attempt": attempt, "step": step, "epoch": epoch,
                "points": [[step, "dev_loss", value]]}  # fmt: skip
        assert client.post(f"/api/workers/trials/{tid}/report", json=body).status_code == 200
    got = curves_of(client, sid)
    assert got == {tid: [[1.0, 0.9], [2.0, 0.8], [3.0, 0.7], [4.0, 0.6]]}


def test_get_curves_bad_trials(client: TestClient) -> None:
    sid = batch_study(client)["id"]
    for bad in ("x", "1,", ",1", "1;2"):
        r = client.get(f"/api/studies/{sid}/curves", params={"trials": bad})
        assert r.status_code == 422, bad


def test_get_curves_not_found(client: TestClient) -> None:
    r = client.get("/api/studies/999/curves")
    assert r.status_code == 404 and r.json()["detail"] == "study 999 not found"
