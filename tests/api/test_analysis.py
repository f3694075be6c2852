"""Analysis of a study: GET /api/studies/{id}/best, .../importance, .../export."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient

from tests.api.test_caviar import caviar_study, claim_one, complete, epoch_report, trials_of
from tests.conftest import DB
from tests.factories import finish
from trainer.config import HPARAM_SPECS

FINALS = ["dev_loss", "dev_accuracy", "test_loss", "test_accuracy", "value", "best_value"]


def test_best_is_the_trial_with_the_best_final_value(client: TestClient) -> None:
    study = caviar_study(client, budget={"trials": 3})
    ids = [complete(client, v) for v in (0.6, 0.8, 0.7)]
    r = client.get(f"/api/studies/{study['id']}/best")
    assert r.status_code == 200
    body = r.json()
    assert (body["metric"], body["direction"], body["value"]) == ("dev_accuracy", "maximize", 0.8)
    assert body["trial"]["id"] == ids[1] and body["hparams"] == body["trial"]["hparams"]


def test_best_before_any_completes_is_the_trial_that_got_furthest(client: TestClient) -> None:
    study = caviar_study(client, budget={"trials": 3}, parallelism=3)
    runs = [claim_one(client) for _ in range(3)]
    # Trial a stopped at epoch 1 with 0.9, trial b at epoch 2 with 0.6, c never ended an epoch.
    (a, att_a), (b, att_b), (c, _) = runs
    epoch_report(client, a, att_a, 1, 0.9)
    assert finish(client, a, att_a, "stopped", 10, epoch=1.0).status_code == 200
    for epoch, value in ((1, 0.5), (2, 0.6)):
        epoch_report(client, b, att_b, epoch, value)
    assert finish(client, b, att_b, "stopped", 20, epoch=2.0).status_code == 200
    best = client.get(f"/api/studies/{study['id']}/best").json()
    assert best["trial"]["id"] == b and best["value"] == 0.6, best
    assert (best["runs"], best["std"], best["retested"]) == (1, 0.0, False)


def test_best_after_a_retest_is_the_configuration_with_the_best_mean(client: TestClient) -> None:
    sid = caviar_study(client, budget={"trials": 2})["id"]
    first, second = complete(client, 0.90), complete(client, 0.85)
    assert (
        client.post(f"/api/studies/{sid}/retest", json={"top": 2, "seeds": 2}).status_code == 201
    )
    # Re-tests run in order: trial 1's two seeds, then trial 2's.
    for value in (0.80, 0.82, 0.86, 0.87):
        complete(client, value)
    best = client.get(f"/api/studies/{sid}/best").json()
    # Config 1: 0.90, 0.80, 0.82 -> 0.8400; config 2: 0.85, 0.86, 0.87 -> 0.8600.
    assert best["trial"]["id"] == second and best["retested"] is True, best
    assert best["value"] == pytest.approx(0.86) and best["runs"] == 3
    assert best["std"] == pytest.approx(0.01)
    assert best["run_trial_ids"][0] == second and len(set(best["seeds"])) == 3
    assert first != second


def test_best_of_a_minimised_objective(client: TestClient) -> None:
    study = caviar_study(client, objective={"metric": "dev_loss"}, budget={"trials": 2})
    for value in (0.3, 0.2):  # complete() reports dev_loss = 1 - value at the end
        complete(client, value)
    assert client.get(f"/api/studies/{study['id']}/best").json()["value"] == pytest.approx(0.7)


def test_best_and_importance_need_completed_trials(client: TestClient) -> None:
    sid = caviar_study(client)["id"]
    r = client.get(f"/api/studies/{sid}/best")
    # Asked a second after creation: says why and when to ask again.
    assert r.status_code == 409 and "no value of dev_accuracy yet" in r.json()["detail"]
    assert "ask again in a few seconds" in r.json()["detail"]
    complete(client, 0.5)
    r = client.get(f"/api/studies/{sid}/importance")
    assert r.status_code == 409 and "at least 2" in r.json()["detail"]


def test_importance_scores_each_ranged_hyperparameter(client: TestClient) -> None:
    sid = caviar_study(client, budget={"trials": 6})["id"]
    for value in (0.2, 0.4, 0.9, 0.5, 0.3, 0.7):
        complete(client, value)
    r = client.get(f"/api/studies/{sid}/importance")
    assert r.status_code == 200
    body = r.json()
    assert "random-forest" in body["method"] and body["n_trials"] == 6
    assert set(body["scores"]) == {"learning_rate", "hidden_units", "momentum"}
    assert sum(body["scores"].values()) == pytest.approx(1.0)
    # Every trial trained its 4 epochs: the objective is read there.
    assert (body["resource"], body["needed"]) == (4, 10)
    assert body["warning"] == (
        "Only 6 trials at epoch 4: too few to trust this ranking (at least 10 needed)"
    )
    assert set(body["intervals"]) == set(body["scores"])
    for low, high in body["intervals"].values():
        assert 0.0 <= low <= high <= 1.0


def test_importance_counts_trials_stopped_early_at_the_epoch_they_reached(
    client: TestClient,
) -> None:
    sid = caviar_study(client, budget={"trials": 12})["id"]
    # 9 trials stopped after 2 epochs, 3 trained all 4: 12 values at epoch 2, 3 at the end.
    for i in range(12):
        value = 0.1 + 0.07 * i
        if i < 9:
            tid, attempt = claim_one(client)
            for epoch in (1, 2):
                epoch_report(client, tid, attempt, epoch, value)
            assert finish(client, tid, attempt, "stopped", 20, epoch=2.0).status_code == 200
        else:
            complete(client, value)
    body = client.get(f"/api/studies/{sid}/importance").json()
    assert (body["resource"], body["n_trials"], body["warning"]) == (2, 12, None), body
    assert "objective at epoch 2" in body["method"]
    assert "30 bootstrap resamples" in body["method"]
    scores, intervals = body["scores"], body["intervals"]
    assert set(intervals) == set(scores) == {"learning_rate", "hidden_units", "momentum"}
    for name, (low, high) in intervals.items():
        assert 0.0 <= low <= high <= 1.0, (name, low, high)
    # Asked again with nothing new: the same answer (remembered, not refitted differently).
    assert client.get(f"/api/studies/{sid}/importance").json() == body


def test_importance_leaves_retests_out_and_trusts_ten_trials(client: TestClient) -> None:
    sid = caviar_study(client, budget={"trials": 10})["id"]
    for i in range(10):
        complete(client, 0.1 + 0.08 * i)
    r = client.post(f"/api/studies/{sid}/retest", json={"top": 2, "seeds": 2})
    assert r.status_code in (200, 201), r.text
    for _ in range(4):  # the re-tests, values far from their originals'
        complete(client, 0.01)
    rows = client.get(f"/api/studies/{sid}/export", params={"format": "json"}).json()
    rows = rows["data"]
    assert sum(r["retest_of"] is not None and r["state"] == "completed" for r in rows) == 4
    body = client.get(f"/api/studies/{sid}/importance").json()
    assert body["n_trials"] == 10 and body["warning"] is None, body


@pytest.mark.parametrize("path", ["best", "importance", "export", "export?format=json"])
def test_analysis_of_unknown_study_is_404(client: TestClient, path: str) -> None:
    assert client.get(f"/api/studies/99/{path}").status_code == 404


def test_export_csv_has_a_row_per_trial_and_a_column_per_hyperparameter(
    client: TestClient,
) -> None:
    sid = caviar_study(client, budget={"trials": 3})["id"]
    done = complete(client, 0.75)
    tid, attempt = claim_one(client)
    epoch_report(client, tid, attempt, 1, 0.4)
    finish(client, tid, attempt, "stopped", 10, epoch=1.0)
    r = client.get(f"/api/studies/{sid}/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f"study-{sid}.csv" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 3 == len(trials_of(client, sid))
    columns = list(rows[0])
    assert columns[:6] == ["rank", "id", "number", "round", "state", "retest_of"]
    assert set(HPARAM_SPECS) <= set(columns) and columns[-6:] == FINALS
    by_id = {int(row["id"]): row for row in rows}
    assert by_id[done]["state"] == "completed" and by_id[done]["round"] == "1"
    assert float(by_id[done]["dev_accuracy"]) == 0.75 and float(by_id[done]["value"]) == 0.75
    assert float(by_id[done]["test_loss"]) == pytest.approx(0.26)
    stopped = by_id[tid]
    assert stopped["state"] == "stopped" and stopped["value"] == ""
    # The completed trial first, the one stopped at epoch 1 next, the queued one unranked.
    assert (by_id[done]["rank"], stopped["rank"]) == ("1", "2")
    assert [row["rank"] for row in rows if int(row["id"]) not in (done, tid)] == [""]
    assert float(stopped["dev_accuracy"]) == 0.4 and stopped["test_accuracy"] == ""
    hp = trials_of(client, sid)[0]["hparams"]
    assert float(by_id[done]["learning_rate"]) == hp["learning_rate"]


def test_export_json_matches_csv(client: TestClient) -> None:
    sid = caviar_study(client, budget={"trials": 2})["id"]
    complete(client, 0.5)
    body = client.get(f"/api/studies/{sid}/export", params={"format": "json"}).json()
    assert body["count"] == 2 and body["metric"] == "dev_accuracy"
    assert list(body["data"][0]) == body["columns"]
    text = client.get(f"/api/studies/{sid}/export").text
    assert text.splitlines()[0].split(",") == body["columns"]
    assert body["data"][0]["dev_accuracy"] == 0.5 and body["data"][1]["value"] is None


def test_export_unknown_format_is_422(client: TestClient, db: DB) -> None:
    sid = caviar_study(client)["id"]
    r = client.get(f"/api/studies/{sid}/export", params={"format": "xml"})
    assert r.status_code == 422 and r.json()["field"] == "format"
