"""PostgreSQL: migrations, column types, and the row locks of every read-then-write path.

Transactions run side by side on PostgreSQL, so each race is played out here step by step:
transaction A does its part and stays open; B does the same in a thread; the test waits until
B either finished or waits on a lock, then commits A and looks at what B did. Each test fails
if the lock it names is removed (without it B acts on what A has not committed yet, or waits
where it should skip). The end-to-end version with two servers is
tests/e2e/test_postgres_servers.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Conflict
from app.main import create_app
from app.schemas import FinishIn, ReportIn
from app.storage import locks, migrations
from app.storage.db import init_db, make_engine
from app.storage.models import (
    Checkpoint,
    Event,
    EventKind,
    Round,
    Study,
    Trial,
    TrialState,
    utcnow,
)
from app.trials import claims, controls, leases, worker_calls
from tests.api.test_caviar import caviar_study, claim_one
from tests.factories import create_study, create_trial, running_trial, upload
from tests.pg import PostgresServer

WAIT_SECONDS = 30.0


@dataclass
class Pg:
    client: TestClient
    engine: Engine
    settings: Settings

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def count(self, model: type[Any], *where: Any) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.fixture
def pg(pg_url: str, tmp_path: Path) -> Iterator[Pg]:
    settings = Settings(
        database_url=pg_url,
        data_dir=tmp_path / "data",
        workers=0,
        start_dispatcher=False,
        reaper_seconds=3600,
    )
    engine = make_engine(pg_url)
    try:
        with TestClient(create_app(settings)) as client:
            yield Pg(client, engine, settings)
    finally:
        engine.dispose()


class Racer(threading.Thread):
    """Transaction B: ``fn(session)`` in a session of its own, committed; keeps the outcome."""

    def __init__(self, pg: Pg, fn: Callable[[Session], Any]) -> None:
        super().__init__(daemon=True)
        self.pg, self.fn = pg, fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.pg.session() as session:
                self.result = self.fn(session)
                session.commit()
        except BaseException as exc:  # handed to the test by outcome()
            self.error = exc

    def outcome(self) -> Any:
        self.join(WAIT_SECONDS)
        assert not self.is_alive(), "transaction B never finished"
        if self.error is not None:
            raise self.error
        return self.result


def race(pg: Pg, first: Session, fn: Callable[[Session], Any]) -> tuple[str, Racer]:
    """Start B while A (``first``) is open; "done" or "blocked" once B got that far."""
    racer = Racer(pg, fn)
    racer.start()
    deadline = time.monotonic() + WAIT_SECONDS
    with pg.engine.connect() as conn:
        while racer.is_alive() and time.monotonic() < deadline:
            waiting = conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            conn.rollback()  # a fresh snapshot of pg_stat_activity each time
            if waiting:
                return "blocked", racer
            time.sleep(0.005)
    return ("blocked" if racer.is_alive() else "done"), racer


def locked_trial(session: Session, trial_id: int) -> Trial:
    """The trial as a writing request's TrialDep loads it (app.deps.load_trial)."""
    trial = locks.get_trial(session, trial_id, lock=True)
    assert trial is not None
    return trial


def events(pg: Pg, trial_id: int, kind: EventKind) -> list[Event]:
    with pg.session() as s:
        q = select(Event).where(Event.trial_id == trial_id, Event.kind == kind)
        return list(s.scalars(q.order_by(Event.id)))


# -- the claim -------------------------------------------------------------------------------


def test_a_claim_skips_the_trial_another_claim_holds(pg: Pg) -> None:
    """FOR NO KEY UPDATE SKIP LOCKED in crud._claim_next_locking."""
    study = create_study(pg.client)
    first, second = (create_trial(pg.client, study["id"])["id"] for _ in range(2))
    with pg.session() as a:
        got = claims.take(a, "a", pg.settings)
        assert got is not None and got.trial_id == first
        state, b = race(pg, a, lambda s: claims.take(s, "b", pg.settings))
        try:
            # Neither waits for A (no SKIP LOCKED) nor takes A's trial again (no lock at all).
            assert state == "done"
        finally:
            a.commit()
        other = b.outcome()
    assert other is not None and (other.trial_id, other.attempt) == (second, 1)
    assert pg.count(Trial, Trial.state == TrialState.RUNNING, Trial.attempt == 1) == 2


def test_two_claims_racing_for_the_last_slot_of_a_study_take_it_once(pg: Pg) -> None:
    """The study lock and second count in crud._claim_next_locking (the parallelism cap)."""
    study = caviar_study(pg.client, parallelism=1)
    create_trial(pg.client, study["id"])  # by hand: two queued trials, one slot
    assert pg.count(Trial, Trial.state == TrialState.QUEUED) == 2
    with pg.session() as a:
        assert claims.take(a, "a", pg.settings) is not None
        # B's snapshot cannot see A's running trial: only the study lock stops it.
        state, b = race(pg, a, lambda s: claims.take(s, "b", pg.settings))
        a.commit()
        assert b.outcome() is None
    assert state == "blocked"  # on the study, which A holds
    assert pg.count(Trial, Trial.state == TrialState.RUNNING) == 1
    # The queued trial stays claimable once the slot frees up.
    assert pg.count(Trial, Trial.state == TrialState.QUEUED) == 1


