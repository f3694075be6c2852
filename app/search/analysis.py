"""What a study found: its best trial, hyperparameter importance, the distinct values its
sampler tried, and a flat export.

A trial's objective value is the last value of the objective metric it reported (its final
value, as Optuna's ``trial.value``); ``best_value`` is the best one seen along its curve.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.schemas import ImportancePublic, SamplerInfo
from app.search import feeder, study_config
from app.storage import queries
from app.storage.models import Direction, Round, RoundKind, Study, StudyMode, Trial, TrialState
from app.tuning import (
    GridSampler,
    ImportanceResult,
    SearchSpace,
    TrialView,
    importance,
    parse_space,
)
from app.tuning.ranking import Configuration, best_configuration, rank
from trainer.config import HPARAM_SPECS

FINAL_METRICS = ("dev_loss", "dev_accuracy", "test_loss", "test_accuracy")
TRIAL_COLUMNS = ("rank", "id", "number", "round", "state", "retest_of")
VALUE_COLUMNS = (*FINAL_METRICS, "value", "best_value")


@dataclass(frozen=True)
class StudyTrials:
    """A study's trials as the ranking sees them, re-tests grouped under their originals."""

    originals: list[TrialView]
    retests: dict[int, list[TrialView]]  # original's number -> its re-test runs
    ids: dict[int, int]  # trial number -> trial id

    def best(self, direction: Direction) -> Configuration | None:
        return best_configuration(self.originals, self.retests, direction)


def study_trials(session: Session, study: Study) -> StudyTrials:
    """Every trial of ``study`` with its objective along the way (:func:`feeder.views`)."""
    rows = session.execute(
        select(Trial.number, Trial.id, Trial.retest_of_id).where(Trial.study_id == study.id)
    ).all()
    ids = {number: tid for number, tid, _ in rows}
    number_of = {tid: number for number, tid, _ in rows}
    original_of = {n: number_of.get(r) for n, _, r in rows if r is not None}
    originals: list[TrialView] = []
    retests: dict[int, list[TrialView]] = {}
    for view in feeder.views(session, study.id):
        of = original_of.get(view.number)
        if of is None:
            originals.append(view)
        else:
            retests.setdefault(of, []).append(view)
    return StudyTrials(originals, retests, ids)


@dataclass(frozen=True)
class Best:
    """The configuration to trust, its original trial, its runs' trials, and whether it was
    re-tested."""

    config: Configuration
    trial: Trial
    runs: list[Trial]
    retested: bool


def best(session: Session, study: Study) -> Best:
    """The configuration to trust (see :func:`best_configuration`).

    Raises:
        Conflict: no trial has an objective yet, with when to ask again.
    """
    trials = study_trials(session, study)
    config = trials.best(study.direction)
    if config is None:
        raise Conflict(
            f"study {study.id} has no value of {study.objective_metric} yet: the first comes "
            "when a trial ends its first epoch; ask again in a few seconds"
        )
    numbers = {config.trial_number, *config.numbers}
    rows = session.scalars(
        select(Trial).where(Trial.study_id == study.id, Trial.number.in_(numbers))
    )
    by_number = {t.number: t for t in rows}
    runs = [by_number[n] for n in config.numbers]
    return Best(
        config, by_number[config.trial_number], runs, config.trial_number in trials.retests
    )


def _first_space(session: Session, study: Study) -> dict[str, Any]:
    # The first round's space is the widest: every later round's trials lie inside it.
    q = (
        select(Round.space)
        .where(Round.study_id == study.id, Round.kind == RoundKind.SEARCH)
        .order_by(Round.number)
        .limit(1)
    )
    return session.scalar(q) or study.space


# Recent answers by their inputs: the study page asks again whenever a trial ends, several
# viewers ask at once, and a bootstrap of 30 forests takes about a second.
_IMPORTANCE: OrderedDict[tuple[Any, ...], ImportanceResult] = OrderedDict()
_IMPORTANCE_LOCK = threading.Lock()
_IMPORTANCE_KEPT = 32


def _importance(space: SearchSpace, trials: list[TrialView], seed: int) -> ImportanceResult:
    """:func:`importance`, remembered by everything it reads (so always the same answer)."""
    key = (
        repr(space.to_dict()),
        seed,
        tuple(
            (t.number, t.state, t.value, repr(sorted(t.hparams.items())),
             tuple(sorted(t.intermediate.items())))
            for t in trials
        ),
    )  # fmt: skip
    with _IMPORTANCE_LOCK:
        if key in _IMPORTANCE:
            _IMPORTANCE.move_to_end(key)
            return _IMPORTANCE[key]
    result = importance(space, trials, seed=seed)
    with _IMPORTANCE_LOCK:
        _IMPORTANCE[key] = result
        while len(_IMPORTANCE) > _IMPORTANCE_KEPT:
            _IMPORTANCE.popitem(last=False)
    return result


