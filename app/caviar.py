"""The study feeder: glue between stored rows and the pure algorithms of ``app.tuning``.

Rows become :class:`TrialView` / :class:`RungRecord` objects, an algorithm is called, and what
it returns is written back (new trials, rung records, prune events). A sampler's state is the
trials' numbers, their index in the round and their hyperparameters, a scheduler's the
``rung_records`` table: a restarted server decides exactly as the old one would have.

Feeding: a caviar study keeps at most ``parallelism`` of its trials queued or running; every
change that can free a slot (a finish, a reaped lease, a stop or pause of a queued trial, a
new round) calls :func:`settle`, which samples the next trials of the first round with budget
left and marks the study completed once every trial has ended and no budget is left. The
claim caps the running trials per study at ``parallelism`` too (see ``crud.claim_next``), so
trials added by hand or by a re-test never run more at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import crud
from app.errors import Invalid
from app.models import (
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
    Choice,
    Decision,
    Direction,
    GridExhausted,
    RungRecord,
    Sampler,
    Scheduler,
    SearchSpace,
    SpaceError,
    TrialStatus,
    TrialView,
    make_sampler,
    make_scheduler,
    parse_space,
    trial_rng,
)
from trainer.config import HPARAM_SPECS, HParamError, complete_hparams

log = logging.getLogger(__name__)

# Algorithms whose constructor takes the objective's direction (the study sets it, not users).
DIRECTED = frozenset({"tpe", "asha", "median"})
# The trainer's only cross-field rule ties these two; their range corners are checked at once.
COMBINED = ("lr_decay", "decay_schedule")
OPEN_STATES = (TrialState.QUEUED, TrialState.RUNNING, TrialState.PAUSED)
STATUS = {
    TrialState.RUNNING: TrialStatus.RUNNING,
    TrialState.COMPLETED: TrialStatus.COMPLETED,
    TrialState.PRUNED: TrialStatus.PRUNED,
    TrialState.FAILED: TrialStatus.FAILED,
}


# -- validation ------------------------------------------------------------------------------


def check_value(name: str, value: object) -> object:
    """``parse_space``'s checker: an unknown name or a value the trainer refuses raises."""
    if name not in HPARAM_SPECS:
        raise ValueError("unknown hyperparameter; known: " + ", ".join(HPARAM_SPECS))
    return HPARAM_SPECS[name].check(value)


def parse(data: dict[str, Any], epochs: int) -> SearchSpace:
    """A validated search space, or 422 naming ``space.<hyperparameter>``."""
    try:
        space = parse_space(data, check_value=check_value)
        dims = {n: _corners(d) for n, d in space.ranged.items() if n in COMBINED}
        for n, values in dims.items():  # each rule dimension's extremes against the fixed values
            for v in values:
                complete_hparams({"epochs": epochs, **space.fixed, n: v})
        complete_hparams({"epochs": epochs, **space.fixed})
    except SpaceError as exc:
        raise Invalid(f"space.{exc}", field=f"space.{exc.name}") from None
    except HParamError as exc:
        raise Invalid.from_hparam(exc, "space.") from None
    return space


def _corners(dist: Any) -> list[Any]:
    return list(dist.values) if isinstance(dist, Choice) else [dist.low, dist.high]


def max_epochs(space: SearchSpace, default: int) -> int:
    """The most epochs a trial of ``space`` can train: ASHA's maximum resource."""
    if "epochs" in space.fixed:
        return int(space.fixed["epochs"])
    dist = space.ranged.get("epochs")
    return default if dist is None else max(int(v) for v in _corners(dist))


def split(spec: str | dict[str, Any] | None, what: str) -> tuple[str | None, dict[str, Any]]:
    """``"asha"`` or ``{"name": "asha", **settings}`` -> (name, settings)."""
    if spec is None or isinstance(spec, str):
        return spec, {}
    settings = dict(spec)
    name = settings.pop("name", None)
    if not isinstance(name, str):
        raise Invalid(f'{what}.name: got {name!r}, allowed: a name, e.g. {{"name": "random"}}',
                      field=f"{what}.name")
    if "direction" in settings or "seed" in settings:
        raise Invalid(f"{what}: direction and seed come from the study's objective and seed",
                      field=what)
    return name, settings


def check_algorithms(study: Study) -> None:
    """Build the study's sampler and scheduler once so bad names or settings give a 422."""
    checks = (("sampler", sampler_for, study.sampler_settings),
              ("scheduler", scheduler_for, study.scheduler_settings))
    for what, build, settings in checks:
        try:
            build(study)
        except ValueError as exc:
            message = str(exc).removeprefix(f"{what}: ")
            key = message.split(":", 1)[0]
            if key == "max_resource":
                message += " (max_resource defaults to the most epochs a trial can train)"
            field = f"{what}.{key}" if key in settings else what
            raise Invalid(f"{what}: {message}", field=field) from None


def sampler_for(study: Study, round_number: int = 1) -> Sampler:
    """The study's sampler for one of its rounds."""
    extra = {"direction": Direction(study.direction.value)} if study.sampler in DIRECTED else {}
    # Sobol's scrambling seed differs per round, so a narrowed round gets fresh points.
    seed = study.seed + round_number - 1
    return make_sampler(study.sampler, seed, **extra, **study.sampler_settings)


def scheduler_for(study: Study) -> Scheduler | None:
    """The study's early-stopping scheduler, or None."""
    if study.scheduler in (None, "none"):
        return None
    extra = {"direction": Direction(study.direction.value)} if study.scheduler in DIRECTED else {}
    return make_scheduler(study.scheduler, **extra, **study.scheduler_settings)


