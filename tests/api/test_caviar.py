"""Caviar studies: validation, feeding up to parallelism, the claim cap, early stopping."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.storage.models import Event, EventKind, Metric, Round, RungRecordRow, Study, Trial
from tests.conftest import DB
from tests.factories import create_study, create_trial, finish, upload

SPACE: dict[str, Any] = {
    "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1.0},
    "hidden_units": {"dist": "int_uniform", "low": 8, "high": 32},
    "momentum": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999},
    "optimizer": "momentum",  # the optimizer that reads momentum: ranging it changes trials
    "epochs": 4,
}


# -- helpers shared by the caviar API tests (imported by test_rounds and test_analysis) ------


def caviar_study(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {
        "mode": "caviar",
        "space": SPACE,
        "budget": {"trials": 4},
        "parallelism": 2,
        "objective": {"metric": "dev_accuracy"},
        **fields,
    }
    return create_study(client, **body)


def try_claim(client: TestClient) -> tuple[int, int] | None:
    """(trial id, attempt) of the next claim, None when nothing may run (204)."""
    r = client.post("/api/workers/claim", json={"worker": "w"})
    assert r.status_code in (200, 204), r.text
    return None if r.status_code == 204 else (r.json()["trial_id"], r.json()["attempt"])


def claim_one(client: TestClient) -> tuple[int, int]:
    got = try_claim(client)
    assert got is not None, "nothing to claim"
    return got


def epoch_report(
    client: TestClient,
    trial_id: int,
    attempt: int,
    epoch: int,
    value: float,
    metric: str = "dev_accuracy",
) -> str:
    """A worker's report at the end of ``epoch`` (10 steps an epoch); the directive's action."""
    step = 10 * epoch
    body = {
        "attempt": attempt,
        "step": step,
        "epoch": float(epoch),
        "points": [[step, metric, value], [step, "train_loss", 1.0 - value]],
    }
    r = client.post(f"/api/workers/trials/{trial_id}/report", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["action"])


def complete(client: TestClient, value: float, epochs: int = 4) -> int:
    """Claim the next trial, report ``value`` at every epoch end from where it starts (a
    fork: its checkpoint's), finish it completed; its id."""
    tid, attempt = claim_one(client)
    start = int(client.get(f"/api/trials/{tid}").json()["epoch"])
    for epoch in range(start + 1, epochs + 1):
        epoch_report(client, tid, attempt, epoch, value)
    metrics = {
        "dev_accuracy": value,
        "dev_loss": 1 - value,
        "test_accuracy": value - 0.01,
        "test_loss": 1.01 - value,
    }
    r = finish(
        client, tid, attempt, "completed", 10 * epochs, epoch=float(epochs), metrics=metrics
    )
    assert r.status_code == 200, r.text
    return tid


def trials_of(client: TestClient, study_id: int) -> list[dict[str, Any]]:
    r = client.get(f"/api/studies/{study_id}/trials", params={"limit": 1000})
    assert r.status_code == 200
    return list(r.json()["data"])


# -- creating and feeding --------------------------------------------------------------------


def test_create_samples_parallelism_trials_inside_the_space(client: TestClient, db: DB) -> None:
    study = caviar_study(client, budget={"trials": 5})
    trials = trials_of(client, study["id"])
    assert [t["state"] for t in trials] == ["queued", "queued"]
    (rnd,) = db.all(select(Round))
    assert {t["round_id"] for t in trials} == {rnd.id}
    for t in trials:
        hp = t["hparams"]
        assert 1e-4 <= hp["learning_rate"] <= 1.0 and 8 <= hp["hidden_units"] <= 32
        assert 0.9 <= hp["momentum"] <= 0.999 and hp["epochs"] == 4
    assert sorted(t.index_in_round for t in db.all(select(Trial))) == [0, 1]


def test_same_seed_draws_the_same_trials(client: TestClient) -> None:
    first = trials_of(client, caviar_study(client, seed=7)["id"])
    second = trials_of(client, caviar_study(client, seed=7)["id"])
    other = trials_of(client, caviar_study(client, seed=8)["id"])
    assert [t["hparams"] for t in first] == [t["hparams"] for t in second]
    assert [t["hparams"] for t in first] != [t["hparams"] for t in other]


def test_study_is_fed_until_the_budget_is_spent_then_completed(client: TestClient) -> None:
    study = caviar_study(client, budget={"trials": 3})
    sid = study["id"]
    for value in (0.5, 0.6):
        complete(client, value)
        assert client.get(f"/api/studies/{sid}").json()["state"] == "active"
    assert len(trials_of(client, sid)) == 3
    complete(client, 0.7)
    body = client.get(f"/api/studies/{sid}").json()
    assert body["state"] == "completed" and body["counts"] == {"completed": 3}
    assert try_claim(client) is None


def test_epochs_budget_counts_planned_and_trained_epochs(client: TestClient) -> None:
    # 4 epochs a trial: 4 < 10, 8 < 10, then 12 >= 10 -> three trials.
    study = caviar_study(client, budget={"epochs": 10}, parallelism=1)
    assert study["budget"] == {"epochs": 10}
    for _ in range(3):
        complete(client, 0.5)
    assert len(trials_of(client, study["id"])) == 3
    assert client.get(f"/api/studies/{study['id']}").json()["state"] == "completed"


def test_epochs_budget_counts_a_fork_from_its_checkpoint_on(client: TestClient) -> None:
    study = caviar_study(client, budget={"epochs": 11}, parallelism=1)
    tid, attempt = claim_one(client)
    for epoch in (1, 2):
        epoch_report(client, tid, attempt, epoch, 0.5)
    assert upload(client, tid, attempt, 20).status_code == 201  # at epoch 2
    for epoch in (3, 4):
        epoch_report(client, tid, attempt, epoch, 0.5)
    finish(client, tid, attempt, "completed", 40, epoch=4.0)
    child = client.post(f"/api/trials/{tid}/fork", json={"step": 20}).json()
    assert child["epoch"] == 2.0
    complete(client, 0.6)  # the trial sampled when the first ended
    assert complete(client, 0.7) == child["id"]
    # 4 + 4 + (4 - 2) = 10 epochs trained < 11: one more trial, not the parent's 2 twice.
    assert len(trials_of(client, study["id"])) == 4


def test_claim_runs_at_most_parallelism_trials_of_a_study(client: TestClient) -> None:
    study = caviar_study(client, budget={"trials": 2})
    create_trial(client, study["id"], learning_rate=0.01)  # a third one, added by hand
    panda = create_trial(client)
    first, second = claim_one(client), claim_one(client)
    # The caviar study's third trial waits; another study's trial is not held up by it.
    assert claim_one(client)[0] == panda["id"]
    assert try_claim(client) is None
    finish(client, first[0], first[1], "completed", 10, metrics={"dev_accuracy": 0.5})
    assert claim_one(client)[0] not in (first[0], second[0])


def test_pausing_a_queued_trial_gives_its_slot_to_the_next(client: TestClient) -> None:
    study = caviar_study(client, budget={"trials": 3})
    queued = trials_of(client, study["id"])
    assert client.post(f"/api/trials/{queued[0]['id']}/pause").status_code == 200
    states = [t["state"] for t in trials_of(client, study["id"])]
    assert states == ["paused", "queued", "queued"]


BAD: list[tuple[dict[str, Any], str]] = [
    ({"space": {"warp": {"dist": "uniform", "low": 0, "high": 1}}}, "space.warp"),
    (
        {"space": {"learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 20}}},
        "space.learning_rate",
    ),
    (
        {"space": {"learning_rate": {"dist": "log_uniform", "low": 0.1, "high": 0.01}}},
        "space.learning_rate",
    ),
    ({"space": {"l2": {"dist": "log_uniform", "low": 0, "high": 1}}}, "space.l2"),
    (
        {"space": {"momentum": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 1.0}}},
        "space.momentum",
    ),
    (
        {"space": {"hidden_units": {"dist": "int_uniform", "low": 0, "high": 9}}},
        "space.hidden_units",
    ),
    ({"space": {"optimizer": {"dist": "choice", "values": ["adam", "lbfgs"]}}}, "space.optimizer"),
    (
        {
            "space": {
                "decay_schedule": "exponential",
                "lr_decay": {"dist": "uniform", "low": 0.5, "high": 5},
            }
        },
        "space.lr_decay",
    ),
    ({"sampler": "hyperband"}, "sampler"),
    ({"sampler": {"name": "grid", "points_per_dim": 0}}, "sampler"),
    ({"scheduler": "bogus"}, "scheduler"),
    ({"scheduler": {"name": "asha", "reduction_factor": 1}}, "scheduler"),
    ({"scheduler": {"name": "asha", "direction": "minimize"}}, "scheduler"),
    ({"scheduler": {"name": "asha", "min_resource": 4}}, "scheduler"),
    ({"scheduler": {"name": "asha", "eager_top": True}}, "scheduler.eager_top"),
    ({"scheduler": {"name": "asha", "mode": "pause", "eager_top": 1}}, "scheduler.eager_top"),
    ({"budget": {"trials": 3, "epochs": 9}}, "budget"),
    ({"budget": {"epochs": 0}}, "budget.epochs"),
]


@pytest.mark.parametrize(("fields", "field"), BAD)
def test_invalid_caviar_study_is_refused_and_writes_nothing(
    client: TestClient, db: DB, fields: dict[str, Any], field: str
) -> None:
    before = db.snapshot()
    body = {"name": "bad", "mode": "caviar", "space": SPACE, **fields}
    r = client.post("/api/studies", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"].startswith(field), r.json()
    assert db.snapshot() == before


# -- early stopping --------------------------------------------------------------------------


def test_asha_stop_ends_the_trial_pruned_with_its_curve(client: TestClient, db: DB) -> None:
    sched = {"name": "asha", "min_resource": 1, "reduction_factor": 2}
    study = caviar_study(client, scheduler=sched)
    assert study["scheduler"] == "asha"
    # Echoed as applied, defaults included; ASHA's maximum resource is the longest training
    # the space allows.
    assert study["scheduler_settings"] == {
        "min_resource": 1,
        "reduction_factor": 2,
        "max_resource": 4,
        "mode": "stop",
        "eager_top": False,
    }
    (a, att_a), (b, att_b) = claim_one(client), claim_one(client)
    assert epoch_report(client, a, att_a, 1, 0.9) == "continue"
    assert epoch_report(client, b, att_b, 1, 0.5) == "stop"  # not in the top 1/2 of rung 0
    assert epoch_report(client, b, att_b, 1, 0.5) == "stop"  # a retried report: same answer
    assert len(db.all(select(RungRecordRow))) == 2
    r = finish(client, b, att_b, "stopped", 10, epoch=1.0)
    assert r.status_code == 200 and r.json()["state"] == "pruned"
    assert db.count(Metric, Metric.trial_id == b) == 2  # the curve is kept
    (prune,) = db.all(select(Event).where(Event.trial_id == b, Event.kind == EventKind.PRUNE))
    assert prune.applied_step == 10 and prune.payload["resource"] == 1
    # Why, for the trial page: rung 0's cut was a's 0.9, which kept 1 of its 2 records.
    assert {k: prune.payload[k] for k in ("rung", "cut", "keep", "of", "value")} == {
        "rung": 0, "cut": 0.9, "keep": 1, "of": 2, "value": 0.5,
    }  # fmt: skip
    assert client.get(f"/api/trials/{a}").json()["state"] == "running"
    # The trial's JSON says why, for the study page's table (no events request per row).
    why = client.get(f"/api/trials/{b}").json()["stopped_because"]
    assert why == {
        "kind": "prune", "scheduler": "asha", "resource": 1, "value": 0.5,
        "rung": 0, "cut": 0.9, "keep": 1, "of": 2,
    }  # fmt: skip
    assert client.get(f"/api/trials/{a}").json()["stopped_because"] is None


def test_asha_without_settings_fits_its_rungs_to_the_budget(client: TestClient) -> None:
    body = {"epochs": 27, "space": {**SPACE, "epochs": 27}, "budget": {"trials": 24}}
    study = caviar_study(client, scheduler="asha", **body)
    # 24 trials, eta 3: two rungs leave 24 / 9 = 2.7 trials at 27 epochs, three would leave 0.9.
    assert study["scheduler_settings"] == {
        "min_resource": 3,
        "reduction_factor": 3,
        "max_resource": 27,
        "mode": "stop",
        "eager_top": False,
    }
    assert study["plan"] == "rungs at 3 and 9 epochs; about 3 of 24 trials train all 27 epochs"
    median = caviar_study(client, scheduler="median", **{**body, "budget": {"trials": 12}})
    assert median["scheduler_settings"] == {"grace": 6, "min_trials": 3}


def test_the_plan_is_shown_before_the_study_exists_and_writes_nothing(
    client: TestClient, db: DB
) -> None:
    body = {
        "name": "s", "mode": "caviar", "task": "digits", "epochs": 27,
        "space": {**SPACE, "epochs": 27}, "budget": {"trials": 24}, "scheduler": "asha",
    }  # fmt: skip
    before = db.snapshot()
    r = client.post("/api/studies/plan", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["plan"] == "rungs at 3 and 9 epochs; about 3 of 24 trials train all 27 epochs"
    bad = client.post("/api/studies/plan", json={**body, "scheduler": {"name": "asha", "x": 1}})
    assert bad.status_code == 422 and bad.json()["field"] == "scheduler.x"
    assert db.snapshot() == before
    study = client.post("/api/studies", json=body).json()
    assert (study["plan"], study["scheduler_settings"]) == (
        r.json()["plan"],
        r.json()["scheduler_settings"],
    )


def test_each_round_is_an_asha_bracket_of_its_own(client: TestClient) -> None:
    sched = {"name": "asha", "min_resource": 1, "reduction_factor": 2}
    sid = caviar_study(client, scheduler=sched, budget={"trials": 2})["id"]
    (a, att_a), (b, att_b) = claim_one(client), claim_one(client)
    assert epoch_report(client, a, att_a, 1, 0.9) == "continue"
    assert epoch_report(client, b, att_b, 1, 0.8) == "stop"
    for tid, att in ((a, att_a), (b, att_b)):
        assert finish(client, tid, att, "stopped", 10, epoch=1.0).status_code == 200
    r = client.post(f"/api/studies/{sid}/rounds", json={"from_top": 2, "trials": 2})
    assert r.status_code == 201, r.text
    c, att_c = claim_one(client)
    d, att_d = claim_one(client)
    assert {c, d}.isdisjoint({a, b})
    # Round 2's first record at rung 0 is compared with round 2's alone: it goes on, though
    # round 1 holds better values there; its second trial then meets the cut of its own round.
    assert epoch_report(client, c, att_c, 1, 0.5) == "continue"
    assert epoch_report(client, d, att_d, 1, 0.4) == "stop"


def test_median_stopping_prunes_below_the_median(client: TestClient) -> None:
    study = caviar_study(client, scheduler={"name": "median", "grace": 1, "min_trials": 1})
    assert study["scheduler"] == "median"
    (a, att_a), (b, att_b) = claim_one(client), claim_one(client)
    assert epoch_report(client, a, att_a, 1, 0.8) == "continue"  # nobody to compare with
    assert epoch_report(client, a, att_a, 2, 0.7) == "continue"
    assert epoch_report(client, b, att_b, 1, 0.9) == "continue"  # above the median (0.8)
    # At epoch 2 b's best so far (0.9) still beats a's 0.7; a third trial at 0.5 does not.
    assert epoch_report(client, b, att_b, 2, 0.6) == "continue"
    finish(client, a, att_a, "completed", 40, epoch=4.0, metrics={"dev_accuracy": 0.7})
    c, att_c = claim_one(client)
    assert epoch_report(client, c, att_c, 1, 0.5) == "stop"  # median of 0.8 and 0.9: 0.85
    assert finish(client, c, att_c, "stopped", 10, epoch=1.0).json()["state"] == "pruned"
    # Why: c's best (0.5) against the median of the 2 others at epoch 1.
    (listed,) = [t for t in trials_of(client, study["id"]) if t["id"] == c]
    assert listed["stopped_because"] == {
        "kind": "prune", "scheduler": "median", "resource": 1, "value": 0.5,
        "best": 0.5, "median": pytest.approx(0.85), "of": 2,
    }  # fmt: skip
    # A trial the user stopped says nothing of the kind.
    client.post(f"/api/trials/{b}/stop")
    finish(client, b, att_b, "stopped", 20, epoch=2.0)
    assert client.get(f"/api/trials/{b}").json()["stopped_because"] is None


def test_reports_between_epochs_do_not_reach_the_scheduler(client: TestClient, db: DB) -> None:
    caviar_study(client, scheduler="asha")
    tid, attempt = claim_one(client)
    body = {"attempt": attempt, "step": 5, "epoch": 0.5, "points": [[5, "dev_accuracy", 0.1]]}
    r = client.post(f"/api/workers/trials/{tid}/report", json=body)
    assert r.json()["action"] == "continue"
    assert db.count(RungRecordRow) == 0


def test_a_stop_at_the_last_epoch_leaves_the_trial_completed(client: TestClient) -> None:
    # epochs 2, max_resource 3 (explicit): rung 1 sits at epoch 2, the trial's last.
    study = caviar_study(
        client,
        space={**SPACE, "epochs": 2},
        scheduler={"name": "asha", "reduction_factor": 2, "max_resource": 3},
    )
    assert study["scheduler_settings"]["max_resource"] == 3
    (a, att_a), (b, att_b) = claim_one(client), claim_one(client)
    for tid, att, v in ((a, att_a, 0.9), (b, att_b, 0.1)):
        epoch_report(client, tid, att, 1, 0.5)
        assert epoch_report(client, tid, att, 2, v) == "continue"
    assert finish(client, b, att_b, "completed", 20, epoch=2.0).json()["state"] == "completed"


# -- the cap holds when two processes race ----------------------------------------------------


def claim_all(url: str, worker: str) -> list[int]:
    won: list[int] = []
    with httpx2.Client(base_url=url, timeout=30) as http:
        while (r := http.post("/api/workers/claim", json={"worker": worker})).status_code == 200:
            won.append(r.json()["trial_id"])
    return won


@pytest.mark.slow
def test_two_processes_racing_never_exceed_parallelism(live_server: str) -> None:
    with httpx2.Client(base_url=live_server, timeout=30) as http:
        body = {
            "name": "race",
            "mode": "caviar",
            "space": SPACE,
            "budget": {"trials": 3},
            "parallelism": 3,
        }
        study = http.post("/api/studies", json=body).json()
        for seed in range(12):
            r = http.post(f"/api/studies/{study['id']}/trials", json={"hparams": {"seed": seed}})
            assert r.status_code == 201
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(claim_all, [(live_server, "a"), (live_server, "b")])
    assert sum(len(r) for r in results) == 3
    assert len({t for r in results for t in r}) == 3


def test_deleting_a_caviar_study_removes_rounds_and_records(client: TestClient, db: DB) -> None:
    study = caviar_study(client, scheduler="asha")
    tid, attempt = claim_one(client)
    epoch_report(client, tid, attempt, 1, 0.5)
    finish(client, tid, attempt, "completed", 40, epoch=4.0)
    assert client.delete(f"/api/studies/{study['id']}").status_code == 204
    assert db.count(Study) == db.count(Round) == db.count(RungRecordRow) == 0


def test_a_queued_trial_says_what_it_waits_for(client: TestClient) -> None:
    sid = caviar_study(client, budget={"trials": 3}, parallelism=1)["id"]
    (queued,) = [t for t in trials_of(client, sid) if t["state"] == "queued"]
    assert queued["waiting"]["reason"] == "worker"
    assert queued["waiting"]["text"] == "a worker to claim it (none is training a trial now)"
    tid, _ = claim_one(client)
    panda = client.post("/api/studies", json={"name": "p", "mode": "panda", "task": "digits"})
    waiting_panda = client.post(f"/api/studies/{panda.json()['id']}/trials", json={}).json()
    # The panda trial waits for a worker, the running caviar trial holds the only one known.
    assert waiting_panda["waiting"]["reason"] == "worker"
    assert [r["id"] for r in waiting_panda["waiting"]["running"]] == [tid]
    number = client.get(f"/api/trials/{tid}").json()["number"]
    assert f"every worker is busy (Trial {number} of" in waiting_panda["waiting"]["text"]
    # A trial added to the caviar study waits for its parallelism of 1.
    added = client.post(f"/api/studies/{sid}/trials", json={"hparams": {}}).json()
    assert added["waiting"]["reason"] == "parallelism", added["waiting"]
    assert [r["id"] for r in added["waiting"]["running"]] == [tid]
    assert client.get(f"/api/trials/{tid}").json()["waiting"] is None  # running: nothing
