"""A finish that carries ``claim``: the worker's next trial is claimed in the same request.

Run on SQLite (one transaction) and on PostgreSQL (the finish commits, then the claim runs).
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.storage.models import Trial, TrialState
from tests.api.test_caviar import caviar_study, claim_one, epoch_report
from tests.conftest import DB
from tests.factories import create_study, create_trial, finish, running_trial


def test_finish_with_claim_hands_out_the_oldest_queued_trial(client: TestClient, db: DB) -> None:
    first, attempt = running_trial(client)
    study = db.all(select(Trial).where(Trial.id == first))[0].study_id
    second, third = create_trial(client, study)["id"], create_trial(client, study)["id"]
    r = finish(
        client,
        first,
        attempt,
        "completed",
        10,
        metrics={"dev_accuracy": 0.9},
        claim={"worker": "w-next"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["id"], body["state"]) == (first, "completed")
    nxt = body["next"]
    assert (nxt["trial_id"], nxt["attempt"]) == (second, 1)
    assert nxt["config"]["task"] == "digits"
    rows = {t.id: t for t in db.all(select(Trial))}
    assert rows[first].state is TrialState.COMPLETED
    assert (rows[second].state, rows[second].worker) == (TrialState.RUNNING, "w-next")
    assert rows[third].state is TrialState.QUEUED


def test_finish_without_claim_or_with_an_empty_queue_claims_nothing(
    client: TestClient, db: DB
) -> None:
    tid, attempt = running_trial(client)
    r = finish(client, tid, attempt, "completed", 10, claim={"worker": "w"})
    assert r.status_code == 200, r.text
    assert r.json()["next"] is None
    other, attempt2 = running_trial(client)
    queued = create_trial(client, create_study(client)["id"])["id"]
    r = finish(client, other, attempt2, "completed", 10)
    assert r.json()["next"] is None
    assert db.all(select(Trial).where(Trial.id == queued))[0].state is TrialState.QUEUED


def test_a_refused_finish_claims_nothing(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client)
    queued = create_trial(client)["id"]
    before = db.snapshot()
    stale = finish(client, tid, attempt + 1, "completed", 10, claim={"worker": "w"})
    assert stale.status_code == 409
    bad = finish(client, tid, attempt, "completed", 10, claim={"worker": ""})
    assert bad.status_code == 422
    assert "claim" in bad.json()["detail"]
    assert db.snapshot() == before
    assert db.all(select(Trial).where(Trial.id == queued))[0].state is TrialState.QUEUED


def test_a_caviar_finish_frees_its_slot_for_the_claim_it_carries(
    client: TestClient, db: DB
) -> None:
    # parallelism 2, budget 4: two run; the finish of one must let its claim take the third.
    study = caviar_study(client)
    (a, att_a), (b, _) = claim_one(client), claim_one(client)
    assert epoch_report(client, a, att_a, 1, 0.5) == "continue"
    r = finish(
        client,
        a,
        att_a,
        "completed",
        40,
        epoch=4.0,
        metrics={"dev_accuracy": 0.5},
        claim={"worker": "w"},
    )
    assert r.status_code == 200, r.text
    nxt = r.json()["next"]
    assert nxt is not None and nxt["trial_id"] not in (a, b)
    running = db.all(
        select(Trial).where(Trial.study_id == study["id"], Trial.state == TrialState.RUNNING)
    )
    assert sorted(t.id for t in running) == sorted([b, nxt["trial_id"]])
