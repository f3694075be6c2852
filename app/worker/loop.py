"""The worker process: claim a trial, train it, report over HTTP, finish; then the next one.

Workers speak only the HTTP protocol of ``docs/contracts.md`` and never open the database, so
the same code runs as a local process started by the dispatcher or on a remote machine
(``pandacaviar worker --server URL``). This module imports ``trainer``, ``httpx2`` and the
standard library only.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from app.worker.client import (
    IDLE_CAP_SECONDS,
    LONG_POLL_SECONDS,
    Backoff,
    DatasetCache,
    FinishStatus,
    HttpReporter,
    ProtocolError,
    StaleAttempt,
    WorkerClient,
    default_cache_dir,
    finite_metrics,
)
from trainer import ADJUSTABLE, DivergedError, TrainConfig, Trainer
from trainer.data import Dataset, load_task

log = logging.getLogger(__name__)
# Fault injection for the end-to-end tests of docs/reliability.md, read only here: a worker
# that claims one of these trial ids (comma-separated) exits at once, as a crash would. No
# honest input makes a worker die reliably, and "a trial that always kills its worker" must
# be proven with real processes. Unset in production, it changes nothing.
FAULT_EXIT_ENV = "PANDACAVIAR_FAULT_EXIT_ON_TRIAL"
# The same, right after the server acknowledged the first checkpoint of a listed trial's first
# attempt: the window in which a checkpoint is stored and later points are not yet sent.
FAULT_EXIT_AFTER_CHECKPOINT_ENV = "PANDACAVIAR_FAULT_EXIT_AFTER_CHECKPOINT"
FAULT_EXIT_CODE = 70
PARENT_POLL_SECONDS = 0.5
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class Assignment:
    """A claim's answer (see the claim row of ``docs/contracts.md``)."""

    trial_id: int
    attempt: int
    config: dict[str, Any]
    checkpoint: dict[str, Any] | None
    lease_seconds: float
    report_seconds: float | None
    # Epoch ends where the server's scheduler may stop or pause the trial (sent at once).
    decide_epochs: tuple[int, ...] = ()
    decide_from: int | None = None
    report_first: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Assignment:
        return cls(
            trial_id=int(data["trial_id"]),
            attempt=int(data["attempt"]),
            config=dict(data["config"]),
            checkpoint=data.get("checkpoint"),
            lease_seconds=float(data.get("lease_seconds") or 30.0),
            report_seconds=data.get("report_seconds"),
            decide_epochs=tuple(int(e) for e in data.get("decide_epochs") or ()),
            decide_from=None if data.get("decide_from") is None else int(data["decide_from"]),
            report_first=bool(data.get("report_first")),
        )

    def start(self) -> tuple[int, float]:
        """The ``(step, epoch)`` the trial restarts from: its checkpoint's, else ``(0, 0.0)``.

        What the worker reports before its trainer is restored (lease renewals, a hand-back):
        the server shows the trial there, and a made-up epoch 0 would show until the next
        real report.
        """
        if not self.checkpoint:
            return 0, 0.0
        # A server older than the checkpoint's epoch sends none: 0 until the first report.
        return int(self.checkpoint["step"]), float(self.checkpoint.get("epoch", 0.0))


@dataclass(frozen=True)
class _Outcome:
    """How an attempt ended, as the finish call reports it."""

    status: FinishStatus
    step: int
    epoch: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


