"""The Dask launcher with a real ``distributed.LocalCluster`` and a real server process.

Dask only places our worker loops; trials flow through our own protocol. A Dask worker
killed mid-trial loses its trial the usual way (the lease), and the API token reaches the
Dask workers through their environment, never as a task argument.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import ROOT, THREAD_ENV, Api, ServerProcess, wait_for

if os.environ.get("CI") != "true":  # CI installs the dask extra: there it must not skip
    pytest.importorskip("distributed")
from distributed import Client, LocalCluster  # noqa: E402

pytestmark = pytest.mark.slow
TOKEN = "dask-launcher-test-token"
SPACE: dict[str, Any] = {
    "learning_rate": {"dist": "log_uniform", "low": 1e-3, "high": 1e-1},
    "hidden_units": 16, "num_layers": 1, "batch_size": 64, "epochs": 2,
}  # fmt: skip
# ~140 steps an epoch on digits: still training when its worker is killed.
LONG = {"hidden_units": 64, "num_layers": 2, "batch_size": 8, "epochs": 4, "seed": 4}


def _server(tmp_path: Path, **settings: str) -> ServerProcess:
    env = {
        "PANDACAVIAR_TOKEN": TOKEN,
        "PANDACAVIAR_LAUNCHER": "dask",
        "PANDACAVIAR_LEASE_SECONDS": "3",
        "PANDACAVIAR_REAPER_SECONDS": "0.5",
    }
    env.update({f"PANDACAVIAR_{k.upper()}": v for k, v in settings.items()})
    return ServerProcess(tmp_path / "server", workers=2, env=env)


def _pid(worker_name: str) -> int:
    """The process of a worker named ``host-pid/daskN``."""
    return int(worker_name.split("/")[0].rsplit("-", 1)[1])


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[tuple[Api, ServerProcess]]:
    server = _server(tmp_path).start()
    api = Api(server.url, TOKEN)
    yield api, server
    api.close()
    server.stop()
    print(f"--- server log ---\n{server.log_tail(80)}")


def test_caviar_study_completes_on_workers_placed_by_a_local_cluster(
    api_server: tuple[Api, ServerProcess],
) -> None:
    api, server = api_server
    body = {
        "name": "dask",
        "mode": "caviar",
        "task": "digits",
        "space": SPACE,
        "sampler": "random",
        "budget": {"trials": 12},
        "parallelism": 2,
        "seed": 1,
    }
    study_id = api.create_study(**body)["id"]
    names: set[str] = set()  # a trial names its worker while it runs

    def completed() -> bool:
        trials = api.call("GET", f"/api/studies/{study_id}/trials", params={"limit": 100})
        names.update(t["worker"] for t in trials["data"] if t["worker"])
        study = api.call("GET", f"/api/studies/{study_id}")
        return study["state"] == "completed" and sum(study["counts"].values()) == 12

    wait_for(completed, "12 trials to complete", poll=0.1)
    trials = api.call("GET", f"/api/studies/{study_id}/trials", params={"limit": 100})["data"]
    assert [t["state"] for t in trials] == ["completed"] * 12
    assert names and all("/dask" in n for n in names)
    for pid in {_pid(n) for n in names}:
        # A Dask worker process, not a dispatcher child (`app.cli worker`) nor the server.
        assert server.proc is not None and pid != server.proc.pid
        if Path(f"/proc/{pid}").exists():
            assert b"app.cli worker" not in _cmdline(pid)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Client]:
    # What a real cluster does by the dask-worker's environment: the token, one BLAS thread.
    env = {
        **THREAD_ENV,
        "PANDACAVIAR_TOKEN": TOKEN,
        "PYTHONPATH": str(ROOT),
        "PANDACAVIAR_CACHE_DIR": str(tmp_path / "dask-cache"),
    }
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, env=env, dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        yield client


def _scheduler_task_text(client: Client) -> str:
    """Everything the scheduler holds about its tasks: keys and run specs (args, kwargs)."""

    def dump(dask_scheduler: Any) -> str:
        import pickle

        lines = []
        for key, ts in dask_scheduler.tasks.items():
            spec = ts.run_spec
            parts = [
                repr(key),
                repr(spec),
                repr(getattr(spec, "args", None)),
                repr(getattr(spec, "kwargs", None)),
            ]
            try:  # the whole spec as it would travel: catches a token however deep
                parts.append(repr(pickle.dumps(spec)))
            except Exception as exc:  # noqa: BLE001 - say so rather than hide it
                parts.append(f"unpicklable: {exc}")
            lines.append(" ".join(parts))
        return "\n".join(lines)

    return str(client.run_on_scheduler(dump))


def test_killed_dask_worker_requeues_its_trial_and_the_token_stays_off_the_tasks(
    cluster: Client, tmp_path: Path
) -> None:
    address = cluster.scheduler.address
    server = _server(tmp_path, dask_scheduler=address).start()
    api = Api(server.url, TOKEN)
    try:
        wait_for(lambda: len(_scheduler_task_text(cluster).splitlines()) >= 2, "two tasks")
        tasks = _scheduler_task_text(cluster)
        assert "dask_task" in tasks and server.url in tasks  # we see the real arguments
        assert TOKEN not in tasks

        study = api.create_study(task="digits")
        trial = api.create_trial(study["id"], LONG)
        running = api.wait_trial(
            trial["id"], lambda t: t["state"] == "running" and t["step"] > 0, "training"
        )
        victim = _pid(running["worker"])
        assert victim in cluster.run(os.getpid).values()  # a Dask worker process
        os.kill(victim, signal.SIGKILL)

        done = api.wait_state(trial["id"], "completed", "failed")
        assert done["state"] == "completed", done
        assert done["attempt"] >= 2
        requeues = [e for e in api.events(trial["id"]) if e["kind"] == "requeue"]
        assert requeues
        assert TOKEN not in _scheduler_task_text(cluster)
    finally:
        api.close()
        server.stop()
        print(f"--- server log ---\n{server.log_tail(80)}")
