"""Each search round's early-stopping settings, fitted to its own budget.

``studies.scheduler_given`` keeps the settings the user gave (the study's
``scheduler_settings`` add the defaults fitted to round 1); ``rounds.scheduler_settings`` holds
a later round's own. Existing rows stay NULL: their rounds apply the study's settings, as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs, nullable, no table copy (see 0004).
    op.add_column("studies", sa.Column("scheduler_given", sa.JSON(), nullable=True))
    op.add_column("rounds", sa.Column("scheduler_settings", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("scheduler_settings")
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("scheduler_given")
