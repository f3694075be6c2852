"""Coarse to fine and re-tests: new rounds of a caviar study, and what the re-tests measured.

A search round narrows the previous search round's space, either around the top-k completed
trials (``app.tuning.narrow_from_top``) or to explicit ranges (what the dashboard's brushing
sends). A re-test round re-runs the best configurations with fresh seeds. Both belong to the
study, so every trial of every round is compared side by side; the feeder (``app.search.feeder``)
runs the rounds in order.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.schemas import (
    Budget,
    RetestCreate,
    RetestGroup,
    RetestShape,
    RoundCreate,
    RoundPublic,
)
from app.search import feeder, study_config
from app.storage import queries
from app.storage.models import Round, RoundKind, Study, StudyMode, Trial, TrialState
from app.tuning import check_within, narrow_from_top, parse_space, trial_rng
from app.tuning.ranking import rank

SEED_SPACE = 2**32 - 1  # trainer seeds are in [0, 2**32 - 1]


def require_caviar(study: Study) -> None:
    if study.mode is not StudyMode.CAVIAR:
        raise Conflict(
            f"study {study.id} is a panda study; rounds, re-tests and analysis of "
            "many trials belong to caviar studies"
        )


def counts_by_round(session: Session, study_id: int) -> dict[int | None, dict[str, int]]:
    """Number of trials per state for each round of the study, in one query."""
    q = (
        select(Trial.round_id, Trial.state, func.count())
        .where(Trial.study_id == study_id)
        .group_by(Trial.round_id, Trial.state)
    )
    out: dict[int | None, dict[str, int]] = defaultdict(dict)
    for round_id, state, n in session.execute(q):
        out[round_id][state.value] = n
    return out


def round_numbers(session: Session, round_ids: Iterable[int]) -> dict[int, int]:
    """Round id -> the round's number in its study, in one query."""
    ids = list(round_ids)
    if not ids:
        return {}
    q = select(Round.id, Round.number).where(Round.id.in_(ids))
    return {round_id: number for round_id, number in session.execute(q)}


