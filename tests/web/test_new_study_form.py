"""The new-study form: invalid input shows its message next to the field and creates nothing."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.slow  # a real server, real workers and a real browser


def count_studies(api: httpx2.Client) -> int:
    return int(api.get("/api/studies").json()["count"])


def test_invalid_range_is_shown_next_to_its_field(
    page: Any, api: httpx2.Client, shot: Any, console: Any
) -> None:
    console.allow(r"status of 422")  # the browser logs the rejected request itself
    before = count_studies(api)
    page.goto("/studies/new")
    page.check("input[name=mode][value=caviar]")
    expect(page.locator("#hp-learning_rate-scale")).to_have_value("log_uniform")
    expect(page.locator("#hp-learning_rate-low")).to_have_value("0.0001")
    page.select_option("#hp-momentum-mode", "range")
    expect(page.locator("#hp-momentum-scale")).to_have_value("one_minus_log_uniform")
    expect(page.locator("#hp-momentum-high")).to_have_value("0.999")

    # Rejected by the server: a negative learning rate bound.
    page.fill("#hp-learning_rate-low", "-1")
    page.click("#create")
    error = page.locator("#hp-learning_rate-error")
    expect(error).to_contain_text("learning_rate")
    expect(error).to_contain_text("allowed")
    expect(page.locator("#hp-learning_rate-low")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#flash")).to_contain_text("not created")
    assert page.url.endswith("/studies/new")
    shot("new-study-invalid-range")
    assert count_studies(api) == before

    # Caught in the page: low above high.
    page.fill("#hp-learning_rate-low", "0.5")
    page.fill("#hp-learning_rate-high", "0.01")
    page.click("#create")
    expect(error).to_contain_text("low (0.5) must be smaller than high (0.01)")
    assert count_studies(api) == before

    # Rejected by the server: a fixed batch size of 0 in a panda study.
    page.check("input[name=mode][value=panda]")
    page.fill("#hp-batch_size-value", "0")
    page.click("#create")
    expect(page.locator("#hp-batch_size-error")).to_contain_text("batch_size")
    expect(error).to_be_empty()
    assert count_studies(api) == before


def test_the_plan_of_early_stopping_shows_before_the_study_exists(
    page: Any, api: httpx2.Client
) -> None:
    before = count_studies(api)
    page.goto("/studies/new")
    page.check("input[name=mode][value=caviar]")
    page.fill("#epochs", "27")
    page.fill("#budget", "24")
    expect(page.locator("#scheduler option[value=asha]")).to_have_count(1)
    page.select_option("#scheduler", "asha")
    plan = page.locator("#scheduler-plan")
    expect(plan).to_have_text(
        "Plan: rungs at 3 and 9 epochs; about 3 of 24 trials train all 27 epochs."
    )
    page.fill("#budget", "12")  # the defaults follow the budget
    expect(plan).to_have_text("Plan: rung at 9 epochs; about 4 of 12 trials train all 27 epochs.")
    page.select_option("#scheduler", "")
    expect(plan).to_be_empty()
    assert count_studies(api) == before


def test_every_bad_field_shows_its_own_message_at_once(
    page: Any, api: httpx2.Client, shot: Any, console: Any
) -> None:
    console.allow(r"status of 422")
    before = count_studies(api)
    page.goto("/studies/new")
    page.check("input[name=mode][value=caviar]")
    # Four bad fields, checked in the page before anything is sent.
    page.fill("#name", "  ")
    page.fill("#budget", "0")
    page.fill("#hp-learning_rate-low", "-1")
    page.select_option("#hp-momentum-mode", "range")  # with Adam, which never reads it
    page.click("#create")
    expect(page.locator('[data-error-for="name"]')).to_have_text("give the study a name")
    expect(page.locator('[data-error-for="budget.trials"]')).to_have_text(
        "a whole number of trials from 1 to 100000"
    )
    lr = page.locator("#hp-learning_rate-error")
    expect(lr).to_contain_text("learning_rate: low: got -1, allowed: a finite number in (0, 10]")
    momentum = page.locator("#hp-momentum-error")
    expect(momentum).to_contain_text("momentum: ranged, but no optimizer of this space uses it")
    expect(momentum).to_contain_text("optimizer: 'adam'")
    for field in ("#name", "#budget", "#hp-learning_rate-low", "#hp-momentum-low"):
        expect(page.locator(field)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#flash")).to_contain_text("fix the 4 fields marked below")
    shot("new-study-every-bad-field")
    assert count_studies(api) == before

    # Fixed in the page; two settings only the server checks: both next to their field.
    page.fill("#name", "several bad fields")
    page.fill("#budget", "4")
    page.fill("#hp-learning_rate-low", "0.001")
    page.select_option("#hp-optimizer-mode", "range")  # every optimizer: momentum is read
    page.select_option("#sampler", "tpe")
    page.fill("#sampler-gamma", "1.5")
    page.select_option("#scheduler", "asha")
    page.fill("#scheduler-reduction_factor", "1")
    page.click("#create")
    gamma = page.locator('[data-error-for="sampler.gamma"]')
    expect(gamma).to_have_text("gamma: got 1.5, allowed: 0 < gamma < 1")
    factor = page.locator('[data-error-for="scheduler.reduction_factor"]')
    expect(factor).to_contain_text("reduction_factor: got 1, allowed:")
    for fixed in (lr, momentum, page.locator('[data-error-for="name"]')):
        expect(fixed).to_be_empty()
    expect(page.locator("#flash")).to_contain_text("fix the 2 fields marked below")
    assert count_studies(api) == before
