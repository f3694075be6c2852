"""One ranking of a study's trials that understands early stopping.

Every place that ranks trials uses it: the best configuration, a round's ``from_top``, a
re-test's ``top``, the data importance is fitted on, the export's rank and the study page.

A trial stands where it got to and how good it was there (ASHA's own order)::

    key = (tier, -resource, direction.key(value), number)

- tier 0: completed (trained every epoch): ``value`` is the final objective;
- tier 1: stopped early (pruned, parked at a rung, stopped, failed) with an objective
  recorded at some epoch: ``resource`` is the highest such epoch, ``value`` the one there;
  a trial that reached a higher rung outranks one stopped lower, and within a rung the value
  recorded there decides;
- trials with no value anywhere (queued, crashed before an epoch ended) are left out.

A configuration re-tested with fresh seeds stands by the mean of its completed runs:
:func:`best_configuration`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.tuning.base import Direction, TrialStatus, TrialView


@dataclass(frozen=True, order=True)
class Standing:
    """How far a trial got and its objective there; smaller sorts better (see the module)."""

    tier: int
    resource: int
    value: float
    number: int


def standing(trial: TrialView, direction: Direction) -> Standing | None:
    """The trial's place in the ranking, or None when it has no finite objective yet."""
    final = trial.value
    if trial.state is TrialStatus.COMPLETED and final is not None and math.isfinite(final):
        return Standing(0, 0, direction.key(final), trial.number)
    if trial.state is TrialStatus.RUNNING:
        return None
    reached = [r for r, v in trial.intermediate.items() if math.isfinite(v)]
    if not reached:
        return None
    resource = max(reached)
    value = direction.key(trial.intermediate[resource])
    return Standing(1, -resource, value, trial.number)


def rank(trials: Iterable[TrialView], direction: Direction) -> list[TrialView]:
    """The ended trials with an objective, best first (running and queued ones left out)."""
    placed = [(s, t) for t in trials if (s := standing(t, direction)) is not None]
    return [t for _, t in sorted(placed, key=lambda pair: pair[0])]


@dataclass(frozen=True)
class Configuration:
    """One set of hyperparameters and its completed runs (an original and its re-tests)."""

    trial_number: int  # the original's number: the configuration's name
    hparams: Mapping[str, object]
    values: tuple[float, ...]  # final objective of each completed run, the original first
    numbers: tuple[int, ...]  # the runs' trial numbers, in the same order

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """The sample standard deviation (n - 1); 0 for a single run."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


def configurations(
    originals: Sequence[TrialView], retests: Mapping[int, Sequence[TrialView]]
) -> list[Configuration]:
    """Each original with its completed runs: its own (if it completed) and its re-tests'.

    ``retests``: original trial number -> the re-test trials of that configuration.
    """
    out = []
    for trial in originals:
        runs = [trial, *retests.get(trial.number, ())]
        done = [
            r
            for r in runs
            if r.state is TrialStatus.COMPLETED and r.value is not None and math.isfinite(r.value)
        ]
        out.append(
            Configuration(
                trial_number=trial.number,
                hparams=trial.hparams,
                values=tuple(float(r.value) for r in done),  # type: ignore[arg-type]
                numbers=tuple(r.number for r in done),
            )
        )
    return out


def best_configuration(
    originals: Sequence[TrialView],
    retests: Mapping[int, Sequence[TrialView]],
    direction: Direction,
) -> Configuration | None:
    """The configuration to trust: after a re-test, the best mean over completed runs among
    the re-tested configurations (one seed is noise); before any, the top-ranked trial's.

    None when no trial has an objective yet.
    """
    retested = [
        c for c in configurations(originals, retests) if c.trial_number in retests and c.values
    ]
    if retested:
        return min(retested, key=lambda c: (direction.key(c.mean), c.trial_number))
    top = rank(originals, direction)
    if not top:
        return None
    first = top[0]
    value = first.value if first.value is not None else _last_recorded(first)
    return Configuration(first.number, first.hparams, (value,), (first.number,))


def _last_recorded(trial: TrialView) -> float:
    return trial.intermediate[max(trial.intermediate)]