class _LastData:
    """The data set of this worker's last trial, reused when the next one trains on the same
    task, options, split and dtype: a study's trials (and a resumed or forked one) share it,
    and building it (reading a file, standardising) costs more than a short trial's start."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.data: Dataset | None = None

    def get(self, config: TrainConfig) -> Dataset:
        key = json.dumps(
            [config.task, dict(config.task_options), config.split_seed, config.dtype.value],
            sort_keys=True,
        )
        if key != self.key or self.data is None:
            self.data = None  # the old one is freed before the new one is built
            self.data = load_task(
                config.task, config.task_options, split_seed=config.split_seed,
                dtype=config.dtype.value,
            )  # fmt: skip
            self.key = key
        return self.data


_LAST_DATA = _LastData()


def _build(client: WorkerClient, a: Assignment, datasets: DatasetCache | None) -> Trainer:
    """The trainer of a claim, restored from its checkpoint when it has one."""
    config = dict(a.config)
    if a.report_seconds is not None:
        config["report_seconds"] = a.report_seconds
    options = dict(config.get("task_options") or {})
    if options.get("path") and datasets is not None:
        # An uploaded data set: the path is the server's; train on a verified local copy.
        options["path"] = str(datasets.local_path(str(options["path"])))
        config["task_options"] = options
    train_config = TrainConfig.from_dict(config)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="download") as pool:
        # The checkpoint downloads while the trainer is built: a resume waits for the longer
        # of the two, not for both.
        ckpt = a.checkpoint
        fetched = (
            pool.submit(client.download_checkpoint, int(ckpt["id"]), str(ckpt["sha256"]))
            if ckpt
            else None
        )
        trainer = Trainer(train_config, data=_LAST_DATA.get(train_config))
        if fetched is not None:
            trainer.load_checkpoint(fetched.result())
            # Adjustments made while the trial was paused or queued are in the config's hparams.
            hparams = config.get("hparams", {})
            trainer.update_hparams({k: v for k, v in hparams.items() if k in ADJUSTABLE})
    return trainer


def _keep_lease(
    client: WorkerClient, a: Assignment, done: threading.Event, stale: threading.Event
) -> None:
    """Empty reports every third of the lease until ``done``: a slow start (imports, data,
    checkpoint download) must not look like a dead worker. Sets ``stale`` on a 409."""
    step, epoch = a.start()
    body = {"attempt": a.attempt, "step": step, "epoch": epoch, "points": [], "applied": []}
    while not done.wait(max(0.1, a.lease_seconds / 3)):
        try:
            client.request(
                "POST", f"/api/workers/trials/{a.trial_id}/report", json=body, stop=done
            )
        except StaleAttempt:
            stale.set()
            return
        except (InterruptedError, ProtocolError):
            return


def _build_keeping_lease(
    client: WorkerClient, a: Assignment, datasets: DatasetCache | None
) -> Trainer:
    done, stale = threading.Event(), threading.Event()
    beat = threading.Thread(target=_keep_lease, args=(client, a, done, stale), daemon=True)
    beat.start()
    try:
        trainer = _build(client, a, datasets)
    finally:
        done.set()
    if stale.is_set():
        raise StaleAttempt(f"trial {a.trial_id} attempt {a.attempt} went stale while starting")
    return trainer


def _train(
    client: WorkerClient, a: Assignment, reporter: HttpReporter, datasets: DatasetCache | None
) -> _Outcome:
    """Build, restore and fit; any failure but a stale attempt becomes a failed outcome."""
    trainer: Trainer | None = None
    try:
        trainer = _build_keeping_lease(client, a, datasets)
        reporter.step, reporter.epoch = trainer.step, trainer.epoch
        result = trainer.fit(reporter)
        reporter.drain()  # a pause or the end must find its checkpoint stored
        status = FinishStatus(result.status.value)
        if status is FinishStatus.PAUSED and reporter.handing_back:
            status = FinishStatus.REQUEUE
        return _Outcome(status, result.step, result.epoch, finite_metrics(result.metrics))
    except (StaleAttempt, InterruptedError):
        # Stale: someone else owns the trial now. Interrupted: the worker is stopping and the
        # lease hands the trial to another worker. Neither is the trial's failure.
        raise
    except DivergedError as exc:
        error = str(exc)  # final: a diverged configuration diverges again
    except Exception as exc:  # noqa: BLE001 - any other failure ends the trial as failed
        error = traceback.format_exception_only(exc)[-1].strip()
        log.exception("trial %s failed", a.trial_id)
    step, epoch = (trainer.step, trainer.epoch) if trainer is not None else (0, 0.0)
    return _Outcome(FinishStatus.FAILED, step, epoch, error=error)


class TrialRun(NamedTuple):
    """How :func:`run_trial` ended: the finish status (``None``: the attempt went stale) and
    the next assignment claimed with the finish, if one was asked for and queued."""

    status: FinishStatus | None
    next_claim: dict[str, Any] | None = None


def run_trial(
    client: WorkerClient,
    assignment: Assignment,
    datasets: DatasetCache | None = None,
    *,
    claim_for: str | None = None,
) -> TrialRun:
    """Train one claimed trial to its end and finish it.

    ``datasets`` supplies uploaded data sets; without it a ``file`` task's path is used as
    the server gave it (only right on the server's own machine). ``claim_for`` (the worker's
    name) claims the next trial with the finish, unless the worker began to stop.
    """
    a = assignment
    reporter = HttpReporter(
        client,
        a.trial_id,
        a.attempt,
        min_interval=a.report_seconds or 0.0,
        decide_epochs=a.decide_epochs,
        decide_from=a.decide_from,
        on_checkpoint_stored=_fault_after_checkpoint(a),
    )
    reporter.watch_directives()
    if a.report_first:
        reporter.urgent.set()  # the first step's point goes out at once: someone watches
    try:
        outcome = _train(client, a, reporter, datasets)
        # Points a failure left unsent go with the finish: the curve is kept up to it.
        claim_next = None if client.leaving else claim_for
        claimed = reporter.finish(
            outcome.status,
            outcome.step,
            outcome.epoch,
            outcome.metrics,
            outcome.error,
            claim_for=claim_next,
        )
    except StaleAttempt:
        log.info("trial %s attempt %s is stale; dropping it", a.trial_id, a.attempt)
        return TrialRun(None)
    except ProtocolError:
        log.exception("trial %s: the server refused its finish", a.trial_id)
        return TrialRun(None)
    finally:
        reporter.close()
    return TrialRun(outcome.status, claimed)


def hand_back(client: WorkerClient, claim: dict[str, Any]) -> None:
    """Return a claimed, untouched trial to the queue (the worker stops before training it)."""
    a = Assignment.from_json(claim)
    step, epoch = a.start()
    reporter = HttpReporter(client, a.trial_id, a.attempt)
    try:
        reporter.finish(FinishStatus.REQUEUE, step, epoch)
    except (StaleAttempt, ProtocolError, InterruptedError):
        log.warning("trial %s: not handed back; its lease will requeue it", a.trial_id)
    finally:
        reporter.close()


def _named_in(env: str, trial_id: int) -> bool:
    return str(trial_id) in {n.strip() for n in os.environ.get(env, "").split(",")}


def _crash(why: str) -> None:
    log.error("%s: exiting without a word", why)
    logging.shutdown()
    os._exit(FAULT_EXIT_CODE)


def _fault_exit(trial_id: int) -> None:
    """Exit like a crash if ``PANDACAVIAR_FAULT_EXIT_ON_TRIAL`` names this trial."""
    if _named_in(FAULT_EXIT_ENV, trial_id):
        _crash(f"{FAULT_EXIT_ENV} names trial {trial_id}")


def _fault_after_checkpoint(a: Assignment) -> Callable[[int], None] | None:
    """A crash right after the first stored checkpoint, if the fault switch names the trial."""
    if a.attempt != 1 or not _named_in(FAULT_EXIT_AFTER_CHECKPOINT_ENV, a.trial_id):
        return None

    def crash(step: int) -> None:
        _crash(f"{FAULT_EXIT_AFTER_CHECKPOINT_ENV}: trial {a.trial_id} checkpointed at {step}")

    return crash


def _retire_when_orphaned(client: WorkerClient, parent_pid: int) -> None:
    """Set ``client.retire`` once the process that started this worker is gone.

    A local worker outlives its server's crash on purpose: it keeps the trial in hand
    through the outage, re-attaches to the restarted server with the same attempt, hands the
    trial back at its next safe point (a checkpoint, no failure counted) and exits; the new
    server's dispatcher starts workers of its own. Should the server stay away longer than
    the lease, the client gives up (:class:`ServerGone`) and the worker exits.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            if client.stop.wait(PARENT_POLL_SECONDS):
                return
        log.warning(
            "the server (pid %s) is gone: handing back the trial in hand, then exiting", parent_pid
        )
        client.retire.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@contextmanager
