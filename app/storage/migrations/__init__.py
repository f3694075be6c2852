"""Alembic migrations, shipped inside the ``app`` package so an installed wheel carries them.

Alembic is configured here in code (no ``alembic.ini``): the server calls :func:`config` from
:func:`app.storage.db.init_db` with the connection it already holds, and ``env.py`` runs on it.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy.engine import Connection

SCRIPT_LOCATION = Path(__file__).resolve().parent
# The schema of a database made before migrations existed but after the caviar tables: it has
# no alembic_version table, yet it matches this revision, so it is stamped rather than altered.
LAST_UNVERSIONED = "0002"
FIRST = "0001"


def config(connection: Connection) -> Config:
    """An Alembic config whose ``env.py`` migrates on ``connection`` (its open transaction)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.attributes["connection"] = connection
    return cfg
