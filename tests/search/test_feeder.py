"""The study feeder's state lives in the database: ASHA decides the same after a restart."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.search import feeder
from app.storage.models import Study, Trial
from app.tuning import AshaScheduler, Direction, RungRecord, TrialStatus, TrialView
from tests.api.test_caviar import SPACE, claim_one, epoch_report

# (trial index, epoch, dev_accuracy): rung 0 at epoch 1, rung 1 at epoch 3 (eta 3, 9 epochs).
REPORTS = [
    (0, 1, 0.50),
    (1, 1, 0.60),
    (2, 1, 0.40),  # -- the server restarts after these --
    (3, 1, 0.70),
    (4, 1, 0.55),
    (5, 1, 0.30),
    (0, 3, 0.65),
    (1, 3, 0.62),
]
# Worked by hand: keep the best floor(n / 3) of the n values at the rung (at least the best
# one). Rung 0: 0.5 best of 1; 0.6 best of 2; 0.4 not; 0.7 best of 4; 0.55 not (top 1 of 5
# is 0.7); 0.3 not (top 2 of 6: 0.7, 0.6). Rung 1: 0.65 best of 1; 0.62 not.
EXPECTED = ["continue", "continue", "stop", "continue", "stop", "stop", "continue", "stop"]
RESTART_AFTER = 3


def _study(client: TestClient) -> tuple[int, list[tuple[int, int]]]:
    body = {
        "name": "asha",
        "mode": "caviar",
        "task": "digits",
        "space": {**SPACE, "epochs": 9},
        "budget": {"trials": 6},
        "parallelism": 6,
        "scheduler": {"name": "asha", "min_resource": 1, "reduction_factor": 3},
    }
    r = client.post("/api/studies", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"]), [claim_one(client) for _ in range(6)]


def _pure_decisions() -> list[str]:
    """The same reports through one in-memory scheduler that keeps its own records."""
    asha = AshaScheduler(1, 3, 9, Direction.MAXIMIZE)
    kept: list[RungRecord] = []
    out = []
    for i, epoch, value in REPORTS:
        view = TrialView(number=i, round=0, state=TrialStatus.RUNNING, hparams={})
        step = asha.on_report(view, epoch, value, [], kept)
        kept.extend(step.new_records)
        out.append(step.decision.value)
    return out


def test_asha_decisions_survive_a_server_restart(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        study_id, running = _study(client)
        before = [
            epoch_report(client, *running[i], epoch, value)
            for i, epoch, value in REPORTS[:RESTART_AFTER]
        ]
    # A new app on the same database file: nothing of the first one's memory survives.
    app = create_app(settings)
    with TestClient(app) as client:
        again = [
            epoch_report(client, *running[i], epoch, value)
            for i, epoch, value in REPORTS[:RESTART_AFTER]
        ]  # replayed: same answers
        after = [
            epoch_report(client, *running[i], epoch, value)
            for i, epoch, value in REPORTS[RESTART_AFTER:]
        ]
        with Session(app.state.engine) as session:
            study = session.scalars(select(Study).where(Study.id == study_id)).one()
            round_id = session.scalars(
                select(Trial.round_id).where(Trial.study_id == study_id)
            ).first()
            stored = feeder.records(session, study_id, round_id)
            scheduler = feeder.scheduler_for(study)
    assert before + after == EXPECTED == _pure_decisions()
    assert again == before
    # One record per (trial, rung) reported, in report order, nothing duplicated by the replay.
    assert [(r.trial_number, r.rung, r.value) for r in stored] == [
        (i, 0 if epoch == 1 else 1, value) for i, epoch, value in REPORTS
    ]
    assert isinstance(scheduler, AshaScheduler) and scheduler.max_resource == 9


def test_stored_views_carry_round_state_value_and_curve(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        study_id, running = _study(client)
        epoch_report(client, *running[0], 1, 0.5)
        epoch_report(client, *running[0], 2, 0.6)
        app: Any = client.app
        with Session(app.state.engine) as session:
            views = feeder.views(session, study_id)
    assert [v.number for v in views] == list(range(6))
    first = views[0]
    assert first.round == 0 and first.state is TrialStatus.RUNNING and first.value is None
    assert dict(first.intermediate) == {1: 0.5, 2: 0.6}
    assert views[1].intermediate == {} and first.hparams["epochs"] == 9
