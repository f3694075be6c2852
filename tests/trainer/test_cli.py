"""``python -m trainer``: the engine's command line contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_digits_json_prints_a_single_parseable_object() -> None:
    proc = _run("--task", "digits", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    for key in (
        "dev_accuracy",
        "dev_loss",
        "test_accuracy",
        "test_loss",
        "steps",
        "epochs",
        "seconds",
    ):
        assert key in result
    assert result["epochs"] == 20 and result["dev_accuracy"] > 0.9


def test_quadratic_reports_w() -> None:
    proc = _run(
        "--task",
        "quadratic",
        "--optimizer",
        "sgd",
        "--learning-rate",
        "0.01",
        "--steps",
        "1000",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert abs(json.loads(proc.stdout)["w"] - 5.0) < 1e-4


def test_one_line_per_epoch_without_json() -> None:
    proc = _run("--task", "iris", "--epochs", "3", "--no-batch-norm", "--hidden-units", "16")
    assert proc.returncode == 0, proc.stderr
    epoch_lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("epoch")]
    assert len(epoch_lines) == 3


def test_out_of_range_value_names_the_field_and_range() -> None:
    proc = _run("--task", "iris", "--learning-rate", "-1")
    assert proc.returncode == 2
    assert "learning_rate" in proc.stderr and "(0, 10]" in proc.stderr


def test_epochs_and_steps_together_are_refused() -> None:
    proc = _run("--task", "iris", "--epochs", "2", "--steps", "5")
    assert proc.returncode == 2 and "not both" in proc.stderr
