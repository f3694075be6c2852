"""A study's objective by epoch: every trial on one x-axis, whatever its batch size.

A step is one minibatch, so a trial with batches of 32 takes 8 times the steps per epoch of one
with batches of 256: by step their curves do not compare. Epochs are what a study's ``epochs``,
budgets and early stopping count in.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from app.storage.models import Checkpoint, IntermediateValue, Metric, Study, StudyMode, Trial

Points = list[tuple[float, float]]  # (epoch, value), sorted by epoch
Anchors = tuple[list[int], list[float]]  # increasing steps and the epoch known at each


def downsample(points: Sequence[tuple[int, float]], max_points: int) -> list[tuple[int, float]]:
    """At most ``max_points`` points keeping the first, the last, and per bucket min and max.

    The interior is cut into ``(max_points - 2) // 2`` buckets of consecutive steps; each keeps
    its lowest and highest value, so spikes and the global extremes survive (M4-style).
    """
    n = len(points)
    if n <= max_points:
        return list(points)
    if max_points == 1:
        return [points[-1]]
    keep = {0, n - 1}
    buckets = (max_points - 2) // 2
    inner = n - 2
    for b in range(buckets):
        lo, hi = 1 + b * inner // buckets, 1 + (b + 1) * inner // buckets
        if lo < hi:
            segment = range(lo, hi)
            keep.add(min(segment, key=lambda i: points[i][1]))
            keep.add(max(segment, key=lambda i: points[i][1]))
    return [points[i] for i in sorted(keep)]


def objective_by_epoch(
    session: Session, study: Study, trial_ids: Sequence[int] | None, max_points: int | None
) -> dict[int, Points]:
    """Per trial of ``study`` (every one, or those of ``trial_ids``), its objective by epoch.

    A caviar trial's points are the objective at each epoch's end, as early stopping stored it
    (``IntermediateValue``). A panda trial keeps every point of the objective metric, its step
    turned into an epoch by :func:`epoch_at`. A bounded number of queries, none per trial.

    Args:
        trial_ids: the trials to return; trials of other studies are left out.
        max_points: at most this many points a trial (:func:`app.search.curves.downsample`).

    Returns:
        trial id -> [(epoch, value), ...] sorted by epoch; a trial without points has [].
    """
    where = Trial.study_id == study.id
    if trial_ids is not None:
        where = and_(where, Trial.id.in_(trial_ids))
    if study.mode is StudyMode.CAVIAR:
        ends = _epoch_ends(session, where)
        return {
            tid: [(float(e), v) for e, v in _cut(pts, max_points)] for tid, pts in ends.items()
        }
    series, anchors = _metric_points(session, study, where)
    return {
        tid: [(round(epoch_at(*anchors[tid], step), 6), v) for step, v in _cut(pts, max_points)]
        for tid, pts in series.items()
    }


def _cut(points: list[tuple[int, float]], max_points: int | None) -> list[tuple[int, float]]:
    return points if max_points is None else downsample(points, max_points)


def _epoch_ends(
    session: Session, where: ColumnElement[bool]
) -> dict[int, list[tuple[int, float]]]:
    """Per trial, (epoch, objective at its end): one query, trials without any included."""
    q = (
        select(Trial.id, IntermediateValue.resource, IntermediateValue.value)
        .outerjoin(IntermediateValue, IntermediateValue.trial_id == Trial.id)
        .where(where)
        .order_by(Trial.id, IntermediateValue.resource)
    )
    out: dict[int, list[tuple[int, float]]] = {}
    for tid, resource, value in session.execute(q):
        points = out.setdefault(tid, [])
        if resource is not None:
            points.append((resource, value))
    return out


def _metric_points(
    session: Session, study: Study, where: ColumnElement[bool]
) -> tuple[dict[int, list[tuple[int, float]]], dict[int, Anchors]]:
    """Per trial, its objective's (step, value) points and its anchors: three queries."""
    trials = session.execute(
        select(Trial.id, Trial.step, Trial.epoch, Trial.parent_checkpoint_id).where(where)
    ).all()
    points: dict[int, list[tuple[int, float]]] = {t.id: [] for t in trials}
    q = (
        select(Metric.trial_id, Metric.step, Metric.value)
        .join(Trial, Trial.id == Metric.trial_id)
        .where(where, Metric.name == study.objective_metric)
        .order_by(Metric.trial_id, Metric.step)
    )
    for tid, step, value in session.execute(q):
        points[tid].append((step, value))
    # Every checkpoint of the study: a fork starts at its parent's, which may not be asked for.
    ckpts = session.execute(
        select(Checkpoint.id, Checkpoint.trial_id, Checkpoint.step, Checkpoint.epoch)
        .join(Trial, Trial.id == Checkpoint.trial_id)
        .where(Trial.study_id == study.id)
    ).all()
    by_id = {c.id: (c.step, c.epoch) for c in ckpts}
    own: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for c in ckpts:
        own[c.trial_id].append((c.step, c.epoch))
    anchors: dict[int, Anchors] = {}
    for t in trials:
        known = dict([(0, 0.0), *own[t.id]])
        if t.parent_checkpoint_id in by_id:
            step, epoch = by_id[t.parent_checkpoint_id]
            known[step] = epoch
        known[t.step] = t.epoch  # the latest report's
        pairs = sorted(known.items())
        anchors[t.id] = ([s for s, _ in pairs], [e for _, e in pairs])
    return points, anchors


def epoch_at(steps: Sequence[int], epochs: Sequence[float], step: int) -> float:
    """The epoch at ``step``, linear between the two nearest known (step, epoch) pairs.

    A trial knows its epoch exactly at step 0 (or its fork's checkpoint), at each checkpoint
    (taken at pauses, before each adjustment and every few epochs) and at its latest report.
    Between them the batch size does not change (an adjustment checkpoints first), so epochs
    grow linearly with steps but for the shorter last batch of an epoch; past the last pair
    the last segment's slope continues.

    Args:
        steps: increasing steps; with fewer than two, the one epoch known (or 0) is returned.
        epochs: the epoch at each of ``steps``.
    """
    if len(steps) < 2:
        return epochs[0] if epochs else 0.0
    i = min(max(bisect.bisect_left(steps, step), 1), len(steps) - 1)
    s0, s1, e0, e1 = steps[i - 1], steps[i], epochs[i - 1], epochs[i]
    return e0 + (step - s0) * (e1 - e0) / (s1 - s0)