# -- rows to views ---------------------------------------------------------------------------


def views(session: Session, study_id: int) -> list[TrialView]:
    """Every trial of the study as the algorithms see it; value = the final objective."""
    inter: dict[int, dict[int, float]] = {}
    q = (
        select(IntermediateValue.trial_id, IntermediateValue.resource, IntermediateValue.value)
        .join(Trial, Trial.id == IntermediateValue.trial_id)
        .where(Trial.study_id == study_id)
    )
    for trial_id, resource, value in session.execute(q):
        inter.setdefault(trial_id, {})[resource] = value
    rows = session.execute(
        select(Trial.id, Trial.number, Round.number, Trial.state, Trial.hparams, Trial.last_value)
        .outerjoin(Round, Round.id == Trial.round_id)
        .where(Trial.study_id == study_id)
        .order_by(Trial.number)
    )
    return [
        TrialView(
            number=number, round=(rnd or 1) - 1, state=STATUS.get(state, TrialStatus.OTHER),
            hparams=hparams, value=value if state is TrialState.COMPLETED else None,
            intermediate=inter.get(trial_id, {}),
        )
        for trial_id, number, rnd, state, hparams, value in rows
    ]


def records(session: Session, study_id: int) -> list[RungRecord]:
    """The study's rung records in insertion order (ASHA's whole state)."""
    q = (
        select(Trial.number, RungRecordRow.rung, RungRecordRow.value)
        .join(Trial, Trial.id == RungRecordRow.trial_id)
        .where(RungRecordRow.study_id == study_id)
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


def _budget_left(session: Session, rnd: Round) -> bool:
    if rnd.kind is RoundKind.RETEST or rnd.exhausted:
        return False
    if rnd.budget_trials is not None:
        return _count(session, Trial.round_id == rnd.id) < rnd.budget_trials
    # Ended trials count the epochs they trained (a pruned one frees the rest), others plan.
    rows = session.execute(select(Trial.state, Trial.epoch, Trial.hparams)
                           .where(Trial.round_id == rnd.id))
    spent = sum(e if s.finished else float(h.get("epochs", 0)) for s, e, h in rows)
    return spent < (rnd.budget_epochs or 0)


def _sample(session: Session, study: Study, rnd: Round, history: Sequence[TrialView]) -> bool:
    last = session.scalar(select(func.max(Trial.index_in_round)).where(Trial.round_id == rnd.id))
    index = 0 if last is None else last + 1
    number = crud.next_number(session, study.id)
    try:
        space = parse_space(rnd.space)
        draws = sampler_for(study, rnd.number).sample(
            space, history, trial_rng(study.seed, number), index=index
        )
        hparams = complete_hparams({"epochs": study.epochs, **draws})
    except (GridExhausted, HParamError, ValueError) as exc:
        # A spent grid, or a draw the trainer refuses: this round samples no more.
        log.info("study %s round %s stops sampling: %s", study.id, rnd.number, exc)
        rnd.exhausted = True
        return False
    crud.create_trial(session, study=study, hparams=hparams, round_id=rnd.id,
                      index_in_round=index)
    return True


def feed(session: Session, study: Study) -> int:
    """Sample trials until ``parallelism`` are queued or running or no budget is left."""
    active = _count(session, Trial.study_id == study.id,
                    Trial.state.in_([TrialState.QUEUED, TrialState.RUNNING]))
    if active >= study.parallelism:
        return 0
    added, history = 0, views(session, study.id)
    rounds = session.scalars(select(Round).where(Round.study_id == study.id)
                             .order_by(Round.number))
    for rnd in rounds:
        while active < study.parallelism and _budget_left(session, rnd):
            if not _sample(session, study, rnd, history):
                break
            active, added = active + 1, added + 1
    return added


def settle(session: Session, study: Study) -> None:
    """Feed a caviar study, then mark it completed when nothing is left to run."""
    if study.mode is not StudyMode.CAVIAR:
        return
    session.flush()
    feed(session, study)
    session.flush()
    still_open = _count(session, Trial.study_id == study.id, Trial.state.in_(OPEN_STATES))
    study.state = StudyState.ACTIVE if still_open else StudyState.COMPLETED


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
    crud.upsert_intermediate(session, trial_id=trial.id, resource=resource, value=value)
    scheduler = scheduler_for(study)
    # A re-test must train to the end: its final value is what it measures.
    if scheduler is not None and trial.retest_of_id is None:
        _consult(session, scheduler, trial, resource, value)


def _consult(
    session: Session, scheduler: Scheduler, trial: Trial, resource: int, value: float
) -> None:
    study_id = trial.study_id
    history = views(session, study_id)
    view = next(v for v in history if v.number == trial.number)
    answer = scheduler.on_report(view, resource, value, history, records(session, study_id))
    for rec in answer.new_records:  # only ever the reporting trial's own record
        session.add(RungRecordRow(study_id=study_id, trial_id=trial.id, rung=rec.rung,
                                  value=rec.value))
    pending = crud.pending_events(session, [trial.id]).get(trial.id, [])
    already = any(e.kind is EventKind.PRUNE for e in pending)
    # A report at the trial's last epoch ends it anyway: it completes rather than pruned.
    last = resource >= int(trial.hparams["epochs"])
    if answer.decision is Decision.STOP and not last and not already:
        payload = {"scheduler": trial.study.scheduler, "resource": resource, "value": value}
        crud.add_event(session, trial, EventKind.PRUNE, payload)
