"""Two real uvicorn servers on one PostgreSQL database, behind different ports.

Workers claim through both, a worker reports to one server while the user adjusts through the
other, and two processes pause and adjust the same trials through different servers at once:
every trial runs once, every adjustment is applied once, no request is doubled. The row locks
behind this are in app.storage.locks and app.trials.claims;
tests/storage/test_postgres_races.py plays each race out step by step.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.e2e import (
    NEW_LR,
    OLD_LR,
    REPORT_EVERY,
    ROOT,
    SLOW,
    THREAD_ENV,
    Api,
    WorkerProcesses,
    free_port,
    wait_for,
)

pytestmark = pytest.mark.slow

N_TRIALS = 40
N_CLAIMERS = 4
ROUNDS = 20


class Server:
    """``uvicorn app.main:create_app --factory`` on a free loopback port (no dispatcher)."""

    def __init__(self, database_url: str, data: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {
            **os.environ, **THREAD_ENV,
            "PANDACAVIAR_DATABASE_URL": database_url,
            # One data directory for both, as two servers behind a load balancer would share.
            "PANDACAVIAR_DATA_DIR": str(data),
            "PANDACAVIAR_WORKERS": "0",
            "PANDACAVIAR_START_DISPATCHER": "false",
            # Trials claimed by hand below never report: no reaper may requeue them mid-test.
            "PANDACAVIAR_LEASE_SECONDS": "600",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                          if p),
        }  # fmt: skip
        env.pop("PANDACAVIAR_TOKEN", None)
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_up(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited:\n{self.log.read_text()[-3000:]}")
            try:
                return httpx2.get(f"{self.url}/api/health", timeout=2).status_code == 200
            except httpx2.TransportError:
                return False

        wait_for(up, f"{self.url}/api/health")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def servers(pg_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two servers on one PostgreSQL database; their logs are printed at teardown."""
    pair = [Server(pg_url, tmp_path / "data", tmp_path / f"server{i}.log") for i in range(2)]
    try:
        for server in pair:  # started together, waited for together
            server.wait_up()
        yield pair[0].url, pair[1].url
    finally:
        for server in pair:
            server.stop()
            print(f"--- {server.url} ---\n{server.log.read_text(errors='replace')[-3000:]}")
    for server in pair:
        # A 500 (a deadlock, a unique violation) would be a race the locks missed.
        assert "Traceback" not in server.log.read_text(errors="replace")


@pytest.fixture
def apis(servers: tuple[str, str]) -> Iterator[tuple[Api, Api]]:
    a, b = Api(servers[0]), Api(servers[1])
    yield a, b
    a.close()
    b.close()


# -- claims ----------------------------------------------------------------------------------


def claim_report_finish(claim_url: str, report_url: str, worker: str) -> list[tuple[int, int]]:
    """Claim through one server until the queue is empty; report and finish through the
    other. The (trial, attempt) pairs won."""
    won: list[tuple[int, int]] = []
    with (
        httpx2.Client(base_url=claim_url, timeout=60) as mine,
        httpx2.Client(base_url=report_url, timeout=60) as other,
    ):
        while (r := mine.post("/api/workers/claim", json={"worker": worker})).status_code == 200:
            trial_id, attempt = r.json()["trial_id"], r.json()["attempt"]
            won.append((trial_id, attempt))
            path = f"/api/workers/trials/{trial_id}"
            body = {
                "attempt": attempt,
                "step": 1,
                "epoch": 0.1,
                "points": [[1, "train_loss", 0.5]],
            }
            assert other.post(f"{path}/report", json=body).json()["action"] == "continue"
            body = {"attempt": attempt, "status": "completed", "step": 2, "epoch": 0.2}
            assert mine.post(f"{path}/finish", json=body).status_code == 200
        assert r.status_code == 204, r.text
    return won


def claim_all(url: str, worker: str) -> list[int]:
    with httpx2.Client(base_url=url, timeout=60) as http:
        won = []
        while (r := http.post("/api/workers/claim", json={"worker": worker})).status_code == 200:
            won.append(r.json()["trial_id"])
        assert r.status_code == 204, r.text
        return won


def test_workers_on_two_servers_run_every_trial_once(
    servers: tuple[str, str], apis: tuple[Api, Api]
) -> None:
    a, b = apis
    study = a.create_study(epochs=1)
    ids = [
        (a if i % 2 else b).create_trial(study["id"], {"seed": i})["id"] for i in range(N_TRIALS)
    ]
    jobs = [(servers[i % 2], servers[1 - i % 2], f"w{i}") for i in range(N_CLAIMERS)]
    with mp.get_context("spawn").Pool(N_CLAIMERS) as pool:
        results = pool.starmap(claim_report_finish, jobs)
    claimed = sorted(trial for result in results for trial, _ in result)
    assert claimed == sorted(ids)  # every trial once: none lost, none twice
    assert {attempt for result in results for _, attempt in result} == {1}
    listed = a.call("GET", f"/api/studies/{study['id']}/trials", params={"limit": 1000})
    assert {(t["state"], t["attempt"]) for t in listed["data"]} == {("completed", 1)}
    for trial_id in ids[:5]:
        assert [e["kind"] for e in a.events(trial_id)] == []  # no requeue, no failure


