"""Every page renders without console errors, updates live, and links to the next one."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.slow  # a real server, real workers and a real browser

SPACE = {
    "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1.0},
    "batch_size": {"dist": "log_int", "low": 16, "high": 256},
    "momentum": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999},
    "optimizer": "momentum",  # the one that reads momentum
}
N_TRIALS = 3


def wait_ended(api: httpx2.Client, study_id: int, n: int) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        trials = api.get(f"/api/studies/{study_id}/trials").json()["data"]
        if len(trials) == n and all(t["state"] == "completed" for t in trials):
            return [t["id"] for t in trials]
        time.sleep(0.2)
    raise AssertionError(f"trials of study {study_id} did not complete")


def test_caviar_study_page_compare_and_list(page: Any, api: httpx2.Client, shot: Any) -> None:
    study = api.post("/api/studies", json={
        "name": "small caviar", "mode": "caviar", "task": "digits", "epochs": 2,
        "space": SPACE, "budget": {"trials": N_TRIALS}, "parallelism": 2,
    }).json()  # fmt: skip
    page.goto(f"/studies/{study['id']}")
    expect(page.locator("h1")).to_have_text("small caviar")
    # Distributions in words, bounds on their scale: never a raw id like one_minus_log_uniform.
    expect(page.locator("#rounds")).to_contain_text("log on 1 − β [0.9, 0.999]")
    expect(page.locator("#rounds")).to_contain_text("log-uniform [1.00e-4, 1.00e+0]")
    expect(page.locator("#rounds")).to_contain_text("log-integer (powers of 2) [16, 256]")
    expect(page.locator("#rounds")).not_to_contain_text("_uniform")

    # The server samples and runs the trials; the table follows without a reload.
    ids = wait_ended(api, study["id"], N_TRIALS)
    rows = page.locator("#trials tbody tr[data-trial-id]")
    expect(rows).to_have_count(N_TRIALS, timeout=20_000)
    expect(page.locator("#trials tbody")).not_to_contain_text("Running", timeout=20_000)
    expect(page.locator("#trials tbody")).to_contain_text("Completed")
    # Log-scale values in one format, 3 significant digits: every learning rate reads "2.11e-4".
    rates = page.locator('#trials tbody td[data-col="hp:learning_rate"]').all_inner_texts()
    assert len(rates) == N_TRIALS
    assert all(re.fullmatch(r"[1-9]\.\d\de-\d+", r) for r in rates), rates
    # ...and the same value on the trial's page and in the compare table.
    served = {t["id"]: t["hparams"]["learning_rate"] for t in api.get(
        f"/api/studies/{study['id']}/trials").json()["data"]}  # fmt: skip
    first = page.locator(f'tr[data-trial-id="{ids[0]}"] td[data-col="hp:learning_rate"]')
    lr_text = first.inner_text()
    assert float(lr_text) == pytest.approx(served[ids[0]], rel=5e-3)
    # Each row's round comes from the trial's own `round`; the sampler's distinct values show.
    expect(page.locator("#filter-round option[value='1']")).to_have_text("round 1")
    expect(page.locator("#sampler-info")).to_contain_text(
        f"Random tried {N_TRIALS} distinct learning_rate"
    )

    # The state filter works in words.
    page.select_option("#filter-state", "failed")
    expect(page.locator("#trials tbody")).to_contain_text("No trial matches the filters.")
    page.select_option("#filter-state", "")

    # Brushing the learning-rate axis shows the range the next round would get.
    chart = page.locator("#chart-parallel")
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    x = box["x"] + 90  # the first axis: learning_rate (log scale)
    page.mouse.move(x, box["y"] + 120)
    page.mouse.down()
    page.mouse.move(x, box["y"] + 200, steps=5)
    page.mouse.move(x, box["y"] + 300, steps=5)
    page.mouse.up()
    expect(page.locator("#brushed")).to_contain_text("learning_rate in [")
    # ...and fills the next round's editable range (typing works as well as brushing).
    expect(page.locator("#next-learning_rate-low")).not_to_have_value("0.0001")
    expect(page.locator("#next-batch_size-high")).to_have_value("256")
    expect(page.locator("#scatter-learning_rate")).to_be_visible()
    shot("study-caviar")

    # Pick two trials and compare them.
    for tid in ids[:2]:
        page.locator(f'tr[data-trial-id="{tid}"] input[type=checkbox]').check()
    page.click("#compare")
    page.wait_for_url(re.compile(r"/compare\?trials="))
    expect(page.locator("#cmp-table")).to_contain_text("learning_rate")
    expect(page.locator("#cmp-table")).to_contain_text("batch_size")
    expect(page.locator("#cmp-table")).not_to_contain_text("hidden_units")
    expect(page.locator('#cmp-table tr[data-hparam="learning_rate"]')).to_contain_text(lr_text)
    page.check("#show-all")
    expect(page.locator("#cmp-table")).to_contain_text("hidden_units")
    shot("compare")

    # A completed trial's cockpit: curves drawn, controls off, fork still offered.
    page.goto(f"/trials/{ids[0]}")
    expect(page.locator("#state")).to_contain_text("Completed")
    expect(page.locator("#pause")).to_be_disabled()
    expect(page.locator("#apply")).to_be_disabled()
    expect(page.locator("#latest-dev_accuracy")).to_contain_text("at step")
    expect(page.locator("#checkpoints button.fork").first).to_be_enabled()
    expect(page.locator("#config-hparams")).to_contain_text("learning_rate")
    expect(page.locator("#config-hparams dt:text-is('learning_rate') + dd")).to_have_text(lr_text)
    expect(page.locator("#config-run dt:text-is('round') + dd")).to_have_text("1")
    shot("trial-completed")

    # The list shows the study with its progress in words.
    page.goto("/")
    expect(page.locator("#teach")).to_have_js_property("open", False)  # folded, not gone
    row = page.locator(f'tr[data-study-id="{study["id"]}"]')
    expect(row).to_contain_text("small caviar")
    expect(row).to_contain_text(f"{N_TRIALS} / {N_TRIALS}")
    shot("studies-list")


def test_panda_study_page_hides_the_caviar_tools(page: Any, api: httpx2.Client, shot: Any) -> None:
    name = "<b>one</b> panda"  # markup in a name is shown as text, never rendered
    study = api.post("/api/studies", json={"name": name, "epochs": 1}).json()
    trial = api.post(f"/api/studies/{study['id']}/trials", json={"hparams": {}}).json()
    page.goto(f"/studies/{study['id']}")
    expect(page.locator("h1")).to_have_text(name)
    expect(page.locator(f'tr[data-trial-id="{trial["id"]}"]')).to_be_visible()
    expect(page.locator("#chart-parallel")).to_be_hidden()
    shot("study-panda")
    page.goto("/")
    expect(page.locator(f'tr[data-study-id="{study["id"]}"]')).to_contain_text(name)
    expect(page.locator("#studies-table b")).to_have_count(0)


def test_unknown_ids_say_so(page: Any, shot: Any, console: Any) -> None:
    console.allow(r"status of 404")
    page.goto("/trials/999999")
    expect(page.get_by_role("heading", level=1)).to_have_text("Trial 999999 not found")
    page.goto("/studies/999999")
    expect(page.get_by_role("heading", level=1)).to_have_text("Study 999999 not found")
    page.goto("/compare")
    expect(page.locator("#compare-status")).to_contain_text("No trials given")
