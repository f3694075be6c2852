"""Hyperparameter importance from a random forest fitted to the study's trials."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.tuning.base import TrialView, completed_trials
from app.tuning.space import SearchSpace

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
    """

    method: str
    scores: dict[str, float]
    n_trials: int


def importance(
    space: SearchSpace,
    trials: Sequence[TrialView],
    *,
    seed: int = 0,
    n_estimators: int = 64,
) -> ImportanceResult:
    """Fit ``objective ~ forest(to_unit(hparams))`` and report normalised impurity importances.

    Features are the ranged hyperparameters mapped by ``to_unit`` (log10 for a log-uniform
    learning rate, and so on), a choice as its ordinal code ``(index + 0.5) / n``; one column
    per hyperparameter keeps a choice's importance in one number, and a forest can still
    split between any two codes. Trials whose values the space cannot place (a missing name,
    a choice the space lacks) are left out. Importance is
    ``mean over trees of the weighted impurity decrease``, divided by its sum.

    Args:
        space: usually the study's first (widest) space; narrower rounds' trials lie inside.
        trials: the study's trials; completed ones with a finite value are used.
        seed: the forest's ``random_state``.
        n_estimators: trees in the forest.

    Raises:
        ValueError: fewer than two usable trials.
    """
    # Imported here: scikit-learn takes about a second to import and only this needs it.
    from sklearn.ensemble import RandomForestRegressor  # type: ignore[import-untyped]

    names = list(space.ranged)
    rows: list[list[float]] = []
    targets: list[float] = []
    for t in completed_trials(trials):
        try:
            row = [space.ranged[n].to_unit(t.hparams[n]) for n in names]
        except (KeyError, ValueError):
            continue
        if all(math.isfinite(x) for x in row):
            rows.append(row)
            targets.append(float(t.value))  # type: ignore[arg-type]
    if len(rows) < 2:
        raise ValueError(
            f"trials: got {len(rows)} usable completed trial(s), allowed: at least 2 with a "
            "value and hyperparameters inside the space"
        )
    if not names:
        return ImportanceResult(METHOD, {}, len(rows))
    forest = RandomForestRegressor(n_estimators=n_estimators, random_state=seed)
    forest.fit(np.asarray(rows), np.asarray(targets))
    raw = np.asarray(forest.feature_importances_, dtype=float)
    total = float(raw.sum())
    scores = raw / total if total > 0 else np.zeros_like(raw)
    return ImportanceResult(
        METHOD, {n: float(s) for n, s in zip(names, scores, strict=True)}, len(rows)
    )
