"""Hyperparameter importance from a random forest fitted to the study's trials, at one epoch
every trial it uses reached, with a bootstrap interval per hyperparameter.

With early stopping most trials stop early: their final values were taken after different
numbers of epochs and do not compare. So the objective is read at one *resource* (epoch):
the largest one at which enough trials recorded it (:func:`comparable_resource`). And a forest
fitted on a few dozen trials ranks noise with confidence: refitting it on trials drawn with
replacement shows how much each score moves (:attr:`ImportanceResult.intervals`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from app.tuning.base import TrialStatus, TrialView
from app.tuning.space import SearchSpace

# Below max(FEW_TRIALS, 2 per ranged hyperparameter) trials a ranking is mostly noise.
FEW_TRIALS = 10
RESAMPLES = 30  # bootstrap resamples of the trials
RESAMPLE_TREES = 8  # trees of each resample's forest: 240 trees in all, the intervals' cost
INTERVAL = (10.0, 90.0)  # the percentiles of the resampled scores an interval spans

METHOD = (
    "random-forest impurity importance (scikit-learn RandomForestRegressor), "
    "hyperparameters on their sampling scale, choices as ordinal codes"
)


@dataclass(frozen=True)
class ImportanceResult:
    """Importance per ranged hyperparameter.

    Attributes:
        method: how the scores were computed, in words (show it next to the chart).
        scores: name -> share of the forest's impurity decrease; sums to 1 (all 0 when the
            objective never varied).
        n_trials: the trials the forest was fitted on.
        resource: the epoch whose objective was used; None when no trial recorded one by
            epoch and the completed trials' final values were used instead.
        intervals: name -> (low, high), the 10th and 90th percentiles of the score over
            forests refitted on bootstrap resamples of the trials.
        needed: the trials a ranking needs before it is worth trusting
            (:func:`needed_trials`); ``n_trials < needed`` says it is not.
    """

    method: str
    scores: dict[str, float]
    n_trials: int
    resource: int | None = None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    needed: int = FEW_TRIALS

    @property
    def enough(self) -> bool:
        return self.n_trials >= self.needed


def needed_trials(space: SearchSpace) -> int:
    """Trials a ranking of ``space``'s ranged hyperparameters needs: max(10, 2 per one)."""
    return max(FEW_TRIALS, 2 * len(space.ranged))


def _row(space: SearchSpace, names: Sequence[str], trial: TrialView) -> list[float] | None:
    """The trial's ranged values on their unit scale; None when the space cannot place them."""
    try:
        row = [space.ranged[n].to_unit(trial.hparams[n]) for n in names]
    except (KeyError, ValueError):
        return None
    return row if all(math.isfinite(x) for x in row) else None


def comparable_resource(
    space: SearchSpace, trials: Sequence[TrialView], need: int
) -> tuple[int, int] | None:
    """``(epoch, trials)``: the largest epoch at which at least ``need`` of ``trials`` (with
    values inside ``space``) recorded a finite objective; when none has that many, the epoch
    with the most (the largest of equals). None when no trial recorded one."""
    names = list(space.ranged)
    counts: dict[int, int] = {}
    for t in trials:
        if _row(space, names, t) is None:
            continue
        for epoch, value in t.intermediate.items():
            if math.isfinite(value):
                counts[epoch] = counts.get(epoch, 0) + 1
    if not counts:
        return None
    enough = [e for e, n in counts.items() if n >= need]
    epoch = max(enough) if enough else max(counts, key=lambda e: (counts[e], e))
    return epoch, counts[epoch]


def _data(
    space: SearchSpace, trials: Sequence[TrialView], resource: int | None
) -> tuple[list[list[float]], list[float]]:
    """Features and objective: each trial's value at ``resource`` (None: completed trials'
    final values)."""
    names = list(space.ranged)
    rows: list[list[float]] = []
    targets: list[float] = []
    for t in trials:
        if resource is None:
            value = t.value if t.state is TrialStatus.COMPLETED else None
        else:
            value = t.intermediate.get(resource)
        if value is None or not math.isfinite(value):
            continue
        row = _row(space, names, t)
        if row is not None:
            rows.append(row)
            targets.append(float(value))
    return rows, targets


