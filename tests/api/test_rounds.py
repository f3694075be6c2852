"""Coarse-to-fine rounds and re-tests: POST/GET /api/studies/{id}/rounds and .../retest."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.search import feeder
from app.storage.models import Round, Study, Trial
from tests.api.test_caviar import (
    SPACE,
    caviar_study,
    claim_one,
    complete,
    epoch_report,
    trials_of,
)
from tests.conftest import DB
from tests.factories import create_study, finish


def done_study(client: TestClient, values: tuple[float, ...] = (0.5, 0.9, 0.7, 0.6)) -> int:
    """A caviar study whose trials all completed with ``values``, in claim order."""
    study = caviar_study(client, budget={"trials": len(values)})
    for value in values:
        complete(client, value)
    assert client.get(f"/api/studies/{study['id']}").json()["state"] == "completed"
    return int(study["id"])


def _unit(dist: dict[str, Any], v: float) -> float:
    # Each range's sampling scale, to compare widths the way narrowing computes them.
    if dist["dist"] == "log_uniform":
        return math.log10(v)
    if dist["dist"] == "one_minus_log_uniform":
        return -math.log10(1 - v)
    return v


def test_round_from_top_spans_the_best_trials_and_reopens_the_study(client: TestClient) -> None:
    sid = done_study(client)
    trials = trials_of(client, sid)
    r = client.post(f"/api/studies/{sid}/rounds", json={"from_top": 2, "margin": 0.0, "trials": 3})
    assert r.status_code == 201, r.text
    rnd = r.json()
    assert (rnd["number"], rnd["kind"], rnd["from_top"], rnd["margin"]) == (2, "search", 2, 0.0)
    assert rnd["budget"] == {"trials": 3} and rnd["outside_parent"] == []
    top = sorted(trials, key=lambda t: -t["best_value"])[:2]
    for name, parent in SPACE.items():
        child = rnd["space"][name]
        if not isinstance(parent, dict):
            assert child == parent
            continue
        values = [t["hparams"][name] for t in top]
        if isinstance(child, dict):
            assert child["low"] <= min(values) and max(values) <= child["high"]
            width = _unit(parent, child["high"]) - _unit(parent, child["low"])
            assert width < _unit(parent, parent["high"]) - _unit(parent, parent["low"])
        else:  # an integer range that collapsed to one value
            assert values == [child, child]
    assert client.get(f"/api/studies/{sid}").json()["state"] == "active"
    new = [t for t in trials_of(client, sid) if t["round_id"] == rnd["id"]]
    assert [t["state"] for t in new] == ["queued", "queued"]  # parallelism 2 of its 3


def test_round_trials_run_after_and_inside_the_narrowed_space(client: TestClient) -> None:
    sid = done_study(client)
    space = {
        "learning_rate": {"dist": "log_uniform", "low": 1e-3, "high": 1e-2},
        "hidden_units": {"dist": "int_uniform", "low": 10, "high": 12},
    }
    rnd = client.post(f"/api/studies/{sid}/rounds", json={"space": space, "trials": 3}).json()
    assert rnd["outside_parent"] == []
    assert rnd["space"]["momentum"] == SPACE["momentum"]  # names left out keep their range
    for value in (0.1, 0.2, 0.3):
        complete(client, value)
    trials = trials_of(client, sid)
    new = [t for t in trials if t["round_id"] == rnd["id"]]
    assert len(new) == 3 and {t["state"] for t in new} == {"completed"}
    assert [t["round"] for t in trials] == [1, 1, 1, 1, 2, 2, 2]
    assert client.get(f"/api/trials/{new[0]['id']}").json()["round"] == 2
    for t in new:
        assert 1e-3 <= t["hparams"]["learning_rate"] <= 1e-2
        assert 10 <= t["hparams"]["hidden_units"] <= 12
    assert client.get(f"/api/studies/{sid}").json()["state"] == "completed"


def test_explicit_space_outside_the_parent_is_accepted_and_named(client: TestClient) -> None:
    sid = done_study(client)
    wider = {"learning_rate": {"dist": "log_uniform", "low": 1e-5, "high": 1e-2}}
    r = client.post(f"/api/studies/{sid}/rounds", json={"space": wider, "epochs": 8})
    assert r.status_code == 201, r.text
    assert r.json()["outside_parent"] == ["learning_rate"]
    assert r.json()["budget"] == {"epochs": 8}


def test_list_rounds(client: TestClient) -> None:
    sid = done_study(client)
    client.post(f"/api/studies/{sid}/rounds", json={"from_top": 1, "trials": 1})
    client.post(f"/api/studies/{sid}/retest", json={"top": 1, "seeds": 2})
    r = client.get(f"/api/studies/{sid}/rounds")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 3
    assert [(x["number"], x["kind"]) for x in body["data"]] == [
        (1, "search"),
        (2, "search"),
        (3, "retest"),
    ]
    first = body["data"][0]
    assert first["space"]["learning_rate"] == SPACE["learning_rate"]
    assert first["counts"] == {"completed": 4} and first["parent_round_id"] is None
    assert body["data"][1]["parent_round_id"] == first["id"]


BAD_ROUNDS: list[tuple[dict[str, Any], str]] = [
    ({"from_top": 2}, "trials"),
    ({"trials": 2}, "from_top"),
    ({"from_top": 2, "space": {}, "trials": 2}, "from_top"),
    ({"from_top": 0, "trials": 2}, "from_top"),
    ({"from_top": 2, "margin": 1.5, "trials": 2}, "margin"),
    ({"from_top": 2, "trials": 0}, "trials"),
    (
        {
            "space": {"learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 99}},
            "trials": 2,
        },
        "space.learning_rate",
    ),
    ({"space": {"warp": 1}, "trials": 2}, "space.warp"),
]


@pytest.mark.parametrize(("body", "named"), BAD_ROUNDS)
def test_invalid_round_is_refused_and_writes_nothing(
    client: TestClient, db: DB, body: dict[str, Any], named: str
) -> None:
    sid = done_study(client)
    before = db.snapshot()
    r = client.post(f"/api/studies/{sid}/rounds", json=body)
    assert r.status_code == 422, r.text
    assert named in r.json()["detail"]
    assert db.snapshot() == before


def test_rounds_conflicts_write_nothing(client: TestClient, db: DB) -> None:
    sid = done_study(client, values=(0.5, 0.6))
    panda = create_study(client)["id"]
    before = db.snapshot()
    too_many = client.post(f"/api/studies/{sid}/rounds", json={"from_top": 3, "trials": 2})
    assert too_many.status_code == 409 and too_many.json()["field"] == "from_top"
    assert "only 2" in too_many.json()["detail"]
    assert "the largest from_top that works now is 2" in too_many.json()["detail"]
    for path, body in (
        ("rounds", {"from_top": 1, "trials": 2}),
        ("retest", {"top": 1, "seeds": 1}),
    ):
        r = client.post(f"/api/studies/{panda}/{path}", json=body)
        assert r.status_code == 409 and "panda" in r.json()["detail"]
    r = client.post(f"/api/studies/{sid}/retest", json={"top": 3, "seeds": 2})
    assert r.status_code == 409 and r.json()["field"] == "top"
    assert "the largest top that works now is 2" in r.json()["detail"]
    assert db.snapshot() == before


def test_from_top_and_top_take_trials_stopped_early_by_how_far_they_got(
    client: TestClient,
) -> None:
    sid = caviar_study(client, budget={"trials": 3}, parallelism=3)["id"]
    (a, att_a), (b, att_b), (c, att_c) = (claim_one(client) for _ in range(3))
    # None completed: a stopped at epoch 1 (0.9), b at epoch 2 (0.6), c at epoch 1 (0.5).
    for tid, att, curve in ((a, att_a, (0.9,)), (b, att_b, (0.5, 0.6)), (c, att_c, (0.5,))):
        for epoch, value in enumerate(curve, start=1):
            epoch_report(client, tid, att, epoch, value)
        finish(client, tid, att, "stopped", 10 * len(curve), epoch=float(len(curve)))
    r = client.post(f"/api/studies/{sid}/retest", json={"top": 2, "seeds": 1})
    assert r.status_code == 201, r.text
    rows = client.get(f"/api/studies/{sid}/export", params={"format": "json"}).json()["data"]
    # b got furthest, then a beats c at epoch 1.
    assert [row["retest_of"] for row in rows if row["retest_of"] is not None] == [b, a]
    assert (
        client.post(f"/api/studies/{sid}/rounds", json={"from_top": 3, "trials": 1}).status_code
        == 201
    )


def test_rounds_and_retest_of_unknown_study_are_404(client: TestClient, db: DB) -> None:
    before = db.snapshot()
    assert client.get("/api/studies/99/rounds").status_code == 404
    assert (
        client.post("/api/studies/99/rounds", json={"from_top": 1, "trials": 1}).status_code == 404
    )
    assert client.post("/api/studies/99/retest", json={"top": 1, "seeds": 1}).status_code == 404
    assert client.get("/api/studies/99/retest").status_code == 404
    assert db.snapshot() == before


@pytest.mark.parametrize("body", [{"top": 0, "seeds": 2}, {"top": 1, "seeds": 0}, {"top": 1}])
def test_invalid_retest_is_refused(client: TestClient, db: DB, body: dict[str, Any]) -> None:
    sid = done_study(client)
    before = db.snapshot()
    assert client.post(f"/api/studies/{sid}/retest", json=body).status_code == 422
    assert db.snapshot() == before


def test_retest_reruns_the_best_configurations_with_fresh_seeds(
    client: TestClient, db: DB
) -> None:
    sid = done_study(client)  # best: 0.9, then 0.7
    by_value = {t["best_value"]: t for t in trials_of(client, sid)}
    r = client.post(f"/api/studies/{sid}/retest", json={"top": 2, "seeds": 2})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "retest" and r.json()["budget"] == {"trials": 4}
    reruns = db.all(select(Trial).where(Trial.retest_of_id.is_not(None)).order_by(Trial.id))
    best_id, second_id = by_value[0.9]["id"], by_value[0.7]["id"]
    assert [t.retest_of_id for t in reruns] == [best_id, best_id, second_id, second_id]
    for t in reruns:
        source = by_value[0.9] if t.retest_of_id == by_value[0.9]["id"] else by_value[0.7]
        assert t.hparams["seed"] != source["hparams"]["seed"]
        assert {**t.hparams, "seed": 0} == {**source["hparams"], "seed": 0}
    assert len({t.hparams["seed"] for t in reruns}) == 4
    pending = client.get(f"/api/studies/{sid}/retest").json()
    assert [g["pending"] for g in pending["data"]] == [2, 2]
    assert pending["data"][0]["mean"] is None
    values = [0.88, 0.86, 0.6, 0.65]
    for value in values:
        complete(client, value)
    got = client.get(f"/api/studies/{sid}/retest").json()
    assert got["metric"] == "dev_accuracy" and got["count"] == 2
    best, second = sorted(got["data"], key=lambda g: -(g["value"] or 0))
    assert best["value"] == 0.9 and best["values"] == [0.88, 0.86]
    assert best["mean"] == pytest.approx(0.87)
    assert best["std"] == pytest.approx(statistics.stdev([0.88, 0.86]))
    assert second["completed"] == 2 and second["pending"] == 0
    assert "seed" not in best["hparams"]


def test_retest_trials_are_not_pruned(client: TestClient) -> None:
    sid = caviar_study(
        client, scheduler={"name": "asha", "reduction_factor": 2}, budget={"trials": 2}
    )["id"]
    for value in (0.9, 0.8):
        complete(client, value)
    client.post(f"/api/studies/{sid}/retest", json={"top": 1, "seeds": 1})
    tid, attempt = claim_one(client)
    assert epoch_report(client, tid, attempt, 1, 0.1) == "continue"
    assert finish(client, tid, attempt, "completed", 40, epoch=4.0).json()["state"] == "completed"


def test_a_later_round_fits_its_scheduler_to_its_own_budget_and_keeps_the_users_settings(
    client: TestClient, db: DB
) -> None:
    asha = {"name": "asha", "mode": "pause"}
    space = {k: v for k, v in SPACE.items() if k != "epochs"}  # the study's 27 epochs
    study = caviar_study(client, space=space, epochs=27, budget={"trials": 24}, scheduler=asha)
    # 24 trials of 27 epochs: rungs at 3 and 9, about 3 train in full.
    assert study["scheduler_settings"]["min_resource"] == 3
    r = client.post(f"/api/studies/{study['id']}/rounds", json={"space": space, "trials": 12})
    assert r.status_code == 201, r.text
    # 12 trials: a rung at 9 alone leaves about 4 in full; rungs at 3 and 9 would leave 1.3.
    assert r.json()["scheduler_settings"] == {**study["scheduler_settings"], "min_resource": 9}
    rounds = client.get(f"/api/studies/{study['id']}/rounds").json()["data"]
    assert [x["scheduler_settings"]["min_resource"] for x in rounds] == [3, 9]

    with db.session() as session:
        stored = session.get_one(Study, study["id"])
        rnd = session.scalars(select(Round).where(Round.number == 2)).one()
        assert feeder.scheduler_for(stored, rnd).decision_points().epochs == (9,)
        assert feeder.scheduler_for(stored).decision_points().epochs == (3, 9)

    given = caviar_study(
        client,
        space=space,
        epochs=27,
        budget={"trials": 24},
        scheduler={**asha, "reduction_factor": 2},
    )
    r = client.post(f"/api/studies/{given['id']}/rounds", json={"space": space, "trials": 12})
    assert r.json()["scheduler_settings"]["reduction_factor"] == 2  # the user's, kept
