"""The study feeder: glue between stored rows and the pure algorithms of ``app.tuning``.

Rows become :class:`TrialView` / :class:`RungRecord` objects, an algorithm is called, and what
it returns is written back (new trials, rung records, prune events). A sampler's state is the
trials' numbers, their index in the round and their hyperparameters, a scheduler's the
``rung_records`` table: a restarted server decides exactly as the old one would have.

Feeding: a caviar study keeps at most ``parallelism`` of its trials queued or running; every
change that can free a slot (a finish, a reaped lease, a stop or pause of a queued trial, a
new round) calls :func:`settle`, which samples the next trials of the first round with budget
left and marks the study completed once every trial has ended and no budget is left. The
claim caps the running trials per study at ``parallelism`` too (see ``claims.claim_next``), so
trials added by hand or by a re-test never run more at once. A panda study is never fed:
:func:`settle` only keeps its state (completed once none of its trials is queued, running or
paused, active again as soon as one is).

Concurrency: on PostgreSQL, where two servers may share the database, :func:`settle` and the
scheduler's decision in :func:`on_report` lock the study's row first (``locks.lock_study``), so
they count trials, number new ones and read rung records as if they ran one after another,
as they do on SQLite.

Checking a space and building the algorithms from a study row is ``app.search.study_config``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from sqlalchemy import Select, bindparam, exists, func, select
from sqlalchemy.orm import Session

from app.search import parking
from app.search.study_config import sampler_for, scheduler_for
from app.storage import locks, queries
from app.storage.models import (
    Checkpoint,
    EventKind,
    IntermediateValue,
    Round,
    RoundKind,
    RungRecordRow,
    Study,
    StudyMode,
    StudyState,
    Trial,
    TrialState,
)
from app.tuning import (
    Decision,
    GridExhausted,
    RungRecord,
    Scheduler,
    TrialStatus,
    TrialView,
    near_centre,
    parse_space,
    sample_near,
    trial_rng,
)
from app.tuning.ranking import rank
from trainer.config import HParamError, complete_hparams

log = logging.getLogger(__name__)

OPEN_STATES = (TrialState.QUEUED, TrialState.RUNNING, TrialState.PAUSED)
STATUS = {
    TrialState.RUNNING: TrialStatus.RUNNING,
    TrialState.COMPLETED: TrialStatus.COMPLETED,
    TrialState.PRUNED: TrialStatus.PRUNED,
    TrialState.FAILED: TrialStatus.FAILED,
}


# -- rows to views ---------------------------------------------------------------------------


# What a view is built from: a trial's identity, round number, state, values and last value.
_VIEW_COLUMNS = (
    Trial.id,
    Trial.number,
    Round.number,
    Trial.state,
    Trial.hparams,
    Trial.last_value,
)


def _view(row: tuple[Any, ...], intermediate: dict[int, float]) -> TrialView:
    """A row of ``_VIEW_COLUMNS`` (id, number, round number, state, hparams, last value)."""
    _, number, rnd, state, hparams, value = row
    return TrialView(
        number=number,
        round=(rnd or 1) - 1,
        state=STATUS.get(state, TrialStatus.OTHER),
        hparams=hparams,
        value=value if state is TrialState.COMPLETED else None,
        intermediate=intermediate,
    )


def _view_rows(*where: Any) -> Select[Any]:
    return select(*_VIEW_COLUMNS).outerjoin(Round, Round.id == Trial.round_id).where(*where)


def views(session: Session, study_id: int, *, originals: bool = False) -> list[TrialView]:
    """Every trial of the study as the algorithms see it; value = the final objective.

    ``originals`` leaves re-tests out: each repeats a configuration already in the study.
    """
    inter: dict[int, dict[int, float]] = {}
    q = (
        select(IntermediateValue.trial_id, IntermediateValue.resource, IntermediateValue.value)
        .join(Trial, Trial.id == IntermediateValue.trial_id)
        .where(Trial.study_id == study_id)
    )
    for trial_id, resource, value in session.execute(q):
        inter.setdefault(trial_id, {})[resource] = value
    where = [Trial.study_id == study_id] + ([Trial.retest_of_id.is_(None)] if originals else [])
    rows = session.execute(_view_rows(*where).order_by(Trial.number))
    return [_view(tuple(row), inter.get(row[0], {})) for row in rows]


def report_views(session: Session, trial: Trial, resource: int) -> list[TrialView]:
    """The history a scheduler decides on at ``resource``: the reporting trial's full view,
    and the other trials of its round that reported at ``resource``, each with only that
    value and no hyperparameters.

    Only those values can weigh on a decision there (median stopping compares values at the
    same resource; ASHA reads its rung records), and loading the study's whole history made a
    report cost 57-92 ms with 1,000 trials of 20 epochs, 17-22 ms now (docs/contracts.md). A
    scheduler that needs other trials' hyperparameters (PBT's exploit) must load them itself.
    """
    q = (
        select(Trial.number, Round.number, Trial.state, Trial.last_value, IntermediateValue.value)
        .join(IntermediateValue, IntermediateValue.trial_id == Trial.id)
        .outerjoin(Round, Round.id == Trial.round_id)
        .where(
            Trial.study_id == trial.study_id,
            Trial.round_id == trial.round_id,  # each round is a bracket of its own
            Trial.id != trial.id,
            IntermediateValue.resource == resource,
        )
    )
    out = [
        _view((0, n, rnd, state, {}, last), {resource: v})
        for n, rnd, state, last, v in session.execute(q)
    ]
    own = session.execute(_view_rows(Trial.id == trial.id)).one()
    mine = select(IntermediateValue.resource, IntermediateValue.value).where(
        IntermediateValue.trial_id == trial.id
    )
    out.append(_view(tuple(own), {r: v for r, v in session.execute(mine)}))
    return sorted(out, key=lambda v: v.number)


def records(session: Session, study_id: int, round_id: int | None) -> list[RungRecord]:
    """One round's rung records in insertion order: ASHA's whole state for that round.

    Each round is a bracket of its own: a round narrowed around the best region is not held
    to the rungs its wider parent filled, and a new space's trials compete with each other.
    """
    q = (
        select(Trial.number, RungRecordRow.rung, RungRecordRow.value)
        .join(Trial, Trial.id == RungRecordRow.trial_id)
        .where(RungRecordRow.study_id == study_id, Trial.round_id == round_id)
        .order_by(RungRecordRow.id)
    )
    return [RungRecord(n, r, v) for n, r, v in session.execute(q)]


# -- feeding ---------------------------------------------------------------------------------


def latest_round_id(session: Session, study_id: int) -> int | None:
    """The study's newest search round (None for a panda study): where a new trial belongs."""
    q = (
        select(Round.id)
        .where(Round.study_id == study_id, Round.kind == RoundKind.SEARCH)
        .order_by(Round.number.desc())
        .limit(1)
    )
    return session.scalar(q)


