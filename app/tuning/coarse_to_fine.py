"""Coarse to fine: a narrower search space for the next round, around the best trials."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from app.tuning.base import Direction, TrialView
from app.tuning.discrete import IntegerDistribution, LogInt
from app.tuning.distributions import ContinuousDistribution, Scalar, is_number
from app.tuning.ranking import rank
from app.tuning.space import Choice, Distribution, SearchSpace

# A child range is at least this share of its parent's on the sampling scale: a round narrowed
# around two close trials still samples a region, as the notes' coarse-to-fine box does.
MIN_WIDTH_SHARE = 0.25
# A narrowed round draws every other trial near one of the top trials it was narrowed around,
# this many of the child range's widths apart on the sampling scale (one standard deviation).
NEAR_SPREAD = 0.25


def narrow_from_top(
    space: SearchSpace,
    trials: Sequence[TrialView],
    *,
    k: int,
    margin: float,
    direction: Direction,
) -> SearchSpace:
    """The child space around the ``k`` best trials: a smaller box, never a point.

    For each ranged hyperparameter, on its sampling scale ``s`` (log10 for ``log_uniform``,
    ``-log10(1 - v)`` for ``one_minus_log_uniform``, the exponent for ``log_int``), with the
    parent's range mapped to [0, 1] (``L`` levels wide for integers)::

        [a, b] = [min s(top-k), max s(top-k)]          the top trials' spread
        w      = max(b - a, MIN_WIDTH_SHARE)            at least a share of the parent
        child  = [c - (1/2 + margin) w, c + (1/2 + margin) w],  c = (a + b) / 2

    shifted inside the parent when it overhangs one end (clipped only when wider than it).
    Integer ranges span at least ``max(2, MIN_WIDTH_SHARE * L)`` levels and are rounded
    outward, so a child keeps three values or more where its parent had them. A choice keeps
    the values the top-k used (in the parent's order). Fixed values stay.

    Args:
        space: the parent round's space.
        trials: the trials to rank (any state), by :func:`app.tuning.ranking.rank`: completed
            ones first, then those stopped early, by how far they got and their value there.
        k: how many of the best to span, 1 <= k <= number of ranked trials.
        margin: widening, as a fraction of the hull width, in [0, 1].
        direction: which values are better.

    Raises:
        ValueError: ``k`` or ``margin`` out of range.
    """
    if not (is_number(margin) and 0.0 <= margin <= 1.0):
        raise ValueError(f"margin: got {margin!r}, allowed: 0 <= margin <= 1")
    top = rank(trials, Direction(direction))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(top):
        raise ValueError(
            f"k: got {k!r}, allowed: 1 <= k <= {len(top)} (the trials with an objective)"
        )
    ranged: dict[str, Distribution] = {}
    fixed: dict[str, Scalar] = dict(space.fixed)
    for name, dist in space.ranged.items():
        values = [t.hparams[name] for t in top[:k] if dist.contains(t.hparams.get(name))]
        child = narrow(dist, values, margin) if values else dist
        if isinstance(child, Distribution):
            ranged[name] = child
        else:
            fixed[name] = child
    return SearchSpace(ranged=ranged, fixed=fixed)


def narrow(dist: Distribution, values: Sequence[object], margin: float) -> Distribution | Scalar:
    """One hyperparameter's narrowed range (see :func:`narrow_from_top`); ``values`` non-empty.

    Values outside ``dist`` are the caller's to drop; here they would only be clipped.
    """
    if isinstance(dist, Choice):
        return Choice(
            tuple(c for c in dist.values if any(Choice((c,)).contains(v) for v in values))
        )
    if isinstance(dist, IntegerDistribution):
        return _narrow_levels(dist, values, margin)
    if isinstance(dist, ContinuousDistribution):
        return _narrow_continuous(dist, values, margin)
    raise ValueError(f"dist: got {dist!r}, allowed: a known distribution")


def _box(
    points: Sequence[float], parent_width: float, floor: float, margin: float
) -> tuple[float, float]:
    """The child's ends on the parent's scale ``[0, parent_width]`` (:func:`narrow_from_top`)."""
    a, b = min(points), max(points)
    width = max(b - a, floor)
    half = (0.5 + margin) * width
    low, high = (a + b) / 2 - half, (a + b) / 2 + half
    if high - low >= parent_width:
        return 0.0, parent_width
    shift = max(0.0, -low) - max(0.0, high - parent_width)
    return low + shift, high + shift


def _narrow_continuous(
    dist: ContinuousDistribution, values: Sequence[object], margin: float
) -> Distribution | Scalar:
    units = [dist.to_unit(v) for v in values]
    a, b = _box(units, 1.0, MIN_WIDTH_SHARE, margin)
    nums = [float(v) for v in values]  # type: ignore[arg-type]
    # Mapping a value to the unit scale and back can move it by one ulp, which must not push
    # a top-k value out of its own child range: an end is never inside the raw values.
    low = dist.low if a <= 0.0 else min(max(dist.low, dist.from_unit(a)), min(nums))
    high = dist.high if b >= 1.0 else max(min(dist.high, dist.from_unit(b)), max(nums))
    if low >= high:
        return low
    return type(dist)(low, high)


def _narrow_levels(
    dist: IntegerDistribution, values: Sequence[object], margin: float
) -> Distribution | Scalar:
    first, last = dist.levels()
    span = last - first
    levels = [dist.level_of(int(v)) - first for v in values]  # type: ignore[call-overload]
    a, b = _box(levels, span, min(span, max(2.0, MIN_WIDTH_SHARE * span)), margin)
    lo, hi = first + max(0, math.floor(a + 1e-9)), first + min(span, math.ceil(b - 1e-9))
    if lo >= hi:
        return dist.value_at(lo)
    return type(dist)(dist.value_at(lo), dist.value_at(hi))


def near_centre(index: int, k: int) -> int | None:
    """Which of a narrowed round's ``k`` top trials its trial ``index`` is drawn near, or None
    for a draw anywhere in the child box: every other trial (indices 0, 2, 4, ...) is drawn near
    one, the best first, then the next (index 0 near the 1st, 2 near the 2nd, 4 near the 3rd,
    6 near the 1st again)."""
    if k < 1 or index % 2:
        return None
    return (index // 2) % k


def sample_near(
    space: SearchSpace,
    centre: Mapping[str, object],
    rng: np.random.Generator,
    spread: float = NEAR_SPREAD,
) -> dict[str, object]:
    """A draw close to ``centre`` (a top trial's hyperparameters) inside ``space``.

    For each ranged hyperparameter, on ``space``'s own unit scale (its range mapped to [0, 1]
    on the sampling scale, as :meth:`Distribution.to_unit` maps it)::

        u = clip(to_unit(centre) + spread * z, 0, 1),   z ~ N(0, 1);   value = from_unit(u)

    so a learning rate is drawn log-normally around the centre's. A choice, or a name the
    centre lacks, is drawn as :meth:`SearchSpace.sample` draws it. Fixed values stay.
    Exploitation as TPE's and PBT's: around the configurations that did best, where a uniform
    draw in the box spends most trials on the box's corners.
    """
    draws: dict[str, object] = {}
    for name, dist in space.ranged.items():
        if isinstance(dist, Choice) or name not in centre:
            draws[name] = dist.sample(rng)
            continue
        u = dist.to_unit(centre[name]) + spread * float(rng.standard_normal())
        draws[name] = dist.from_unit(min(1.0, max(0.0, u)))
    return space.complete(draws)


def check_within(parent: SearchSpace, child: SearchSpace) -> list[str]:
    """Names of the child's hyperparameters that leave the parent's range.

    Flagged: a name the parent lacks or the child drops; a fixed value the parent would not
    produce; a range whose lowest or highest value lies outside the parent's, or whose
    values are of another sort (non-integers in an integer range, non-powers of two in a
    ``log_int`` one, numbers in a choice).
    """
    names = [*child.names, *(n for n in parent.names if n not in child.names)]
    return [n for n in names if not _within(parent, child, n)]


def _within(parent: SearchSpace, child: SearchSpace, name: str) -> bool:
    if name not in parent.names or name not in child.names:
        return False
    p = parent.ranged.get(name)
    if p is None:
        p = Choice((parent.fixed[name],))
    c = child.ranged.get(name)
    if c is None:
        return p.contains(child.fixed[name])
    if isinstance(c, Choice):
        return all(p.contains(v) for v in c.values)
    if isinstance(p, Choice) or (
        isinstance(p, IntegerDistribution) and not isinstance(c, IntegerDistribution)
    ):
        return False
    if isinstance(p, LogInt) and not isinstance(c, LogInt):
        return False
    return p.contains(c.from_unit(0.0)) and p.contains(c.from_unit(1.0))
