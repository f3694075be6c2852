"""What a study found: the best trial, objective by epoch, importance, CSV/JSON export."""

from __future__ import annotations

import csv
import io
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.api.serialize import finite, trial_out
from app.deps import SessionDep, StudyDep
from app.schemas import BestPublic, ImportancePublic
from app.search import analysis, curves

router = APIRouter(prefix="/studies", tags=["analysis"])


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


@router.get("/{study_id}/best", response_model=BestPublic)
def get_best(study: StudyDep, session: SessionDep) -> BestPublic:
    """The configuration to trust: after a re-test, the one with the best mean over its
    completed runs (mean ± std, its runs and seeds); before any, the top-ranked trial (the
    ranking understands early stopping). 409 while no trial has an objective."""
    found = analysis.best(session, study)
    config, trial = found.config, found.trial
    return BestPublic(
        metric=study.objective_metric,
        direction=study.direction,
        value=config.mean,
        std=config.std,
        runs=len(config.values),
        retested=found.retested,
        run_trial_ids=[r.id for r in found.runs],
        seeds=[r.hparams.get("seed") for r in found.runs],
        hparams=trial.hparams,
        trial=trial_out(session, trial),
    )


@router.get("/{study_id}/curves")
def get_curves(
    study: StudyDep,
    session: SessionDep,
    trials: Annotated[str | None, Query(pattern=r"^\d{1,9}(,\d{1,9})*$")] = None,
    max_points: Annotated[int | None, Query(ge=2, le=100_000)] = None,
) -> dict[str, Any]:
    """The objective by epoch of the study's trials (``trials=3,5``: those only), as
    ``data: [{trial_id, points: [[epoch, value], ...]}]``: one x-axis whatever the batch size.
    """
    ids = [int(t) for t in trials.split(",")] if trials else None
    series = curves.objective_by_epoch(session, study, ids, max_points)
    data = [
        {"trial_id": tid, "points": [[epoch, finite(v)] for epoch, v in points]}
        for tid, points in sorted(series.items())
    ]
    return {"metric": study.objective_metric, "data": data, "count": len(data)}


@router.get("/{study_id}/importance", response_model=ImportancePublic)
def get_importance(study: StudyDep, session: SessionDep) -> ImportancePublic:
    """Importance of each ranged hyperparameter of the first round's space for the final
    objective (the method is named in the answer); 409 with fewer than 2 completed trials."""
    return analysis.importance_of(session, study)


@router.get(
    "/{study_id}/export",
    response_model=None,
    responses={200: {"content": {"text/csv": {}, "application/json": {}}}},
)
def export(
    study: StudyDep, session: SessionDep, format: ExportFormat = ExportFormat.CSV
) -> Response | dict[str, Any]:
    """Every trial as one row: id, number, round, state, retest_of, one column per
    hyperparameter, final dev/test loss and accuracy, final objective ``value``, ``best_value``.
    """
    columns, rows = analysis.export_rows(session, study)
    if format is ExportFormat.JSON:
        return {
            "study_id": study.id,
            "metric": study.objective_metric,
            "direction": study.direction.value,
            "columns": columns,
            "data": rows,
            "count": len(rows),
        }
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    headers = {"Content-Disposition": f'attachment; filename="study-{study.id}.csv"'}
    return Response(buf.getvalue(), media_type="text/csv", headers=headers)
