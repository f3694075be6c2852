"""Checkpoint transfer of the worker protocol (docs/contracts.md): upload and download.

An upload is streamed to a temp file, fsynced and renamed before its row is committed, so a
row never points at bytes that are not on disk; the worker keeps its own copy until it gets
a 2xx.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import json
import logging
import math
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BeforeValidator
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.config import Settings
from app.deps import SessionDep, SettingsDep
from app.errors import DomainError, Invalid, NotFound
from app.schemas import CheckpointOut
from app.schemas.common import MAX_INT32
from app.schemas.workers import FinishIn
from app.storage import locks, queries
from app.storage.db import read_engine
from app.storage.models import Checkpoint, Trial, utcnow
from app.trials import external, worker_calls
from trainer.config import HParamError, check_combination, check_hparams

log = logging.getLogger(__name__)
router = APIRouter(prefix="/workers", tags=["workers"])
ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# An upload reaches the disk in batches of this many bytes (held in memory meanwhile); one
# batch is written while the next is received, so the smaller the batch, the less disk work
# is left when the last byte arrives (docs/decisions.md: "Checkpoint uploads reach the disk
# while they arrive").
SPILL_BYTES = 1024 * 1024
SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writing the dirty pages, do not wait


def _writeback_starter() -> Callable[[int], object] | None:
    """Linux's ``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)`` as ``start(fd)``: it
    starts writing a file's dirty pages to disk and returns at once, leaving them cached (a
    resume reads the checkpoint back). None where the C library has no such call."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError, TypeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return lambda fd: call(fd, 0, 0, SYNC_FILE_RANGE_WRITE)


# Its errors are ignored: the fsync in _Sink.store() is what durability rests on.
_START_WRITEBACK = _writeback_starter()


def _epoch(value: Any) -> float:
    """A checkpoint's epoch from its query string: finite, in [0, MAX_INT32], else a 422."""
    try:
        epoch = float(value)
    except (TypeError, ValueError):
        epoch = math.nan
    if not 0 <= epoch <= MAX_INT32:  # NaN fails every comparison
        raise ValueError(f"got {value!r}, allowed: a finite number in [0, {MAX_INT32}]")
    return epoch


def _hparams(text: str | None) -> dict[str, Any] | None:
    """The ``hparams`` query: a JSON object (checked like an adjustment by the writer check).

    Raises:
        Invalid: not a JSON object.
    """
    if text is None:
        return None
    try:
        values = json.loads(text)
    except ValueError:
        values = None
    if not isinstance(values, dict):
        raise Invalid(
            f"hparams: got {text[:100]!r}, allowed: a JSON object of adjustable hyperparameters",
            field="hparams",
        )
    return values


# The epoch arrives in the query string, beside attempt and step: the body is the raw .npz.
# The bounds repeat _epoch's for the OpenAPI schema; _epoch's message names them first.
EpochQuery = Annotated[
    float | None,
    BeforeValidator(_epoch),
    Query(ge=0, le=MAX_INT32, description="the trainer's epoch at `step`"),
]
HParamsQuery = Annotated[
    str | None,
    Query(max_length=4000, description="JSON: the adjustable hyperparameters in force"),
]
FinishQuery = Annotated[
    Literal["paused"] | None,
    Query(description="'paused': a pause's last checkpoint; the attempt ends paused with it"),
]


@dataclass(frozen=True)
class _Taken:
    """Where a checkpoint was taken, as its worker says: ``None`` where an older worker
    said nothing (see :func:`_record`)."""

    attempt: int
    step: int
    epoch: float | None
    hparams: dict[str, Any] | None
    npz: bool = True  # the trainer's checkpoints are .npz files; a user's are any bytes
    pausing: bool = False  # the attempt ends paused once the checkpoint is stored


class StorageError(DomainError):
    """The checkpoint could not be stored: 503, or 507 when the disk (or quota) is full.

    Never a 2xx: the worker keeps its bytes and retries, and the previous checkpoint stays
    the trial's latest.
    """

    status_code = 503

    @classmethod
    def from_os_error(cls, exc: OSError) -> StorageError:
        err = cls(f"checkpoint not stored: {exc.strerror or exc}; retry later")
        if exc.errno in NO_SPACE:
            err.status_code = 507
        return err


