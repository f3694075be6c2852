"""Studies: create, list, get, delete; creating and listing their trials."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select

from app.storage.models import Checkpoint, Metric, Round, Study, Trial
from app.trials.leases import reap_once
from tests.api.test_caviar import caviar_study, complete
from tests.conftest import DB
from tests.factories import (
    after_the_leases,
    claim,
    create_study,
    create_trial,
    finish,
    report,
    running_trial,
    upload,
)


def test_create_study(client: TestClient, db: DB) -> None:
    r = client.post(
        "/api/studies",
        json={
            "name": "babysit",
            "mode": "panda",
            "task": "digits",
            "space": {"learning_rate": 0.01},
            "objective": {"metric": "dev_loss"},
            "epochs": 5,
            "budget": {"trials": 1},
            "parallelism": 1,
        },
    )
    assert r.status_code == 201
    body = r.json()
    assert isinstance(body["id"], int)
    assert body["objective"] == {"metric": "dev_loss", "direction": "minimize"}
    assert body["epochs"] == 5 and body["state"] == "active" and body["counts"] == {}
    assert db.count(Study) == 1


def test_create_caviar_study_stores_space_and_first_round(client: TestClient, db: DB) -> None:
    space = {
        "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1.0},
        "optimizer": {"dist": "choice", "values": ["adam", "sgd"]},
        "batch_size": 128,
    }
    body = create_study(
        client,
        mode="caviar",
        space=space,
        sampler="random",
        scheduler="asha",
        budget={"trials": 50},
        parallelism=4,
    )
    assert body["space"] == space and body["scheduler"] == "asha"
    assert body["budget"] == {"trials": 50} and body["parallelism"] == 4
    (first,) = db.all(select(Round))
    assert first.number == 1 and first.space == space
    # The first `parallelism` trials are sampled at once, inside the space.
    trials = db.all(select(Trial))
    assert len(trials) == 4 and {t.round_id for t in trials} == {first.id}
    assert all(1e-4 <= t.hparams["learning_rate"] <= 1.0 for t in trials)
    assert all(t.hparams["batch_size"] == 128 for t in trials)


def test_create_study_fills_task_options(client: TestClient) -> None:
    body = create_study(client, task="moons", task_options={"noise": 0.1})
    assert body["task_options"]["noise"] == 0.1
    assert "n_samples" in body["task_options"]


BAD_STUDIES: list[tuple[dict[str, Any], str]] = [
    ({"task": "imagenet"}, "task"),
    ({"task": "moons", "task_options": {"noise": 99}}, "noise"),
    ({"task": "moons", "task_options": {"colour": 1}}, "colour"),
    ({"task": "file", "task_options": {"path": "/etc/passwd"}}, "task_options.path"),
    ({"space": {"learning_rate": -1}}, "space.learning_rate"),
    ({"space": {"hidden_units": 0}}, "space.hidden_units"),
    ({"space": {"warp_factor": 9}}, "space.warp_factor"),
    ({"space": {"learning_rate": {"low": 1e-4, "high": 1.0}}}, "panda"),
    ({"mode": "caviar", "space": {"learning_rate": {"low": -1, "high": 1.0}}}, "learning_rate"),
    ({"mode": "hamster"}, "mode"),
    ({"epochs": 0}, "epochs"),
    ({"budget": {"trials": 0}}, "budget.trials"),
    ({"parallelism": 0}, "parallelism"),
    ({"objective": {"metric": "dev_accuracy", "direction": "up"}}, "objective.direction"),
    ({"name": ""}, "name"),
    ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("fields", "named"), BAD_STUDIES)
def test_create_study_invalid(
    client: TestClient, db: DB, fields: dict[str, Any], named: str
) -> None:
    before = db.snapshot()
    r = client.post("/api/studies", json={"name": "bad", **fields})
    assert r.status_code == 422, r.text
    assert named in r.json()["detail"]
    assert db.snapshot() == before


def test_create_study_invalid_range_is_named(client: TestClient) -> None:
    r = client.post("/api/studies", json={"name": "x", "space": {"learning_rate": 0}})
    assert "(0, 10]" in r.json()["detail"]


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        # A bounded field names its whole range, in plain words.
        ({"parallelism": 0}, "parallelism: a whole number of trials at once from 1 to 1024"),
        (
            {"budget": {"trials": "many"}},
            "budget.trials: a whole number of trials from 1 to 100000",
        ),
        ({"name": ""}, "name: give the study a name"),
        ({"mode": "hamster"}, "mode: got 'hamster', allowed: 'panda' or 'caviar'"),
        # A validator's own sentence, without pydantic's "Value error, " prefix.
        (
            {"mode": "caviar", "budget": {"trials": 2, "epochs": 9}},
            "budget: give trials or epochs, not both",
        ),
    ],
)
def test_validation_error_wording(client: TestClient, fields: dict[str, Any], detail: str) -> None:
    r = client.post("/api/studies", json={"name": "bad", **fields})
    assert r.status_code == 422 and r.json()["detail"] == detail, r.text


def test_list_studies(client: TestClient) -> None:
    a = create_study(client, name="a")
    b = create_study(client, name="b")
    create_trial(client, a["id"])
    listed = client.get("/api/studies").json()
    assert listed["count"] == 2
    assert [s["id"] for s in listed["data"]] == [b["id"], a["id"]]
    assert listed["data"][1]["counts"] == {"queued": 1}
    page = client.get("/api/studies", params={"limit": 1, "offset": 1}).json()
    assert [s["id"] for s in page["data"]] == [a["id"]] and page["count"] == 2
    assert client.get("/api/studies", params={"limit": 0}).status_code == 422


def test_get_study(client: TestClient) -> None:
    study = create_study(client, name="one")
    r = client.get(f"/api/studies/{study['id']}")
    assert r.status_code == 200 and r.json()["name"] == "one"


def test_epochs_budget_shows_in_create_get_and_list(client: TestClient) -> None:
    space = {"learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1.0}, "epochs": 2}
    created = create_study(client, mode="caviar", space=space, budget={"epochs": 10})
    got = client.get(f"/api/studies/{created['id']}").json()
    (listed,) = client.get("/api/studies").json()["data"]
    assert created["budget"] == got["budget"] == listed["budget"] == {"epochs": 10}


def test_get_study_sampler_info_grid_against_random(client: TestClient) -> None:
    space = {
        "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1.0},
        "hidden_units": {"dist": "int_uniform", "low": 8, "high": 32},
        "epochs": 2,
    }
    common = {"mode": "caviar", "space": space, "budget": {"trials": 9}, "parallelism": 9}
    grid = create_study(client, sampler={"name": "grid", "points_per_dim": 3}, **common)
    rand = create_study(client, sampler="random", **common)
    info = client.get(f"/api/studies/{grid['id']}").json()["sampler_info"]
    assert info == {
        "sampler": "grid",
        "distinct_values": {"learning_rate": 3, "hidden_units": 3},
        "grid_size": 9,
        "trials": 9,
    }
    info = client.get(f"/api/studies/{rand['id']}").json()["sampler_info"]
    assert info["sampler"] == "random" and info["grid_size"] is None and info["trials"] == 9
    assert info["distinct_values"]["learning_rate"] == 9
    assert 1 < info["distinct_values"]["hidden_units"] <= 9  # integers may repeat
    panda = create_study(client)
    assert client.get(f"/api/studies/{panda['id']}").json()["sampler_info"] is None
    assert all(s["sampler_info"] is None for s in client.get("/api/studies").json()["data"])


def test_get_study_not_found(client: TestClient) -> None:
    r = client.get("/api/studies/999")
    assert r.status_code == 404
    assert r.json() == {"detail": "study 999 not found"}


def test_delete_study_removes_trials_and_files(client: TestClient, db: DB) -> None:
    tid, attempt = running_trial(client)
    report(client, tid, attempt, 1, [[1, "train_loss", 0.5]])
    upload(client, tid, attempt, 1)
    (ckpt,) = db.all(select(Checkpoint))
    client.post(f"/api/trials/{tid}/stop")
    client.post(
        f"/api/workers/trials/{tid}/finish",
        json={"attempt": attempt, "status": "stopped", "step": 1},
    )
    study_id = db.get(Trial, tid).study_id
    assert client.delete(f"/api/studies/{study_id}").status_code == 204
    assert (db.count(Study), db.count(Trial), db.count(Metric), db.count(Checkpoint)) == (0,) * 4
    assert not Path(ckpt.path).exists()
    assert client.get(f"/api/studies/{study_id}").status_code == 404


def test_delete_study_not_found(client: TestClient) -> None:
    assert client.delete("/api/studies/999").status_code == 404


def test_delete_study_with_running_trial_conflict(client: TestClient, db: DB) -> None:
    tid, _ = running_trial(client)
    study_id = db.get(Trial, tid).study_id
    before = db.snapshot()
    r = client.delete(f"/api/studies/{study_id}")
    assert r.status_code == 409 and "running" in r.json()["detail"]
    assert db.snapshot() == before


def test_create_trial(client: TestClient) -> None:
    study = create_study(client, epochs=3, space={"batch_size": 32})
    r = client.post(
        f"/api/studies/{study['id']}/trials", json={"hparams": {"learning_rate": 0.05}}
    )
    assert r.status_code == 201
    trial = r.json()
    assert trial["state"] == "queued" and trial["number"] == 0 and trial["attempt"] == 0
    hp = trial["hparams"]
    assert (hp["learning_rate"], hp["batch_size"], hp["epochs"]) == (0.05, 32, 3)
    assert create_trial(client, study["id"])["number"] == 1


def test_create_trial_in_caviar_study(client: TestClient) -> None:
    study = create_study(
        client,
        mode="caviar",
        space={"learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1.0}},
    )
    trial = create_trial(client, study["id"], learning_rate=0.3)
    assert trial["hparams"]["learning_rate"] == 0.3
    assert trial["round_id"] is not None


def test_create_trial_study_not_found(client: TestClient, db: DB) -> None:
    r = client.post("/api/studies/999/trials", json={"hparams": {}})
    assert r.status_code == 404
    assert db.count(Trial) == 0


RAW_BAD_LR = [b"-0.1", b"0", b"NaN", b"Infinity", b"1e400", b'"NaN"', b'"0.01"', b"true"]


@pytest.mark.parametrize("raw", RAW_BAD_LR)
def test_create_trial_invalid_learning_rate(client: TestClient, db: DB, raw: bytes) -> None:
    study = create_study(client)
    before = db.snapshot()
    r = client.post(
        f"/api/studies/{study['id']}/trials",
        content=b'{"hparams": {"learning_rate": %s}}' % raw,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "learning_rate" in detail and "(0, 10]" in detail
    assert db.snapshot() == before


@pytest.mark.parametrize(
    ("hparams", "named"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"momentum": 1.0}, "momentum"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"nonsense": 1}, "nonsense"),
        ({"decay_schedule": "exponential", "lr_decay": 5.0}, "lr_decay"),
    ],
)
def test_create_trial_invalid_hparams(
    client: TestClient, db: DB, hparams: dict[str, Any], named: str
) -> None:
    study = create_study(client)
    before = db.snapshot()
    r = client.post(f"/api/studies/{study['id']}/trials", json={"hparams": hparams})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert named in detail and ("allowed" in detail or "known" in detail)
    assert db.snapshot() == before


def test_list_trials_filter_sort_paginate(client: TestClient) -> None:
    study = create_study(client)
    ids = [create_trial(client, study["id"])["id"] for _ in range(4)]
    got = claim(client)
    report(client, got["trial_id"], got["attempt"], 1, [[1, "dev_accuracy", 0.7]])
    url = f"/api/studies/{study['id']}/trials"
    assert client.get(url).json()["count"] == 4
    running = client.get(url, params={"state": "running"}).json()
    assert [t["id"] for t in running["data"]] == [ids[0]] and running["count"] == 1
    both = client.get(url, params={"state": "running,queued"}).json()
    assert both["count"] == 4
    newest = client.get(url, params={"sort": "-number", "limit": 2, "offset": 1}).json()
    assert [t["id"] for t in newest["data"]] == [ids[2], ids[1]] and newest["count"] == 4
    best = client.get(url, params={"sort": "best"}).json()
    assert best["data"][0]["best_value"] == 0.7


def test_list_trials_not_found(client: TestClient) -> None:
    assert client.get("/api/studies/999/trials").status_code == 404


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"state": "sleeping"}, "state"),
        ({"sort": "colour"}, "sort"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
def test_list_trials_invalid(client: TestClient, params: dict[str, Any], named: str) -> None:
    study = create_study(client)
    r = client.get(f"/api/studies/{study['id']}/trials", params=params)
    assert r.status_code == 422 and named in r.json()["detail"]


# -- progress: ended trials out of every trial the study plans --------------------------------


def progress_of(client: TestClient, study_id: int) -> dict[str, int]:
    """The study's progress as GET shows it, checked equal to what the list shows."""
    got = client.get(f"/api/studies/{study_id}").json()["progress"]
    listed = {s["id"]: s["progress"] for s in client.get("/api/studies").json()["data"]}
    assert listed[study_id] == got
    assert 0 <= got["ended"] <= got["planned"]
    return dict(got)


