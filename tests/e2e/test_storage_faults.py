"""Storage faults with real processes: corrupt checkpoint files and a full disk.

- a truncated or bit-flipped checkpoint is caught by its sha256 at the claim; the trial
  resumes from the previous valid checkpoint (an event says so) and ends exactly like an
  undisturbed twin;
- a full disk while a checkpoint is stored answers 507, never 2xx; the previous checkpoint
  stays the latest, no partial file stays behind, and storing works again once space is free
  (a real 1 MiB tmpfs mounted on the checkpoint directory: these tests run as root).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx2
import numpy as np
import pytest

from tests.e2e import SLOW, Api, ServerProcess, StartServer, final_dev_loss

pytestmark = pytest.mark.slow


def _pause_at(api: Api, trial_id: int, past_step: int) -> int:
    """Let the trial run past ``past_step``, pause it; the step of its pause checkpoint."""
    api.wait_trial(
        trial_id, lambda t: t["state"] == "running" and t["step"] > past_step, "progress"
    )
    api.call("POST", f"/api/trials/{trial_id}/pause")
    paused = api.wait_state(trial_id, "paused")
    assert api.checkpoints(trial_id)[-1]["step"] == paused["step"]
    return int(paused["step"])


def _corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "bit-flipped"])
def test_corrupt_checkpoint_falls_back_to_the_previous_one(
    start_server: StartServer, how: str
) -> None:
    server = start_server(workers=2, lease_seconds=30, reaper_seconds=0.5)
    api = Api(server.url)
    epochs = 30
    study = api.create_study(epochs=epochs)
    hparams = {**SLOW, "epochs": epochs, "seed": 13}
    victim = int(api.create_trial(study["id"], hparams)["id"])
    twin = int(api.create_trial(study["id"], hparams)["id"])

    good = _pause_at(api, victim, 60)
    api.call("POST", f"/api/trials/{victim}/resume")
    bad = _pause_at(api, victim, good + 60)
    bad_sha = next(c["sha256"] for c in api.checkpoints(victim) if c["step"] == bad)
    files = (server.data / "files" / "checkpoints").glob("*.npz")
    # The twin trains bit for bit alike, so a checkpoint it took at the same step has the
    # same bytes: corrupt every copy (the twin never resumes, so its copy is never read).
    bad_files = [f for f in files if hashlib.sha256(f.read_bytes()).hexdigest() == bad_sha]
    assert bad_files
    for bad_file in bad_files:
        _corrupt(bad_file, how)

    api.call("POST", f"/api/trials/{victim}/resume")
    done = api.wait_state(victim, "completed", "failed", timeout=120)
    assert done["state"] == "completed", done
    (event,) = [e for e in api.events(victim) if e["kind"] == "bad_checkpoint"]
    assert event["payload"]["step"] == bad
    assert event["payload"]["error"].startswith("size" if how == "truncated" else "sha256")
    # The rejected row is gone. Its step may come back: when the pause fell on a periodic
    # checkpoint's step, the rerun from ``good`` takes a new checkpoint there, after the
    # rejection.
    again = [c for c in api.checkpoints(victim) if c["step"] == bad]
    rejected_at = datetime.fromisoformat(event["requested_at"])
    assert all(datetime.fromisoformat(c["created_at"]) > rejected_at for c in again), again
    # The victim's copy is kept for a post-mortem.
    assert any(f.with_name(f.name + ".corrupt").exists() for f in bad_files)
    # Resumed from the step-``good`` checkpoint, training ended where a clean run did.
    api.wait_state(twin, "completed")
    assert final_dev_loss(api, victim) == final_dev_loss(api, twin)
    api.close()


def _npz(n_floats: int, seed: int) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, w=np.random.default_rng(seed).standard_normal(n_floats))
    return buf.getvalue()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs where the server will keep its checkpoints."""
    mount = tmp_path / "srv" / "files" / "checkpoints"
    mount.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_full_disk_answers_507_and_keeps_the_previous_checkpoint(
    tiny_disk: Path, tmp_path: Path
) -> None:
    server = ServerProcess(tmp_path / "srv", workers=0).start()
    api = Api(server.url)
    http = httpx2.Client(base_url=server.url, timeout=30.0)
    try:
        study = api.create_study(epochs=1)
        trial_id = int(api.create_trial(study["id"], {**SLOW, "epochs": 1})["id"])
        claim = api.call("POST", "/api/workers/claim", json={"worker": "test-worker"})
        url = f"/api/workers/trials/{trial_id}/checkpoints"

        def put(step: int) -> httpx2.Response:
            params = {"attempt": claim["attempt"], "step": step}
            return http.put(url, params=params, content=_npz(40_000, step))  # ~320 kB

        assert put(10).status_code == 201
        filler = tiny_disk / "filler"
        with filler.open("wb") as fh:  # fill what is left of the disk
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        full = put(20)
        assert full.status_code == 507, full.text
        assert "No space left" in full.json()["detail"]
        assert [c["step"] for c in api.checkpoints(trial_id)] == [10]
        # No partial or temporary file stayed behind: only step 10's file and the filler.
        assert [p.suffix for p in tiny_disk.iterdir() if p != filler] == [".npz"]
        # Reports go on meanwhile: the database is not on the full disk.
        body = {"attempt": claim["attempt"], "step": 20, "epoch": 0.1, "points": []}
        api.call("POST", f"/api/workers/trials/{trial_id}/report", json=body)

        filler.unlink()
        assert put(20).status_code == 201
        assert [c["step"] for c in api.checkpoints(trial_id)] == [10, 20]
    finally:
        http.close()
        api.close()
        server.stop()
