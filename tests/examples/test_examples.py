"""The examples in ``examples/``: their checkpoints resume bit for bit, and each one runs a
caviar study of its own against a real server to the end.

The round-trip tests drive an example's loop in process with a stand-in for the trial (its
``save``/``load`` are what a pause, a parked trial's promotion and a fork rely on). The
end-to-end tests run the example as the README says, as two processes sharing the study: the
first creates it and prints its page, the second joins with ``--study``.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

import pandacaviar
from tests.e2e import ROOT, THREAD_ENV, Api, ServerProcess

TORCH = "examples.torch_digits"
SKLEARN = "examples.sklearn_sgd"
STUDY_LINE = re.compile(r"^study (\d+): (\S+)$", re.MULTILINE)


class StandInTrial:
    """What the examples' loops use of :class:`pandacaviar.Trial`, recorded in memory.

    Args:
        hparams: the trial's values.
        epochs: its epochs.
        restored: the bytes ``restore()`` returns.
        stop_after: ``should_stop`` turns true after this many reports (None: never).
    """

    def __init__(
        self,
        hparams: dict[str, Any],
        epochs: int,
        restored: bytes | None = None,
        stop_after: int | None = None,
    ) -> None:
        self.hparams = hparams
        self.epochs = epochs
        self.restored = restored
        self.stop_after = stop_after
        self.reports: list[tuple[float, dict[str, float]]] = []
        self.failed: str | None = None

    def restore(self) -> bytes | None:
        return self.restored

    def report(self, *, epoch: float, **metrics: float) -> dict[str, Any]:
        self.reports.append((epoch, {k: float(v) for k, v in metrics.items()}))
        return {}

    def fail(self, error: str) -> None:
        self.failed = error

    @property
    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.reports) >= self.stop_after

    def as_trial(self) -> pandacaviar.Trial:
        return cast(pandacaviar.Trial, self)


def resumed_equals_uninterrupted(module: str, hparams: dict[str, Any], stop_after: int) -> None:
    """Train 2 epochs straight, and again stopped after ``stop_after`` reports, saved,
    loaded by a fresh loop and finished: the same reports, bit for bit."""
    example = importlib.import_module(module)
    data = example.load_split()
    whole = StandInTrial(hparams, epochs=2)
    example_loop = getattr(example, "DigitsLoop", None) or example.SgdLoop
    example_loop(data).train(whole.as_trial())

    first_loop = example_loop(data)
    first = StandInTrial(hparams, epochs=2, stop_after=stop_after)
    first_loop.train(first.as_trial())
    second = StandInTrial(hparams, epochs=2, restored=first_loop.save())
    example_loop(data).train(second.as_trial())

    assert whole.failed is None and len(first.reports) == stop_after
    assert first.reports + second.reports == whole.reports
    assert [e for e, m in whole.reports if "dev_accuracy" in m] == [1.0, 2.0]


def test_the_torch_example_resumed_mid_epoch_reports_what_an_uninterrupted_run_does() -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    hparams = {"learning_rate": 0.05, "momentum": 0.9, "seed": 3}
    resumed_equals_uninterrupted(TORCH, hparams, stop_after=60)  # epoch 1, batch 15 of 45


def test_the_sklearn_example_resumed_after_an_epoch_reports_what_an_uninterrupted_run_does() -> (
    None
):
    hparams = {"alpha": 1e-4, "eta0": 0.05, "seed": 3}
    resumed_equals_uninterrupted(SKLEARN, hparams, stop_after=1)


def test_the_torch_example_fails_a_diverged_trial_and_goes_on() -> None:
    pytest.importorskip("torch")
    from examples.torch_digits import DigitsLoop, load_split

    # This ReLU net's loss stays finite at any finite rate (its units die first): an infinite
    # one is the sure way to a NaN loss, which a report would refuse.
    trial = StandInTrial({"learning_rate": float("inf"), "momentum": 0.9}, epochs=5)
    DigitsLoop(load_split()).train(trial.as_trial())
    assert trial.failed == "diverged: train loss nan at epoch 1", trial.failed
    assert len(trial.reports) == 1  # the first step used the rate; the second saw the NaN


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server with no workers of its own: only the example's processes train."""
    process = ServerProcess(tmp_path / "server", workers=0).start()
    yield process
    process.stop()
    print(f"--- server log ---\n{process.log_tail(60)}")


def example(module: str, server: ServerProcess, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", module, "--server", server.url, *args]
    env = {**os.environ, **THREAD_ENV}
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_shared(module: str, server: ServerProcess, *args: str) -> tuple[int, list[int]]:
    """The example creating its study with ``args``, and a second process joining it by its
    ``--study``: (study id, trials each process ran)."""
    first = example(module, server, *args)
    assert first.stdout is not None
    line = first.stdout.readline()
    found = STUDY_LINE.match(line.strip())
    assert found, f"no 'study N: URL' line: {line!r}"
    study = int(found.group(1))
    assert found.group(2) == f"{server.url}/studies/{study}"
    second = example(module, server, "--study", str(study))
    ran = []
    for proc in (first, second):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        (count,) = re.findall(rf"^ran (\d+) trials of study {study}$", out, re.MULTILINE)
        ran.append(int(count))
    return study, ran


def assert_study_done(server: ServerProcess, study: int, trials: int, best_above: float) -> None:
    """Every trial ended, each with its objective at every epoch it trained, and the best
    configuration scores above ``best_above``."""
    api = Api(server.url)
    try:
        final = api.call("GET", f"/api/studies/{study}")
        assert final["state"] == "completed", final
        assert sum(final["counts"].values()) == trials, final["counts"]
        assert final["counts"].get("completed", 0) >= 1 and "failed" not in final["counts"]
        rows = api.call("GET", f"/api/studies/{study}/trials?limit=100")["data"]
        for t in rows:
            curve = api.metrics(t["id"], "dev_accuracy")["dev_accuracy"]
            assert len(curve) == round(t["epoch"]) >= 1, t
            assert len(api.metrics(t["id"], "train_loss")["train_loss"]) == t["step"]
        best = api.call("GET", f"/api/studies/{study}/best")
        assert best["value"] > best_above, best
    finally:
        api.close()


@pytest.mark.slow
def test_the_torch_example_runs_its_own_asha_study_in_two_processes(
    server: ServerProcess,
) -> None:
    pytest.importorskip("torch")
    study, ran = run_shared(TORCH, server, "--trials", "4", "--epochs", "3")
    assert sum(ran) == 4  # ASHA here stops trials: no trial is claimed twice
    # Study seed 0 samples one good rate of four (0.91 at epoch 1, 0.94 at 3); two diverge.
    assert_study_done(server, study, trials=4, best_above=0.85)


@pytest.mark.slow
def test_the_sklearn_example_runs_its_own_asha_study_in_two_processes(
    server: ServerProcess,
) -> None:
    study, ran = run_shared(SKLEARN, server, "--trials", "6", "--epochs", "4")
    assert sum(ran) == 6
    # Study seed 0: five of six trials pass 0.9 by epoch 1, the best reaches 0.94-0.96.
    assert_study_done(server, study, trials=6, best_above=0.9)
