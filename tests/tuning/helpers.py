"""Small builders for the algorithm tests (no web stack, no database)."""

from __future__ import annotations

from collections.abc import Mapping

from app.tuning import TrialStatus, TrialView


def done(number: int, value: float, /, **hparams: object) -> TrialView:
    """A completed trial of round 0 with a final value."""
    return TrialView(number, 0, TrialStatus.COMPLETED, hparams, value)


def running(
    number: int, intermediate: Mapping[int, float] | None = None, /, **hparams: object
) -> TrialView:
    """A running trial with its reported curve so far."""
    return TrialView(number, 0, TrialStatus.RUNNING, hparams, None, dict(intermediate or {}))


def with_curve(number: int, curve: Mapping[int, float]) -> TrialView:
    """A completed trial whose curve is ``curve`` and final value its last point."""
    last = curve[max(curve)]
    return TrialView(number, 0, TrialStatus.COMPLETED, {}, last, dict(curve))
