"""Caviar end to end: a real server, its two real workers, a random study and a narrowed round."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import pytest

from tests.e2e import Api, wait_for
from trainer.config import HPARAM_SPECS

# Small enough for seconds per trial: one narrow hidden layer, 3-5 epochs of digits.
SPACE: dict[str, Any] = {
    "learning_rate": {"dist": "log_uniform", "low": 1e-3, "high": 1e-1},
    "hidden_units": {"dist": "int_uniform", "low": 8, "high": 32},
    "epochs": {"dist": "int_uniform", "low": 3, "high": 5},
    "batch_size": 64,
    "num_layers": 1,
}
STUDY_SECONDS = 60.0  # generous: the whole test usually takes well under half of it


def _trials(api: Api, study_id: int) -> list[dict[str, Any]]:
    return list(api.call("GET", f"/api/studies/{study_id}/trials", params={"limit": 1000})["data"])


def _run_to_completion(api: Api, study_id: int, n_trials: int) -> int:
    """Wait until the study completed with ``n_trials`` trials; the most seen running at once."""
    peak = 0

    def probe() -> bool:
        nonlocal peak
        study = api.call("GET", f"/api/studies/{study_id}")
        peak = max(peak, study["counts"].get("running", 0))
        return study["state"] == "completed" and sum(study["counts"].values()) == n_trials

    wait_for(probe, f"study {study_id} to complete {n_trials} trials", STUDY_SECONDS, poll=0.1)
    return peak


def _most_at_once(trials: list[dict[str, Any]]) -> int:
    """The most trials whose [started_at, ended_at] intervals overlap (an end frees first)."""
    moments: list[tuple[datetime, int]] = []
    for t in trials:
        moments.append((datetime.fromisoformat(t["started_at"]), 1))
        moments.append((datetime.fromisoformat(t["ended_at"]), -1))
    running = most = 0
    for _, change in sorted(moments):
        running += change
        most = max(most, running)
    return most


def _inside(space: dict[str, Any], hparams: dict[str, Any]) -> bool:
    for name, spec in space.items():
        value = hparams[name]
        if isinstance(spec, dict) and spec["dist"] == "choice":
            ok = value in spec["values"]
        elif isinstance(spec, dict):
            ok = spec["low"] <= value <= spec["high"]
        else:
            ok = value == spec
        if not ok:
            return False
    return True


@pytest.mark.slow
def test_random_study_then_narrowed_round_then_export(api: Api) -> None:
    body = {
        "name": "caviar e2e",
        "mode": "caviar",
        "task": "digits",
        "space": SPACE,
        "sampler": "random",
        "budget": {"trials": 12},
        "parallelism": 2,
        "seed": 1,
    }
    study_id = api.create_study(**body)["id"]

    assert _run_to_completion(api, study_id, 12) <= 2
    first = _trials(api, study_id)
    assert [t["state"] for t in first] == ["completed"] * 12
    assert _most_at_once(first) <= 2
    assert all(_inside(SPACE, t["hparams"]) for t in first)
    rounds = api.call("GET", f"/api/studies/{study_id}/rounds")["data"]
    assert [r["number"] for r in rounds] == [1]

    rnd = api.call(
        "POST",
        f"/api/studies/{study_id}/rounds",
        201,
        json={"from_top": 3, "margin": 0.1, "trials": 6},
    )
    assert rnd["number"] == 2 and rnd["parent_round_id"] == rounds[0]["id"]
    narrowed = rnd["space"]["learning_rate"]
    top = sorted(first, key=lambda t: -t["last_value"])[:3]
    assert all(narrowed["low"] <= t["hparams"]["learning_rate"] <= narrowed["high"] for t in top)
    assert narrowed["low"] >= 1e-3 and narrowed["high"] <= 1e-1

    assert _run_to_completion(api, study_id, 18) <= 2
    every = _trials(api, study_id)
    second = [t for t in every if t["round_id"] == rnd["id"]]
    assert len(second) == 6 and {t["state"] for t in second} == {"completed"}
    assert all(_inside(rnd["space"], t["hparams"]) for t in second)
    assert _most_at_once(every) <= 2

    export = api.http.get(f"/api/studies/{study_id}/export", params={"format": "csv"})
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == 18
    assert set(HPARAM_SPECS) <= set(rows[0])
    assert sorted(int(r["round"]) for r in rows) == [1] * 12 + [2] * 6
    assert all(float(r["test_accuracy"]) > 0 for r in rows)
    best = api.call("GET", f"/api/studies/{study_id}/best")
    assert best["value"] == max(float(r["value"]) for r in rows)