def _graceful_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop``: the trial in hand is checkpointed and handed back.

    The same signal twice ends the process at once (the lease then requeues the trial).
    """

    seen: set[int] = set()

    def on_signal(signum: int, frame: object) -> None:
        # Only the same signal twice escalates: Ctrl-C reaches both the server and its
        # workers, and the server's dispatcher then sends a SIGTERM that must not kill them.
        if signum in seen:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        seen.add(signum)
        log.info("signal %s: handing back the trial in hand, then exiting", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def default_name() -> str:
    """``host-pid``, the worker's name as the trials table shows it."""
    return f"{socket.gethostname()}-{os.getpid()}"


def run_worker(
    server_url: str,
    token: str | None = None,
    *,
    once: bool = False,
    name: str | None = None,
    stop: threading.Event | None = None,
    handle_signals: bool = False,
    cache_dir: Path | None = None,
    parent_pid: int | None = None,
) -> int:
    """Claim and train trials until ``stop`` is set (forever in a worker process).

    Args:
        server_url: the server's base URL, e.g. ``http://127.0.0.1:8000``.
        token: the API token, sent as ``Authorization: Bearer``.
        once: return after one trial (waiting for one to be queued).
        name: the worker's name; ``host-pid`` by default.
        stop: set it to make the worker return at its next wait; a trial in hand is
            checkpointed at its next safe point and handed back (finish "requeue").
        handle_signals: SIGTERM and SIGINT set ``stop`` (main thread of a worker process).
        cache_dir: where uploaded data sets are cached (:func:`default_cache_dir` if None).
        parent_pid: the server that started this worker: once it is gone, the worker hands
            its trial back to the restarted server and exits (:func:`_retire_when_orphaned`).

    Returns:
        The number of trials this worker ended (stale attempts not counted).
    """
    stop = stop or threading.Event()
    client = WorkerClient(server_url, token, stop=stop)
    datasets = DatasetCache(client, cache_dir or default_cache_dir())
    worker_name = name or default_name()
    if parent_pid is not None:
        _retire_when_orphaned(client, parent_pid)
    idle = Backoff(cap=IDLE_CAP_SECONDS)
    done = 0
    signals: AbstractContextManager[None] = (
        _graceful_signals(stop) if handle_signals else nullcontext()
    )
    try:
        with signals:
            claim: dict[str, Any] | None = None  # claimed with the last finish
            while not client.leaving:
                claim = claim or client.claim(worker_name, wait=LONG_POLL_SECONDS)
                client.in_hand = claim is not None
                if claim is None:
                    stop.wait(idle.next_delay())  # the server waited already: a short pause
                    continue
                idle.reset()
                assignment = Assignment.from_json(claim)
                log.info("claimed trial %s attempt %s", assignment.trial_id, assignment.attempt)
                _fault_exit(assignment.trial_id)
                run = run_trial(
                    client, assignment, datasets, claim_for=None if once else worker_name
                )
                claim = run.next_claim
                client.in_hand = claim is not None
                if run.status is not None:
                    done += 1
                    log.info("trial %s ended %s", assignment.trial_id, run.status.value)
                if once:
                    break
            if claim is not None:
                # Stopped while the finish claimed another trial: it goes back untouched.
                hand_back(client, claim)
    except InterruptedError:
        pass
    finally:
        client.close()
    return done
