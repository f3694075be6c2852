"""Metric points on (trial, name, step): the upsert a report runs, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.storage import queries
from app.storage.db import init_db, make_engine
from app.storage.models import TrialState
from tests.storage.rows import a_trial_id

NAMES = ("train_loss", "train_accuracy", "learning_rate", "grad_norm", "dev_loss", "dev_accuracy")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    init_db(engine)
    yield engine
    engine.dispose()


def _trial(engine: Engine) -> int:
    return a_trial_id(engine, TrialState.RUNNING, objective="dev_accuracy")


def _store(engine: Engine, trial_id: int, points: list[tuple[int, str, float]]) -> int:
    with Session(engine) as session:
        n = queries.upsert_metrics(session, trial_id=trial_id, points=points)
        session.commit()
        return n


def _series(engine: Engine, trial_id: int) -> dict[str, list[tuple[int, float]]]:
    with Session(engine) as session:
        return queries.metric_series(session, trial_id=trial_id, names=[], since_step=None)


def test_a_large_batch_is_stored_point_for_point(engine: Engine) -> None:
    # 1,201 steps x 6 metrics: more rows than one statement holds, and not a power of two.
    trial_id = _trial(engine)
    points = [(s, n, s + i / 10) for s in range(1, 1202) for i, n in enumerate(NAMES)]
    assert _store(engine, trial_id, points) == len(points)
    series = _series(engine, trial_id)
    assert sorted(series) == sorted(NAMES)
    for i, name in enumerate(NAMES):
        assert series[name] == [(s, s + i / 10) for s in range(1, 1202)]


def test_the_later_point_on_a_step_wins_and_a_retry_changes_nothing(engine: Engine) -> None:
    trial_id, other = _trial(engine), _trial(engine)
    points = [(1, "loss", 3.0), (2, "loss", 2.0), (1, "loss", 2.5), (2, "acc", 0.5)]
    _store(engine, trial_id, points)
    _store(engine, other, [(1, "loss", 9.0)])
    expected = {"loss": [(1, 2.5), (2, 2.0)], "acc": [(2, 0.5)]}
    assert _series(engine, trial_id) == expected
    _store(engine, trial_id, points)  # the same batch again (a retried report)
    assert _series(engine, trial_id) == expected
    _store(engine, trial_id, [(2, "loss", 1.5)])  # a newer value overwrites
    assert _series(engine, trial_id)["loss"] == [(1, 2.5), (2, 1.5)]
    assert _series(engine, other) == {"loss": [(1, 9.0)]}


def test_no_points_store_nothing(engine: Engine) -> None:
    trial_id = _trial(engine)
    assert _store(engine, trial_id, []) == 0
    assert _series(engine, trial_id) == {}
