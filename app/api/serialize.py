"""ORM rows to wire types, NaN-safe floats and curve downsampling."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.schemas import (
    Budget,
    CheckpointPublic,
    EventPublic,
    ObjectivePublic,
    Progress,
    RunningTrial,
    SamplerInfo,
    StudyPublic,
    TrialPublic,
    Waiting,
)
from app.search import parking, study_config
from app.search.rounds import round_numbers
from app.storage import queries
from app.storage.models import (
    FINISHED_STATES,
    Checkpoint,
    Event,
    EventKind,
    Round,
    Study,
    StudyMode,
    Trial,
    TrialState,
)
from app.storage.pending import pending_hparams
from app.tuning import parse_space

JsonFloat = float | str
Point = tuple[int, JsonFloat]


def finite(x: float) -> JsonFloat:
    """``x``, or ``"nan"``/``"inf"``/``"-inf"``: strict JSON has no non-finite numbers."""
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def curve(points: Sequence[tuple[int, float]]) -> list[Point]:
    return [(step, finite(value)) for step, value in points]


def study_public(
    study: Study,
    counts: dict[str, int],
    sampler_info: SamplerInfo | None = None,
    *,
    unstarted: int,
) -> StudyPublic:
    """The study with its budget (in trials or in epochs) and its algorithms' settings.

    ``counts``: its trials per state; ``unstarted``: the trials its rounds' budgets still plan
    but have not created (see :func:`unstarted_trials`).
    """
    return StudyPublic(
        id=study.id,
        name=study.name,
        mode=study.mode,
        task=study.task,
        task_options=study.task_options,
        space=study.space,
        objective=ObjectivePublic(metric=study.objective_metric, direction=study.direction),
        epochs=study.epochs,
        budget=Budget(trials=study.budget_trials, epochs=study.budget_epochs),
        parallelism=study.parallelism,
        sampler=study.sampler,
        scheduler=study.scheduler,
        sampler_settings=study.sampler_settings or {},
        scheduler_settings=study.scheduler_settings or {},
        plan=_plan(study),
        sampler_info=sampler_info,
        seed=study.seed,
        state=study.state,
        created_at=study.created_at,
        counts=counts,
        progress=progress(counts, unstarted),
    )


def _plan(study: Study) -> str | None:
    if study.mode is not StudyMode.CAVIAR or study.scheduler in (None, "none"):
        return None
    longest = study_config.max_epochs(parse_space(study.space), study.epochs)
    trials = study_config.trials_of_budget(study.budget_trials, study.budget_epochs, longest)
    return study_config.plan(study, trials) or None


_FINISHED = frozenset(s.value for s in FINISHED_STATES)


def progress(counts: dict[str, int], unstarted: int) -> Progress:
    """Ended trials out of the trials created (``counts``, per state) plus ``unstarted``."""
    ended = sum(n for state, n in counts.items() if state in _FINISHED)
    return Progress(ended=ended, planned=sum(counts.values()) + max(unstarted, 0))


def unstarted_trials(session: Session, study_ids: Iterable[int]) -> dict[int, int]:
    """Per study, the trials its rounds' budgets still plan but have not created: one query.

    Only a round budgeted in trials plans ahead (``budget - created``, never below 0: trials
    added by hand or forked may pass it); a budget in epochs has no trial count to plan, and a
    round that can sample no more (``exhausted``) plans nothing beyond what it created. A
    re-test round creates all its trials at once. Studies with nothing left are left out.
    """
    ids = list(study_ids)
    if not ids:
        return {}
    created = (
        select(Trial.round_id, func.count().label("n"))
        .where(Trial.study_id.in_(ids), Trial.round_id.is_not(None))
        .group_by(Trial.round_id)
        .subquery()
    )
    left = Round.budget_trials - func.coalesce(created.c.n, 0)
    q = (
        select(Round.study_id, func.sum(case((left > 0, left), else_=0)))
        .outerjoin(created, created.c.round_id == Round.id)
        .where(
            Round.study_id.in_(ids), Round.budget_trials.is_not(None), Round.exhausted.is_(False)
        )
        .group_by(Round.study_id)
    )
    return {study_id: int(n or 0) for study_id, n in session.execute(q)}


def study_out(
    session: Session, study: Study, sampler_info: SamplerInfo | None = None
) -> StudyPublic:
    """One study with its trial counts and progress (two queries)."""
    return studies_out(session, [study], sampler_info)[0]


def studies_out(
    session: Session, studies: Sequence[Study], sampler_info: SamplerInfo | None = None
) -> list[StudyPublic]:
    """Studies with their trial counts and progress: two grouped queries whatever the count.

    ``sampler_info`` goes to every study: pass it for a single study only.
    """
    ids = [s.id for s in studies]
    counts = queries.state_counts(session, ids)
    unstarted = unstarted_trials(session, ids)
    return [
        study_public(s, counts[s.id], sampler_info, unstarted=unstarted.get(s.id, 0))
        for s in studies
    ]


def trial_public(
    trial: Trial, pending: Sequence[Event], round_number: int | None, parked: bool = False
) -> TrialPublic:
    """The trial as the API shows it; ``pending`` are its unapplied events; ``parked``: see
    :func:`app.search.parking.parked`."""
    kinds = {e.kind for e in pending}
    return TrialPublic(
        id=trial.id,
        study_id=trial.study_id,
        round_id=trial.round_id,
        round=round_number,
        number=trial.number,
        state=trial.state,
        hparams=trial.hparams,
        pending_hparams=pending_hparams(pending),
        pause_requested=EventKind.PAUSE in kinds,
        stop_requested=EventKind.STOP in kinds,
        parked=parked,
        step=trial.step,
        epoch=trial.epoch,
        attempt=trial.attempt,
        failures=trial.failures,
        worker=trial.worker,
        lease_expires_at=trial.lease_expires_at,
        best_value=_opt(trial.best_value),
        last_value=_opt(trial.last_value),
        parent_id=trial.parent_id,
        parent_step=trial.parent_step,
        error=trial.error,
        created_at=trial.created_at,
        started_at=trial.started_at,
        ended_at=trial.ended_at,
    )


def _opt(x: float | None) -> float | None:
    # Only finite values are ever stored; None keeps a corrupt row from breaking the page.
    return x if x is None or math.isfinite(x) else None


def event_public(event: Event) -> EventPublic:
    return EventPublic.model_validate(event, from_attributes=True)


def checkpoint_public(ckpt: Checkpoint) -> CheckpointPublic:
    return CheckpointPublic.model_validate(ckpt, from_attributes=True)


def trial_out(session: Session, trial: Trial) -> TrialPublic:
    """One trial with its pending requests (build it before committing a write)."""
    return trials_out(session, [trial])[0]


def trials_out(session: Session, trials: Sequence[Trial]) -> list[TrialPublic]:
    """Trials with their pending requests, round numbers and whether their scheduler parked
    them: two queries whatever the count, plus one per study with a paused trial."""
    pending = queries.pending_events(session, [t.id for t in trials])
    rounds = round_numbers(session, {t.round_id for t in trials if t.round_id is not None})
    parked = {
        trial_id
        for study_id in {t.study_id for t in trials if t.state is TrialState.PAUSED}
        for trial_id in parking.parked(session, study_id).values()
    }
    waiting = _waiting(session, [t for t in trials if t.state is TrialState.QUEUED])
    why = _stopped_because(session, [t.id for t in trials if t.state in _STOPPED])
    out = []
    for t in trials:
        public = trial_public(
            t,
            pending.get(t.id, []),
            rounds.get(t.round_id) if t.round_id else None,
            t.id in parked,
        )
        public.waiting = waiting.get(t.id)
        public.stopped_because = why.get(t.id)
        out.append(public)
    return out


_STOPPED = (TrialState.PRUNED, TrialState.PAUSED)
_WHY_KINDS = (EventKind.PRUNE, EventKind.PAUSE)


def _stopped_because(session: Session, trial_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Why the scheduler stopped or parked each trial: its last prune or pause event's payload
    with the event's ``kind``, when that event came from the scheduler (a user's pause or stop
    names none). One query.

    A trial parked until its study ended has a last prune saying only so (no epoch, no rung):
    the pause that parked it fills in where it waited and what it was compared with.
    """
    if not trial_ids:
        return {}
    q = (
        select(Event.trial_id, Event.kind, Event.payload)
        .where(Event.trial_id.in_(trial_ids), Event.kind.in_(_WHY_KINDS))
        .order_by(Event.id)
    )
    last: dict[int, dict[str, Any] | None] = {}
    parked: dict[int, dict[str, Any]] = {}
    for trial_id, kind, payload in session.execute(q):
        if "scheduler" not in (payload or {}):
            last[trial_id] = None  # the user's: the scheduler's earlier word no longer holds
            continue
        why = {**payload, "kind": EventKind(kind).value}
        if "resource" not in why and trial_id in parked:
            why = {**parked[trial_id], **why}
        last[trial_id] = why
        if kind is EventKind.PAUSE:
            parked[trial_id] = why
    return {trial_id: why for trial_id, why in last.items() if why is not None}


