"""Alembic migrations: an old database file upgrades at start-up, and migrations match models."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Engine, inspect

from app.config import Settings
from app.main import create_app
from app.storage import migrations
from app.storage.db import init_db, make_engine
from app.storage.models import Base
from tests.api.test_caviar import caviar_study, claim_one, epoch_report

SCHEMA_0001 = Path(__file__).parents[1] / "data" / "schema_0001.sql"
HEAD = ScriptDirectory(str(migrations.SCRIPT_LOCATION)).get_current_head()


def _old_database(path: Path) -> None:
    """A file as the first server version left it: no alembic_version, one panda study."""
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_0001.read_text())
        db.executescript(
            """
            INSERT INTO studies VALUES (1, 'old', 'panda', 'digits', '{}', '{"epochs": 2}',
                'dev_accuracy', 'maximize', 'manual', NULL, 1, 2, 1, 0, 'finished',
                '2026-01-02 03:04:05');
            INSERT INTO rounds VALUES (1, 1, 1, '{"epochs": 2}', NULL, '2026-01-02 03:04:05');
            INSERT INTO trials (id, study_id, round_id, number, state, hparams, attempt, step,
                epoch, best_value, last_value, created_at)
                VALUES (1, 1, 1, 1, 'completed', '{"learning_rate": 0.1}', 1, 20, 2.0, 0.9,
                0.8, '2026-01-02 03:04:06');
            INSERT INTO metrics (trial_id, name, step, value) VALUES
                (1, 'dev_accuracy', 10, 0.9), (1, 'dev_accuracy', 20, 0.8);
            INSERT INTO events (trial_id, kind, payload, requested_at, applied_step, applied_at)
                VALUES (1, 'note', '{"text": "kept"}', '2026-01-02 03:04:07', 20,
                '2026-01-02 03:04:07');
            """
        )
    db.close()


def _version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one())


def _schema(engine: Engine) -> dict[str, Any]:
    """Tables with their columns, indexes, unique and foreign keys, as the database reports."""
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(set(insp.get_table_names()) - {"alembic_version"}):
        out[table] = {
            # Sorted: SQLite appends added columns, and the ORM never depends on their order.
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
            # From SQLite itself: the reflected ON DELETE misses an inline REFERENCES clause.
            "foreign_keys": _foreign_keys(engine, table),
        }
    return out


def _foreign_keys(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"PRAGMA foreign_key_list({table})").mappings().all()
    return sorted(
        (r["from"], r["table"], r["to"], r["on_update"], r["on_delete"], r["match"]) for r in rows
    )


def test_a_database_of_the_first_schema_upgrades_at_start_and_keeps_its_rows(
    settings: Settings,
) -> None:
    path = Path(settings.database_url.removeprefix("sqlite:///"))
    _old_database(path)
    with TestClient(create_app(settings)) as client:
        study = client.get("/api/studies/1")
        assert study.status_code == 200, study.text
        assert study.json()["name"] == "old"
        assert study.json()["state"] == "completed"  # the renamed state
        trial = client.get("/api/trials/1").json()
        assert trial["state"] == "completed" and trial["hparams"]["learning_rate"] == 0.1
        curves = client.get("/api/trials/1/metrics").json()
        assert curves["dev_accuracy"] == [[10, 0.9], [20, 0.8]]
        (event,) = client.get("/api/trials/1/events").json()
        assert event["kind"] == "note" and event["payload"] == {"text": "kept"}
        rounds = client.get("/api/studies/1/rounds")
        assert rounds.status_code == 200, rounds.text
        # The caviar tables and columns work: an ASHA study prunes through rung_records.
        study = caviar_study(
            client, scheduler={"name": "asha", "min_resource": 1, "reduction_factor": 2}
        )
        assert study["scheduler"] == "asha"
        (a, att_a), (b, att_b) = claim_one(client), claim_one(client)
        assert epoch_report(client, a, att_a, 1, 0.9) == "continue"
        assert epoch_report(client, b, att_b, 1, 0.5) == "stop"
    engine = make_engine(settings.database_url)
    try:
        assert _version(engine) == HEAD
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM rung_records").scalar_one() == 2
            # The old round got its study's budget, as every round now carries one.
            row = conn.exec_driver_sql(
                "SELECT kind, budget_trials, exhausted, outside_parent FROM rounds WHERE id = 1"
            ).one()
            assert tuple(row) == ("search", 1, 0, "[]")
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()


def test_a_database_made_after_the_caviar_tables_is_stamped_then_upgraded(
    tmp_path: Path,
) -> None:
    # Its schema is revision 0002's without an alembic_version table: it is stamped there
    # (upgrading it from 0001 would fail on existing tables), then only the later revisions run.
    engine = make_engine(f"sqlite:///{tmp_path / 'caviar.db'}")
    created = make_engine(f"sqlite:///{tmp_path / 'created.db'}")
    try:
        with engine.begin() as conn:
            command.upgrade(migrations.config(conn), migrations.LAST_UNVERSIONED)
            conn.exec_driver_sql("DROP TABLE alembic_version")
        init_db(engine)
        assert _version(engine) == HEAD
        Base.metadata.create_all(created)
        assert _schema(engine) == _schema(created)
    finally:
        engine.dispose()
        created.dispose()


def test_migrations_build_exactly_the_schema_of_the_models(tmp_path: Path) -> None:
    migrated = make_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    created = make_engine(f"sqlite:///{tmp_path / 'created.db'}")
    try:
        with migrated.begin() as conn:
            command.upgrade(migrations.config(conn), "head")
        init_db(created)  # a new database: create_all, then stamped
        assert _version(created) == HEAD
        assert _schema(migrated) == _schema(created)
    finally:
        migrated.dispose()
        created.dispose()


def test_revision_0001_is_the_schema_of_the_first_server(tmp_path: Path) -> None:
    migrated = make_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    old = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with migrated.begin() as conn:
            command.upgrade(migrations.config(conn), migrations.FIRST)
        with sqlite3.connect(tmp_path / "old.db") as db:
            db.executescript(SCHEMA_0001.read_text())
        db.close()
        assert _schema(migrated) == _schema(old)
    finally:
        migrated.dispose()
        old.dispose()


def test_init_db_twice_changes_nothing(settings: Settings) -> None:
    path = Path(settings.database_url.removeprefix("sqlite:///"))
    _old_database(path)
    engine = make_engine(settings.database_url)
    try:
        init_db(engine)
        schema = _schema(engine)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT * FROM metrics ORDER BY id").fetchall()
        init_db(engine)
        assert _schema(engine) == schema
        assert _version(engine) == HEAD
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT * FROM metrics ORDER BY id").fetchall() == rows
    finally:
        engine.dispose()
