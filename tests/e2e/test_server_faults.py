"""Server faults with real processes: SIGKILL mid-ingest, SIGTERM, a restart on the same port.

- SIGKILL while 4 clients report: after a restart on the same database the file passes
  ``PRAGMA integrity_check``, every batch that got a 2xx is stored, the trials re-attach
  (same attempt, the lease has not expired) and each completes exactly once;
- SIGTERM: the dispatcher's workers checkpoint at their next safe point and hand their trials
  back (finish "requeue"), so nothing fails and the resumed trials end bit for bit like an
  undisturbed twin;
- a remote worker rides out a server restart: it retries with backoff and carries on.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import (
    FAST,
    ROOT,
    SLOW,
    THREAD_ENV,
    Api,
    ServerProcess,
    StartServer,
    WorkerProcesses,
    assert_whole_curve,
    final_dev_loss,
    total_steps,
    wait_for,
)

pytestmark = pytest.mark.slow

# A reporting client as its own process: real worker-protocol calls through WorkerClient
# (which retries transport errors forever), one line in its ack log per 2xx.
REPORTING_CLIENT = """
import json, sys, time
from app.worker.client import StaleAttempt, WorkerClient
url, name, ack_path, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = WorkerClient(url)
claim = client.claim(name)
tid, attempt = claim["trial_id"], claim["attempt"]
with open(ack_path, "a") as ack:
    ack.write(json.dumps({"claimed": tid, "attempt": attempt}) + "\\n")
    ack.flush()
    for first in range(1, steps + 1, 5):
        batch = range(first, min(first + 5, steps + 1))
        points = [[s, n, s / 1000] for s in batch for n in ("train_loss", "train_accuracy")]
        body = {"attempt": attempt, "step": batch[-1], "epoch": 0.0, "points": points}
        client.request("POST", f"/api/workers/trials/{tid}/report", json=body)
        ack.write(json.dumps({"acked": list(batch)}) + "\\n")
        ack.flush()
        time.sleep(0.02)
    body = {"attempt": attempt, "status": "completed", "step": steps, "epoch": 1.0}
    try:
        client.request("POST", f"/api/workers/trials/{tid}/finish", json=body)
        ack.write(json.dumps({"finished": 200}) + "\\n")
    except StaleAttempt:  # the answer to a first try was lost: it did finish, once
        ack.write(json.dumps({"finished": 409}) + "\\n")
