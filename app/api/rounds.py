"""Coarse-to-fine rounds and re-tests of a caviar study."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.deps import SessionDep, StudyDep
from app.schemas import (
    RetestCreate,
    RetestPublic,
    RetestShape,
    RoundCreate,
    RoundPublic,
    RoundsPublic,
)
from app.search import rounds

router = APIRouter(prefix="/studies", tags=["rounds"])


@router.get("/{study_id}/rounds", response_model=RoundsPublic)
def list_rounds(study: StudyDep, session: SessionDep) -> RoundsPublic:
    """The study's rounds, first to last, with their spaces, budgets and trial counts; a
    re-test round also with its ``retest`` shape (top k, seeds each)."""
    counts = rounds.counts_by_round(session, study.id)
    retests = rounds.retest_shapes(session, study.id)
    data = [
        rounds.round_public(r, counts.get(r.id, {}), retests.get(r.id))
        for r in rounds.list_rounds(session, study.id)
    ]
    return RoundsPublic(data=data, count=len(data))


@router.post("/{study_id}/rounds", response_model=RoundPublic, status_code=status.HTTP_201_CREATED)
def create_round(study: StudyDep, body: RoundCreate, session: SessionDep) -> RoundPublic:
    """Narrow the last search round: ``{"from_top": k, "margin": m, "trials": n}`` spans the
    k best completed trials on each range's sampling scale, widened by ``margin`` of the hull
    and clipped to the parent; ``{"space": {...}, "trials": n}`` sets ranges explicitly (laid
    over the parent's space; ranges that leave it are accepted and listed in
    ``outside_parent``). The round's trials run after earlier rounds' (a completed study
    reopens); 409 for a panda study or too few completed trials.
    """
    rnd = rounds.add_round(session, study, body)
    out = rounds.round_public(rnd, rounds.counts_by_round(session, study.id).get(rnd.id, {}))
    session.commit()
    return out


@router.post("/{study_id}/retest", response_model=RoundPublic, status_code=status.HTTP_201_CREATED)
def create_retest(study: StudyDep, body: RetestCreate, session: SessionDep) -> RoundPublic:
    """Re-run the ``top`` best completed configurations with ``seeds`` fresh seeds each, as a
    round of kind ``retest``; ``GET .../retest`` summarises them. 409 with too few trials.
    """
    rnd = rounds.add_retest(session, study, body)
    out = rounds.round_public(
        rnd,
        rounds.counts_by_round(session, study.id).get(rnd.id, {}),
        RetestShape(top=body.top, seeds=body.seeds),
    )
    session.commit()
    return out


@router.get("/{study_id}/retest", response_model=RetestPublic)
def get_retest(study: StudyDep, session: SessionDep) -> RetestPublic:
    """Per re-tested configuration: the original value, the re-runs' values, mean and std."""
    groups = rounds.retest_groups(session, study)
    return RetestPublic(
        metric=study.objective_metric, direction=study.direction, data=groups, count=len(groups)
    )
