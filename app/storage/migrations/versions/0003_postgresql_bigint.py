"""64-bit study seeds, checkpoint sizes and metric ids on PostgreSQL; nothing on SQLite.

PostgreSQL's INTEGER has 32 bits: a seed above 2**31 - 1 (the API takes up to 2**32 - 1) or a
checkpoint over 2 GiB would not fit, and the metrics table outgrows 2**31 ids. SQLite's
INTEGER has 64 bits already (see ``BigInt`` in app.storage.models).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

COLUMNS = (("studies", "seed"), ("checkpoints", "bytes"), ("metrics", "id"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.alter_column(
            table,
            column,
            type_=sa.BigInteger(),
            existing_type=sa.Integer(),
            existing_nullable=False,
        )
    # The id's sequence has a type of its own, whose maximum nextval would hit.
    op.execute("ALTER SEQUENCE metrics_id_seq AS bigint")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER SEQUENCE metrics_id_seq AS integer")
    for table, column in COLUMNS:
        op.alter_column(
            table,
            column,
            type_=sa.Integer(),
            existing_type=sa.BigInteger(),
            existing_nullable=False,
        )
