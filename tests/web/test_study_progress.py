"""The studies list counts progress against every planned trial; the study page names a
re-test round by what it re-runs (top k x seeds), not by the ranges it copied."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

from tests.web import trials_of, wait_api

pytestmark = pytest.mark.slow  # a real server, real workers and a real browser

SPACE = {
    "learning_rate": {"dist": "log_uniform", "low": 1e-3, "high": 0.5},
    "hidden_units": {"dist": "int_uniform", "low": 8, "high": 16},
}
ROUND_1, ROUND_2 = 6, 3
# Round 2's trials train long enough to be still running (or queued) while the page is read.
LONG_EPOCHS = 2000


def stop_open_trials(api: httpx2.Client, study_id: int) -> bool:
    """Stop what is queued, running or paused; True once the study has completed."""
    for t in trials_of(api, study_id):
        if t["state"] in ("queued", "paused") or (
            t["state"] == "running" and not t["stop_requested"]
        ):
            api.post(f"/api/trials/{t['id']}/stop")
    return bool(api.get(f"/api/studies/{study_id}").json()["state"] == "completed")


def test_list_progress_counts_later_rounds_and_retests(page: Any, api: httpx2.Client) -> None:
    sid = api.post("/api/studies", json={
        "name": "two rounds", "mode": "caviar", "task": "digits", "epochs": 1, "space": SPACE,
        "budget": {"trials": ROUND_1}, "parallelism": 2,
    }).json()["id"]  # fmt: skip
    wait_api(
        lambda: (
            len(trials_of(api, sid)) == ROUND_1
            and all(t["state"] == "completed" for t in trials_of(api, sid))
        ),
        "round 1 to complete",
    )
    r = api.post(
        f"/api/studies/{sid}/rounds", json={"space": {"epochs": LONG_EPOCHS}, "trials": ROUND_2}
    )
    assert r.status_code == 201, r.text

    # Round 1's budget alone made this "6 / 6", and past 100 % once round 2 ran.
    page.goto("/")
    row = page.locator(f'tr[data-study-id="{sid}"]')
    expect(row.locator(".progress-text")).to_have_text(f"{ROUND_1} / {ROUND_1 + ROUND_2}")

    # A re-test plans its top k x seeds trials too, and is named by them on the study page.
    r = api.post(f"/api/studies/{sid}/retest", json={"top": 2, "seeds": 1})
    assert r.status_code == 201, r.text
    expect(row.locator(".progress-text")).to_have_text(f"{ROUND_1} / {ROUND_1 + ROUND_2 + 2}")
    page.goto(f"/studies/{sid}")
    retest = page.locator('#rounds [data-round="3"]')
    expect(retest.locator("h3")).to_contain_text("Round 3 · re-test: top 2 × 1 seed")
    expect(retest.locator("dl")).to_have_count(0)  # no ranges: it re-runs configurations
    expect(page.locator('#rounds [data-round="2"] dl')).to_contain_text("learning_rate")
    # The header names round 1's budget as such and counts every planned trial.
    meta = page.locator("#study-meta")
    expect(meta).to_contain_text(f"budget {ROUND_1} trials in round 1")
    expect(meta).to_contain_text(f"{ROUND_1} / {ROUND_1 + ROUND_2 + 2} trials ended")

    # Stopped trials have ended: the study completes at every planned trial, never past it.
    wait_api(lambda: stop_open_trials(api, sid), "every trial to end", timeout=90)
    ended = len(trials_of(api, sid))
    assert ended == ROUND_1 + ROUND_2 + 2
    page.goto("/")
    expect(row.locator(".progress-text")).to_have_text(f"{ended} / {ended}")
    expect(row).to_contain_text("Completed")