def _count(session: Session, *where: Any) -> int:
    return session.scalar(select(func.count()).select_from(Trial).where(*where)) or 0


def _budget_left(session: Session, rnd: Round, waiting: frozenset[int] = frozenset()) -> bool:
    """Whether the round may start another trial; ``waiting``: ids of parked trials."""
    if rnd.kind is RoundKind.RETEST or rnd.exhausted:
        return False
    if rnd.budget_trials is not None:
        return _count(session, Trial.round_id == rnd.id) < rnd.budget_trials
    # Ended and parked trials count the epochs they trained (a pruned one frees the rest),
    # others plan; a fork counts from its parent's checkpoint on, so no epoch counts twice.
    start = func.coalesce(Checkpoint.epoch, 0.0)
    rows = session.execute(
        select(Trial.id, Trial.state, Trial.epoch, Trial.hparams, start)
        .outerjoin(Checkpoint, Checkpoint.id == Trial.parent_checkpoint_id)
        .where(Trial.round_id == rnd.id)
    )
    spent: float = sum(
        (e if s.finished or i in waiting else float(h.get("epochs", 0))) - s0
        for i, s, e, h, s0 in rows
    )
    return spent < (rnd.budget_epochs or 0)


def _sample(session: Session, study: Study, rnd: Round, history: Sequence[TrialView]) -> bool:
    last = session.scalar(select(func.max(Trial.index_in_round)).where(Trial.round_id == rnd.id))
    index = 0 if last is None else last + 1
    number = queries.next_number(session, study.id)
    try:
        space = parse_space(rnd.space)
        rng = trial_rng(study.seed, number)
        centre = _near(session, study, rnd, index)
        if centre is not None:
            draws = sample_near(space, centre, rng)
        else:
            draws = sampler_for(study, rnd.number).sample(space, history, rng, index=index)
        hparams = {"epochs": study.epochs, **draws}
        if not study.external:  # the user's own loop: its values are its own
            hparams = complete_hparams(hparams)
    except (GridExhausted, HParamError, ValueError) as exc:
        # A spent grid, or a draw the trainer refuses: this round samples no more.
        log.info("study %s round %s stops sampling: %s", study.id, rnd.number, exc)
        rnd.exhausted = True
        return False
    queries.create_trial(
        session, study=study, hparams=hparams, round_id=rnd.id, index_in_round=index
    )
    return True


