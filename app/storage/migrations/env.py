"""Alembic environment: runs on the connection :func:`app.storage.migrations.config` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from app.storage import models  # noqa: F401  (registers the tables on Base.metadata)
from app.storage.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters most things only by copying the table; batch mode does that for us.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    # The alembic CLI (``alembic -x ...``) is not used: the server migrates at start-up.
    raise RuntimeError("run migrations through app.storage.db.init_db, which passes a connection")
_run(connection)
