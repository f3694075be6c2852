"""SQLite setup: pragmas, BEGIN IMMEDIATE for writers, deferred reads, cascades."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.storage.db import init_db, make_engine, read_engine
from app.storage.models import (
    Event,
    EventKind,
    Metric,
    Trial,
    TrialState,
)
from tests.storage.rows import a_trial


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "t.db"


def test_pragmas(db_path: Path) -> None:
    engine = make_engine(f"sqlite:///{db_path}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL + our own sync
    engine.dispose()


def _other_writer_blocked(db_path: Path) -> bool:
    other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return True
    finally:
        other.close()


def test_every_transaction_begins_immediate(db_path: Path) -> None:
    engine = make_engine(f"sqlite:///{db_path}")
    init_db(engine)
    with Session(engine) as session:
        session.execute(select(Trial.id)).all()  # a read is enough to hold the write lock
        assert _other_writer_blocked(db_path)
    assert not _other_writer_blocked(db_path)
    engine.dispose()


def test_read_engine_transactions_are_deferred(db_path: Path) -> None:
    engine = make_engine(f"sqlite:///{db_path}")
    init_db(engine)
    with Session(read_engine(engine)) as session:
        session.execute(select(Trial.id)).all()
        assert not _other_writer_blocked(db_path)
    engine.dispose()


def test_deleting_a_study_cascades_in_the_database(db_path: Path) -> None:
    engine = make_engine(f"sqlite:///{db_path}")
    init_db(engine)
    with Session(engine) as session:
        trial = a_trial(session, TrialState.QUEUED)
        session.add_all(
            [
                Metric(trial_id=trial.id, name="m", step=1, value=1.0),
                Event(trial_id=trial.id, kind=EventKind.NOTE),
            ]
        )
        session.commit()
        stored = session.execute(text("SELECT state FROM trials")).scalar()
        assert stored == "queued"  # enum values, lower case, as the API shows them
        session.delete(trial.study)
        session.commit()
        for model in (Trial, Metric, Event):
            assert session.scalar(select(model.id)) is None
    engine.dispose()