# -- controls --------------------------------------------------------------------------------


def test_two_pauses_of_one_trial_leave_one_pending_pause(pg: Pg) -> None:
    """locks.get_trial(lock=True) (TrialDep) and locks.lock_trial in controls.pause."""
    trial_id, _ = running_trial(pg.client)
    with pg.session() as a:
        controls.pause(a, locked_trial(a, trial_id))
        # B loads the trial unlocked: controls.pause must lock it before reading events.
        state, b = race(pg, a, lambda s: controls.pause(s, s.get_one(Trial, trial_id)))
        a.commit()
        b.outcome()
    assert state == "blocked"
    assert len(events(pg, trial_id, EventKind.PAUSE)) == 1


def test_two_adjustments_at_once_chain_old_to_new(pg: Pg) -> None:
    """The trial lock in controls.adjust: the second reads the first's pending value."""
    trial_id, _ = running_trial(pg.client, learning_rate=0.1)
    with pg.session() as a:
        controls.adjust(a, locked_trial(a, trial_id), {"learning_rate": 0.01})
        state, b = race(
            pg, a, lambda s: controls.adjust(s, locked_trial(s, trial_id), {"learning_rate": 0.02})
        )
        a.commit()
        b.outcome()
    assert state == "blocked"
    first, second = events(pg, trial_id, EventKind.ADJUST)
    assert first.payload == {"hparams": {"learning_rate": 0.01}, "old": {"learning_rate": 0.1}}
    assert second.payload == {"hparams": {"learning_rate": 0.02}, "old": {"learning_rate": 0.01}}


# -- the reaper ------------------------------------------------------------------------------


def _expired_trial(pg: Pg) -> tuple[int, int]:
    pg.client.app.state.settings.lease_seconds = 0.001  # type: ignore[attr-defined]
    try:
        return running_trial(pg.client)
    finally:
        pg.client.app.state.settings.lease_seconds = 30.0  # type: ignore[attr-defined]


def test_the_reaper_skips_a_trial_whose_report_is_in_flight(pg: Pg) -> None:
    """FOR NO KEY UPDATE SKIP LOCKED in leases.reap_expired."""
    trial_id, attempt = _expired_trial(pg)
    time.sleep(0.01)
    body = ReportIn(attempt=attempt, step=5, epoch=0.05)
    with pg.session() as a:
        worker_calls.report(a, locked_trial(a, trial_id), body, pg.settings)  # renews the lease
        state, b = race(pg, a, lambda s: leases.reap_expired(s, utcnow(), max_failures=3))
        try:
            assert state == "done"  # skipped, not waited for
        finally:
            a.commit()
        assert b.outcome() == 0
    with pg.session() as s:
        assert leases.reap_expired(s, utcnow(), max_failures=3) == 0  # the lease is fresh
        s.commit()
        trial = s.get_one(Trial, trial_id)
        assert (trial.state, trial.attempt, trial.step) == (TrialState.RUNNING, attempt, 5)


def test_two_reapers_requeue_an_expired_trial_once(pg: Pg) -> None:
    trial_id, _ = _expired_trial(pg)
    time.sleep(0.01)
    with pg.session() as a:
        assert leases.reap_expired(a, utcnow(), max_failures=3) == 1
        state, b = race(pg, a, lambda s: leases.reap_expired(s, utcnow(), max_failures=3))
        try:
            assert state == "done"
        finally:
            a.commit()
        assert b.outcome() == 0
    assert len(events(pg, trial_id, EventKind.REQUEUE)) == 1


@pytest.mark.parametrize("call", ["report", "finish"])
def test_a_report_or_finish_racing_the_reaper_is_refused(pg: Pg, call: str) -> None:
    """The trial lock in worker_calls.report and worker_calls.finish (TrialDep takes it first).

    Without it the late call reads "running" from its snapshot, waits for the reaper's row
    lock, then renews the lease of (or finishes) a trial that is queued again: the worker
    trains on while another claims the trial.
    """
    trial_id, attempt = _expired_trial(pg)
    time.sleep(0.01)

    def late(s: Session) -> object:
        trial = s.get_one(Trial, trial_id)  # loaded before the lock, as a stale reader would
        if call == "report":
            return worker_calls.report(
                s, trial, ReportIn(attempt=attempt, step=5, epoch=0.05), pg.settings
            )
        body = FinishIn(attempt=attempt, status="completed", step=5, epoch=0.05)
        worker_calls.finish(s, trial, body)
        return None

    with pg.session() as a:
        assert leases.reap_expired(a, utcnow(), max_failures=3) == 1
        state, b = race(pg, a, late)
        a.commit()
        with pytest.raises(Conflict):
            b.outcome()
    assert state == "blocked"
    with pg.session() as s:
        trial = s.get_one(Trial, trial_id)
        assert (trial.state, trial.step, trial.lease_expires_at) == (TrialState.QUEUED, 0, None)


