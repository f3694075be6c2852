"""The study page's importance says how much to trust it: intervals drawn as whiskers, the
epoch and trials behind it, and a warning in plain sight when too few trials back it."""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.slow  # a real server, real workers and a real browser

SPACE = {
    "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1.0},
    "batch_size": {"dist": "log_int", "low": 16, "high": 256},
}


def wait_completed(api: httpx2.Client, study_id: int, n: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        trials = api.get(f"/api/studies/{study_id}/trials").json()["data"]
        if len(trials) == n and all(t["state"] == "completed" for t in trials):
            return
        time.sleep(0.2)
    raise AssertionError(f"trials of study {study_id} did not complete")


def test_importance_shows_its_intervals_and_warns_of_too_few_trials(
    page: Any, api: httpx2.Client, shot: Any
) -> None:
    study = api.post("/api/studies", json={
        "name": "few trials", "mode": "caviar", "task": "digits", "epochs": 2,
        "space": SPACE, "budget": {"trials": 3}, "parallelism": 3,
    }).json()  # fmt: skip
    wait_completed(api, study["id"], 3)
    answer = api.get(f"/api/studies/{study['id']}/importance").json()
    assert (answer["resource"], answer["n_trials"], answer["needed"]) == (2, 3, 10), answer

    page.goto(f"/studies/{study['id']}")
    warning = page.locator("#importance-warning")
    expect(warning).to_be_visible(timeout=30_000)
    expect(warning).to_have_text(
        "Caution: Only 3 trials at epoch 2: too few to trust this ranking (at least 10 needed)."
    )
    # Not the grey small print of a hint: it stands out as a box of its own.
    assert "hint" not in (warning.get_attribute("class") or "")
    expect(page.locator("#importance-basis")).to_contain_text("Fitted on 3 trials")
    expect(page.locator("#importance-basis")).to_contain_text("objective at epoch 2")
    # The chart draws a whisker per hyperparameter from its interval.
    whiskers = page.evaluate(
        """() => {
        const chart = echarts.getInstanceByDom(document.getElementById('chart-importance'));
        const series = chart.getOption().series.find((s) => s.type === 'custom');
        return series ? series.data : null;
    }"""
    )
    assert whiskers is not None and len(whiskers) == 2, whiskers
    drawn = {tuple(w[:2]) for w in whiskers}
    assert drawn == {tuple(v) for v in answer["intervals"].values()}
    assert all(0 <= low <= high <= 1 for low, high in drawn)
    page.locator("#chart-importance").scroll_into_view_if_needed()
    shot("study-importance-trust")
