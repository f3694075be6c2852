"""Live and consistent pages: the compare page follows a running trial, a trial has one name
on every page, a study the user stopped says so, and the examples outlive the first study."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

from tests.web import trials_of, wait_api

pytestmark = pytest.mark.slow  # a real server, real workers and a real browser

# Batches of 4 on digits: ~315 steps an epoch, a point every 20 steps; minutes to run.
LONG = {"batch_size": 4, "epochs": 500}

# The compare chart's points of one series (by its legend name), or -1 while it is not drawn.
SERIES_POINTS = """([id, name]) => {
  const chart = echarts.getInstanceByDom(document.getElementById(id));
  const series = chart ? chart.getOption().series.find((s) => s.name === name) : null;
  return series ? series.data.filter((d) => d[1] !== null).length : -1;
}"""


def panda_study(api: httpx2.Client, name: str) -> dict[str, Any]:
    r = api.post("/api/studies", json={"name": name, "mode": "panda", "task": "digits"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def new_trial(api: httpx2.Client, study_id: int, **hparams: Any) -> dict[str, Any]:
    r = api.post(f"/api/studies/{study_id}/trials", json={"hparams": hparams})
    assert r.status_code == 201, r.text
    return dict(r.json())


def stop_and_wait(api: httpx2.Client, *trial_ids: int) -> None:
    for tid in trial_ids:
        api.post(f"/api/trials/{tid}/stop")
    for tid in trial_ids:
        wait_api(
            lambda tid=tid: api.get(f"/api/trials/{tid}").json()["state"] == "stopped",
            f"trial {tid} to stop",
        )


def test_compare_follows_a_running_trial_and_names_it_as_every_page_does(
    page: Any, api: httpx2.Client, shot: Any
) -> None:
    study = panda_study(api, "live compare")
    first = new_trial(api, study["id"])  # stopped at once: the running one is Trial 1
    stop_and_wait(api, first["id"])
    running = new_trial(api, study["id"], **LONG)
    assert running["number"] == 1 and running["id"] != running["number"]
    wait_api(
        lambda: api.get(f"/api/trials/{running['id']}").json()["step"] >= 20,
        "the trial to report its first points",
    )

    # The compare page: its curves grow without a reload, fetched past the last step held.
    page.goto(f"/compare?trials={first['id']},{running['id']}")
    page.evaluate("window.__sameDocument = true")
    drawn = page.evaluate(SERIES_POINTS, ["cmp-train_loss", "Trial 1"])
    wait_api(lambda: page.evaluate(SERIES_POINTS, ["cmp-train_loss", "Trial 1"]) > 0, "curves")
    before = page.evaluate(SERIES_POINTS, ["cmp-train_loss", "Trial 1"])
    assert before >= max(drawn, 1)
    wait_api(
        lambda: page.evaluate(SERIES_POINTS, ["cmp-train_loss", "Trial 1"]) > before,
        "the running trial's curve to grow on the compare page",
    )
    assert page.evaluate("window.__sameDocument") is True
    expect(page.locator("#compare-status")).to_contain_text("live: 1 running")
    served = api.get(f"/api/trials/{running['id']}/metrics?names=train_loss").json()
    assert len(served["train_loss"]) >= page.evaluate(SERIES_POINTS, ["cmp-train_loss", "Trial 1"])

    # One name for the trial: compare (table and legend), study page, trial page.
    head = page.locator(f'#cmp-table th[data-trial-id="{running["id"]}"] a')
    expect(head).to_have_text("Trial 1")
    assert page.evaluate(SERIES_POINTS, ["cmp-dev_loss", "Trial 0"]) >= 0  # both in the legend
    shot("compare-live")
    page.goto(f"/studies/{study['id']}")
    link = page.locator(f'tr[data-trial-id="{running["id"]}"] a[href="/trials/{running["id"]}"]')
    expect(link).to_have_text("Trial 1")
    page.goto(f"/trials/{running['id']}")
    expect(page.locator("#trial-title")).to_have_text("Trial 1")
    expect(page).to_have_title(re.compile(r"^Trial 1 · "))
    expect(page.locator("#trial-meta")).to_contain_text("in study live compare")

    # Stopped: the compare page says so and stops asking.
    stop_and_wait(api, running["id"])
    page.goto(f"/compare?trials={first['id']},{running['id']}")
    expect(page.locator("#cmp-table thead")).to_contain_text("Stopped")
    expect(page.locator("#compare-status")).to_have_text("2 trials.")


def test_a_study_stopped_by_the_user_says_stopped(
    page: Any, api: httpx2.Client, shot: Any
) -> None:
    study = panda_study(api, "stopped by hand")
    trial = new_trial(api, study["id"], **LONG)
    wait_api(
        lambda: api.get(f"/api/trials/{trial['id']}").json()["state"] == "running",
        "the trial to run",
    )
    stop_and_wait(api, trial["id"])

    # What the pages decide from: no trial open (the API's "completed"), one stopped, none
    # completed.
    got = api.get(f"/api/studies/{study['id']}").json()
    assert got["state"] == "completed"
    assert got["counts"].get("stopped") == 1 and not got["counts"].get("completed")
    assert got["progress"] == {"ended": 1, "planned": 1}

    page.goto("/")
    row = page.locator(f'tr[data-study-id="{study["id"]}"]')
    expect(row).to_have_attribute("data-state", "stopped")
    expect(row.locator(".badge")).to_have_text("Stopped")
    expect(row.locator(".progress")).to_have_class(re.compile(r"\bprogress-stopped\b"))
    expect(row).not_to_contain_text("Completed")
    shot("studies-list-stopped")
    page.goto(f"/studies/{study['id']}")
    expect(page.locator("#study-meta .badge")).to_have_text("Stopped")
    expect(page.locator(f'tr[data-trial-id="{trial["id"]}"]')).to_contain_text("Stopped")


def test_the_examples_stay_reachable_once_a_study_exists(
    page: Any, api: httpx2.Client, shot: Any
) -> None:
    panda_study(api, "already here")
    page.goto("/")
    expect(page.locator("#studies-table")).to_be_visible()
    teach = page.locator("#teach")
    expect(teach).to_have_js_property("open", False)  # folded to one line, not gone
    button = page.get_by_role("button", name="Try a caviar search on digits")
    expect(button).to_be_hidden()
    page.get_by_text("Examples: two ways to tune a network").click()
    expect(button).to_be_visible()
    # The list refreshes every 3 s: the section stays as the user opened it.
    page.wait_for_timeout(3500)
    expect(teach).to_have_js_property("open", True)
    shot("studies-examples-reopened")

    button.click()
    page.wait_for_url(re.compile(r"/studies/\d+$"))
    study_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("h1")).to_have_text("digits caviar example")
    study = api.get(f"/api/studies/{study_id}").json()
    assert (study["mode"], study["budget"]["trials"]) == ("caviar", 8)
    wait_api(lambda: stop_open_trials(api, study_id), "the example to end", timeout=90)


def stop_open_trials(api: httpx2.Client, study_id: int) -> bool:
    """Stop what is open (the study samples the next trials meanwhile); True once it ended."""
    for t in trials_of(api, study_id):
        if t["state"] in ("queued", "paused", "running") and not t["stop_requested"]:
            api.post(f"/api/trials/{t['id']}/stop")
    return bool(api.get(f"/api/studies/{study_id}").json()["state"] == "completed")
