"""Caviar: sampler and scheduler settings, round budgets and kinds, re-tests, ASHA tables.

From the first server schema (0001) to the one of git 26ef773, which later commits kept
(their changes were new enum values, which need no DDL: see ``ENUM`` in 0001).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

ENUM = sa.String(16)
EMPTY_OBJECT = sa.text("'{}'")
EMPTY_LIST = sa.text("'[]'")


def upgrade() -> None:
    # NOT NULL columns are added with a server default that fills the existing rows, then
    # the default is dropped so the table matches create_all (the ORM supplies the values).
    with op.batch_alter_table("studies") as batch:
        batch.add_column(
            sa.Column("sampler_settings", sa.JSON(), nullable=False, server_default=EMPTY_OBJECT)
        )
        batch.add_column(
            sa.Column("scheduler_settings", sa.JSON(), nullable=False, server_default=EMPTY_OBJECT)
        )
        batch.add_column(sa.Column("budget_epochs", sa.Integer(), nullable=True))
        batch.alter_column("budget_trials", existing_type=sa.Integer(), nullable=True)
    with op.batch_alter_table("studies") as batch:
        batch.alter_column("sampler_settings", existing_type=sa.JSON(), server_default=None)
        batch.alter_column("scheduler_settings", existing_type=sa.JSON(), server_default=None)
    # The state a study ends in was renamed.
    op.execute("UPDATE studies SET state = 'completed' WHERE state = 'finished'")

    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("kind", ENUM, nullable=False, server_default="search"))
        batch.add_column(sa.Column("budget_trials", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("budget_epochs", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("from_top", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("margin", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("outside_parent", sa.JSON(), nullable=False, server_default=EMPTY_LIST)
        )
        batch.add_column(
            sa.Column("exhausted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("rounds") as batch:
        batch.alter_column("kind", existing_type=ENUM, server_default=None)
        batch.alter_column("outside_parent", existing_type=sa.JSON(), server_default=None)
        batch.alter_column("exhausted", existing_type=sa.Boolean(), server_default=None)
    # Each round now carries its own budget ("exactly one is set"); the old schema had one
    # round per study, whose budget was the study's.
    op.execute(
        "UPDATE rounds SET budget_trials = "
        "(SELECT studies.budget_trials FROM studies WHERE studies.id = rounds.study_id) "
        "WHERE budget_trials IS NULL AND budget_epochs IS NULL"
    )

    op.add_column("trials", sa.Column("index_in_round", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with an inline REFERENCES without copying the table; Alembic
        # would copy it, or (outside batch mode) refuse the separate constraint.
        op.execute(
            "ALTER TABLE trials ADD COLUMN retest_of_id INTEGER "
            "REFERENCES trials (id) ON DELETE SET NULL"
        )
    else:
        op.add_column(
            "trials",
            sa.Column(
                "retest_of_id",
                sa.Integer(),
                sa.ForeignKey("trials.id", ondelete="SET NULL"),
                nullable=True,
            ),
        )

    op.create_table(
        "rung_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("rung", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trial_id", "rung"),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_rung_records_study", "rung_records", ["study_id", "id"])
    op.create_table(
        "intermediate_values",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("resource", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trial_id", "resource"),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("intermediate_values")
    op.drop_index("ix_rung_records_study", table_name="rung_records")
    op.drop_table("rung_records")
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("retest_of_id")
        batch.drop_column("index_in_round")
    with op.batch_alter_table("rounds") as batch:
        for column in (
            "exhausted",
            "outside_parent",
            "margin",
            "from_top",
            "budget_epochs",
            "budget_trials",
            "kind",
        ):
            batch.drop_column(column)
    op.execute("UPDATE studies SET state = 'finished' WHERE state = 'completed'")
    # A study budgeted in epochs has no trial count; 0 keeps the old NOT NULL satisfied.
    op.execute("UPDATE studies SET budget_trials = 0 WHERE budget_trials IS NULL")
    with op.batch_alter_table("studies") as batch:
        batch.alter_column("budget_trials", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("budget_epochs")
        batch.drop_column("scheduler_settings")
        batch.drop_column("sampler_settings")