def test_progress_counts_later_rounds_retests_and_trials_added_by_hand(
    client: TestClient,
) -> None:
    sid = caviar_study(client, budget={"trials": 4})["id"]  # parallelism 2: 2 sampled so far
    assert progress_of(client, sid) == {"ended": 0, "planned": 4}
    for value in (0.5, 0.9, 0.7, 0.6):
        complete(client, value)
    assert progress_of(client, sid) == {"ended": 4, "planned": 4}
    # Round 2 plans 3 trials at once, though only 2 are sampled (parallelism).
    r = client.post(f"/api/studies/{sid}/rounds", json={"from_top": 2, "trials": 3})
    assert r.status_code == 201, r.text
    assert progress_of(client, sid) == {"ended": 4, "planned": 7}  # round 1 alone said 4
    for value in (0.8, 0.4, 0.3):
        complete(client, value)
    assert progress_of(client, sid) == {"ended": 7, "planned": 7}
    r = client.post(f"/api/studies/{sid}/retest", json={"top": 2, "seeds": 2})
    assert r.status_code == 201, r.text
    assert progress_of(client, sid) == {"ended": 7, "planned": 11}
    # A trial added by hand joins round 2, whose budget is spent: it adds one to the plan.
    create_trial(client, sid)
    assert progress_of(client, sid) == {"ended": 7, "planned": 12}
    for value in (0.81, 0.82, 0.83, 0.84, 0.85):
        complete(client, value)
    study = client.get(f"/api/studies/{sid}").json()
    assert study["progress"] == {"ended": 12, "planned": 12} and study["state"] == "completed"


