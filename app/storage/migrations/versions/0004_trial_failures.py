"""Trials count attempts lost without progress (``failures``), apart from attempts.

The attempt number still grows at every claim (it fences stale writers); what fails a trial is
now ``failures``: attempts in a row lost with their worker since the last new checkpoint.
Existing trials start at 0.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A plain ADD COLUMN with its default (no table copy, which on SQLite would lose the
    # ON DELETE rule of retest_of_id, a column 0002 added inline); the model has the same
    # server default, so a new database matches.
    op.add_column(
        "trials", sa.Column("failures", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("failures")