def importance_of(session: Session, study: Study) -> ImportancePublic:
    """Random-forest importance of each ranged hyperparameter for the objective at one epoch
    enough trials reached, with bootstrap intervals and a warning when too few back it."""
    space = parse_space(_first_space(session, study))
    # Re-tests repeat configurations already counted: they would weigh those twice.
    trials = feeder.views(session, study.id, originals=True)
    try:
        result = _importance(space, trials, study.seed)
    except ValueError as exc:
        raise Conflict(
            f"importance needs at least 2 trials with a value of {study.objective_metric}: {exc}"
        ) from None
    # A forest on a handful of trials ranks noise; say so rather than refuse (Optuna and W&B
    # show a ranking from 2 trials without a word).
    where = "completed trials" if result.resource is None else f"trials at epoch {result.resource}"
    warning = (
        None
        if result.enough
        else (
            f"Only {result.n_trials} {where}: too few to trust this ranking "
            f"(at least {result.needed} needed)"
        )
    )
    return ImportancePublic(
        method=result.method,
        scores=result.scores,
        n_trials=result.n_trials,
        resource=result.resource,
        intervals=result.intervals,
        needed=result.needed,
        metric=study.objective_metric,
        warning=warning,
    )


def _grid_info(session: Session, study: Study) -> tuple[dict[str, int], int] | None:
    """A grid study's distinct values per hyperparameter and grid points over its search
    rounds; None for any other sampler."""
    q = select(Round).where(Round.study_id == study.id, Round.kind == RoundKind.SEARCH)
    values: dict[str, set[Any]] = {}
    size = 0
    for rnd in session.scalars(q.order_by(Round.number)):
        grid = study_config.sampler_for(study, rnd.number)
        if not isinstance(grid, GridSampler):
            return None
        space = parse_space(rnd.space)
        size += grid.size(space)
        for name, axis in grid.axes(space).items():
            values.setdefault(name, set()).update(axis)
    return {name: len(v) for name, v in values.items()}, size


def sampler_info(session: Session, study: Study) -> SamplerInfo | None:
    """How many distinct values of each ranged hyperparameter the study's search tries."""
    if study.mode is not StudyMode.CAVIAR:
        return None
    q = select(Trial.hparams).where(Trial.study_id == study.id, Trial.retest_of_id.is_(None))
    drawn = list(session.scalars(q))
    grid = _grid_info(session, study)
    if grid is None:
        ranged = parse_space(_first_space(session, study)).ranged
        # repr: hashable and exact for every value a space can hold (floats, ints, strings).
        distinct = {n: len({repr(h.get(n)) for h in drawn if n in h}) for n in ranged}
    else:
        distinct = grid[0]
    return SamplerInfo(
        sampler=study.sampler,
        distinct_values=distinct,
        grid_size=None if grid is None else grid[1],
        trials=len(drawn),
    )


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def export_rows(session: Session, study: Study) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and one flat row per trial: its rank (:func:`rank`; none while it has no
    objective), identity, every hyperparameter, final metrics."""
    q = (
        select(Trial, Round.number)
        .outerjoin(Round, Round.id == Trial.round_id)
        .where(Trial.study_id == study.id)
        .order_by(Trial.number)
    )
    trials = [(t, n) for t, n in session.execute(q)]
    finals = queries.final_metrics(session, study_id=study.id, names=FINAL_METRICS)
    used = {name for t, _ in trials for name in t.hparams}
    names = [n for n in HPARAM_SPECS if n in used] + sorted(used - set(HPARAM_SPECS))
    views = study_trials(session, study)
    ranked = rank([*views.originals, *(r for rs in views.retests.values() for r in rs)],
                  study.direction)  # fmt: skip
    place = {view.number: i for i, view in enumerate(ranked, start=1)}
    rows = []
    for t, round_number in trials:
        row: dict[str, Any] = {
            "rank": place.get(t.number),
            "id": t.id,
            "number": t.number,
            "round": round_number,
            "state": t.state.value,
            "retest_of": t.retest_of_id,
        }
        row.update({n: t.hparams.get(n) for n in names})
        row.update({m: finals.get(t.id, {}).get(m) for m in FINAL_METRICS})
        value = t.last_value if t.state is TrialState.COMPLETED else None
        row.update({"value": value, "best_value": t.best_value})
        rows.append({k: _cell(v) for k, v in row.items()})
    return [*TRIAL_COLUMNS, *names, *VALUE_COLUMNS], rows