def test_progress_of_an_epoch_budget_and_a_spent_grid_counts_created_trials(
    client: TestClient,
) -> None:
    by_epochs = caviar_study(client, budget={"epochs": 8})["id"]  # 2 trials of 4 epochs
    assert progress_of(client, by_epochs) == {"ended": 0, "planned": 2}
    complete(client, 0.5)
    complete(client, 0.6)
    assert progress_of(client, by_epochs) == {"ended": 2, "planned": 2}
    # 2 points on each of 3 ranges: the grid is spent after 8 of the 10 trials budgeted.
    grid = caviar_study(
        client, budget={"trials": 10}, sampler={"name": "grid", "points_per_dim": 2}
    )["id"]
    assert progress_of(client, grid) == {"ended": 0, "planned": 10}
    for i in range(8):
        complete(client, 0.1 * i)
    study = client.get(f"/api/studies/{grid}").json()
    assert study["progress"] == {"ended": 8, "planned": 8} and study["state"] == "completed"


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements the server runs on ``engine`` inside the block."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_list_studies_progress_takes_the_same_queries_for_one_study_or_many(
    client: TestClient, app: FastAPI
) -> None:
    caviar_study(client, budget={"trials": 4})
    with statements(app.state.engine) as one:
        assert client.get("/api/studies").json()["count"] == 1
    for _ in range(3):
        caviar_study(client, budget={"trials": 4})
    with statements(app.state.engine) as four:
        listed = client.get("/api/studies").json()["data"]
    assert [s["progress"] for s in listed] == [{"ended": 0, "planned": 4}] * 4
    assert len(four) == len(one)


