"""The worker's side of the HTTP protocol: a retrying client and the trainer's HTTP reporter.

Imports ``httpx2``, ``trainer``, ``app.hashing`` and the standard library only: workers never
open the database.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import httpx2

from app.hashing import bytes_sha256, file_sha256
from trainer import checkpoint as ckpt
from trainer.config import ADJUSTABLE
from trainer.reporting import Action, Directive

log = logging.getLogger(__name__)
# Full-jitter exponential backoff: sleep U(0, min(cap, base * 2**n)) (the AWS architecture
# blog's "full jitter"), so workers that lost the server together do not return together.
RETRY_BASE_SECONDS = 0.1
RETRY_CAP_SECONDS = 5.0
# Between two waiting claims an idle worker pauses at most this long (jittered, so workers
# that woke together spread out): the server's wait already spaces the requests.
IDLE_CAP_SECONDS = 0.05
# A claim or a directive request waits this long on the server for something to happen: the
# answer comes the moment it does. Short, so a stopping worker or server is never held long.
LONG_POLL_SECONDS = 2.0
WATCH_AFTER_SECONDS = 0.1
# A 5xx answer may be a transient lock; retried this many times before the trial fails.
MAX_SERVER_ERRORS = 8
CACHE_ENV = "PANDACAVIAR_CACHE_DIR"
# Directives a stopping worker may replace by a hand-back; stop and pause keep their meaning.
HANDS_BACK = frozenset({Action.CONTINUE, Action.CHECKPOINT, Action.UPDATE})


class FinishStatus(StrEnum):
    COMPLETED = "completed"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"
    # The worker is shutting down: it checkpointed and the trial goes back to the queue.
    REQUEUE = "requeue"


class StaleAttempt(Exception):
    """The server answered 409: this attempt was requeued or ended; drop the trial at once."""


class ServerGone(InterruptedError):
    """A retiring worker heard nothing from its server for longer than a lease: it gives up
    (the trial's lease has run out too, so the server queues it again)."""


class ProtocolError(RuntimeError):
    """The server rejected a request in a way retrying cannot fix (a 4xx other than 409)."""

    def __init__(self, response: httpx2.Response) -> None:
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
    :data:`MAX_SERVER_ERRORS` times; 409 raises :class:`StaleAttempt`, other 4xx
    :class:`ProtocolError`. ``stop`` interrupts the waits (tests, shutdown).

    ``retire`` is the quiet way out, set when a local worker's server process died: the
    worker keeps its trial through the outage, hands it back at the first safe point the
    restarted server answers, and claims nothing more. A retiring client's retries give up
    with :class:`ServerGone` once the server has been silent for ``outage_limit`` seconds
    (the lease: by then the trial is no longer this worker's anyway), or at once when no
    trial is ``in_hand``.
    """

    def __init__(
        self, server_url: str, token: str | None = None, *, stop: threading.Event | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx2.Client(
            base_url=server_url.rstrip("/"),
            headers=headers,
            timeout=httpx2.Timeout(60.0, connect=5.0),
        )
        self.stop = stop or threading.Event()
        self.retire = threading.Event()
        self.outage_limit = 30.0  # the server's lease, updated from every claim
        self.in_hand = False  # a claimed trial not finished yet (the worker sets it)
        self.retries = 0  # failed tries so far (an outage is visible from outside)
        self._last_answer = time.monotonic()

    @property
    def leaving(self) -> bool:
        """Stopping or retiring: the trial in hand goes back at its next safe point."""
        return self.stop.is_set() or self.retire.is_set()

    def close(self) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, *, stop: threading.Event | None = None, **kwargs: Any
    ) -> httpx2.Response:
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
            except httpx2.TransportError as exc:
                if stop.is_set():  # closed under it on purpose: nothing to say
                    raise InterruptedError("stopped") from exc
                log.warning("%s %s: %s; retrying", method, path, exc)
            else:
                self._last_answer = time.monotonic()
                if response.status_code == 409:
                    raise StaleAttempt(response.text)
                if response.status_code < 400:
                    return response
                if response.status_code < 500:
                    raise ProtocolError(response)
                server_errors += 1
                if server_errors >= MAX_SERVER_ERRORS:
                    raise ProtocolError(response)
                log.warning("%s %s -> %s; retrying", method, path, response.status_code)
            self.retries += 1
            if stop.wait(self._retry_delay(backoff)):
                raise InterruptedError("worker stopping")

    def _retry_delay(self, backoff: Backoff) -> float:
        """The backoff's next delay; for a retiring client, never past its outage limit."""
        delay = backoff.next_delay()
        if not self.retire.is_set():
            return delay
        left = self.outage_limit - (time.monotonic() - self._last_answer)
        if left <= 0 or not self.in_hand:
            raise ServerGone(f"no answer from the server for {self.outage_limit:.0f} s")
        return min(delay, left)

    def claim(self, name: str, wait: float = 0.0) -> dict[str, Any] | None:
        """One claim; the trial's assignment, or ``None`` when nothing is queued (after
        waiting up to ``wait`` seconds on the server for one)."""
        body = {"worker": name, "wait": wait}
        response = self.request("POST", "/api/workers/claim", json=body)
        return None if response.status_code == 204 else self.claimed(dict(response.json()))

    def claimed(self, assignment: dict[str, Any]) -> dict[str, Any]:
        """Note a claim's lease (the outage a retiring worker rides out); return the claim."""
        self.outage_limit = float(assignment.get("lease_seconds") or self.outage_limit)
        return assignment

    def download_checkpoint(self, checkpoint_id: int, sha256: str) -> bytes:
        """The checkpoint's bytes, verified against the sha256 the claim announced."""
        response = self.request("GET", f"/api/workers/checkpoints/{checkpoint_id}")
        data = response.content
        digest = bytes_sha256(data)
        if digest != sha256:
            raise ValueError(f"checkpoint {checkpoint_id}: sha256 {digest} != expected {sha256}")
        return data


def default_cache_dir() -> Path:
    """``$PANDACAVIAR_CACHE_DIR``, else ``$XDG_CACHE_HOME/pandacaviar`` or ~/.cache/pandacaviar."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pandacaviar"


class DatasetCache:
    """Uploaded data sets fetched from the server once, kept under ``directory/datasets``.

    A file is named by its sha256 and checked against the server's digest before a trial of
    this process first uses it, and again whenever its size, inode or times change: a cached
    copy that went bad (a stray edit, a half-copied file) is fetched again rather than trained
    on, while a panda trial resumed on a 60 MB data set does not wait for a re-hash. The server
    never rewrites an upload under its name, so each name's digest is asked for once.
    Workers on the server's own machine use the same path: one code path.
    """

    def __init__(self, client: WorkerClient, directory: Path) -> None:
        self.client = client
        self.directory = directory / "datasets"
        self.downloads = 0  # files fetched so far (visible to tests and logs)
        self._digests: dict[str, str] = {}  # upload name -> the server's sha256
        self._verified: dict[Path, tuple[int, ...]] = {}  # cached file -> its stat when hashed

    def local_path(self, server_path: str) -> Path:
        """The verified local copy of the upload the server calls ``server_path``."""
        name = Path(server_path).name  # the server's own name; its directory means nothing here
        expected = self._digests.get(name)
        if expected is None:
            info = self.client.request("GET", f"/api/uploads/{name}").json()
            expected = self._digests[name] = str(info["sha256"])
        cached = self.directory / f"{expected}{Path(name).suffix}"
        if cached.is_file():
            stamp = _stamp(cached)
            if self._verified.get(cached) == stamp or file_sha256(cached) == expected:
                self._verified[cached] = stamp
                return cached
            log.warning("cached data set %s does not match its sha256; fetching it again", cached)
            cached.unlink(missing_ok=True)
        self._download(name, expected, cached)
        self._verified[cached] = _stamp(cached)
        return cached

    def _download(self, name: str, expected: str, target: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        response = self.client.request("GET", f"/api/uploads/{name}/content")
        digest = bytes_sha256(response.content)
        if digest != expected:
            raise ValueError(f"data set {name}: downloaded sha256 {digest} != expected {expected}")
        # Written under a unique temp name, then renamed: several worker processes may share
        # this cache, and none must ever read a half-written file.
        tmp = target.with_name(f".{uuid.uuid4().hex}.part")
        try:
            with tmp.open("wb") as fh:
                fh.write(response.content)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        self.downloads += 1
        log.info("data set %s cached as %s", name, target)


def _stamp(path: Path) -> tuple[int, ...]:
    """What changes when a file is rewritten, edited or replaced."""
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The finite values: the server stores only those (the trainer reports no others)."""
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


def checkpoint_progress(data: bytes) -> tuple[float, dict[str, Any]]:
    """The epoch and the adjustable hyperparameters a trainer's checkpoint was taken at.

    Read from the checkpoint itself, so what the server stores with the file cannot disagree
    with it: the last report may be at another step (reports are batched by time), and an
    adjustment applied just after the checkpoint reaches the server before the upload does.

    Raises:
        CheckpointError: ``data`` is not a checkpoint written by the trainer.
    """
    meta, n_order = ckpt.peek(data)  # the weights stay undecoded: only the metadata counts
    try:
        epochs_done, pos = int(meta["epochs_done"]), int(meta["pos"])
        hparams = {k: v for k, v in meta["hparams"].items() if k in ADJUSTABLE}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ckpt.CheckpointError(f"checkpoint metadata is incomplete ({exc})") from exc
    # As Trainer.epoch: the order is that of the epoch under way; none between epochs.
    n_train = n_order or 0
    return (epochs_done + pos / n_train if n_train else float(epochs_done)), hparams


class _Batch(NamedTuple):
    """One report's content: progress ``at`` (step, epoch), points, epoch ends, applied."""

    at: tuple[int, float]
    points: list[tuple[int, str, float]]
    ends: list[tuple[int, int]]
    applied: list[dict[str, int]]


class HttpReporter:
    """The trainer's :class:`~trainer.reporting.Reporter` over HTTP for one (trial, attempt).

    Points are buffered and sent with every report; a batch leaves the buffer only after the
    server acknowledged it with a 2xx, so an outage delays points but never loses them (the
    server upserts, so a batch resent after a lost answer changes nothing).
    """

    def __init__(
        self,
        client: WorkerClient,
        trial_id: int,
        attempt: int,
        *,
        min_interval: float = 0.0,
        decide_epochs: Collection[int] = (),
        decide_from: int | None = None,
        on_checkpoint_stored: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        self.trial_id = trial_id
        self.attempt = attempt
        # Safe points of a small network come hundreds of times a second; sending each one
        # would make the server, not training, the bottleneck of every core. Points are
        # buffered and sent at most every ``min_interval`` seconds (the server's report
        # interval, which also bounds how long a directive waits).
        self.min_interval = min_interval
        # Except at the epoch ends where the study's scheduler decides (the claim says which):
        # those go at once, so a stop or pause lands at that epoch, not an interval later.
        self.decide_epochs = frozenset(decide_epochs)
        self.decide_from = decide_from
        # The interval counts from the claim, which renewed the lease and answered any
        # directive: a trial shorter than one interval then costs two round trips.
        self._last_flush = time.monotonic()
        self._flush_next = False
        self.step = 0  # progress sent with every report (set from a restored checkpoint)
        self.epoch = 0.0
        self.points: list[tuple[int, str, float]] = []
        # (step, epoch) of every epoch end among the buffered points: early stopping compares
        # trials at each epoch's end, and one batch may span several epochs of a small model.
        self.epoch_ends: list[tuple[int, int]] = []
        self.pending_applied: list[dict[str, int]] = []
        # Checkpoints upload in the background: a big model's checkpoint (8 MB for
        # 784-512-512-10 with Adam moments) would otherwise stall training and delay the
        # report that shows an adjustment took effect. One upload in flight at a time keeps
        # their order and bounds memory.
        self._uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload")
        self._upload: Future[None] | None = None
        # Set once the worker began to stop and this trial is being handed back.
        self.handing_back = False
        # Set once a pause's checkpoint ended the attempt (``finish=paused`` on its upload):
        # no finish request follows.
        self.ended = False
        # Called with the step of every checkpoint the server acknowledged (fault injection).
        self.on_checkpoint_stored = on_checkpoint_stored
        # Set when the server has a directive waiting (:meth:`watch_directives`): the trainer
        # takes a safe point at its next step and obeys ``_heard`` without asking again.
        self.urgent = threading.Event()
        self._unwatch = threading.Event()
        self._heard: Directive | None = None
        self._obeying: Directive | None = None  # handed to the trainer, until its next report
        # Updates obeyed in this attempt: the server answers one until its "applied" entry is
        # stored, and an update obeyed twice could undo a later one. ``_unacked``: those whose
        # entry is not stored yet.
        self._obeyed: set[int] = set()
        self._unacked: set[int] = set()
        # The report of the points before a checkpoint, sent by the upload thread ahead of the
        # upload; the next report waits for it, so steps reach the server in order.
        self._carried: Future[None] | None = None
        # Set to let the upload in flight start sending its bytes (see :meth:`checkpoint`).
        self._go: threading.Event | None = None

    def report(self, step: int, epoch: float, metrics: Mapping[str, float]) -> Directive:
        """Buffer the metrics at ``step``; when a send is due, send and return the directive.

        A directive the watch heard (a pause, an edit) is obeyed at once, without the round
        trip: the points stay buffered and go with the next send (before a checkpoint's
        upload, ahead of it). An epoch end the study's scheduler judges is always sent.
        """
        if not (self.add(step, epoch, finite_metrics(metrics)) or self.client.leaving):
            return Directive()  # buffered; sent with the next due report
        self._obeying = None  # obeyed: the watch may ask again
        heard, self._heard = self._heard, None
        if heard is not None and heard.event_id in self._obeyed:
            heard = None  # heard again before its "applied" entry was stored
        if heard is not None and not (self.decides(epoch) or self.client.leaving):
            self._obeying = heard
            self.urgent.clear()
            return self.answer(heard)
        return self.answer(self.flush())

    def add(self, step: int, epoch: float, metrics: Mapping[str, float]) -> bool:
        """Buffer finite ``metrics`` at ``step``; whether a send is due now.

        Due: at an epoch end where the study's scheduler decides, after an update (its effect
        is watched for), when a directive waits on the server, or one interval after the last.
        """
        self.step, self.epoch = step, epoch
        self.points.extend((step, name, v) for name, v in metrics.items())
        if epoch >= 1 and epoch == int(epoch):
            self.epoch_ends.append((step, int(epoch)))
        return (
            self.decides(epoch)
            or self._flush_next
            or self.urgent.is_set()
            or time.monotonic() - self._last_flush >= self.min_interval
        )

    def decides(self, epoch: float) -> bool:
        """Whether ``epoch`` is an epoch end where the study's scheduler may stop the trial."""
        if epoch < 1 or epoch != int(epoch):
            return False
        whole = int(epoch)
        return whole in self.decide_epochs or (
            self.decide_from is not None and whole >= self.decide_from
        )

    def answer(self, directive: Directive) -> Directive:
        """The directive to obey: an update obeyed already is none, and a leaving worker's
        turns into a hand-back."""
        if directive.action is Action.UPDATE and directive.event_id in self._obeyed:
            directive = Directive()  # heard again before its "applied" entry was stored
        if self.client.leaving and directive.action in HANDS_BACK:
            # The worker is stopping (SIGTERM) or retiring (its server died): the trainer's
            # pause path checkpoints here and returns, and the finish says "requeue", so no
            # step is lost. A pending adjustment stays pending and applies at the next claim.
            self.handing_back = True
            return Directive(action=Action.PAUSE)
        return directive

    def flush(self) -> Directive:
        """Send the buffered points and applied entries (also the lease's heartbeat).

        An applied entry waits for the upload of the checkpoint taken before its update: a
        worker lost in between would leave an applied step with no checkpoint to rewind to.
        The points (the new values' effect included) do not wait.
        """
        self._last_flush, self._flush_next = time.monotonic(), False
        self.urgent.clear()  # this report gets the directive; a new one sets it again
        self._heard = None  # the answer supersedes what the watch heard
        self._wait_carried()
        if self._upload is not None and self._upload.done():
            self.drain()  # surfaces a failed upload (a stale attempt, say) at the next report
        batch = _Batch(
            (self.step, self.epoch),
            list(self.points),
            list(self.epoch_ends),
            list(self.pending_applied) if self._upload is None else [],
        )
        try:
            data = self._send(batch)
        finally:
            self._release()  # the checkpoint taken before this report may go now
        # Only what this request carried is acknowledged; nothing is added meanwhile.
        del self.points[: len(batch.points)]
        del self.epoch_ends[: len(batch.ends)]
        del self.pending_applied[: len(batch.applied)]
        return _directive(data)

    def _send(self, batch: _Batch) -> dict[str, Any]:
        """POST one report; the answer's JSON."""
        body = {
            "attempt": self.attempt,
            "step": batch.at[0],
            "epoch": batch.at[1],
            "points": batch.points,
            "epoch_ends": batch.ends,
            "applied": batch.applied,
        }
        response = self.client.request(
            "POST", f"/api/workers/trials/{self.trial_id}/report", json=body
        )
        for item in batch.applied:
            self._unacked.discard(item["event_id"])
        return dict(response.json())

    def _release(self) -> None:
        """Let the checkpoint waiting in the upload thread send its bytes."""
        go, self._go = self._go, None
        if go is not None:
            go.set()

    def _wait_carried(self) -> None:
        """Wait for the report sent ahead of a checkpoint's upload; re-raise its error."""
        carried, self._carried = self._carried, None
        if carried is not None:
            carried.result()

    def finish(
        self,
        status: FinishStatus,
        step: int,
        epoch: float,
        metrics: Mapping[str, float] | None = None,
        error: str | None = None,
        *,
        claim_for: str | None = None,
        claim_study: int | None = None,
    ) -> dict[str, Any] | None:
        """End the attempt; the points still buffered ride along with the finish.

        With ``claim_for`` (a worker's name) the same request claims that worker's next
        trial, whose assignment is returned (``None``: nothing queued). A trial shorter than
        the report interval thus costs one round trip. Should the server refuse the buffered
        points (a 4xx), the finish is sent again without them: a trial must be able to end.
        """
        # The points sent ahead of a checkpoint, and the checkpoint, before the attempt ends
        # (a failed upload is the attempt's failure, told by the status below).
        self._release()
        upload, self._upload, self._carried = self._upload, None, None
        if upload is not None:
            wait([upload])
        if self.ended:
            return None  # the pause's checkpoint ended the attempt; nothing was left to send
        if self.pending_applied:
            self.flush()  # an applied entry must be acknowledged before the attempt ends
        body: dict[str, Any] = {
            "attempt": self.attempt,
            "status": status.value,
            "step": step,
            "epoch": epoch,
            "metrics": dict(metrics or {}),
            "error": error,
            "points": list(self.points),
            "epoch_ends": list(self.epoch_ends),
        }
        if claim_for is not None:
            body["claim"] = {"worker": claim_for}
            if claim_study is not None:  # a user's process: that study's trials only
                body["claim"]["study_id"] = claim_study
        path = f"/api/workers/trials/{self.trial_id}/finish"
        try:
            response = self.client.request("POST", path, json=body)
        except ProtocolError:
            if not body["points"]:
                raise
            body = {**body, "points": [], "epoch_ends": []}
            response = self.client.request("POST", path, json=body)
        self.points.clear()
        self.epoch_ends.clear()
        claimed = response.json().get("next")
        return None if claimed is None else self.client.claimed(dict(claimed))

    def checkpoint(
        self,
        step: int,
        data: bytes | Callable[[], bytes],
        *,
        progress: tuple[float, dict[str, Any]] | None = None,
        hold: bool = False,
        ends: bool = False,
    ) -> None:
        """Upload a checkpoint taken after ``step`` steps, in the background.

        ``progress``: the epoch and hyperparameters it was taken at, for bytes that are not
        the trainer's (a user's own checkpoint); the trainer's are read from the bytes.

        The points buffered so far (every point up to ``step``) go first, in the upload
        thread, and must be acknowledged before the upload starts: a resume from this
        checkpoint reports only the steps after it, so a worker lost between the two must not
        take any of them with it. Training goes on meanwhile.

        ``hold``: the bytes wait for the next report (or :meth:`drain`). Before an update
        that report shows the new values, and 8 MB arriving at the server alongside it
        would slow it down.

        ``ends``: the checkpoint a pause stops training at; its upload ends the attempt paused
        (``finish=paused``) and :meth:`finish` sends nothing more.
        """
        self.drain()
        carried: Future[None] = Future()
        self._carried = carried
        go = threading.Event()
        if hold:
            self._go = go
        else:
            go.set()
        batch = _Batch(
            (step, self.epoch),
            list(self.points),
            list(self.epoch_ends),
            list(self.pending_applied),  # their checkpoints are stored: drained above
        )
        self.points.clear()
        self.epoch_ends.clear()
        self.pending_applied.clear()
        self._upload = self._uploader.submit(
            self._store, batch, carried, go, step, data, progress, ends
        )

    def checkpoint_later(
        self,
        step: int,
        make: Callable[[], bytes],
        *,
        before_update: bool = False,
        pausing: bool = False,
    ) -> None:
        """:meth:`checkpoint` of bytes ``make()`` writes in the upload thread: the trainer
        goes on at once (see :class:`~trainer.reporting.Reporter`). ``before_update``: the
        bytes wait for the report that shows the update's values (``hold``). ``pausing``:
        training pauses here, so the upload ends the attempt (``ends``), unless the worker
        is handing the trial back (that attempt ends with a requeue)."""
        self.checkpoint(step, make, hold=before_update, ends=pausing and not self.handing_back)

    def _store(
        self,
        batch: _Batch,
        carried: Future[None],
        go: threading.Event,
        step: int,
        data: bytes | Callable[[], bytes],
        progress: tuple[float, dict[str, Any]] | None,
        ends: bool,
    ) -> None:
        """The upload thread's part of :meth:`checkpoint`: the points (``carried`` says when
        they are stored), then (once ``go`` is set) the bytes; ``ends``: they end the attempt
        paused."""
        try:
            if batch.points or batch.ends or batch.applied:
                # The answer's directive is dropped: directives live in the database, so
                # anything pending comes back at the next report.
                self._send(batch)
        except BaseException as exc:
            if not isinstance(exc, StaleAttempt):
                # Back to the front of the buffer: the finish carries what no report could.
                self.points[:0], self.epoch_ends[:0] = batch.points, batch.ends
                self.pending_applied[:0] = batch.applied
            carried.set_exception(exc)
            raise
        carried.set_result(None)
        if callable(data):
            data = data()  # written here, while the next report goes out
        go.wait()
        self._put_checkpoint(step, data, progress, ends=ends)
        if self.pending_applied:
            self._flush_next = True  # their checkpoint is stored: the next safe point sends

    def _put_checkpoint(
        self,
        step: int,
        data: bytes,
        progress: tuple[float, dict[str, Any]] | None,
        *,
        ends: bool,
    ) -> None:
        # Decoded here, in the upload thread: training does not wait for it.
        epoch, hparams = checkpoint_progress(data) if progress is None else progress
        params = {
            "attempt": self.attempt,
            "step": step,
            "epoch": repr(epoch),
            "hparams": json.dumps(hparams, sort_keys=True),
        }
        if ends:
            params["finish"] = "paused"
        self.client.request(
            "PUT",
            f"/api/workers/trials/{self.trial_id}/checkpoints",
            params=params,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self.ended = ends
        if self.on_checkpoint_stored is not None:
            self.on_checkpoint_stored(step)

    def drain(self) -> None:
        """Wait for the checkpoint upload in flight; re-raise its error, if any."""
        self._release()
        upload, self._upload = self._upload, None
        self._carried = None  # settled with the upload
        if upload is not None:
            upload.result()

    def close(self) -> None:
        """Finish the upload in flight (errors ignored: the attempt is over) and stop."""
        self._unwatch.set()
        self._release()
        self._uploader.shutdown(wait=True)

    def watch_directives(self) -> threading.Thread:
        """A thread that long-polls the trial's directive and sets :attr:`urgent` when one
        waits, so a pause or an edit reaches the trainer at its next step rather than at its
        next batched report. It stops with :meth:`close` or a stale attempt."""
        thread = threading.Thread(target=self._watch, name="directives", daemon=True)
        thread.start()
        return thread

    def _watch(self) -> None:
        # A trial shorter than one report interval hears its directives from its reports:
        # the watch starts after one interval (at most WATCH_AFTER_SECONDS), and a short
        # trial costs no request more.
        if self._unwatch.wait(min(self.min_interval, WATCH_AFTER_SECONDS)):
            return
        path = f"/api/workers/trials/{self.trial_id}/directive"
        while not self._unwatch.is_set() and not self.client.leaving:
            # Updates applied whose "applied" entry waits for a checkpoint's upload are passed
            # over by the server: the user's next request is heard meanwhile.
            params: dict[str, Any] = {"attempt": self.attempt, "wait": LONG_POLL_SECONDS}
            params["obeyed"] = sorted(self._unacked)[:100]
            try:
                answer = self.client.request("GET", path, params=params, stop=self._unwatch).json()
            except StaleAttempt:
                self.urgent.set()  # the trainer's next report hears the 409 itself
                return
            except (InterruptedError, ProtocolError):
                return
            heard = _directive(answer)
            if heard.action is Action.CONTINUE:
                continue
            if heard.event_id in self._obeyed:
                # Obeyed after this request was sent (the trainer's report heard it first).
                self._unwatch.wait(0.01)
                continue
            self._heard = heard
            self.urgent.set()
            # Asked again once the trainer obeyed it; after a pause or a checkpoint request
            # also once its checkpoint is stored (the server closes them only then).
            self._settle(self._taken if heard.action is Action.UPDATE else self._taken_and_stored)

    def _settle(self, done: Callable[[], bool]) -> None:
        while not done() and not self._unwatch.wait(0.01):
            pass

    def _taken(self) -> bool:
        """The trainer took what the watch heard and obeyed it (its next report began)."""
        return not self.urgent.is_set() and self._obeying is None

    def _taken_and_stored(self) -> bool:
        upload = self._upload
        return self._taken() and (upload is None or upload.done())

    def applied(self, directive: Directive, step: int) -> None:
        """Tell the server that ``directive`` governs training from ``step`` on.

        The entry goes with the first report after the checkpoint taken before the update is
        stored (see :meth:`flush`); the report that shows the new values goes out at once.
        """
        if directive.event_id is None:
            return
        self._obeyed.add(directive.event_id)
        self._unacked.add(directive.event_id)
        self.pending_applied.append({"event_id": directive.event_id, "step": step})
        self._flush_next = True


def _directive(answer: Mapping[str, Any]) -> Directive:
    """A report's or a directive request's answer as a :class:`Directive`."""
    return Directive(
        action=Action(answer.get("action", Action.CONTINUE.value)),
        hparams=dict(answer.get("hparams") or {}),
        event_id=answer.get("event_id"),
    )