def test_a_checkpoint_of_a_requeued_attempt_is_refused(pg: Pg) -> None:
    """worker_calls.checkpoint_taken checks the attempt again under the trial's lock."""
    trial_id, attempt = _expired_trial(pg)
    time.sleep(0.01)
    with pg.session() as a:
        assert leases.reap_expired(a, utcnow(), max_failures=3) == 1

        def record(s: Session) -> None:
            trial = s.get_one(Trial, trial_id)
            worker_calls.check_attempt(trial, attempt)  # what the upload checked before the lock
            worker_calls.checkpoint_taken(s, trial, 10, pg.settings)

        state, b = race(pg, a, record)
        a.commit()
        with pytest.raises(Conflict):
            b.outcome()
    assert state == "blocked"
    with pg.session() as s:
        trial = s.get_one(Trial, trial_id)
        assert trial.state is TrialState.QUEUED and trial.lease_expires_at is None


def test_a_pauses_checkpoint_ends_the_attempt_paused(pg: Pg) -> None:
    """The upload's one transaction locks the trial for the row, then for the finish."""
    trial_id, attempt = running_trial(pg.client)
    pg.client.post(f"/api/trials/{trial_id}/pause")
    r = upload(pg.client, trial_id, attempt, 8, epoch="0.5", finish="paused")
    assert r.status_code == 201, r.text
    with pg.session() as s:
        trial = s.get_one(Trial, trial_id)
        assert (trial.state, trial.step, trial.worker) == (TrialState.PAUSED, 8, None)
        assert pg.count(Checkpoint, Checkpoint.trial_id == trial_id) == 1


# -- caviar: feeding and early stopping ------------------------------------------------------


def test_two_finishes_feed_a_study_in_turn(pg: Pg) -> None:
    """The study lock in caviar.settle: numbers and the budget are read one finish at a time."""
    study = caviar_study(pg.client, budget={"trials": 4}, parallelism=2)
    (t1, a1), (t2, a2) = claim_one(pg.client), claim_one(pg.client)

    def done(trial_id: int, attempt: int) -> Callable[[Session], None]:
        body = FinishIn(attempt=attempt, status="completed", step=40, epoch=4.0)
        return lambda s: worker_calls.finish(s, locked_trial(s, trial_id), body)

    with pg.session() as a:
        done(t1, a1)(a)
        state, b = race(pg, a, done(t2, a2))
        a.commit()
        b.outcome()  # without the lock: a duplicate trial number (IntegrityError)
    assert state == "blocked"
    with pg.session() as s:
        numbers = s.scalars(select(Trial.number).where(Trial.study_id == study["id"]))
        assert sorted(numbers) == [0, 1, 2, 3]
        assert s.get_one(Study, study["id"]).state.value == "active"


def test_asha_decides_two_epoch_ends_at_once_in_turn(pg: Pg) -> None:
    """The study lock in caviar.on_report: the second decision sees the first's rung record."""
    caviar_study(pg.client, scheduler={"name": "asha", "min_resource": 1, "reduction_factor": 2})
    (t1, a1), (t2, a2) = claim_one(pg.client), claim_one(pg.client)

    def epoch_end(trial_id: int, attempt: int, value: float) -> Callable[[Session], str]:
        body = ReportIn(attempt=attempt, step=10, epoch=1.0, points=[(10, "dev_accuracy", value)])
        return lambda s: (
            worker_calls.report(s, locked_trial(s, trial_id), body, pg.settings).action
        )

    with pg.session() as a:
        assert epoch_end(t1, a1, 0.9)(a) == "continue"
        state, b = race(pg, a, epoch_end(t2, a2, 0.5))
        a.commit()
        # As on SQLite: not in the top half of rung 0 once the first record is counted.
        assert b.outcome() == "stop"
    assert state == "blocked"


def test_deleting_a_study_waits_for_a_claim_then_refuses(pg: Pg) -> None:
    """deps.load_study locks the study's trials before a deletion counts the running ones."""
    study = create_study(pg.client)
    create_trial(pg.client, study["id"])
    with pg.session() as a:
        assert claims.take(a, "a", pg.settings) is not None
        # Through the API, in B's thread: the request's own session takes the locks.
        state, b = race(pg, a, lambda _: pg.client.delete(f"/api/studies/{study['id']}"))
        a.commit()
        assert b.outcome().status_code == 409  # one trial runs now
    assert state == "blocked"
    assert pg.count(Trial, Trial.state == TrialState.RUNNING) == 1


