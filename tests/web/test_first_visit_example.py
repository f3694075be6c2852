"""The first-visit panda example runs long enough to babysit, at a learning rate worth lowering."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.slow


def test_panda_example_can_be_paused_and_lowered_from_lr_0_01(
    page: Any, api: httpx2.Client, shot: Any
) -> None:
    page.goto("/")
    button = page.get_by_role("button", name="Babysit a digits model")  # the README's words
    expect(button).to_be_visible()
    button.click()
    page.wait_for_url(re.compile(r"/trials/\d+$"))
    trial_id = int(page.url.rsplit("/", 1)[1])
    trial = api.get(f"/api/trials/{trial_id}").json()
    assert trial["hparams"]["learning_rate"] == 0.01
    assert trial["hparams"]["epochs"] >= 400
    expect(page.locator("#adj-learning_rate")).to_have_value("1.00e-2")  # log scale: 2.11e-4

    deadline = time.monotonic() + 30
    while api.get(f"/api/trials/{trial_id}").json()["epoch"] < 1:
        assert time.monotonic() < deadline, "the example did not start training"
        time.sleep(0.2)

    # There is time to pause it and lower the learning rate: a real change this time.
    page.click("#pause")
    expect(page.locator("#trial-root")).to_have_attribute("data-state", "paused", timeout=20_000)
    page.fill("#adj-learning_rate", "0.001")
    page.click("#apply")
    expect(page.locator("#adjust-status")).to_contain_text("learning_rate = 1.00e-3")
    assert api.get(f"/api/trials/{trial_id}").json()["pending_hparams"] == {"learning_rate": 0.001}
    shot("example-panda-paused")
    api.post(f"/api/trials/{trial_id}/stop")
