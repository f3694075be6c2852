"""ASHA in pause mode through the worker protocol: park at a rung, promote, end with the study."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.config import Settings
from app.main import create_app
from app.storage.models import Event, EventKind
from tests.api.test_caviar import caviar_study, claim_one, epoch_report, trials_of
from tests.conftest import DB
from tests.factories import finish, upload

# eta 2, rungs at epochs 1 and 2, trials of 4 epochs; maximise dev accuracy.
PAUSE_ASHA = {"name": "asha", "mode": "pause", "min_resource": 1, "reduction_factor": 2}


def park(client: TestClient, trial_id: int, attempt: int, epoch: int) -> dict[str, Any]:
    """What a worker does on a PAUSE: checkpoint where it is, then end the attempt paused."""
    assert upload(client, trial_id, attempt, 10 * epoch).status_code == 201
    r = finish(client, trial_id, attempt, "paused", 10 * epoch, epoch=float(epoch))
    assert r.status_code == 200, r.text
    return dict(r.json())


def states(client: TestClient, study_id: int) -> dict[int, str]:
    return {t["number"]: t["state"] for t in trials_of(client, study_id)}


@pytest.fixture
def restart(settings: Settings) -> Iterator[Any]:
    """A fresh server (app) on the same database: nothing but the stored rows carries over."""
    clients: list[TestClient] = []

    def start() -> TestClient:
        c = TestClient(create_app(settings))
        c.__enter__()
        clients.append(c)
        return c

    yield start
    for c in clients:
        c.__exit__(None, None, None)


def test_a_trial_waits_at_its_rung_is_promoted_later_and_the_rest_end_pruned(
    client: TestClient, db: DB, restart: Any
) -> None:
    study = caviar_study(client, scheduler=PAUSE_ASHA, budget={"trials": 4})
    sid = study["id"]
    (a, att_a), (b, att_b) = claim_one(client), claim_one(client)
    # Rung 0, n=1: keep floor(1/2) = 0, so the first arrival waits instead of running on.
    assert epoch_report(client, a, att_a, 1, 0.5) == "pause"
    parked = park(client, a, att_a, 1)
    assert parked["state"] == "paused" and parked["parked"] is True
    assert parked["stopped_because"] == {
        "kind": "pause", "scheduler": "asha", "resource": 1, "value": 0.5,
        "rung": 0, "keep": 0, "of": 1,
    }  # fmt: skip
    (pause,) = db.all(select(Event).where(Event.trial_id == a, Event.kind == EventKind.PAUSE))
    # Why: the first record at rung 0 lets none of 1 go on yet (no cut until eta records).
    assert pause.payload == {
        "scheduler": "asha", "resource": 1, "value": 0.5, "rung": 0, "keep": 0, "of": 1,
    }  # fmt: skip
    # Nothing to promote yet, so the free slot goes to a new configuration (trial 2).
    assert states(client, sid) == {0: "paused", 1: "running", 2: "queued"}
    assert epoch_report(client, b, att_b, 1, 0.9) == "continue"  # n=2, keep 1: 0.9
    c, att_c = claim_one(client)
    assert epoch_report(client, c, att_c, 1, 0.7) == "pause"  # n=3, keep 1: 0.9
    park(client, c, att_c, 1)

    client = restart()  # the rung records and the events are all a server needs
    d, att_d = claim_one(client)
    assert epoch_report(client, d, att_d, 1, 0.8) == "continue"  # n=4, keep 2: 0.9, 0.8
    assert epoch_report(client, b, att_b, 2, 0.95) == "pause"  # rung 1, n=1: keep 0
    park(client, b, att_b, 2)
    # The budget (4 trials) is spent and no waiting trial ranks high enough: d runs alone.
    assert states(client, sid) == {0: "paused", 1: "paused", 2: "paused", 3: "running"}
    assert epoch_report(client, d, att_d, 2, 0.85) == "pause"  # rung 1, n=2: keep 1 = b
    park(client, d, att_d, 2)
    # d's record made b the best of rung 1's 2: b is promoted and resumes from its checkpoint.
    assert states(client, sid)[1] == "queued"
    listed = {t["number"]: t["parked"] for t in trials_of(client, sid)}
    assert listed == {0: True, 1: False, 2: True, 3: True}
    r = client.post("/api/workers/claim", json={"worker": "w"})
    assert r.json()["trial_id"] == b and r.json()["checkpoint"]["step"] == 20
    att_b = r.json()["attempt"]
    for epoch in (3, 4):
        assert epoch_report(client, b, att_b, epoch, 0.96) == "continue"
    done = finish(client, b, att_b, "completed", 40, epoch=4.0, metrics={"dev_accuracy": 0.96})
    assert done.json()["state"] == "completed"
    # Nothing runs and nothing may start: the last promotion takes ceil(n / 2) of each rung,
    # which b (rung 1) and b, d (rung 0) already hold; a, c and d end as pruned.
    assert states(client, sid) == {0: "pruned", 1: "completed", 2: "pruned", 3: "pruned"}
    assert client.get(f"/api/studies/{sid}").json()["state"] == "completed"
    resumed = db.all(select(Event).where(Event.trial_id == b, Event.kind == EventKind.RESUME))
    assert [e.payload for e in resumed] == [{"scheduler": "asha"}]
    pruned = db.all(select(Event).where(Event.kind == EventKind.PRUNE))
    assert sorted(e.trial_id for e in pruned) == sorted([a, c, d])
    # Ended with the study, each says where it waited and what it was compared with there.
    why = {t["number"]: t["stopped_because"] for t in trials_of(client, sid)}
    assert why[1] is None  # promoted, then completed
    assert why[0] == {
        "kind": "prune", "scheduler": "asha", "reason": "the study ended while it waited",
        "resource": 1, "value": 0.5, "rung": 0, "keep": 0, "of": 1,
    }  # fmt: skip
    assert why[3]["rung"] == 1 and why[3]["cut"] == 0.95 and why[3]["of"] == 2


def test_eager_top_sends_the_top_rungs_first_arrival_on(client: TestClient, db: DB) -> None:
    study = caviar_study(client, scheduler={**PAUSE_ASHA, "eager_top": True}, budget={"trials": 4})
    assert study["scheduler_settings"]["eager_top"] is True
    (a, att_a), (b, att_b) = claim_one(client), claim_one(client)
    assert epoch_report(client, a, att_a, 1, 0.5) == "pause"  # rung 0 waits as in pause mode
    park(client, a, att_a, 1)
    assert epoch_report(client, b, att_b, 1, 0.9) == "continue"
    # Rung 1 (epoch 2) is the top rung of 4-epoch trials: n=1 keeps max(1, 0) = 1.
    assert epoch_report(client, b, att_b, 2, 0.95) == "continue"
    assert states(client, study["id"]) == {0: "paused", 1: "running", 2: "queued"}


def test_a_trial_paused_by_a_user_is_never_promoted_or_pruned(client: TestClient, db: DB) -> None:
    study = caviar_study(client, scheduler=PAUSE_ASHA, budget={"trials": 2})
    (a, att_a), (b, att_b) = claim_one(client), claim_one(client)
    assert client.post(f"/api/trials/{a}/pause").status_code == 200
    assert upload(client, a, att_a, 5).status_code == 201
    paused = finish(client, a, att_a, "paused", 5, epoch=0.5).json()
    assert paused["state"] == "paused" and paused["parked"] is False
    assert epoch_report(client, b, att_b, 1, 0.9) == "pause"
    park(client, b, att_b, 1)
    # Nothing runs and the budget is spent: the last promotion sends b on (ceil(1/2) = 1);
    # a stays paused, and so the study stays open, until its user decides.
    assert states(client, study["id"]) == {0: "paused", 1: "queued"}
    b2, att_b2 = claim_one(client)
    assert b2 == b
    finish(client, b, att_b2, "completed", 40, epoch=4.0, metrics={"dev_accuracy": 0.9})
    assert states(client, study["id"]) == {0: "paused", 1: "completed"}
    assert client.get(f"/api/studies/{study['id']}").json()["state"] == "active"


@pytest.mark.parametrize(("mode", "field"), [("later", "scheduler.mode")])
def test_an_unknown_mode_is_a_422_naming_it(client: TestClient, mode: str, field: str) -> None:
    body = {
        "name": "s",
        "mode": "caviar",
        "task": "digits",
        "space": {"epochs": 4},
        "scheduler": {**PAUSE_ASHA, "mode": mode},
        "budget": {"trials": 2},
    }
    r = client.post("/api/studies", json=body)
    assert r.status_code == 422
    assert field in r.text and "'stop', 'pause'" in r.text
