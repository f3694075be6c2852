"""What a worker gets for the trial it took: the training config and where to resume from.

Read after the claim's commit, out of the writers' turn: on SQLite every write of every
server process waits for that one turn, so the less a claim holds it, the better a second
worker scales. The usual claim, a first attempt with no adjustment pending, is only read (a
deferred transaction). A resumed trial checks its checkpoints' files (a bad one is logged and
forgotten), its step and epoch go back to the checkpoint's, and pending adjustments change
the trial's hparams: those write, in a transaction of their own.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.config import Settings
from app.hashing import file_sha256
from app.schemas import CheckpointRef, ClaimOut
from app.search.study_config import scheduler_for
from app.storage import locks, queries
from app.storage.db import read_engine
from app.storage.models import (
    Checkpoint,
    Event,
    EventKind,
    Round,
    StudyMode,
    Trial,
    TrialState,
)
from app.storage.pending import close_events, pending_hparams, pending_of
from app.trials import external
from app.trials.claims import Taken
from app.tuning.base import DecisionPoints
from trainer.config import TrainConfig

log = logging.getLogger(__name__)


def assignment(engine: Engine, taken: Taken, settings: Settings) -> ClaimOut | None:
    """The assignment of a trial ``taken`` (and committed) by a claim.

    None if the trial is no longer that attempt's (its study was deleted meanwhile): the
    worker then claims again. Should this fail after the claim committed, the worker gets an
    error and the trial waits for its lease to expire, as a lost worker's would: the reaper
    then queues it again.
    """
    with Session(read_engine(engine)) as session:
        trial = session.get(Trial, taken.trial_id, options=locks.WITH_STUDY)
        if trial is None or trial.attempt != taken.attempt or trial.state != TrialState.RUNNING:
            return None
        # A first attempt has no checkpoint of its own yet: only a fork's parent can be one.
        first = trial.attempt == 1 and trial.parent_checkpoint_id is None
        if first and not _adjusts(session, trial):
            return _out(trial, None, settings)
    with Session(engine, expire_on_commit=False) as session:
        trial = locks.get_trial(session, taken.trial_id, lock=True)
        if trial is None or trial.attempt != taken.attempt or trial.state != TrialState.RUNNING:
            return None
        ckpt = None if first else resume_point(session, trial)
        if not first:
            _rewind(trial, ckpt)
        adjusts = _adjusts(session, trial)
        if adjusts:
            # Adjustments made while it was queued apply from its first step.
            trial.hparams = {**trial.hparams, **pending_hparams(adjusts)}
            close_events(adjusts, step=(ckpt.step if ckpt else 0) + 1)
        out = _out(trial, ckpt, settings)
        session.commit()
        return out


def file_problem(ckpt: Checkpoint) -> str | None:
    """Why the checkpoint's file cannot be trusted (missing, wrong size, wrong sha256)."""
    path = Path(ckpt.path)
    try:
        if path.stat().st_size != ckpt.bytes:
            return f"size {path.stat().st_size} != recorded {ckpt.bytes}"
        actual = file_sha256(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return None if actual == ckpt.sha256 else f"sha256 {actual} != recorded {ckpt.sha256}"


def _reject(session: Session, trial: Trial, ckpt: Checkpoint, problem: str) -> None:
    """Log a corrupt checkpoint as an event, then forget its row (its file is kept aside)."""
    log.warning("trial %s: checkpoint at step %s rejected: %s", trial.id, ckpt.step, problem)
    payload = {"checkpoint_id": ckpt.id, "step": ckpt.step, "error": problem}
    queries.add_event(
        session, trial, EventKind.BAD_CHECKPOINT, payload, applied=True, applied_step=ckpt.step
    )
    if ckpt.trial_id == trial.id:
        # Deleted so that no later claim or fork picks it again; the bytes stay for a
        # post-mortem under a name no claim resolves to.
        path = Path(ckpt.path)
        if path.exists():
            path.replace(path.with_name(path.name + ".corrupt"))
        session.delete(ckpt)
        session.flush()


def resume_point(session: Session, trial: Trial) -> Checkpoint | None:
    """The latest own checkpoint whose file matches its sha256, else the one forked from.

    Checked at every claim (one read of the file) so that a truncated or bit-flipped file
    costs the trial the work since the previous checkpoint, not the trial itself.
    """
    for ckpt in reversed(queries.list_checkpoints(session, trial_id=trial.id)):
        problem = file_problem(ckpt)
        if problem is None:
            return ckpt
        _reject(session, trial, ckpt, problem)
    if trial.parent_checkpoint_id is None:
        return None
    parent = session.get(Checkpoint, trial.parent_checkpoint_id)
    problem = file_problem(parent) if parent is not None else "deleted"
    if parent is not None and problem is None:
        return parent
    if parent is not None:
        _reject(session, trial, parent, problem or "")
    return None


def _rewind(trial: Trial, ckpt: Checkpoint | None) -> None:
    """Set the trial's progress to where the worker restarts it: ``ckpt``, else the start.

    Until its first report the dashboard shows this row. A trial paused (or requeued) after
    reporting beyond its last checkpoint redoes those steps, and a fork whose parent file was
    rejected starts over: either way the last reported step and epoch are no longer true.
    """
    trial.step, trial.epoch = (ckpt.step, ckpt.epoch) if ckpt is not None else (0, 0.0)


def _adjusts(session: Session, trial: Trial) -> list[Event]:
    return [e for e in pending_of(session, trial) if e.kind is EventKind.ADJUST]


def _out(trial: Trial, ckpt: Checkpoint | None, settings: Settings) -> ClaimOut:
    study = trial.study
    if study.external:
        config = external.claim_config(trial)
    else:
        config = TrainConfig(
            task=study.task,
            hparams=trial.hparams,
            task_options=study.task_options,
            split_seed=study.seed,
            report_seconds=settings.report_seconds,
        ).to_dict()
    ref = None
    if ckpt is not None:
        ref = CheckpointRef(id=ckpt.id, step=ckpt.step, epoch=ckpt.epoch, sha256=ckpt.sha256)
    points = _decision_points(trial)
    return ClaimOut(
        trial_id=trial.id,
        attempt=trial.attempt,
        config=config,
        checkpoint=ref,
        lease_seconds=settings.lease_seconds,
        report_seconds=settings.report_seconds,
        decide_epochs=list(points.epochs),
        decide_from=points.every_from,
        max_checkpoint_bytes=settings.max_checkpoint_bytes,
        report_first=study.mode is StudyMode.PANDA,
    )


def _decision_points(trial: Trial) -> DecisionPoints:
    """Where the study's scheduler may stop or pause this trial (app.search.feeder.on_report)."""
    study = trial.study
    # Only caviar trials are scheduled, and never a re-test (it must train to the end).
    if study.mode is not StudyMode.CAVIAR or trial.retest_of_id is not None:
        return DecisionPoints()
    session = Session.object_session(trial)
    rnd = session.get(Round, trial.round_id) if session and trial.round_id is not None else None
    scheduler = scheduler_for(study, rnd)
    return scheduler.decision_points() if scheduler is not None else DecisionPoints()
