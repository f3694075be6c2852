"""Every API test runs twice: on SQLite and on PostgreSQL (a private server, tests/pg.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
