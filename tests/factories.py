"""Helpers that build studies and trials and drive the worker protocol like a worker would."""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.storage.models import utcnow


def create_study(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "study", "mode": "panda", "task": "digits", **fields}
    r = client.post("/api/studies", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def create_trial(
    client: TestClient, study_id: int | None = None, **hparams: Any
) -> dict[str, Any]:
    if study_id is None:
        study_id = create_study(client)["id"]
    r = client.post(f"/api/studies/{study_id}/trials", json={"hparams": hparams})
    assert r.status_code == 201, r.text
    return dict(r.json())


def claim(client: TestClient, worker: str = "test-worker") -> dict[str, Any]:
    r = client.post("/api/workers/claim", json={"worker": worker})
    assert r.status_code == 200, r.text
    return dict(r.json())


def after_the_leases(app: FastAPI) -> datetime:
    """A clock past every lease granted so far, for ``reap_once(app, now=...)``: no sleeping.

    Leases granted with the current ``lease_seconds``: a test that shortens it needs none.
    """
    return utcnow() + timedelta(seconds=app.state.settings.lease_seconds + 1)


def running_trial(client: TestClient, **hparams: Any) -> tuple[int, int]:
    """A fresh trial claimed by a worker: ``(trial_id, attempt)``."""
    trial = create_trial(client, **hparams)
    got = claim(client)
    assert got["trial_id"] == trial["id"]
    return trial["id"], got["attempt"]


def report(
    client: TestClient,
    trial_id: int,
    attempt: int,
    step: int,
    points: list[list[Any]] | None = None,
    applied: list[dict[str, int]] | None = None,
) -> Any:
    body = {
        "attempt": attempt,
        "step": step,
        "epoch": step / 100,
        "points": points or [],
        "applied": applied or [],
    }
    return client.post(f"/api/workers/trials/{trial_id}/report", json=body)


def finish(
    client: TestClient, trial_id: int, attempt: int, status: str, step: int, **extra: Any
) -> Any:
    body = {"attempt": attempt, "status": status, "step": step, "epoch": step / 100, **extra}
    return client.post(f"/api/workers/trials/{trial_id}/finish", json=body)


def npz_bytes(step: int = 0) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, w=np.arange(4.0) + step)
    return buf.getvalue()


def upload(
    client: TestClient,
    trial_id: int,
    attempt: int,
    step: int,
    data: bytes | Iterable[bytes] | None = None,
    **params: Any,
) -> Any:
    """PUT a checkpoint as a worker does: ``data`` (a streamed body if an iterable, else
    ``npz_bytes(step)``), ``params`` the other query parameters (``epoch``, ``finish``...)."""
    return client.put(
        f"/api/workers/trials/{trial_id}/checkpoints",
        params={"attempt": attempt, "step": step, **params},
        content=npz_bytes(step) if data is None else data,
        headers={"Content-Type": "application/octet-stream"},
    )
