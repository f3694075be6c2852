"""A scheduler in one module (tests/tuning/toy_scheduler.py), imported by the server through
``PANDACAVIAR_PLUGINS``: the API lists it, a study uses it, and the new-study form offers it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

from tests.web import trials_of, wait_api
from tests.web.conftest import Server

pytestmark = pytest.mark.slow  # a real server, real workers and a real browser

TOY = "toy-threshold"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """This module's server imports the toy scheduler's module at start-up."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PANDACAVIAR_PLUGINS", "tests.tuning.toy_scheduler")
        srv = Server(Path(tmp_path_factory.mktemp("plugin"))).start()
    yield srv
    srv.stop()
    print(f"--- server log ---\n{srv.log_tail()}")


def test_the_api_lists_the_plugin_with_its_settings(api: httpx2.Client) -> None:
    body = api.get("/api/algorithms").json()
    assert [a["name"] for a in body["schedulers"]] == ["none", "asha", "median", TOY]
    (toy,) = [a for a in body["schedulers"] if a["name"] == TOY]
    assert toy["label"] == "toy: stop below a threshold" and toy["needs_direction"] is True
    settings = [(s["name"], s["type"], s["default"], s["low"], s["high"]) for s in toy["settings"]]
    assert settings == [("at_epoch", "int", 1, 1, None), ("threshold", "float", 0.5, 0, 1)]


def test_the_form_offers_the_plugin_and_the_study_uses_it(
    page: Any, api: httpx2.Client, shot: Any, console: Any
) -> None:
    console.allow(r"status of 422")  # the browser logs the rejected request itself
    page.goto("/studies/new")
    page.check("input[name=mode][value=caviar]")
    page.fill("#name", "toy scheduler")
    page.fill("#epochs", "3")
    page.fill("#budget", "2")
    page.fill("#parallelism", "2")
    option = page.locator(f'#scheduler option[value="{TOY}"]')
    expect(option).to_have_text("toy: stop below a threshold")
    page.select_option("#scheduler", TOY)
    expect(page.locator("#scheduler-help")).to_contain_text("worse than threshold")
    expect(page.locator("#scheduler-at_epoch")).to_have_value("1")
    threshold = page.locator("#scheduler-threshold")
    expect(threshold).to_have_value("0.5")

    # Out of the declared range: the server's 422 shows next to the setting.
    threshold.fill("2")
    page.click("#create")
    error = page.locator('[data-error-for="scheduler.threshold"]')
    expect(error).to_contain_text("threshold: got 2, allowed: 0 <= threshold <= 1")
    expect(threshold).to_have_attribute("aria-invalid", "true")
    assert page.url.endswith("/studies/new")
    shot("new-study-plugin-scheduler")

    # Every dev accuracy is below 1 after an epoch: the toy stops every trial there.
    threshold.fill("1")
    page.click("#create")
    page.wait_for_url(re.compile(r"/studies/\d+$"))
    study_id = int(page.url.rsplit("/", 1)[1])
    study = api.get(f"/api/studies/{study_id}").json()
    assert study["scheduler"] == TOY and study["scheduler_settings"] == {
        "threshold": 1,
        "at_epoch": 1,
    }
    wait_api(
        lambda: api.get(f"/api/studies/{study_id}").json()["state"] == "completed",
        "the study to complete",
        timeout=120,
    )
    trials = trials_of(api, study_id)
    assert [(t["state"], t["epoch"]) for t in trials] == [("pruned", 1.0)] * 2
