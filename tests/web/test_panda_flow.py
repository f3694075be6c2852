"""A new user babysits one model in the browser; every step is checked on the page and the API."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

from tests.web import wait_api

pytestmark = pytest.mark.slow

# Small digits model with tiny batches: ~630 steps an epoch, so there is time to act mid-run.
EPOCHS = 40
NEW_LR = 0.0003


def dev_points(page: Any) -> int:
    return int(page.locator("#latest-dev_accuracy").get_attribute("data-count") or 0)


def trial_id_of(url: str) -> int:
    match = re.search(r"/trials/(\d+)$", url)
    assert match, url
    return int(match.group(1))


def test_babysit_a_panda_run(page: Any, api: httpx2.Client, shot: Any) -> None:
    # The first visit teaches panda and caviar.
    page.goto("/")
    expect(page.locator("#teach")).to_be_visible()
    expect(page.locator("#teach")).to_contain_text("Panda: babysit one model")
    shot("studies-first-visit")

    # Create a panda study on digits through the form.
    page.get_by_role("link", name="New study", exact=True).first.click()
    page.wait_for_url("**/studies/new")
    page.fill("#name", "babysat digits")
    page.fill("#epochs", str(EPOCHS))
    page.fill("#hp-batch_size-value", "2")
    page.fill("#hp-hidden_units-value", "64")
    expect(page.locator("#task")).to_have_value("digits")
    shot("new-study-panda")
    page.click("#create")
    page.wait_for_url(re.compile(r"/trials/\d+$"))
    trial_id = trial_id_of(page.url)
    (study,) = api.get("/api/studies").json()["data"]
    assert (study["name"], study["mode"], study["task"]) == ("babysat digits", "panda", "digits")
    trial = api.get(f"/api/trials/{trial_id}").json()
    assert trial["study_id"] == study["id"]
    assert trial["hparams"]["batch_size"] == 2 and trial["hparams"]["epochs"] == EPOCHS

    # The dev-accuracy curve grows on screen without a reload.
    page.evaluate("window.__sameDocument = true")
    wait_api(lambda: dev_points(page) >= 1, "a first dev_accuracy point on the page")
    first = dev_points(page)
    wait_api(lambda: dev_points(page) > first, "the dev_accuracy curve to grow")
    assert page.evaluate("window.__sameDocument") is True
    served = api.get(f"/api/trials/{trial_id}/metrics?names=dev_accuracy").json()
    assert len(served["dev_accuracy"]) >= dev_points(page) > first
    shot("trial-running")

    # Pause: the page shows the state in words, the API agrees.
    page.click("#pause")
    expect(page.locator("#trial-root")).to_have_attribute("data-state", "paused", timeout=20_000)
    expect(page.locator("#state")).to_contain_text("Paused")
    expect(page.locator("#resume")).to_be_enabled()
    expect(page.locator("#pause")).to_be_disabled()
    paused = api.get(f"/api/trials/{trial_id}").json()
    assert paused["state"] == "paused"
    pause_step = paused["step"]
    assert pause_step in [c["step"] for c in api.get(f"/api/trials/{trial_id}/checkpoints").json()]

    # Change the learning rate: pending until resume.
    expect(page.locator("#adj-learning_rate")).to_have_value("1.00e-3")
    page.fill("#adj-learning_rate", str(NEW_LR))
    page.click("#apply")
    expect(page.locator("#adjust-status")).to_contain_text("learning_rate = 3.00e-4")
    expect(page.locator("#adj-learning_rate-pending")).to_contain_text("pending")
    pending = api.get(f"/api/trials/{trial_id}").json()
    assert pending["pending_hparams"] == {"learning_rate": NEW_LR}
    shot("trial-paused-adjusted")

    # Resume: the adjustment applies at the step after the pause checkpoint, marked on the chart.
    page.click("#resume")
    expect(page.locator("#state")).not_to_contain_text("Paused", timeout=20_000)
    # A resume is a new attempt, and no failure: the babysitter's pauses are never counted.
    expect(page.locator("#progress-line")).to_contain_text("attempt 2 · 0 failures")

    def applied_adjust() -> dict[str, Any] | None:
        events = api.get(f"/api/trials/{trial_id}/events").json()
        done = [e for e in events if e["kind"] == "adjust" and e["applied_step"] is not None]
        return done[0] if done else None

    adjust = wait_api(applied_adjust, "the adjustment to be applied")
    assert adjust["applied_step"] == pause_step + 1
    step = str(adjust["applied_step"])
    expect(page.locator("#chart-lr")).to_have_attribute("data-markers", step, timeout=20_000)
    expect(page.locator("#chart-loss")).to_have_attribute("data-markers", step)
    expect(page.locator("#markers-caption")).to_contain_text(
        f"learning_rate 1.00e-3 → 3.00e-4 at step {step}"
    )
    wait_api(
        lambda: api.get(f"/api/trials/{trial_id}").json()["hparams"]["learning_rate"] == NEW_LR,
        "the new learning rate in force",
    )
    shot("trial-resumed-marker")

    # Fork from the pause checkpoint (the form holds its values) and land on the child's page.
    page.locator(f'#checkpoints li[data-step="{pause_step}"] button.fork').click()
    expect(page.locator("#fork-learning_rate")).to_have_value("1.00e-3")
    page.click("#fork-submit")
    page.wait_for_url(lambda url: not url.endswith(f"/trials/{trial_id}"))
    child_id = trial_id_of(page.url)
    assert child_id != trial_id
    expect(page.locator("#lineage")).to_contain_text(f"Forked from Trial {trial['number']}")
    expect(page.locator("#parent-link")).to_have_attribute("href", f"/trials/{trial_id}")
    child = api.get(f"/api/trials/{child_id}").json()
    assert (child["parent_id"], child["parent_step"]) == (trial_id, pause_step)
    shot("trial-fork-child")

    # The parent lists its fork.
    page.click("#parent-link")
    page.wait_for_url(f"**/trials/{trial_id}")
    expect(page.locator("#children")).to_contain_text(f"Trial {child['number']}")
    for tid in (trial_id, child_id):
        api.post(f"/api/trials/{tid}/stop")
