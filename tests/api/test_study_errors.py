"""A refused study names every bad field at once, in plain words."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import DB


def post(client: TestClient, **fields: Any) -> Any:
    body = {"name": "s", "mode": "caviar", "budget": {"trials": 2}, **fields}
    return client.post("/api/studies", json=body)


def errors_of(r: Any) -> dict[str, str]:
    assert r.status_code == 422, r.text
    return {e["field"]: e["message"] for e in r.json()["errors"]}


def test_every_bad_field_is_named_at_once(client: TestClient, db: DB) -> None:
    before = db.snapshot()
    r = post(
        client,
        name="",
        budget={"trials": 0},
        parallelism="two",
        epochs=0,
        space={
            "learning_rate": {"dist": "log_uniform", "low": -1, "high": 1},
            "hidden_units": 0,
        },
        scheduler={"name": "asha", "eta": 3},
    )
    got = errors_of(r)
    # The schema's fields and the study's own rules (space, scheduler) in one answer.
    assert got == {
        "name": "give the study a name",
        "epochs": "a whole number of epochs from 1 to 100000",
        "budget.trials": "a whole number of trials from 1 to 100000",
        "parallelism": "a whole number of trials at once from 1 to 1024",
        "space.learning_rate": "low: got -1, allowed: > 0 on a log scale",
        "space.hidden_units": "got 0, allowed: an integer in [1, 4096]",
        "scheduler.eta": got["scheduler.eta"],
    }
    assert got["scheduler.eta"].startswith("eta: got an unknown setting")
    # detail and field as before: the first error is the field, every sentence the detail.
    body = r.json()
    assert body["field"] == "name"
    assert body["detail"].startswith("name: give the study a name; epochs: a whole number")
    assert "space.hidden_units: got 0" in body["detail"]
    assert db.snapshot() == before


def test_every_bad_value_of_a_space_is_named(client: TestClient) -> None:
    r = post(
        client,
        space={
            "learning_rate": {"dist": "log_uniform", "low": 0.1, "high": 0.01},
            "batch_size": {"dist": "log_int", "low": 0, "high": 64},
            "warp": 1,
        },
    )
    assert set(errors_of(r)) == {"space.learning_rate", "space.batch_size", "space.warp"}
    r = post(client, mode="panda", space={"learning_rate": -1, "batch_size": 0})
    assert set(errors_of(r)) == {"space.learning_rate", "space.batch_size"}


def test_a_bad_mode_leaves_the_space_unjudged(client: TestClient) -> None:
    # A space is checked against its mode: with no good mode, only the mode is named.
    r = post(client, mode="hamster", space={"learning_rate": {"dist": "uniform", "low": 0}})
    assert errors_of(r) == {"mode": "got 'hamster', allowed: 'panda' or 'caviar'"}