"""


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def _ack_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _kill(server: ServerProcess) -> None:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    server.proc = None


def test_sigkilled_server_keeps_every_acknowledged_batch(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(workers=0, lease_seconds=60, reaper_seconds=0.5)
    api = Api(server.url)
    study = api.create_study(epochs=1)
    for seed in range(4):
        api.create_trial(study["id"], {**FAST, "epochs": 1, "seed": seed})
    logs = [tmp_path / f"acks-{i}.jsonl" for i in range(4)]
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", REPORTING_CLIENT, server.url, f"client-{i}", str(log), "600"],
            cwd=ROOT,
            env={**os.environ, **THREAD_ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for i, log in enumerate(logs)
    ]
    try:
        wait_for(lambda: all(len(_ack_log(p)) >= 10 for p in logs), "reports from all 4")
        _kill(server)  # in the middle of the four clients' reports
        assert _integrity(server.data / "pandacaviar.db") == "ok"
        server.start()  # the same port, database and data directory
        for proc in clients:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode(errors="replace")
    finally:
        for proc in clients:
            proc.kill()
    assert _integrity(server.data / "pandacaviar.db") == "ok"

    for log in logs:
        entries = _ack_log(log)
        trial_id = entries[0]["claimed"]
        acked = sorted(s for e in entries for s in e.get("acked", []))
        assert acked == list(range(1, 601))
        stored = api.metrics(trial_id, "train_loss", "train_accuracy")
        for name in ("train_loss", "train_accuracy"):
            assert [int(p[0]) for p in stored[name]] == acked, f"trial {trial_id} lost {name}"
        # Re-attached: the same attempt went on after the restart and finished once.
        assert [e for e in entries if "finished" in e] in (
            [{"finished": 200}],
            [{"finished": 409}],
        )
        trial = api.trial(trial_id)
        assert (trial["state"], trial["attempt"]) == ("completed", 1), trial
        assert not [e for e in api.events(trial_id) if e["kind"] == "requeue"]
    api.close()


def _db_rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql, args))


def test_sigterm_hands_trials_back_and_fails_nothing(start_server: StartServer) -> None:
    server = start_server(workers=2, lease_seconds=30, reaper_seconds=0.5)
    api = Api(server.url)
    epochs = 40
    study = api.create_study(epochs=epochs)
    hparams = {**SLOW, "epochs": epochs, "seed": 8}
    ids = [int(api.create_trial(study["id"], hparams)["id"]) for _ in range(2)]
    twin = int(api.create_trial(study["id"], hparams)["id"])  # starts after the restart
    for trial_id in ids:
        api.wait_trial(trial_id, lambda t: t["state"] == "running" and t["step"] >= 100, "run")

    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=60)
    server.proc = None
    db = server.data / "pandacaviar.db"
    assert _db_rows(db, "SELECT count(*) FROM trials WHERE state = 'failed'") == [(0,)]
    for trial_id in ids:
        ((state, step, attempt),) = _db_rows(
            db, "SELECT state, step, attempt FROM trials WHERE id = ?", trial_id
        )
        assert (state, attempt) == ("queued", 1), (state, attempt)
        # Handed back at a safe point with a checkpoint there: no step is lost.
        assert (step,) in _db_rows(db, "SELECT step FROM checkpoints WHERE trial_id = ?", trial_id)
        payloads = _db_rows(
            db, "SELECT payload FROM events WHERE trial_id = ? AND kind = 'requeue'", trial_id
        )
        assert [json.loads(p)["reason"] for (p,) in payloads] == ["worker stopped"]

    server.start()
    for trial_id in [*ids, twin]:
        done = api.wait_state(trial_id, "completed", "failed", timeout=120)
        assert done["state"] == "completed", done
        assert done["step"] == total_steps(SLOW, epochs)
        assert_whole_curve(api.metrics(trial_id, "train_loss")["train_loss"], done["step"])
    for trial_id in ids:
        assert api.trial(trial_id)["attempt"] == 2
        assert final_dev_loss(api, trial_id) == final_dev_loss(api, twin)
    api.close()


def test_remote_worker_reconnects_after_a_server_restart(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(workers=0, lease_seconds=60, reaper_seconds=0.5)
    api = Api(server.url)
    epochs = 40
    study = api.create_study(epochs=epochs)
    trial_id = int(api.create_trial(study["id"], {**SLOW, "epochs": epochs})["id"])
    pool = WorkerProcesses(server.url, tmp_path)
    try:
        pool.start(1)
        api.wait_trial(trial_id, lambda t: t["state"] == "running" and t["step"] >= 100, "run")
        server.stop()  # a remote worker is not the server's: it keeps its trial
        wait_for(lambda: "retrying" in pool.log(0), "the worker to retry", timeout=60)
        server.start()
        done = api.wait_state(trial_id, "completed", "failed", timeout=120)
        assert done["state"] == "completed" and done["attempt"] == 1, done
        assert_whole_curve(api.metrics(trial_id, "train_loss")["train_loss"], done["step"])
        assert pool.procs[0].poll() is None  # still there, ready for the next trial
    finally:
        pool.stop()
        api.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie of a dead parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _worker_pids(api: Api, trial_ids: list[int]) -> list[int]:
    """The pids of the local workers running ``trial_ids`` (named ``host-pid``)."""
    return [int(str(api.trial(t)["worker"]).rsplit("-", 1)[1]) for t in trial_ids]


def test_local_workers_ride_out_a_server_sigkill_and_hand_their_trials_back(
    start_server: StartServer,
) -> None:
    server = start_server(workers=2, lease_seconds=10, reaper_seconds=0.5)
    api = Api(server.url)
    epochs = 30
    study = api.create_study(epochs=epochs)
    ids = [int(api.create_trial(study["id"], {**SLOW, "epochs": epochs, "seed": s})["id"])
           for s in (1, 2)]  # fmt: skip
    for trial_id in ids:
        api.wait_trial(trial_id, lambda t: t["state"] == "running" and t["step"] >= 100, "run")
    orphans = _worker_pids(api, ids)
    try:
        _kill(server)  # the server alone: its workers live on, orphaned
        assert all(_alive(pid) for pid in orphans)
        server.start()  # the same port, database and data directory
        # Each orphan re-attached with its attempt, handed its trial back, and exited.
        wait_for(lambda: not any(_alive(pid) for pid in orphans), "the orphans to exit")
        for trial_id in ids:
            done = api.wait_state(trial_id, "completed", "failed", timeout=120)
            assert done["state"] == "completed" and done["failures"] == 0, done
            requeues = [e["payload"] for e in api.events(trial_id) if e["kind"] == "requeue"]
            # Handed back, never reaped: no lease ran out, so no two workers held the trial.
            assert [p.get("reason") for p in requeues] == ["worker stopped"], requeues
            assert_whole_curve(api.metrics(trial_id, "train_loss")["train_loss"], done["step"])
    finally:
        for pid in orphans:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        api.close()


def test_orphaned_local_workers_exit_when_their_server_stays_away(
    start_server: StartServer,
) -> None:
    lease = 3
    server = start_server(workers=1, lease_seconds=lease, reaper_seconds=0.5)
    api = Api(server.url)
    study = api.create_study(epochs=40)
    trial_id = int(api.create_trial(study["id"], {**SLOW, "epochs": 40})["id"])
    api.wait_trial(trial_id, lambda t: t["state"] == "running" and t["step"] >= 50, "run")
    (orphan,) = _worker_pids(api, [trial_id])
    try:
        _kill(server)
        # Gone after one lease without an answer (plus its last retry's wait and the poll of
        # its parent): no worker trains on for a server that is not there.
        wait_for(lambda: not _alive(orphan), "the orphan to give up", timeout=lease + 15)
    finally:
        if _alive(orphan):
            os.kill(orphan, signal.SIGKILL)
        api.close()