def _waiting(session: Session, queued: Sequence[Trial]) -> dict[int, Waiting]:
    """What each queued trial waits for: its caviar study's parallelism cap when that many of
    its trials run, else a free worker (the running trials hold them). One query."""
    if not queued:
        return {}
    q = (
        select(Trial.id, Trial.number, Trial.study_id, Study.name, Trial.worker)
        .join(Study, Study.id == Trial.study_id)
        .where(Trial.state == TrialState.RUNNING)
        .order_by(Trial.id)
    )
    running = [RunningTrial(id=i, number=n, study_id=s, study=name, worker=w)
               for i, n, s, name, w in session.execute(q)]  # fmt: skip
    out = {}
    for trial in queued:
        study = trial.study
        mine = [r for r in running if r.study_id == study.id]
        if study.mode is StudyMode.CAVIAR and len(mine) >= study.parallelism:
            text = (
                f"its study runs {study.parallelism} trial(s) at a time (parallelism), all "
                "busy: it starts when one of them ends"
            )
            out[trial.id] = Waiting(reason="parallelism", text=text, running=mine)
        elif study.external:
            text = (
                f"one of your processes to claim it (pandacaviar.run(train, study={study.id}));"
                " the server's workers never run your loop's trials"
            )
            out[trial.id] = Waiting(reason="your_process", text=text, running=mine)
        elif running:
            names = ", ".join(f"Trial {r.number} of {r.study}" for r in running)
            text = f"a free worker: every worker is busy ({names})"
            out[trial.id] = Waiting(reason="worker", text=text, running=running)
        else:
            text = "a worker to claim it (none is training a trial now)"
            out[trial.id] = Waiting(reason="worker", text=text, running=[])
    return out