def _near(session: Session, study: Study, rnd: Round, index: int) -> dict[str, Any] | None:
    """The top trial a round narrowed around the top-k draws its trial ``index`` near
    (``app.tuning.near_centre``: every other one), or None for the study's sampler.

    Only with random search, the default (TPE models the good region itself; grid and Sobol
    points are laid out to fill the box). The top-k are those when the draw is made, by the
    one ranking, among the originals of the earlier rounds and this round's own: a round that
    finds a better region draws its later trials there, as TPE and PBT follow the leaders.
    """
    if rnd.from_top is None or (study.sampler or "random") != "random":
        return None
    if near_centre(index, rnd.from_top) is None:
        return None
    so_far = [v for v in views(session, study.id, originals=True) if v.round < rnd.number]
    top = rank(so_far, study.direction)[: rnd.from_top]
    which = near_centre(index, len(top))
    return None if which is None else dict(top[which].hparams)


def _active(session: Session, study: Study) -> int:
    return _count(
        session,
        Trial.study_id == study.id,
        Trial.state.in_([TrialState.QUEUED, TrialState.RUNNING]),
    )


def feed(session: Session, study: Study, scheduler: Scheduler | None) -> int:
    """Fill ``parallelism`` slots: parked trials ``scheduler`` (the study's) promotes first,
    then new samples while budget is left. Returns how many trials were queued."""
    active = _active(session, study)
    if active >= study.parallelism:
        return 0
    # A promotion before a new configuration: ASHA's rule for a free worker.
    added, waiting = 0, frozenset[int]()
    if scheduler is not None and scheduler.pauses:
        added, waiting = parking.promote(
            session,
            study,
            schedulers(session, study),
            partial(records, session, study.id),
            study.parallelism - active,
        )
    active += added
    history = views(session, study.id) if active < study.parallelism else []
    rounds = session.scalars(
        select(Round).where(Round.study_id == study.id).order_by(Round.number)
    )
    for rnd in rounds:
        while active < study.parallelism and _budget_left(session, rnd, waiting):
            if not _sample(session, study, rnd, history):
                break
            active, added = active + 1, added + 1
    return added


def schedulers(session: Session, study: Study) -> Callable[[int | None], Scheduler | None]:
    """Each round's scheduler by round id (its own settings, else the study's), built once."""
    built: dict[int | None, Scheduler | None] = {}

    def of(round_id: int | None) -> Scheduler | None:
        if round_id not in built:
            rnd = session.get(Round, round_id) if round_id is not None else None
            built[round_id] = scheduler_for(study, rnd)
        return built[round_id]

    return of


def settle(session: Session, study: Study) -> None:
    """Bring the study's state up to date after its trials changed; feed a caviar study first.

    Called wherever a trial is added, queued again or ends (creation, fork, resume, pause,
    stop, finish, the reaper). A study is completed when none of its trials is queued,
    running or paused, and active again as soon as one is. A caviar study is fed before that
    is decided; when nothing runs and nothing new may start, trials parked at a rung get a
    last promotion (the rung's last, incomplete group counts); those it leaves end as pruned.
    """
    if study.mode is not StudyMode.CAVIAR:
        # A panda study has nothing to feed: its state alone follows its trials. This runs in
        # every panda finish, so it costs one indexed EXISTS (the study's row lock is a no-op
        # on SQLite, and on PostgreSQL keeps a concurrent new trial from being missed).
        locks.lock_study(session, study)
        _set_state(session, study)
        return
    session.flush()
    locks.lock_study(session, study)
    scheduler = scheduler_for(study)
    feed(session, study, scheduler)
    session.flush()
    if scheduler is not None and scheduler.pauses and not _active(session, study):
        promoted, left = parking.promote(
            session,
            study,
            schedulers(session, study),
            partial(records, session, study.id),
            study.parallelism,
            final=True,
        )
        if not promoted:
            parking.end_parked(session, study, left)
        session.flush()
    _set_state(session, study)


