"""The worker process: claim a trial, train it, report over HTTP, finish; then the next one.

Workers speak only the HTTP protocol of ``docs/contracts.md`` and never open the database, so
the same code runs as a local process started by the dispatcher or on a remote machine
(``pandacaviar worker --server URL``). This module imports ``trainer``, ``httpx`` and the
standard library only.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import socket
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from trainer import ADJUSTABLE, DivergedError, TrainConfig, Trainer
from trainer.reporting import Action, Directive

log = logging.getLogger(__name__)

# Full-jitter exponential backoff: sleep U(0, min(cap, base * 2**n)) (the AWS architecture
# blog's "full jitter"), so workers that lost the server together do not return together.
RETRY_BASE_SECONDS = 0.1
RETRY_CAP_SECONDS = 5.0
# An idle worker polls for work; a short cap keeps a new trial's start latency low.
IDLE_CAP_SECONDS = 1.0
# A 5xx answer may be a transient lock; retried this many times before the trial fails.
MAX_SERVER_ERRORS = 8


class FinishStatus(StrEnum):
    COMPLETED = "completed"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"


class _StaleAttempt(Exception):
    """The server answered 409: this attempt was requeued or ended; drop the trial at once."""


class ProtocolError(RuntimeError):
    """The server rejected a request in a way retrying cannot fix (a 4xx other than 409)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code}: {response.text[:300]}"
        )
        self.status_code = response.status_code


class Backoff:
    """Delays for successive retries: exponential growth, full jitter, a cap."""

    def __init__(self, base: float = RETRY_BASE_SECONDS, cap: float = RETRY_CAP_SECONDS) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = random.Random()

    def next_delay(self) -> float:
        """The delay before the next try; each call doubles the ceiling up to the cap."""
        ceiling = min(self.cap, self.base * 2.0 ** min(self.failures, 30))
        self.failures += 1
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.failures = 0