# -- types and migrations --------------------------------------------------------------------


def test_values_keep_their_types(pg: Pg) -> None:
    seed = 2**32 - 1  # the largest seed the API takes: past PostgreSQL's INTEGER
    study = create_study(pg.client, seed=seed, space={"learning_rate": 0.5})
    assert pg.client.get(f"/api/studies/{study['id']}").json()["seed"] == seed
    trial_id, attempt = running_trial(pg.client)
    with pg.session() as s:
        trial = s.get_one(Trial, trial_id)
        assert trial.started_at is not None and trial.started_at.utcoffset() == timedelta(0)
        assert abs(trial.started_at - utcnow()) < timedelta(minutes=5)
        assert trial.state is TrialState.RUNNING  # an enum stored as its value
        raw = s.execute(text("SELECT state FROM trials WHERE id = :i"), {"i": trial_id})
        assert raw.scalar_one() == "running"
        # A checkpoint past 2 GiB (max_checkpoint_bytes allows it) and nested JSON.
        hparams = {"layers": [1, 2, {"x": "é"}], "lr": 1e-300}
        s.add(
            Checkpoint(
                trial_id=trial_id,
                step=1,
                path="/x",
                bytes=3 * 2**30,
                sha256="0" * 64,
                hparams=hparams,
            )
        )
        s.add(Round(study_id=study["id"], number=2, space={}, exhausted=True))
        s.commit()
    with pg.session() as s:
        ckpt = s.scalars(select(Checkpoint)).one()
        assert (ckpt.bytes, ckpt.hparams) == (3 * 2**30, hparams)
        assert s.scalars(select(Round.exhausted).where(Round.number == 2)).one() is True
        seq = s.execute(
            text(
                "SELECT data_type FROM information_schema.sequences "
                "WHERE sequence_name = 'metrics_id_seq'"
            )
        ).scalar_one()
        assert seq == "bigint"


def _schema(engine: Engine) -> dict[str, Any]:
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(set(insp.get_table_names()) - {"alembic_version"}):
        out[table] = {
            "columns": sorted(
                (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in insp.get_columns(table)
            ),
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(table)
            ),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            "foreign_keys": sorted(
                (
                    tuple(f["constrained_columns"]),
                    f["referred_table"],
                    tuple(f["referred_columns"]),
                    f["options"].get("ondelete"),
                )
                for f in insp.get_foreign_keys(table)
            ),
        }
    return out


def test_migrations_build_the_schema_of_the_models(pg_server: PostgresServer) -> None:
    names = [pg_server.create_database(migrated=False) for _ in range(2)]
    migrated, created = (make_engine(pg_server.url(n)) for n in names)
    try:
        with migrated.begin() as conn:
            command.upgrade(migrations.config(conn), "head")
        init_db(created)  # a new database: create_all, then stamped
        init_db(created)  # and again: nothing to do
        assert _schema(migrated) == _schema(created)
        with migrated.begin() as conn:  # and back down to the first revision
            command.downgrade(migrations.config(conn), migrations.FIRST)
        assert "rung_records" not in inspect(migrated).get_table_names()
    finally:
        migrated.dispose()
        created.dispose()
        for name in names:
            pg_server.drop_database(name)


def test_a_sqlite_database_made_after_a_postgresql_one_keeps_every_foreign_key(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    """init_db creates PostgreSQL's tables from a copy of the metadata: SQLAlchemy marks the
    trials -> checkpoints key it adds by ALTER as never to be created inline again."""
    name = pg_server.create_database(migrated=False)
    postgres, sqlite = make_engine(pg_server.url(name)), make_engine(f"sqlite:///{tmp_path}/s.db")
    try:
        init_db(postgres)
        init_db(sqlite)
        keys = inspect(sqlite).get_foreign_keys("trials")
        assert ["parent_checkpoint_id"] in [f["constrained_columns"] for f in keys]
    finally:
        postgres.dispose()
        sqlite.dispose()
        pg_server.drop_database(name)


def test_a_postgresql_url_without_a_driver_means_psycopg_3() -> None:
    engine = make_engine("postgresql://user@127.0.0.1:1/none")  # never connects
    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")


def test_two_servers_starting_on_a_new_database_migrate_it_once(
    pg_server: PostgresServer,
) -> None:
    name = pg_server.create_database(migrated=False)
    engines = [make_engine(pg_server.url(name)) for _ in range(2)]
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        try:
            init_db(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_SECONDS)
        assert errors == []
        with engines[0].connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
    finally:
        for e in engines:
            e.dispose()
        pg_server.drop_database(name)
