"""Finite floats only: NaN, "NaN", Infinity and 1e400 get 422 in every JSON body, and no write."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import DB
from tests.factories import create_study, npz_bytes, report, running_trial, upload

BAD = ["NaN", '"NaN"', "Infinity", "-Infinity", "1e400"]
RANGE = '{"dist": "uniform", "low": %s, "high": 1}'
CAVIAR = '{"name": "c", "mode": "caviar", "space": {"learning_rate": %s}%s}'
# (method, path template, body template with one %s for the bad value)
PLACES = [
    ("POST", "/api/studies", '{"name": "p", "space": {"learning_rate": %s}}'),
    ("POST", "/api/studies", CAVIAR % (RANGE, "")),
    ("POST", "/api/studies", CAVIAR % ('{"dist": "choice", "values": [0.1, %s]}', "")),
    (
        "POST",
        "/api/studies",
        CAVIAR % (RANGE % "0.1", ', "scheduler": {"name": "asha", "reduction_factor": %s}'),
    ),
    (
        "POST",
        "/api/studies",
        CAVIAR % (RANGE % "0.1", ', "sampler": {"name": "tpe", "gamma": %s}'),
    ),
    ("POST", "/api/studies", '{"name": "q", "task": "moons", "task_options": {"noise": %s}}'),
    ("POST", "/api/studies", '{"name": "e", "epochs": %s}'),
    ("POST", "/api/studies/{study}/trials", '{"hparams": {"momentum": %s}}'),
    ("POST", "/api/studies/{caviar}/rounds", '{"from_top": 1, "margin": %s, "trials": 1}'),
    (
        "POST",
        "/api/studies/{caviar}/rounds",
        '{"space": {"learning_rate": ' + RANGE + '}, "trials": 1}',
    ),
    ("PATCH", "/api/trials/{trial}/hparams", '{"learning_rate": %s}'),
    ("POST", "/api/trials/{trial}/fork", '{"step": 5, "hparams": {"learning_rate": %s}}'),
    (
        "POST",
        "/api/workers/trials/{trial}/report",
        '{"attempt": 1, "step": 6, "epoch": 0, "points": [[6, "loss", %s]]}',
    ),
    ("POST", "/api/workers/trials/{trial}/report", '{"attempt": 1, "step": 6, "epoch": %s}'),
    (
        "POST",
        "/api/workers/trials/{trial}/finish",
        '{"attempt": 1, "status": "completed", "step": 6, "metrics": {"dev_loss": %s}}',
    ),
]


@pytest.mark.parametrize("bad", BAD)
def test_non_finite_numbers_refused_everywhere(client: TestClient, db: DB, bad: str) -> None:
    trial, attempt = running_trial(client)  # claimed first: the oldest queued trial
    study = create_study(client)
    caviar = create_study(
        client,
        mode="caviar",
        budget={"trials": 1},
        space={"learning_rate": {"dist": "uniform", "low": 0.1, "high": 1}},
    )
    assert attempt == 1
    assert report(client, trial, attempt, 5).status_code == 200
    assert upload(client, trial, attempt, 5, npz_bytes(5)).status_code == 201
    ids = {"study": study["id"], "caviar": caviar["id"], "trial": trial}
    before = db.snapshot()
    for method, path, body in PLACES:
        r = client.request(
            method,
            path.format(**ids),
            content=(body % bad).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 422, (path, body % bad, r.text)
        assert r.json()["detail"], path
    assert db.snapshot() == before
