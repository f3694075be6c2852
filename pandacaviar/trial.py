"""One trial in your process: its values, its reports, its checkpoints and the controls.

A :class:`Trial` is one attempt at one of the study's trials, claimed by your process. You
read ``trial.hparams``, train, call ``trial.report(...)`` at every step or epoch end, and stop
when ``trial.should_stop`` says so. The dashboard's controls reach you at your reports:

* an adjustment changes ``trial.hparams`` (and calls ``on_update(changes)``); the step it
  governs from is recorded on the server, as the built-in trainer's are;
* a pause, a stop or early stopping (ASHA, median) sets ``should_stop``; a pause also takes a
  checkpoint with your ``save`` function, which the trial's next process gets back from
  ``trial.restore()`` byte for byte;
* SIGTERM (with ``handle_signals``) hands the trial back the same way, to be resumed later.

Reports are buffered and sent a few times a second (at once at the epoch ends where the
study's scheduler decides); a background thread keeps the trial's lease while your loop is
busy between reports.
"""

from __future__ import annotations

import math
import threading
import traceback
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from app.worker.client import (
    FinishStatus,
    HttpReporter,
    ProtocolError,
    StaleAttempt,
    WorkerClient,
)
from trainer.reporting import Action, Directive

Save = Callable[[], bytes]
Load = Callable[[bytes], None]
OnUpdate = Callable[[dict[str, Any]], None]