def retest_shapes(session: Session, study_id: int) -> dict[int, RetestShape]:
    """Re-test round id -> its top k and seeds each, read from its trials in one query.

    Not stored on the round: each re-test trial names the configuration it re-runs, so k is
    the number of distinct ones and the seeds are the trials per configuration.
    """
    q = (
        select(Trial.round_id, func.count(distinct(Trial.retest_of_id)), func.count())
        .join(Round, Round.id == Trial.round_id)
        .where(
            Round.study_id == study_id,
            Round.kind == RoundKind.RETEST,
            Trial.retest_of_id.is_not(None),
        )
        .group_by(Trial.round_id)
    )
    out: dict[int, RetestShape] = {}
    for round_id, top, n in session.execute(q):
        if round_id is not None and top:  # never None (inner join); typed optional
            out[round_id] = RetestShape(top=top, seeds=n // top)
    return out


def round_public(
    rnd: Round, counts: dict[str, int], retest: RetestShape | None = None
) -> RoundPublic:
    """The round as the API shows it; ``retest``: a re-test round's shape (see
    :func:`retest_shapes`)."""
    return RoundPublic(
        id=rnd.id,
        study_id=rnd.study_id,
        number=rnd.number,
        kind=rnd.kind,
        space=rnd.space,
        parent_round_id=rnd.parent_round_id,
        budget=Budget(trials=rnd.budget_trials, epochs=rnd.budget_epochs),
        from_top=rnd.from_top,
        margin=rnd.margin,
        outside_parent=list(rnd.outside_parent or []),
        counts=counts,
        retest=retest if rnd.kind is RoundKind.RETEST else None,
        scheduler_settings=rnd.scheduler_settings,
        created_at=rnd.created_at,
    )


def list_rounds(session: Session, study_id: int) -> list[Round]:
    q = select(Round).where(Round.study_id == study_id).order_by(Round.number)
    return list(session.scalars(q))


def _parent(session: Session, study: Study) -> Round:
    round_id = feeder.latest_round_id(session, study.id)
    if round_id is None:
        raise Conflict(f"study {study.id} has no search round to narrow")
    return session.get_one(Round, round_id)


def _next_number(session: Session, study_id: int) -> int:
    last = session.scalar(select(func.max(Round.number)).where(Round.study_id == study_id))
    return (last or 0) + 1


def _narrowed(
    session: Session, study: Study, parent: Round, body: RoundCreate
) -> tuple[dict[str, Any], list[str]]:
    """The new round's space and the dimensions that leave the parent's ranges."""
    parent_space = parse_space(parent.space)
    if body.space is not None:
        child = study_config.parse({**parent.space, **body.space}, study.epochs)
        return child.to_dict(), check_within(parent_space, child)
    assert body.from_top is not None  # the schema wants one of the two
    # Re-tests repeat configurations already in the study: the originals are ranked.
    history = feeder.views(session, study.id, originals=True)
    _check_k("from_top", body.from_top, len(rank(history, study.direction)), study)
    child = narrow_from_top(
        parent_space,
        history,
        k=body.from_top,
        margin=body.margin,
        direction=study.direction,
    )
    return child.to_dict(), []


def _check_k(field: str, k: int, ranked: int, study: Study) -> None:
    """409 naming the largest ``k`` that works now, when ``k`` trials are not ranked yet."""
    if k <= ranked:
        return
    if ranked == 0:
        raise Conflict(
            f"{field}: got {k}, but no trial of study {study.id} has a value of "
            f"{study.objective_metric} yet; ask again once a trial ends its first epoch",
            field=field,
        )
    raise Conflict(
        f"{field}: got {k}, but only {ranked} trial(s) of study {study.id} have a value of "
        f"{study.objective_metric} yet (completed, or stopped early at a rung); the largest "
        f"{field} that works now is {ranked}",
        field=field,
    )


def add_round(session: Session, study: Study, body: RoundCreate) -> Round:
    """A narrowed search round; its trials are sampled as slots free up (a done study reopens)."""
    require_caviar(study)
    parent = _parent(session, study)
    space, outside = _narrowed(session, study, parent, body)
    parsed = parse_space(space)
    trials = study_config.trials_of_budget(
        body.trials, body.epochs, study_config.max_epochs(parsed, study.epochs)
    )
    rnd = Round(
        study_id=study.id,
        number=_next_number(session, study.id),
        kind=RoundKind.SEARCH,
        space=space,
        parent_round_id=parent.id,
        budget_trials=body.trials,
        budget_epochs=body.epochs,
        from_top=body.from_top,
        margin=body.margin if body.from_top is not None else None,
        outside_parent=outside,
        scheduler_settings=study_config.round_settings(
            study, parsed, trials, from_top=body.from_top is not None
        ),
    )
    session.add(rnd)
    session.flush()
    feeder.settle(session, study)
    return rnd


def _top(session: Session, study: Study, k: int) -> list[Trial]:
    """The k best original (not re-test) trials by the study's ranking (app.tuning.ranking:
    completed first, then those stopped early by how far they got and their value there)."""
    ranked = rank(feeder.views(session, study.id, originals=True), study.direction)
    _check_k("top", k, len(ranked), study)
    numbers = [view.number for view in ranked[:k]]
    rows = session.scalars(
        select(Trial).where(Trial.study_id == study.id, Trial.number.in_(numbers))
    )
    by_number = {t.number: t for t in rows}
    return [by_number[n] for n in numbers]


def _fresh_seed(study: Study, number: int, old: int) -> int:
    # Derived from the study seed and the new trial's number: reproducible, and never the old.
    seed = int(trial_rng(study.seed, number).integers(0, SEED_SPACE))
    return seed if seed != old else (seed + 1) % SEED_SPACE


def add_retest(session: Session, study: Study, body: RetestCreate) -> Round:
    """A re-test round: each of the ``top`` best configurations again with ``seeds`` seeds."""
    require_caviar(study)
    top = _top(session, study, body.top)
    parent = _parent(session, study)
    rnd = Round(
        study_id=study.id,
        number=_next_number(session, study.id),
        kind=RoundKind.RETEST,
        space=parent.space,
        parent_round_id=parent.id,
        budget_trials=body.top * body.seeds,
    )
    session.add(rnd)
    session.flush()
    for source in top:
        for _ in range(body.seeds):
            number = queries.next_number(session, study.id)
            seed = _fresh_seed(study, number, int(source.hparams.get("seed", 0)))
            queries.create_trial(
                session,
                study=study,
                hparams={**source.hparams, "seed": seed},
                round_id=rnd.id,
                retest_of_id=source.id,
            )
    feeder.settle(session, study)
    return rnd


def retest_groups(session: Session, study: Study) -> list[RetestGroup]:
    """Per re-tested configuration: its re-runs' final values, their mean and std."""
    retests = list(
        session.scalars(
            select(Trial)
            .where(Trial.study_id == study.id, Trial.retest_of_id.is_not(None))
            .order_by(Trial.number)
        )
    )
    by_source: dict[int, list[Trial]] = defaultdict(list)
    for t in retests:
        by_source[t.retest_of_id].append(t)  # type: ignore[index]
    groups = []
    for source_id, runs in by_source.items():
        source = session.get_one(Trial, source_id)
        values = [
            t.last_value
            for t in runs
            if t.state is TrialState.COMPLETED
            and t.last_value is not None
            and math.isfinite(t.last_value)
        ]
        groups.append(
            RetestGroup(
                trial_id=source.id,
                number=source.number,
                hparams={k: v for k, v in source.hparams.items() if k != "seed"},
                value=source.last_value if source.state is TrialState.COMPLETED else None,
                trial_ids=[t.id for t in runs],
                values=values,
                completed=len(values),
                pending=sum(not t.state.finished for t in runs),
                mean=statistics.fmean(values) if values else None,
                std=statistics.stdev(values) if len(values) >= 2 else None,
            )
        )
    return sorted(groups, key=lambda g: g.number)