# -- a panda study's state follows its trials ------------------------------------------------


def state_of(client: TestClient, study_id: int) -> str:
    got = client.get(f"/api/studies/{study_id}").json()["state"]
    (listed,) = [
        s["state"] for s in client.get("/api/studies").json()["data"] if s["id"] == study_id
    ]
    assert listed == got
    return str(got)


def running_trial_of(client: TestClient, study_id: int) -> tuple[int, int]:
    """A trial of ``study_id`` claimed by a worker: ``(trial_id, attempt)``."""
    trial = create_trial(client, study_id)
    got = claim(client)
    assert got["trial_id"] == trial["id"]
    return trial["id"], got["attempt"]


def test_panda_study_completes_when_its_trials_end_and_reopens_on_a_new_one(
    client: TestClient,
) -> None:
    sid = create_study(client, epochs=1)["id"]
    assert state_of(client, sid) == "active"  # nothing has run yet
    first = create_trial(client, sid)["id"]
    got = claim(client)
    upload(client, first, got["attempt"], 10)
    assert finish(client, first, got["attempt"], "completed", 20).status_code == 200
    assert state_of(client, sid) == "completed"
    # A fork is a new trial: the study is active until it ends too.
    fork = client.post(f"/api/trials/{first}/fork", json={"step": 10})
    assert fork.status_code == 201, fork.text
    assert state_of(client, sid) == "active"
    got = claim(client)
    assert got["trial_id"] == fork.json()["id"]
    finish(client, got["trial_id"], got["attempt"], "failed", 11, error="diverged")
    assert state_of(client, sid) == "completed"
    # A trial added by hand; a queued one stopped before it ran ends too.
    queued = create_trial(client, sid)["id"]
    assert state_of(client, sid) == "active"
    assert client.post(f"/api/trials/{queued}/stop").status_code == 200
    assert state_of(client, sid) == "completed"