class WorkerClient:
    """HTTP access to ``/api/workers`` that rides out server outages.

    Transport errors are retried forever (the server may be restarting), 5xx answers up to
    :data:`MAX_SERVER_ERRORS` times; 409 raises :class:`_StaleAttempt`, other 4xx
    :class:`ProtocolError`. ``stop`` interrupts the waits (tests, shutdown).
    """

    def __init__(
        self, server_url: str, token: str | None = None, *, stop: threading.Event | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=server_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(60.0, connect=5.0),
        )
        self.stop = stop or threading.Event()
        self.retries = 0  # failed tries so far (an outage is visible from outside)

    def close(self) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, *, stop: threading.Event | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send until the server answers something other than a transient error.

        Raises:
            InterruptedError: ``stop`` (the client's own by default) was set while waiting.
        """
        stop = stop or self.stop
        backoff = Backoff()
        server_errors = 0
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                log.warning("%s %s: %s; retrying", method, path, exc)
            else:
                if response.status_code == 409:
                    raise _StaleAttempt(response.text)
                if response.status_code < 400:
                    return response
                if response.status_code < 500:
                    raise ProtocolError(response)
                server_errors += 1
                if server_errors >= MAX_SERVER_ERRORS:
                    raise ProtocolError(response)
                log.warning("%s %s -> %s; retrying", method, path, response.status_code)
            self.retries += 1
            if stop.wait(backoff.next_delay()):
                raise InterruptedError("worker stopping")

    def claim(self, name: str) -> dict[str, Any] | None:
        """One claim; the trial's assignment, or ``None`` when nothing is queued."""
        response = self.request("POST", "/api/workers/claim", json={"worker": name})
        return None if response.status_code == 204 else dict(response.json())

    def download_checkpoint(self, checkpoint_id: int, sha256: str) -> bytes:
        """The checkpoint's bytes, verified against the sha256 the claim announced."""
        response = self.request("GET", f"/api/workers/checkpoints/{checkpoint_id}")
        data = response.content
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise ValueError(f"checkpoint {checkpoint_id}: sha256 {digest} != expected {sha256}")
        return data


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    """The finite values: the server stores only those (the trainer reports no others)."""
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


class HttpReporter:
    """The trainer's :class:`~trainer.reporting.Reporter` over HTTP for one (trial, attempt).

    Points are buffered and sent with every report; a batch leaves the buffer only after the
    server acknowledged it with a 2xx, so an outage delays points but never loses them (the
    server upserts, so a batch resent after a lost answer changes nothing).
    """

    def __init__(self, client: WorkerClient, trial_id: int, attempt: int) -> None:
        self.client = client
        self.trial_id = trial_id
        self.attempt = attempt
        self.step = 0  # progress sent with every report (set from a restored checkpoint)
        self.epoch = 0.0
        self.points: list[list[Any]] = []
        self.pending_applied: list[dict[str, int]] = []

    def report(self, step: int, epoch: float, metrics: Mapping[str, float]) -> Directive:
        """Buffer the metrics at ``step``, send everything buffered, return the directive."""
        self.step, self.epoch = step, epoch
        self.points.extend([step, name, v] for name, v in sorted(_finite(metrics).items()))
        return self.flush()

    def flush(self) -> Directive:
        """Send the buffered points and applied entries (also the lease's heartbeat)."""
        body = {
            "attempt": self.attempt,
            "step": self.step,
            "epoch": self.epoch,
            "points": list(self.points),
            "applied": list(self.pending_applied),
        }
        response = self.client.request(
            "POST", f"/api/workers/trials/{self.trial_id}/report", json=body
        )
        # Only what this request carried is acknowledged; nothing is added meanwhile.
        del self.points[: len(body["points"])]
        del self.pending_applied[: len(body["applied"])]
        data = response.json()
        return Directive(
            action=Action(data.get("action", Action.CONTINUE.value)),
            hparams=dict(data.get("hparams") or {}),
            event_id=data.get("event_id"),
        )

    def checkpoint(self, step: int, data: bytes) -> None:
        """Upload a checkpoint taken after ``step`` steps."""
        self.client.request(
            "PUT",
            f"/api/workers/trials/{self.trial_id}/checkpoints",
            params={"attempt": self.attempt, "step": step},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def applied(self, directive: Directive, step: int) -> None:
        """Tell the server that ``directive`` governs training from ``step`` on."""
        if directive.event_id is None:
            return
        self.pending_applied.append({"event_id": directive.event_id, "step": step})
        # The answer's directive is dropped: directives live in the database, so anything
        # pending comes back at the next report.
        self.flush()


@dataclass(frozen=True)
class Assignment:
    """A claim's answer (see the claim row of ``docs/contracts.md``)."""

    trial_id: int
    attempt: int
    config: dict[str, Any]
    checkpoint: dict[str, Any] | None
    lease_seconds: float
    report_seconds: float | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Assignment:
        return cls(
            trial_id=int(data["trial_id"]),
            attempt=int(data["attempt"]),
            config=dict(data["config"]),
            checkpoint=data.get("checkpoint"),
            lease_seconds=float(data.get("lease_seconds") or 30.0),
            report_seconds=data.get("report_seconds"),
        )


@dataclass(frozen=True)
class _Outcome:
    """How an attempt ended, as the finish call reports it."""

    status: FinishStatus
    step: int
    epoch: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


def _build(client: WorkerClient, a: Assignment) -> Trainer:
    """The trainer of a claim, restored from its checkpoint when it has one."""
    config = dict(a.config)
    if a.report_seconds is not None:
        config["report_seconds"] = a.report_seconds
    trainer = Trainer(TrainConfig.from_dict(config))
    if a.checkpoint:
        ckpt = a.checkpoint
        trainer.load_checkpoint(client.download_checkpoint(int(ckpt["id"]), str(ckpt["sha256"])))
        # Adjustments made while the trial was paused or queued are in the config's hparams.
        hparams = config.get("hparams", {})
        trainer.update_hparams({k: v for k, v in hparams.items() if k in ADJUSTABLE})
    return trainer


def _keep_lease(
    client: WorkerClient, a: Assignment, done: threading.Event, stale: threading.Event
) -> None:
    """Empty reports every third of the lease until ``done``: a slow start (imports, data,
    checkpoint download) must not look like a dead worker. Sets ``stale`` on a 409."""
    step = int(a.checkpoint["step"]) if a.checkpoint else 0
    # The epoch is unknown before the checkpoint is loaded; the first real report fixes it.
    body = {"attempt": a.attempt, "step": step, "epoch": 0.0, "points": [], "applied": []}
    while not done.wait(max(0.1, a.lease_seconds / 3)):
        try:
            client.request(
                "POST", f"/api/workers/trials/{a.trial_id}/report", json=body, stop=done
            )
        except _StaleAttempt:
            stale.set()
            return
        except (InterruptedError, ProtocolError):
            return


def _build_keeping_lease(client: WorkerClient, a: Assignment) -> Trainer:
    done, stale = threading.Event(), threading.Event()
    beat = threading.Thread(target=_keep_lease, args=(client, a, done, stale), daemon=True)
    beat.start()
    try:
        trainer = _build(client, a)
    finally:
        done.set()
    if stale.is_set():
        raise _StaleAttempt(f"trial {a.trial_id} attempt {a.attempt} went stale while starting")
    return trainer


def _train(client: WorkerClient, a: Assignment, reporter: HttpReporter) -> _Outcome:
    """Build, restore and fit; any failure but a stale attempt becomes a failed outcome."""
    trainer: Trainer | None = None
    try:
        trainer = _build_keeping_lease(client, a)
        reporter.step, reporter.epoch = trainer.step, trainer.epoch
        result = trainer.fit(reporter)
        status = FinishStatus(result.status.value)
        return _Outcome(status, result.step, result.epoch, _finite(result.metrics))
    except (_StaleAttempt, InterruptedError):
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


def run_trial(client: WorkerClient, assignment: Assignment) -> FinishStatus | None:
    """Train one claimed trial to its end and finish it; ``None`` if the attempt went stale."""
    a = assignment
    reporter = HttpReporter(client, a.trial_id, a.attempt)
    try:
        outcome = _train(client, a, reporter)
        if reporter.points:
            # A failure left points unsent: keep the curve up to it (unless the server
            # refuses them, which must not keep the trial from finishing).
            try:
                reporter.flush()
            except ProtocolError:
                reporter.points.clear()
        body = {
            "attempt": a.attempt,
            "status": outcome.status.value,
            "step": outcome.step,
            "epoch": outcome.epoch,
            "metrics": dict(outcome.metrics),
            "error": outcome.error,
        }
        client.request("POST", f"/api/workers/trials/{a.trial_id}/finish", json=body)
    except _StaleAttempt:
        log.info("trial %s attempt %s is stale; dropping it", a.trial_id, a.attempt)
        return None
    except ProtocolError:
        log.exception("trial %s: the server refused its finish", a.trial_id)
        return None
    return outcome.status


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
) -> int:
    """Claim and train trials until ``stop`` is set (forever in a worker process).

    Args:
        server_url: the server's base URL, e.g. ``http://127.0.0.1:8000``.
        token: the API token, sent as ``Authorization: Bearer``.
        once: return after one trial (waiting for one to be queued).
        name: the worker's name; ``host-pid`` by default.
        stop: set it to make the worker return at its next wait.

    Returns:
        The number of trials this worker ended (stale attempts not counted).
    """
    stop = stop or threading.Event()
    client = WorkerClient(server_url, token, stop=stop)
    worker_name = name or default_name()
    idle = Backoff(cap=IDLE_CAP_SECONDS)
    done = 0
    try:
        while not stop.is_set():
            claim = client.claim(worker_name)
            if claim is None:
                stop.wait(idle.next_delay())
                continue
            idle.reset()
            assignment = Assignment.from_json(claim)
            log.info("claimed trial %s attempt %s", assignment.trial_id, assignment.attempt)
            status = run_trial(client, assignment)
            if status is not None:
                done += 1
                log.info("trial %s ended %s", assignment.trial_id, status.value)
            if once:
                break
    except InterruptedError:
        pass
    finally:
        client.close()
    return done
