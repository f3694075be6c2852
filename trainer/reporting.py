"""How a running trainer talks to whoever babysits it.

At every safe point the :class:`~trainer.loop.Trainer` hands its metrics to a
:class:`Reporter` and obeys the :class:`Directive` it returns (optuna's ``trial.report()`` /
``should_prune()`` in one call). The HTTP implementation lives in ``app/worker.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol


class Action(str, Enum):
    CONTINUE = "continue"
    PAUSE = "pause"
    STOP = "stop"
    UPDATE = "update"
    CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class Directive:
    """What to do after a safe point.

    ``hparams`` carries the new values for :attr:`Action.UPDATE`; ``event_id`` lets the server
    match the applied step back to the adjustment that asked for it.
    """

    action: Action = Action.CONTINUE
    hparams: Mapping[str, Any] = field(default_factory=dict)
    event_id: int | None = None


CONTINUE = Directive()


class Reporter(Protocol):
    """Receives metrics and checkpoints from a trainer.

    A reporter may also carry ``urgent``, an object with ``is_set()`` (a
    ``threading.Event``): while it is set, every step is a safe point, so a directive waiting
    on the server reaches training at the next step rather than at the next scheduled report.
    And ``checkpoint_later(step, make, *, before_update=False, pausing=False)``: a checkpoint
    is then handed over as ``make``, which returns its bytes when called from another thread
    (:meth:`~trainer.loop.Trainer.checkpoint_snapshot`), so training goes on meanwhile (an
    edit's, a requested or a periodic one); ``pausing``: the checkpoint a pause stops at.
    """

    def report(self, step: int, epoch: float, metrics: Mapping[str, float]) -> Directive:
        """Metrics at ``step`` (all finite); returns what the trainer must do next."""
        ...

    def checkpoint(self, step: int, data: bytes) -> None:
        """A full checkpoint (``.npz`` bytes) taken after ``step`` steps."""
        ...

    def applied(self, directive: Directive, step: int) -> None:
        """``directive`` (an update) now governs training from ``step`` on."""
        ...


class NullReporter:
    """Continues always and drops checkpoints: training with nobody watching."""

    def report(self, step: int, epoch: float, metrics: Mapping[str, float]) -> Directive:
        return CONTINUE

    def checkpoint(self, step: int, data: bytes) -> None:
        return None

    def applied(self, directive: Directive, step: int) -> None:
        return None


class RecordingReporter:
    """Keeps everything in lists and replays scripted directives by step (tests, CLI)."""

    def __init__(self, script: Mapping[int, Directive] | None = None) -> None:
        self.script = dict(script or {})
        self.reports: list[tuple[int, float, dict[str, float]]] = []
        self.checkpoints: list[tuple[int, bytes]] = []
        self.applied_steps: list[tuple[Directive, int]] = []

    def report(self, step: int, epoch: float, metrics: Mapping[str, float]) -> Directive:
        self.reports.append((step, epoch, dict(metrics)))
        return self.script.pop(step, CONTINUE)

    def checkpoint(self, step: int, data: bytes) -> None:
        self.checkpoints.append((step, data))

    def applied(self, directive: Directive, step: int) -> None:
        self.applied_steps.append((directive, step))