def test_panda_study_with_a_paused_trial_stays_active_until_it_is_resumed_and_ends(
    client: TestClient,
) -> None:
    sid = create_study(client, epochs=1)["id"]
    tid, attempt = running_trial_of(client, sid)
    client.post(f"/api/trials/{tid}/pause")
    upload(client, tid, attempt, 5)
    assert finish(client, tid, attempt, "paused", 5).json()["state"] == "paused"
    assert state_of(client, sid) == "active"  # a paused trial may still be resumed
    assert client.post(f"/api/trials/{tid}/resume").json()["state"] == "queued"
    assert state_of(client, sid) == "active"
    got = claim(client)
    assert finish(client, tid, got["attempt"], "stopped", 6).status_code == 200
    assert state_of(client, sid) == "completed"


def test_panda_study_completes_when_the_reaper_fails_its_last_trial(
    client: TestClient, app: FastAPI
) -> None:
    app.state.settings.max_failures = 1
    sid = create_study(client, epochs=1)["id"]
    tid, _ = running_trial_of(client, sid)
    assert reap_once(app, now=after_the_leases(app)) == 1
    assert client.get(f"/api/trials/{tid}").json()["state"] == "failed"
    assert state_of(client, sid) == "completed"


def test_panda_finish_reads_the_open_trials_once_and_writes_the_study_only_on_change(
    client: TestClient, app: FastAPI
) -> None:
    sid = create_study(client, epochs=1)["id"]
    first, attempt = running_trial_of(client, sid)
    create_trial(client, sid)  # still queued when the first ends
    with statements(app.state.engine) as seen:
        finish(client, first, attempt, "completed", 1)
    assert state_of(client, sid) == "active"
    lowered = [s.lower() for s in seen]
    assert sum("exists" in s for s in lowered) == 1
    assert not [s for s in lowered if s.startswith("update studies")]
    second = claim(client)
    with statements(app.state.engine) as seen:
        finish(client, second["trial_id"], second["attempt"], "completed", 1)
    assert state_of(client, sid) == "completed"
    assert len([s for s in seen if s.lower().startswith("update studies")]) == 1
