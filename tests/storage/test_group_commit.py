"""Group commit: a writing commit syncs the WAL once, after every lock is released.

``os.fdatasync`` is wrapped (the operating system's call, not our code) to see when the sync
happens and what it syncs; the database, the engine and the locks are the real ones.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.storage.db import init_db, make_engine, read_engine
from app.storage.models import Study
from tests.storage.rows import a_study

Spy = list[str]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> Spy:
    """The paths ``os.fdatasync`` was called on, in order."""
    calls: Spy = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    return calls


def _add_study(engine: Engine, name: str) -> None:
    with Session(engine) as session:
        session.add(a_study(name))
        session.commit()


def test_a_writing_commit_syncs_the_wal_once(engine: Engine, synced: Spy) -> None:
    _add_study(engine, "a")
    assert len(synced) == 1
    assert synced[0].endswith("g.db-wal")


def test_reads_and_rollbacks_do_not_sync(engine: Engine, synced: Spy) -> None:
    with Session(read_engine(engine)) as session:
        session.scalar(select(func.count()).select_from(Study))
        session.commit()
    with Session(engine) as session:
        session.add(a_study("gone"))
        session.flush()
        session.rollback()
    assert synced == []
    _add_study(engine, "kept")
    assert len(synced) == 1


def test_the_sync_runs_after_every_lock_is_released(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # While the first commit syncs, SQLite's write lock and our writers' turn must be free:
    # another thread of the same engine writes and commits before the sync returns.
    real = os.fdatasync
    seen: dict[str, bool] = {}

    def check_then_sync(fd: int) -> None:
        if not seen:
            seen["checking"] = True
            other = sqlite3.connect(tmp_path / "g.db", timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # raises "database is locked" if held
                other.execute("ROLLBACK")
            finally:
                other.close()
            seen["sqlite lock free"] = True
            seen["turn free"] = _runs_within(lambda: _add_study(engine, "meanwhile"), 5.0)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", check_then_sync)
    _add_study(engine, "first")
    assert seen == {"checking": True, "sqlite lock free": True, "turn free": True}
    with Session(engine) as session:
        assert set(session.scalars(select(Study.name))) == {"first", "meanwhile"}


def _runs_within(fn: Callable[[], None], seconds: float) -> bool:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()
