"""The server's background reaper (app.main)."""

from __future__ import annotations

import sqlite3

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.trials.leases import reap_once
from tests.factories import claim, create_study, create_trial


def test_a_reaper_pass_with_nothing_expired_only_reads(client: TestClient, app: FastAPI) -> None:
    # Every server process runs a pass every few seconds; one that took the writers' turn each
    # time would queue behind (and hold up) the workers' writes for nothing.
    study = create_study(client)
    create_trial(client, study["id"])
    claim(client)  # a running trial, its lease fresh
    other = sqlite3.connect(app.state.engine.url.database, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock
        assert reap_once(app) == 0
    finally:
        other.rollback()
        other.close()