class _CheckpointFile(FileResponse):
    """Sent in a few large reads: each read is a trip to a thread, and a resume waits for
    every one of them (64 KiB, Starlette's default, made 128 trips for 8 MB)."""

    chunk_size = 4 * 1024 * 1024


@router.get("/checkpoints/{checkpoint_id}", response_class=FileResponse)
def download(checkpoint_id: int, session: SessionDep) -> FileResponse:
    """The checkpoint's ``.npz`` bytes; the sha256 is in ``X-Checkpoint-Sha256``."""
    ckpt = session.get(Checkpoint, checkpoint_id)
    if ckpt is None or not Path(ckpt.path).is_file():
        raise NotFound(f"checkpoint {checkpoint_id} not found")
    return _CheckpointFile(
        ckpt.path,
        media_type="application/octet-stream",
        headers={"X-Checkpoint-Sha256": ckpt.sha256},
    )


@router.put(
    "/trials/{trial_id}/checkpoints",
    response_model=CheckpointOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}},
)
async def upload(
    trial_id: int,
    attempt: Annotated[int, Query(ge=1, le=MAX_INT32)],
    step: Annotated[int, Query(ge=0, le=MAX_INT32)],
    request: Request,
    settings: SettingsDep,
    epoch: EpochQuery = None,
    hparams: HParamsQuery = None,
    finish: FinishQuery = None,
) -> CheckpointOut:
    """Store raw ``.npz`` bytes durably (temp file, fsync, rename), then record the row.

    ``epoch`` and ``hparams`` (JSON, the adjustable ones) are the trainer's at ``step``.
    ``finish=paused``: the checkpoint a pause ends on, so the attempt ends paused in the same
    commit, as a finish would end it (a pending stop or prune still outranks the pause): a
    pause costs the worker one request fewer.
    """
    engine: Engine = request.app.state.engine
    taken = _Taken(attempt, step, epoch, _hparams(hparams), pausing=finish == "paused")
    taken = await run_in_threadpool(_check_writer, engine, trial_id, taken)
    try:
        path, sha256, size = await _receive(request, settings.checkpoint_dir, npz=taken.npz)
    except OSError as exc:
        log.error("trial %s: checkpoint at step %s not stored: %s", trial_id, step, exc)
        raise StorageError.from_os_error(exc) from exc
    try:
        return await run_in_threadpool(
            _record, engine, settings, trial_id, taken, (path, sha256, size)
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _check_writer(engine: Engine, trial_id: int, taken: _Taken) -> _Taken:
    """Refuse a stale or unknown writer, or values no fork could start from, before accepting
    up to max_checkpoint_bytes from it; the answer says what the bytes must be."""
    with Session(read_engine(engine)) as session:
        trial = session.get(Trial, trial_id, options=locks.WITH_STUDY)
        if trial is None:
            raise NotFound(f"trial {trial_id} not found")
        worker_calls.check_attempt(trial, taken.attempt)
        if trial.study.external:
            # The user's bytes, whatever their format; the values are the user's too.
            hparams = taken.hparams
            if hparams is not None:
                hparams = external.check_adjustment(hparams, trial.hparams, "hparams.")
            return replace(taken, hparams=hparams, npz=False)
        if taken.hparams is None:
            return taken
        try:
            hparams = check_hparams(taken.hparams, adjust=True)
            check_combination({**trial.hparams, **hparams})
        except HParamError as exc:
            raise Invalid.from_hparam(exc, "hparams.") from None
        return replace(taken, hparams=hparams)


async def _receive(request: Request, directory: Path, *, npz: bool) -> tuple[Path, str, int]:
    """Stream the body to ``<uuid>.npz`` (or ``.bin``, a user's bytes) under ``directory``
    (size limit: the middleware).

    Writing, hashing and syncing run in a thread, ``SPILL_BYTES`` at a time, while the event
    loop goes on receiving the next batch: on the event loop, an 8 MB checkpoint's disk work
    would hold up every other request (the controls of the trial being paused among them),
    and awaiting each batch would stop the socket being read meanwhile.
    """
    directory.mkdir(parents=True, exist_ok=True)
    sink = _Sink(directory, uuid.uuid4().hex, npz=npz)
    writing: asyncio.Future[None] | None = None  # the batch on its way to disk
    try:
        batch: list[bytes] = []
        held = 0
        async for chunk in request.stream():
            batch.append(chunk)
            held += len(chunk)
            if held >= SPILL_BYTES:
                if writing is not None:
                    await writing  # one batch in flight: the file is written in order
                writing = asyncio.ensure_future(run_in_threadpool(sink.write, batch))
                batch, held = [], 0
        if writing is not None:
            await writing
        writing = None
        await run_in_threadpool(sink.write, batch)
        return await run_in_threadpool(sink.store)
    except BaseException:
        # Whatever failed (a full disk included), no half-stored file stays behind.
        if writing is not None:
            await asyncio.wait([writing])  # the thread lets go of the file first
        await run_in_threadpool(sink.discard)
        raise


class _Sink:
    """A checkpoint upload on its way to disk: a temp file, renamed once synced."""

    def __init__(self, directory: Path, name: str, *, npz: bool) -> None:
        self.directory, self.npz = directory, npz
        self.tmp = directory / f".{name}.tmp"
        self.final = directory / f"{name}.{'npz' if npz else 'bin'}"
        self.fh = open(self.tmp, "wb")  # noqa: SIM115 - closed by store() or discard()
        self.digest, self.size, self.head = hashlib.sha256(), 0, b""

    def write(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.fh.write(chunk)
            self.digest.update(chunk)
            self.size += len(chunk)
            self.head = (self.head + chunk)[:4] if len(self.head) < 4 else self.head
        self.fh.flush()
        if _START_WRITEBACK is not None:
            # These pages go to disk while the next batch arrives: the fsync in store() then
            # waits for the last batch only.
            _START_WRITEBACK(self.fh.fileno())

    def store(self) -> tuple[Path, str, int]:
        """Sync and rename; (path, sha256, size)."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        if self.npz and self.head != ZIP_MAGIC:
            raise Invalid("body: not an .npz file (a zip archive was expected)", field="body")
        os.replace(self.tmp, self.final)
        _fsync_dir(self.directory)
        return self.final, self.digest.hexdigest(), self.size

    def discard(self) -> None:
        self.fh.close()
        self.final.unlink(missing_ok=True)
        self.tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk too.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _record(
    engine: Engine,
    settings: Settings,
    trial_id: int,
    taken: _Taken,
    stored: tuple[Path, str, int],
) -> CheckpointOut:
    """The checkpoint row, committed only after the file is on disk; a retry replaces it."""
    path, sha256, size = stored
    with Session(engine, expire_on_commit=False) as session:
        # Locked (PostgreSQL) before the attempt is checked: a requeue on another server waits.
        trial = locks.get_trial(session, trial_id, lock=True)
        if trial is None:
            raise NotFound(f"trial {trial_id} not found")
        worker_calls.check_attempt(trial, taken.attempt)
        ckpt = queries.get_checkpoint(session, trial_id=trial_id, step=taken.step)
        # A retried step keeps its row (forks point at it by id) and gets the new file.
        old_path = ckpt.path if ckpt is not None else None
        if ckpt is None:
            ckpt = Checkpoint(trial_id=trial_id, step=taken.step)
            session.add(ckpt)
        # The trial's epoch and hparams are those of the last report that reached the server:
        # reports are batched by time and an applied adjustment may overtake this upload, so
        # they can belong to another step. Only an older worker omits its own; for it they
        # stay the best guess (exact when its last report was at this step, as before a
        # pause): steps per epoch depend on the data set and on batch sizes changed mid-run.
        ckpt.epoch = trial.epoch if taken.epoch is None else taken.epoch
        ckpt.hparams = {**trial.hparams, **(taken.hparams or {})}
        ckpt.path, ckpt.bytes, ckpt.sha256, ckpt.created_at = str(path), size, sha256, utcnow()
        worker_calls.checkpoint_taken(session, trial, taken.step, settings)
        session.flush()
        out = CheckpointOut(id=ckpt.id, step=taken.step, sha256=sha256, bytes=size)
        if taken.pausing:
            end = FinishIn(
                attempt=taken.attempt, status="paused", step=taken.step, epoch=ckpt.epoch
            )
            worker_calls.finish(session, trial, end)
        session.commit()
    if old_path is not None:
        Path(old_path).unlink(missing_ok=True)
    return out