_ANY_OPEN = select(
    exists().where(Trial.study_id == bindparam("study_id"), Trial.state.in_(OPEN_STATES))
)


def _set_state(session: Session, study: Study) -> None:
    """Active while any trial is queued, running or paused, else completed.

    The callers' trial changes are flushed first, so the query sees them (the flush writes
    what the commit would have); the study's row is written only when its state changes.
    """
    session.flush()
    # On the Core connection, built once: every panda finish runs it, inside the writers' turn.
    still_open = session.connection().execute(_ANY_OPEN, {"study_id": study.id}).scalar()
    state = StudyState.ACTIVE if still_open else StudyState.COMPLETED
    if study.state is not state:
        study.state = state


# -- early stopping --------------------------------------------------------------------------


Point = tuple[int, str, float]


def on_report(
    session: Session, trial: Trial, step: int, epoch: float, points: Sequence[Point]
) -> None:
    """At an epoch's end, store the objective and ask the scheduler; STOP -> a prune event.

    The worker's report at the end of epoch ``E`` carries ``epoch == E`` and the dev metrics
    at its ``step``: that value at resource ``E`` is what ASHA and median stopping compare.
    """
    study = trial.study
    values = [v for s, n, v in points if n == study.objective_metric and s == step]
    if study.mode is not StudyMode.CAVIAR or not values or epoch < 1 or epoch % 1:
        return
    resource, value = int(epoch), values[-1]
    rnd = session.get(Round, trial.round_id) if trial.round_id is not None else None
    scheduler = scheduler_for(study, rnd)
    if scheduler is not None:
        # Two trials ending an epoch at once must not each decide without the other's value
        # (ASHA could keep both where it keeps one): the study's lock orders them as SQLite's
        # writes are ordered.
        locks.lock_study(session, study)
    queries.upsert_intermediate(session, trial_id=trial.id, resource=resource, value=value)
    # A re-test must train to the end: its final value is what it measures.
    if scheduler is not None and trial.retest_of_id is None:
        _consult(session, scheduler, trial, resource, value)


def _consult(
    session: Session, scheduler: Scheduler, trial: Trial, resource: int, value: float
) -> None:
    study_id = trial.study_id
    history = report_views(session, trial, resource)
    view = next(v for v in history if v.number == trial.number)
    recs = records(session, study_id, trial.round_id)
    answer = scheduler.on_report(view, resource, value, history, recs)
    for rec in answer.new_records:  # only ever the reporting trial's own record
        session.add(
            RungRecordRow(study_id=study_id, trial_id=trial.id, rung=rec.rung, value=rec.value)
        )
    if answer.decision is Decision.CONTINUE:
        return
    pending = {e.kind for e in queries.pending_events(session, [trial.id]).get(trial.id, [])}
    # A report at the trial's last epoch ends it anyway: it completes rather than pruned.
    last = resource >= int(trial.hparams["epochs"])
    # What the trial was compared with (a rung's cut, a median): the trial page says why.
    payload = {
        "scheduler": trial.study.scheduler,
        "resource": resource,
        "value": value,
        **answer.why,
    }
    if answer.decision is Decision.STOP and not last and EventKind.PRUNE not in pending:
        queries.add_event(session, trial, EventKind.PRUNE, payload)
    # PAUSE parks the trial at its rung (app.search.parking); a stop or pause already asked wins.
    parked = {EventKind.PRUNE, EventKind.STOP, EventKind.PAUSE}
    if answer.decision is Decision.PAUSE and not last and not pending & parked:
        queries.add_event(session, trial, EventKind.PAUSE, payload)
