"""Server-Sent Event streams of a trial and of a study."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.factories import create_trial, report, running_trial

WAIT = 20.0  # generous: a hung stream fails the test instead of hanging the suite


@contextmanager
def sse(client: TestClient, url: str, **headers: str) -> Iterator[queue.Queue[dict[str, Any]]]:
    """Frames of an SSE stream read in a helper thread, so reads can time out."""
    frames: queue.Queue[dict[str, Any]] = queue.Queue()
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")

        def read() -> None:
            frame: dict[str, Any] = {}
            try:
                for line in response.iter_lines():
                    if not line:
                        if "event" in frame:
                            frames.put(frame)
                        frame = {}
                    elif line.startswith("event: "):
                        frame["event"] = line[7:]
                    elif line.startswith("data: "):
                        frame["data"] = json.loads(line[6:])
                    elif line.startswith("id: "):
                        frame["id"] = line[4:]
            except Exception:  # noqa: BLE001 - the stream closes when the test ends
                pass

        threading.Thread(target=read, daemon=True).start()
        yield frames


def next_frame(frames: queue.Queue[dict[str, Any]], event: str) -> dict[str, Any]:
    while True:
        frame = frames.get(timeout=WAIT)
        if frame["event"] == event:
            return frame


def test_trial_stream_sends_state_metrics_and_events(client: TestClient) -> None:
    tid, attempt = running_trial(client)
    with sse(client, f"/api/trials/{tid}/stream") as frames:
        first = next_frame(frames, "state")
        assert first["data"]["trial_id"] == tid and first["data"]["state"] == "running"
        report(client, tid, attempt, 2, [[2, "train_loss", 0.5], [1, "train_loss", 0.7]])
        metrics = next_frame(frames, "metrics")
        assert metrics["data"] == {"trial_id": tid, "points": {"train_loss": [[1, 0.7], [2, 0.5]]}}
        client.post(f"/api/trials/{tid}/pause")
        pause = next_frame(frames, "event")
        assert pause["data"]["kind"] == "pause" and pause["data"]["applied_at"] is None
        client.post(
            f"/api/workers/trials/{tid}/finish",
            json={"attempt": attempt, "status": "paused", "step": 2},
        )
        assert next_frame(frames, "state")["data"]["state"] == "paused"
        applied = next_frame(frames, "event")
        assert applied["data"]["id"] == pause["data"]["id"]
        assert applied["data"]["applied_step"] == 2


def test_study_stream_covers_every_trial(client: TestClient) -> None:
    first = create_trial(client)
    second = create_trial(client, first["study_id"])
    with sse(client, f"/api/studies/{first['study_id']}/stream") as frames:
        states = {next_frame(frames, "state")["data"]["trial_id"] for _ in range(2)}
        assert states == {first["id"], second["id"]}
        client.post(f"/api/trials/{second['id']}/pause")
        changed = next_frame(frames, "state")["data"]
        assert (changed["trial_id"], changed["state"]) == (second["id"], "paused")


def test_stream_resumes_from_last_event_id(client: TestClient) -> None:
    tid, attempt = running_trial(client)
    report(client, tid, attempt, 1, [[1, "train_loss", 0.9]])
    with sse(client, f"/api/trials/{tid}/stream", **{"Last-Event-ID": "0:0"}) as frames:
        old = next_frame(frames, "metrics")
        assert old["data"]["points"] == {"train_loss": [[1, 0.9]]}
        assert old["id"].count(":") == 1


def test_stream_not_found(client: TestClient) -> None:
    assert client.get("/api/trials/999/stream").status_code == 404
    assert client.get("/api/studies/999/stream").status_code == 404


def test_stream_ends_when_client_disconnects(client: TestClient, app: FastAPI) -> None:
    tid = create_trial(client)["id"]
    with sse(client, f"/api/trials/{tid}/stream") as frames:
        next_frame(frames, "state")
        assert client.get("/api/health").json()["streams"] == 1
    for _ in range(int(WAIT / 0.05)):  # waits for the server side to notice; nothing timed
        if client.get("/api/health").json()["streams"] == 0:
            break
        time.sleep(0.05)
    assert client.get("/api/health").json()["streams"] == 0


def test_a_stream_sends_each_change_when_it_is_committed_not_at_its_next_poll(
    settings: Settings,
) -> None:
    # The stream re-reads the database only once a minute here: every frame below within
    # WAIT seconds came because the commit that made the change woke it.
    app = create_app(settings.model_copy(update={"stream_poll_seconds": 60.0}))
    with TestClient(app) as client:
        tid, attempt = running_trial(client)
        with sse(client, f"/api/trials/{tid}/stream") as frames:
            assert next_frame(frames, "state")["data"]["state"] == "running"
            report(client, tid, attempt, 1, [[1, "train_loss", 0.5]])
            assert next_frame(frames, "metrics")["data"]["points"] == {"train_loss": [[1, 0.5]]}
            client.post(f"/api/trials/{tid}/pause")
            assert next_frame(frames, "event")["data"]["kind"] == "pause"
            finish = {"attempt": attempt, "status": "paused", "step": 1}
            client.post(f"/api/workers/trials/{tid}/finish", json=finish)
            assert next_frame(frames, "state")["data"]["state"] == "paused"