def test_the_parallelism_cap_holds_across_servers(
    servers: tuple[str, str], apis: tuple[Api, Api]
) -> None:
    a, b = apis
    space = {"learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1.0}, "epochs": 2}
    body = {
        "name": "cap",
        "mode": "caviar",
        "task": "digits",
        "space": space,
        "budget": {"trials": 3},
        "parallelism": 3,
    }
    study = a.call("POST", "/api/studies", 201, json=body)
    for seed in range(12):  # by hand: queued beyond the cap
        (a if seed % 2 else b).create_trial(study["id"], {"seed": seed})
    jobs = [(servers[i % 2], f"w{i}") for i in range(4)]
    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        results = pool.starmap(claim_all, jobs)
    won = [t for r in results for t in r]
    assert len(won) == len(set(won)) == 3


# -- an adjustment through one server, the worker on the other -------------------------------


def test_an_adjustment_through_one_server_reaches_the_worker_of_the_other(
    servers: tuple[str, str], apis: tuple[Api, Api], tmp_path: Path
) -> None:
    a, b = apis
    study = a.create_study(epochs=30)
    created = a.create_trial(study["id"], {**SLOW, "learning_rate": OLD_LR})
    trial_id = int(created["id"])
    workers = WorkerProcesses(servers[1], tmp_path)  # the worker talks to B only
    workers.start(1)
    try:
        a.wait_trial(trial_id, lambda t: t["state"] == "running" and t["step"] >= 50, "running")
        a.call("PATCH", f"/api/trials/{trial_id}/hparams", json={"learning_rate": NEW_LR})

        def applied() -> dict[str, Any] | None:
            adjusts = [e for e in a.events(trial_id) if e["kind"] == "adjust"]
            return adjusts[0] if adjusts and adjusts[0]["applied_step"] is not None else None

        event = wait_for(applied, "the adjustment to be applied")
        first = int(event["applied_step"])
        a.wait_trial(trial_id, lambda t: t["step"] >= first + 2 * REPORT_EVERY, "training on")
        b.call("POST", f"/api/trials/{trial_id}/stop")
        stopped = a.wait_state(trial_id, "stopped", "completed", "failed")
    finally:
        workers.stop()
    assert stopped["state"] == "stopped" and stopped["attempt"] == 1, stopped
    (adjust,) = [e for e in a.events(trial_id) if e["kind"] == "adjust"]
    assert adjust["applied_step"] == first  # applied once: a second report left it alone
    assert adjust["payload"] == {
        "hparams": {"learning_rate": NEW_LR},
        "old": {"learning_rate": OLD_LR},
    }
    assert stopped["hparams"] == {**created["hparams"], "learning_rate": NEW_LR}
    # The checkpoint taken just before applying it, then the new value from that step on.
    assert first - 1 in [c["step"] for c in a.checkpoints(trial_id)]
    lr = a.metrics(trial_id, "learning_rate")["learning_rate"]
    assert all(v == pytest.approx(OLD_LR, rel=1e-6) for s, v in lr if s < first)
    assert all(v == pytest.approx(NEW_LR, rel=1e-6) for s, v in lr if s >= first)
    assert any(s >= first for s, _ in lr)


# -- controls of one trial through two servers at once ---------------------------------------


def control_race(url: str, trial_ids: list[int], value: float, barrier: Any) -> list[int]:
    """For each trial, at the same moment as the other process: adjust, then pause."""
    statuses = []
    with httpx2.Client(base_url=url, timeout=60) as http:
        for trial_id in trial_ids:
            barrier.wait()
            r = http.patch(f"/api/trials/{trial_id}/hparams", json={"learning_rate": value})
            statuses.append(r.status_code)
            barrier.wait()
            statuses.append(http.post(f"/api/trials/{trial_id}/pause").status_code)
    return statuses


def test_two_processes_controlling_one_trial_through_two_servers(
    servers: tuple[str, str], apis: tuple[Api, Api]
) -> None:
    a, b = apis
    study = a.create_study(epochs=5)
    trial_ids = []
    for i in range(ROUNDS):  # running trials whose worker never comes back
        trial_ids.append(int(a.create_trial(study["id"], {"seed": i, "learning_rate": 0.1})["id"]))
        got = b.call("POST", "/api/workers/claim", json={"worker": "w"})
        assert got["trial_id"] == trial_ids[-1]
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(2) as pool:
        barrier = manager.Barrier(2)  # a proxy: a pool's arguments are pickled
        jobs = [(servers[0], trial_ids, 0.01, barrier), (servers[1], trial_ids, 0.02, barrier)]
        statuses = pool.starmap(control_race, jobs)
    assert {s for result in statuses for s in result} == {200}
    for trial_id in trial_ids:
        events = a.events(trial_id)
        # One pause: whichever came second saw the first pending and added nothing.
        assert [e["kind"] for e in events].count("pause") == 1, events
        first, second = [e["payload"] for e in events if e["kind"] == "adjust"]
        # Chained: the second replaced what the first set, not the value both started from.
        assert first["old"] == {"learning_rate": 0.1}, events
        assert second["old"] == first["hparams"], events
        pending = a.trial(trial_id)
        assert pending["state"] == "running"