def _scores(x: np.ndarray, y: np.ndarray, seed: int, n_estimators: int) -> np.ndarray:
    # Imported here: scikit-learn takes about a second to import and only this needs it.
    from sklearn.ensemble import RandomForestRegressor  # type: ignore[import-untyped]

    forest = RandomForestRegressor(n_estimators=n_estimators, random_state=seed)
    forest.fit(x, y)
    raw = np.asarray(forest.feature_importances_, dtype=float)
    total = float(raw.sum())
    return raw / total if total > 0 else np.zeros_like(raw)


def importance(
    space: SearchSpace,
    trials: Sequence[TrialView],
    *,
    seed: int = 0,
    n_estimators: int = 64,
    resamples: int = RESAMPLES,
) -> ImportanceResult:
    """Fit ``objective ~ forest(to_unit(hparams))`` and report normalised impurity importances.

    Features are the ranged hyperparameters mapped by ``to_unit`` (log10 for a log-uniform
    learning rate, and so on), a choice as its ordinal code ``(index + 0.5) / n``; one column
    per hyperparameter keeps a choice's importance in one number, and a forest can still
    split between any two codes. Trials whose values the space cannot place (a missing name,
    a choice the space lacks) are left out. Importance is
    ``mean over trees of the weighted impurity decrease``, divided by its sum.

    The objective is each trial's value at :func:`comparable_resource` (every trial that got
    that far counts, stopped early or not); without values by epoch, the completed trials'
    final values. The intervals come from ``resamples`` smaller forests (``RESAMPLE_TREES``
    trees: a little wider than a full forest's would be), each fitted on the trials drawn
    with replacement by ``np.random.default_rng(seed)``.

    Args:
        space: usually the study's first (widest) space; narrower rounds' trials lie inside.
        trials: the study's trials, re-tests left out (each repeats a configuration).
        seed: seeds the forest's ``random_state`` and the resampling.
        n_estimators: trees in the forest.
        resamples: bootstrap resamples for the intervals (0: none).

    Raises:
        ValueError: fewer than two usable trials.
    """
    need = needed_trials(space)
    at = comparable_resource(space, trials, need)
    resource = None if at is None else at[0]
    rows, targets = _data(space, trials, resource)
    if len(rows) < 2:
        raise ValueError(
            f"trials: got {len(rows)} usable trial(s), allowed: at least 2 with a value and "
            "hyperparameters inside the space"
        )
    names = list(space.ranged)
    method = METHOD + ("" if resource is None else f", objective at epoch {resource}")
    if not names:
        return ImportanceResult(method, {}, len(rows), resource, {}, need)
    x, y = np.asarray(rows), np.asarray(targets)
    scores = _scores(x, y, seed, n_estimators)
    intervals: dict[str, tuple[float, float]] = {}
    if resamples > 0:
        rng = np.random.default_rng(seed)
        drawn = np.empty((resamples, len(names)))
        for b in range(resamples):
            pick = rng.integers(0, len(rows), size=len(rows))
            state = int(rng.integers(2**31 - 1))
            drawn[b] = _scores(x[pick], y[pick], state, RESAMPLE_TREES)
        low, high = np.percentile(drawn, INTERVAL, axis=0)
        intervals = {n: (float(lo), float(hi)) for n, lo, hi in zip(names, low, high, strict=True)}
        method += f"; intervals: {INTERVAL[0]:g}th-{INTERVAL[1]:g}th percentile over {resamples}"
        method += " bootstrap resamples of the trials"
    return ImportanceResult(
        method,
        {n: float(s) for n, s in zip(names, scores, strict=True)},
        len(rows),
        resource,
        intervals,
        need,
    )
