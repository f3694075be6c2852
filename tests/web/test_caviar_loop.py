"""The whole caviar loop from the dashboard with defaults only, as a new user runs it: the
first page's example, round 1, "Narrow around the top k", round 2, "Re-test the top k", and a
re-tested best with its spread over seeds on the study page's result card."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

from tests.web import trials_of, wait_api

pytestmark = pytest.mark.slow  # a real server, its two workers and a real browser

ROUND_SECONDS = 240  # generous: a round of the example takes about a minute on 2 cores


def ended(api: httpx2.Client, study_id: int) -> bool:
    return bool(api.get(f"/api/studies/{study_id}").json()["state"] == "completed")


def test_the_caviar_loop_runs_from_the_dashboard_with_defaults(
    page: Any, api: httpx2.Client, shot: Any
) -> None:
    timings: dict[str, float] = {}
    start = time.monotonic()
    page.goto("/")
    page.get_by_role("button", name="Try a caviar search on digits").click()
    page.wait_for_url(re.compile(r"/studies/\d+$"))
    study_id = int(page.url.rsplit("/", 1)[1])
    study = api.get(f"/api/studies/{study_id}").json()
    budget = study["budget"]["trials"]
    card = page.locator("#result-card")
    expect(card).to_be_visible()
    best = page.locator("#best-line")
    expect(best).to_have_text("No result yet: the first comes when a trial ends its first epoch.")

    # While round 1 trains, the studies list says what each worker does.
    wait_api(lambda: any(t["state"] == "running" for t in trials_of(api, study_id)), "a trial")
    page.goto("/")
    line = page.locator("#workers-line")
    expect(line).to_contain_text("Workers: 2 (local)")
    expect(line).to_contain_text(re.compile(r"worker \S+ on Trial \d+ of digits caviar example"))
    expect(line).to_contain_text(re.compile(r"epoch \d"))
    shot("studies-workers-busy")
    page.goto(f"/studies/{study_id}")

    wait_api(lambda: ended(api, study_id), "round 1 to end", timeout=ROUND_SECONDS)
    timings["round 1"] = time.monotonic() - start
    expect(best).to_contain_text(
        re.compile(r"Best so far: Trial \d+ — dev_accuracy 0\.\d+"), timeout=20_000
    )
    expect(best).to_contain_text("one seed: re-test it to trust it")
    expect(page.locator("#best-hparams")).to_contain_text("learning_rate")
    shot("study-result-round-1")

    # "Narrow around the top k", as offered: k = min(3, trials with a value), round 1's budget.
    narrow = page.locator("#narrow-top")
    expect(narrow).to_have_text("Narrow around the top 3")
    expect(narrow).to_be_enabled()
    mark = time.monotonic()
    narrow.click()
    expect(page.locator("#next-status")).to_contain_text(
        f"Round 2 started with {budget} trials around the top 3", timeout=20_000
    )
    rounds = api.get(f"/api/studies/{study_id}/rounds").json()["data"]
    assert [(r["number"], r["from_top"], r["budget"]["trials"]) for r in rounds[1:]] == [
        (2, 3, budget)
    ]
    wait_api(lambda: ended(api, study_id), "round 2 to end", timeout=ROUND_SECONDS)
    timings["round 2"] = time.monotonic() - mark
    second = [t for t in trials_of(api, study_id) if t["round"] == 2]
    assert len(second) == budget
    assert any(t["state"] == "completed" for t in second), [t["state"] for t in second]

    # "Re-test the top k": 3 configurations, 3 fresh seeds each; the queued ones say why.
    again = page.locator("#retest-top-k")
    expect(again).to_have_text("Re-test the top 3")
    mark = time.monotonic()
    again.click()
    expect(page.locator("#next-status")).to_contain_text(
        "Re-test started (round 3): the best 3 configurations again with 3 fresh seeds each",
        timeout=20_000,
    )
    waits = page.locator("#trials tbody td[data-col=state] .why", has_text="waits for a slot")
    expect(waits.first).to_contain_text(
        re.compile(r"held by Trial \d+, Trial \d+"), timeout=20_000
    )
    # On a queued trial's page: the sentence, and the trials holding the slots as links.
    queued = [t for t in trials_of(api, study_id) if t["state"] == "queued"]
    if queued:  # the last re-test trials queue for several seconds on 2 workers
        page.goto(f"/trials/{queued[-1]['id']}")
        page.wait_for_selector("#trial-root[data-state]", state="attached")
        if page.get_attribute("#trial-root", "data-state") == "queued":  # drawn together
            why = page.locator("#trial-why")
            expect(why).to_contain_text("Waiting: its study runs 2 trial(s) at a time")
            expect(why.locator("a").first).to_have_text(
                re.compile(r"^Trial \d+ · digits caviar example$")
            )
            shot("trial-queued-waiting")
        page.goto(f"/studies/{study_id}")
    wait_api(lambda: ended(api, study_id), "the re-test to end", timeout=ROUND_SECONDS)
    timings["re-test"] = time.monotonic() - mark

    retested = r"^Best: Trial \d+ — dev_accuracy 0\.\d+ ± [\d.]+ over 4 seeds \(re-tested\)$"
    expect(best).to_have_text(re.compile(retested), timeout=20_000)
    expect(page.locator("#best-hparams")).to_contain_text("seeds")
    found = api.get(f"/api/studies/{study_id}/best").json()
    assert found["retested"] is True and found["runs"] == 4, found
    shot("study-result-re-tested")
    page.goto("/")
    expect(page.locator("#workers-line")).to_have_text("Workers: 2 (local) · all idle")
    timings["total"] = time.monotonic() - start
    print("caviar loop timings (s):", {k: round(v, 1) for k, v in timings.items()})