class Trial:
    """A claimed trial of an external study (see the module docstring).

    Attributes:
        id: the trial's id (its page is ``/trials/{id}``).
        number: its number in the study ("Trial 3").
        study_id: the study.
        attempt: this claim's attempt (every resume or requeue is a new one).
        hparams: the values in force now; adjustments change it at your reports.
        metric, direction: the study's objective (the metric to report, and its sense).
        epochs: the study's epochs a trial (the resource early stopping counts in).
        step, epoch: the last step and epoch reported (a resumed trial starts at its
            checkpoint's).
    """

    def __init__(
        self,
        client: WorkerClient,
        claim: Mapping[str, Any],
        *,
        save: Save | None = None,
        load: Load | None = None,
        on_update: OnUpdate | None = None,
    ) -> None:
        config = dict(claim["config"])
        self._client = client
        self.id = int(claim["trial_id"])
        self.attempt = int(claim["attempt"])
        self.number = int(config.get("number", 0))
        self.study_id = int(config.get("study_id", 0))
        self.hparams: dict[str, Any] = dict(config.get("hparams") or {})
        objective = config.get("objective") or {}
        self.metric = str(objective.get("metric", "dev_accuracy"))
        self.direction = str(objective.get("direction", "maximize"))
        self.epochs = int(config.get("epochs") or self.hparams.get("epochs") or 0)
        self.save, self.load, self.on_update = save, load, on_update
        self._max_checkpoint = claim.get("max_checkpoint_bytes")
        self._lease = float(claim.get("lease_seconds") or 30.0)
        ref = claim.get("checkpoint")
        self.step = int(ref["step"]) if ref else 0
        self.epoch = float(ref.get("epoch", 0.0)) if ref else 0.0
        self._restored = (
            client.download_checkpoint(int(ref["id"]), str(ref["sha256"])) if ref else None
        )
        self._reporter = HttpReporter(
            client,
            self.id,
            self.attempt,
            min_interval=float(claim.get("report_seconds") or 0.0),
            decide_epochs=[int(e) for e in claim.get("decide_epochs") or ()],
            decide_from=claim.get("decide_from"),
        )
        self._reporter.step, self._reporter.epoch = self.step, self.epoch
        self._reporter.watch_directives()  # a pause or an edit goes out with the next report
        self._stop: Action | None = None  # STOP or PAUSE, once obeyed
        self._heard: Directive | None = None  # a directive the sender got, not obeyed yet
        # Adjustments obeyed: the sender may hear one again before its "applied" is stored.
        self._applied: set[int] = set()
        self.stale = False  # the server gave this attempt to another process
        self.ended: FinishStatus | None = None
        # Set by Client.run: the finish also claims this process's next trial of the study
        # (one request a trial, as the server's workers do); the claim lands in next_claim.
        self.claim_next: tuple[str, int] | None = None
        self.next_claim: dict[str, Any] | None = None
        self._lock = threading.Lock()  # one request of this trial's at a time
        self._done = threading.Event()
        self._sender = threading.Thread(target=self._send, name="reports", daemon=True)
        self._sender.start()
        if self._restored is not None and load is not None:
            load(self._restored)

    def __repr__(self) -> str:
        return f"Trial(id={self.id}, number={self.number}, hparams={self.hparams!r})"

    # -- what your loop reads ----------------------------------------------------------------

    @property
    def should_stop(self) -> bool:
        """True once the trial was paused, stopped, pruned or handed back: end your loop."""
        heard = self._heard is not None and self._heard.action in (Action.PAUSE, Action.STOP)
        return self._stop is not None or heard or self.stale or self.ended is not None

    @property
    def paused(self) -> bool:
        """True when the stop is a pause (or a hand-back): the trial resumes later."""
        heard = self._heard.action if self._heard is not None else None
        return Action.PAUSE in (self._stop, heard)

    def restore(self) -> bytes | None:
        """The checkpoint this attempt resumes from, byte for byte; None on a fresh start."""
        return self._restored

    # -- what your loop calls ----------------------------------------------------------------

    def report(
        self, step: int | None = None, *, epoch: float | None = None, **metrics: float
    ) -> dict[str, Any]:
        """Record ``metrics`` at ``step`` (default: the last step + 1) and ``epoch``.

        Report the study's objective (``trial.metric``) at each epoch's end with
        ``epoch=<whole epochs done>``: early stopping compares trials there. The call only
        buffers: a background thread sends, and a control it hears (an adjustment, a pause,
        early stopping) is obeyed at your next report.

        Returns:
            The hyperparameters an adjustment changed at this report (empty: none).

        Raises:
            ValueError: a metric that is not a finite number, a step or epoch going backwards;
                nothing of this report is kept.
        """
        step = self.step + 1 if step is None else step
        epoch = self.epoch if epoch is None else epoch
        values = self._checked(step, epoch, metrics)
        if self._stop is not None or self.stale or self.ended is not None:
            return {}
        reporter = self._reporter
        due = reporter.add(step, epoch, values) or self._client.leaving
        self.step, self.epoch = step, epoch
        if due and reporter.decides(epoch):
            # The study's scheduler judges this epoch: its answer is awaited, so a pruned
            # trial stops here, at the epoch it was judged at.
            self._flush_now()
        elif due:
            reporter.urgent.set()  # the sender sends it
        heard, self._heard = self._heard, None
        return {} if heard is None else self._obey(heard)

    def _flush_now(self) -> None:
        with self._lock:
            try:
                answer = self._reporter.answer(self._reporter.flush())
            except StaleAttempt:
                self.stale = True
                return
        if answer.action is not Action.CONTINUE:
            self._heard = answer

    def _checked(self, step: int, epoch: float, metrics: Mapping[str, Any]) -> dict[str, float]:
        if isinstance(step, bool) or not isinstance(step, int) or step < self.step:
            raise ValueError(
                f"report: step {step!r} is behind step {self.step}, the last one reported "
                "(steps are whole numbers that never go backwards; a rewind is a fork)"
            )
        if not isinstance(epoch, int | float) or not math.isfinite(epoch) or epoch < self.epoch:
            raise ValueError(
                f"report: epoch {epoch!r} is not a finite number at least {self.epoch:g}, "
                "the last one reported"
            )
        out = {}
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                try:  # NumPy and PyTorch scalars
                    value = float(value)
                except (TypeError, ValueError):
                    raise ValueError(
                        f"report: metric {name!r} is {value!r}, allowed: a number"
                    ) from None
            if not math.isfinite(value):
                what = "the objective" if name == self.metric else "a metric"
                raise ValueError(
                    f"report: {name} is {value}; {what} must be a finite number (a run that "
                    "diverged ends with trial.fail(...))"
                )
            out[name] = float(value)
        return out

    def _obey(self, directive: Directive) -> dict[str, Any]:
        action = directive.action
        if action is Action.UPDATE:
            if directive.event_id in self._applied:
                return {}
            self._applied.add(directive.event_id or 0)
            if self.save is not None:  # taken before the change: a rewind lands on old values
                self.checkpoint()
            changes = dict(directive.hparams)
            self.hparams.update(changes)
            with self._lock:
                self._reporter.applied(directive, self.step + 1)
            if self.on_update is not None:
                self.on_update(changes)
            return changes
        if action is Action.CHECKPOINT and self.save is not None:
            self.checkpoint()
        elif action in (Action.PAUSE, Action.STOP):
            self._stop = action
            if action is Action.PAUSE and self.save is not None:
                self.checkpoint()
        return {}

    def checkpoint(self, data: bytes | None = None) -> None:
        """Store ``data`` (default: ``save()``) as the checkpoint at the last reported step.

        A resume or a fork from this step gets exactly these bytes from ``restore()``.

        Raises:
            ValueError: more bytes than the server stores (its ``max_checkpoint_bytes``).
        """
        if data is None:
            if self.save is None:
                raise ValueError("checkpoint: no data given and no save function")
            data = self.save()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(f"checkpoint: got {type(data).__name__}, allowed: bytes")
        data = bytes(data)
        if self._max_checkpoint is not None and len(data) > int(self._max_checkpoint):
            raise ValueError(
                f"checkpoint: {len(data):,} bytes, allowed: at most {int(self._max_checkpoint):,}"
                " (the server's max_checkpoint_bytes)"
            )
        with self._lock:
            try:
                self._reporter.checkpoint(
                    self.step, data, progress=(self.epoch, dict(self.hparams))
                )
                self._reporter.drain()
            except StaleAttempt:
                self.stale = True

    def fail(self, error: str) -> None:
        """End the trial as failed with ``error`` (a diverged run, a bad configuration)."""
        self._finish(FinishStatus.FAILED, error=error)

    def finish(self, value: float | None = None) -> None:
        """End the attempt: completed, or as the controls said (paused, stopped, handed back).

        ``value``: the objective's final value, stored at the last step.
        """
        final = {} if value is None else {self.metric: value}
        metrics = self._checked(self.step, self.epoch, final)
        heard, self._heard = self._heard, None
        if self._stop is None and heard is not None:
            self._obey(heard)  # a pause checkpoints first
        if self._stop is Action.PAUSE:
            status = FinishStatus.REQUEUE if self._reporter.handing_back else FinishStatus.PAUSED
        elif self._stop is Action.STOP:
            status = FinishStatus.STOPPED
        else:
            status = FinishStatus.COMPLETED
        self._finish(status, metrics)

    def _finish(
        self, status: FinishStatus, metrics: Mapping[str, float] | None = None, error: str = ""
    ) -> None:
        if self.ended is not None:
            return
        self._done.set()
        self._reporter.urgent.set()  # the sender wakes, sees done, and leaves
        self._sender.join()
        with self._lock:
            try:
                if not self.stale:
                    self._reporter.drain()
                    name, study = self.claim_next or (None, None)
                    if status is FinishStatus.REQUEUE or self._client.leaving:
                        name = study = None  # this process is leaving: claim nothing more
                    self.next_claim = self._reporter.finish(
                        status, self.step, self.epoch, metrics, error or None,
                        claim_for=name, claim_study=study,
                    )  # fmt: skip
                self.ended = status
            except StaleAttempt:
                self.stale = True
            finally:
                self._reporter.close()

    # -- the sender -------------------------------------------------------------------------

    def _send(self) -> None:
        """Sends what your reports buffered when a send is due (your report, or the directive
        watch, sets ``urgent``), and an empty report every third of the lease to keep the trial
        while your loop is busy. A directive heard is kept for your next report."""
        reporter = self._reporter
        while True:
            waiting = reporter.points or reporter.epoch_ends or reporter.pending_applied
            reporter.urgent.wait(reporter.min_interval if waiting else max(0.1, self._lease / 3))
            if self._done.is_set():
                return
            with self._lock:
                try:
                    answer = reporter.answer(reporter.flush())
                except StaleAttempt:
                    self.stale = True
                    return
                except (InterruptedError, ProtocolError):
                    return
            if answer.action is not Action.CONTINUE:
                self._heard = answer

    # -- with trial: ... ---------------------------------------------------------------------

    def __enter__(self) -> Trial:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.finish()
        elif isinstance(exc, KeyboardInterrupt):
            self._heard = Directive(action=Action.PAUSE)
            self._reporter.handing_back = True
            self.finish()  # handed back: the trial goes to the next process as it was
        else:
            self.fail(traceback.format_exception_only(exc)[-1].strip())
