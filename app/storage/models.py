"""ORM tables: studies, rounds, trials, metrics, events, checkpoints, rung records."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import DateTime, TypeDecorator

# The search algorithms' own Direction, re-exported: stored as "maximize" / "minimize".
from app.tuning import Direction as Direction


class Base(DeclarativeBase):
    """Declarative base of every table."""


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes stored naive (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def utcnow() -> datetime:
    return datetime.now(UTC)


class StudyMode(enum.StrEnum):
    PANDA = "panda"
    CAVIAR = "caviar"


class StudyState(enum.StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"


class RoundKind(enum.StrEnum):
    """A search round samples its trials; a re-test round re-runs chosen configurations."""

    SEARCH = "search"
    RETEST = "retest"


class TrialState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    PRUNED = "pruned"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset(
    {TrialState.COMPLETED, TrialState.FAILED, TrialState.STOPPED, TrialState.PRUNED}
)


class EventKind(enum.StrEnum):
    ADJUST = "adjust"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    FORK = "fork"
    NOTE = "note"
    PRUNE = "prune"
    EXPLOIT = "exploit"
    CHECKPOINT = "checkpoint"
    REQUEUE = "requeue"
    FAIL = "fail"
    # A checkpoint whose file failed its sha256 check at a claim (see app.trials.worker_calls).
    BAD_CHECKPOINT = "bad_checkpoint"


# 64 bits on PostgreSQL, whose INTEGER has 32: a study seed goes up to 2**32 - 1, a checkpoint
# may pass 2 GiB, and metric points are counted in billions over a server's life. SQLite's
# INTEGER has 64 bits already, and a primary key must stay INTEGER there to be the rowid.
BigInt = BigInteger().with_variant(Integer(), "sqlite")


def _enum(cls: type[enum.Enum]) -> Enum:
    # Store the lower-case values the API shows, as VARCHAR: portable and readable in sqlite3.
    return Enum(cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


# The task of a study whose trials run in the user's own processes (app.trials.external).
EXTERNAL_TASK = "external"


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[StudyMode] = mapped_column(_enum(StudyMode))
    task: Mapped[str] = mapped_column(String(100))
    task_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    space: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    objective_metric: Mapped[str] = mapped_column(String(100))
    direction: Mapped[Direction] = mapped_column(_enum(Direction))
    sampler: Mapped[str] = mapped_column(String(50))
    sampler_settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    scheduler: Mapped[str | None] = mapped_column(String(50))
    scheduler_settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The settings the user gave (the rest were fitted to round 1's budget); each later search
    # round fits the rest to its own budget. None: every round applies scheduler_settings.
    scheduler_given: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The first round's budget: a number of trials or of epochs trained in total.
    budget_trials: Mapped[int | None] = mapped_column(Integer)
    budget_epochs: Mapped[int | None] = mapped_column(Integer)
    epochs: Mapped[int] = mapped_column(Integer)
    parallelism: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInt)
    state: Mapped[StudyState] = mapped_column(_enum(StudyState), default=StudyState.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    rounds: Mapped[list[Round]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True
    )
    trials: Mapped[list[Trial]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def external(self) -> bool:
        """Whether the user's processes, not the server's workers, run its trials."""
        return self.task == EXTERNAL_TASK


class Round(Base):
    """One stage of a coarse-to-fine search: its own space, all in one study."""

    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("study_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[RoundKind] = mapped_column(_enum(RoundKind), default=RoundKind.SEARCH)
    space: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parent_round_id: Mapped[int | None] = mapped_column(
        ForeignKey("rounds.id", ondelete="SET NULL")
    )
    # The scheduler's settings in this round (the user's, the rest fitted to this round's
    # budget); None: the study's.
    scheduler_settings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Exactly one of the two budgets is set; the feeder samples until it is spent.
    budget_trials: Mapped[int | None] = mapped_column(Integer)
    budget_epochs: Mapped[int | None] = mapped_column(Integer)
    # How the space was made: narrowed from the top-k trials, or given explicitly.
    from_top: Mapped[int | None] = mapped_column(Integer)
    margin: Mapped[float | None] = mapped_column(Float)
    outside_parent: Mapped[list[str]] = mapped_column(JSON, default=list)
    # A grid round that handed out every point, or a space the trainer refused, feeds no more.
    exhausted: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    study: Mapped[Study] = relationship(back_populates="rounds")


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("study_id", "number"),
        Index("ix_trials_state_id", "state", "id"),
        Index("ix_trials_study_state", "study_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id", ondelete="SET NULL"))
    # Position among the round's sampled trials: grid and Sobol samplers pick their point by it.
    index_in_round: Mapped[int | None] = mapped_column(Integer)
    # A re-test trial: the trial whose configuration it re-runs with a fresh seed.
    retest_of_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id", ondelete="SET NULL"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[TrialState] = mapped_column(_enum(TrialState), default=TrialState.QUEUED)
    hparams: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts in a row lost with their worker (lease expired) since the last new checkpoint:
    # the trial fails when this reaches ``Settings.max_failures``; pauses, hand-backs and
    # server restarts never count (docs/reliability.md, "The attempt rule").
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    step: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[float] = mapped_column(Float, default=0.0)
    best_value: Mapped[float | None] = mapped_column(Float)
    last_value: Mapped[float | None] = mapped_column(Float)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id", ondelete="SET NULL"))
    parent_step: Mapped[int | None] = mapped_column(Integer)
    parent_checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL", use_alter=True)
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    study: Mapped[Study] = relationship(back_populates="trials")
    metrics: Mapped[list[Metric]] = relationship(
        back_populates="trial", cascade="all, delete-orphan", passive_deletes=True
    )
    events: Mapped[list[Event]] = relationship(
        back_populates="trial", cascade="all, delete-orphan", passive_deletes=True
    )
    checkpoints: Mapped[list[Checkpoint]] = relationship(
        back_populates="trial",
        cascade="all, delete-orphan",
        passive_deletes=True,
        foreign_keys="Checkpoint.trial_id",
    )


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (
        UniqueConstraint("trial_id", "name", "step", name="uq_metrics_trial_name_step"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)

    trial: Mapped[Trial] = relationship(back_populates="metrics")


class Event(Base):
    """A user or system action on a trial; ``applied_at`` is NULL while it is pending."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_trial_applied", "trial_id", "applied_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    kind: Mapped[EventKind] = mapped_column(_enum(EventKind))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    applied_step: Mapped[int | None] = mapped_column(Integer)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    trial: Mapped[Trial] = relationship(back_populates="events")


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("trial_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float] = mapped_column(Float, default=0.0)
    # The hyperparameters in force up to ``step``: what a fork from here starts with.
    hparams: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    path: Mapped[str] = mapped_column(String(500))
    bytes: Mapped[int] = mapped_column(BigInt)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    trial: Mapped[Trial] = relationship(back_populates="checkpoints", foreign_keys=[trial_id])


class RungRecordRow(Base):
    """One ASHA rung record (trial, rung, objective value): the scheduler's whole state."""

    __tablename__ = "rung_records"
    __table_args__ = (
        UniqueConstraint("trial_id", "rung"),
        Index("ix_rung_records_study", "study_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    rung: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)


class IntermediateValue(Base):
    """The objective a trial reported at the end of an epoch (resource = epochs done)."""

    __tablename__ = "intermediate_values"
    __table_args__ = (UniqueConstraint("trial_id", "resource"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    resource: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
