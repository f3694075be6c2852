"""A caviar search from the form, narrowed by brushing parallel coordinates (coarse to fine)."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

from tests.web import trials_of, wait_api

pytestmark = pytest.mark.slow  # a real server, real workers and a real browser

N_TRIALS, PARALLELISM, NEXT_TRIALS = 8, 2, 4


def test_coarse_to_fine_from_the_browser(page: Any, api: httpx2.Client, shot: Any) -> None:
    page.goto("/studies/new")
    page.check("input[name=mode][value=caviar]")
    page.fill("#name", "digits search")
    page.fill("#epochs", "2")
    page.fill("#budget", str(N_TRIALS))
    page.fill("#parallelism", str(PARALLELISM))
    page.fill("#hp-hidden_units-low", "16")
    page.fill("#hp-hidden_units-high", "32")
    shot("new-study-caviar")
    page.click("#create")
    page.wait_for_url(re.compile(r"/studies/\d+$"))
    study_id = int(page.url.rsplit("/", 1)[1])
    study = api.get(f"/api/studies/{study_id}").json()
    assert study["mode"] == "caviar" and study["parallelism"] == PARALLELISM
    assert study["space"]["learning_rate"] == {"dist": "log_uniform", "low": 1e-4, "high": 1.0}

    # The table fills and follows the trials to the end without a reload.
    page.evaluate("window.__sameDocument = true")
    rows = page.locator("#trials tbody tr[data-trial-id]")
    expect(rows).to_have_count(N_TRIALS, timeout=60_000)
    wait_api(
        lambda: all(t["state"] == "completed" for t in trials_of(api, study_id)),
        "every trial of round 1 to complete",
    )
    expect(page.locator("#trials tbody")).not_to_contain_text("Running", timeout=20_000)
    expect(page.locator("#trials tbody")).not_to_contain_text("Queued")
    assert page.evaluate("window.__sameDocument") is True

    # Brush the learning-rate axis; the brushed range becomes the next round's range.
    chart = page.locator("#chart-parallel")
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    x = box["x"] + 90  # the first axis: learning_rate (log scale)
    page.mouse.move(x, box["y"] + 150)
    page.mouse.down()
    page.mouse.move(x, box["y"] + 220, steps=5)
    page.mouse.move(x, box["y"] + 280, steps=5)
    page.mouse.up()
    expect(page.locator("#brushed")).to_contain_text("learning_rate in [")
    low = float(page.input_value("#next-learning_rate-low"))
    high = float(page.input_value("#next-learning_rate-high"))
    assert 1e-4 < low < high < 1.0
    page.fill("#round-trials", str(NEXT_TRIALS))
    page.click("#next-round")
    expect(page.locator("#round-status")).to_contain_text("Round 2 started")
    expect(page.locator('#rounds [data-round="2"]')).to_be_visible()

    # Through the API: round 2 has the brushed range and its trials are sampled inside it.
    rounds = api.get(f"/api/studies/{study_id}/rounds").json()["data"]
    assert [r["number"] for r in rounds] == [1, 2]
    lr = rounds[1]["space"]["learning_rate"]
    assert lr["dist"] == "log_uniform" and lr["low"] == pytest.approx(low)
    assert lr["high"] == pytest.approx(high)

    def round_two() -> list[dict[str, Any]] | None:
        mine = [t for t in trials_of(api, study_id) if t["round_id"] == rounds[1]["id"]]
        return mine if len(mine) == NEXT_TRIALS else None

    for trial in wait_api(round_two, "the trials of round 2"):
        assert low <= trial["hparams"]["learning_rate"] <= high
    expect(rows).to_have_count(N_TRIALS + NEXT_TRIALS, timeout=30_000)
    page.select_option("#filter-round", "2")
    expect(rows).to_have_count(NEXT_TRIALS)
    shot("study-caviar-round-2")


@pytest.mark.parametrize(("option", "eager_top"), [("asha-pause", False), ("asha-eager", True)])
def test_asha_pause_mode_from_the_form_parks_promotes_and_ends(
    page: Any, api: httpx2.Client, option: str, eager_top: bool
) -> None:
    page.goto("/studies/new")
    page.check("input[name=mode][value=caviar]")
    page.fill("#name", f"digits, {option}")
    page.fill("#epochs", "4")  # rungs at epochs 1 and 3 (eta 3)
    page.fill("#budget", "6")
    page.fill("#parallelism", "2")
    page.select_option("#scheduler", option)
    page.click("#create")
    page.wait_for_url(re.compile(r"/studies/\d+$"))
    study_id = int(page.url.rsplit("/", 1)[1])
    study = api.get(f"/api/studies/{study_id}").json()
    assert study["scheduler"] == "asha" and study["scheduler_settings"]["mode"] == "pause"
    assert study["scheduler_settings"].get("eager_top", False) is eager_top

    # Real workers: the first arrival at rung 0 always waits (floor(1/3) = 0 promoted).
    wait_api(
        lambda: api.get(f"/api/studies/{study_id}").json()["state"] == "completed",
        "the study to complete",
        timeout=120,
    )
    trials = trials_of(api, study_id)
    states = sorted(t["state"] for t in trials)
    assert len(trials) == 6 and "completed" in states
    assert set(states) <= {"completed", "pruned"}
    events = [e for t in trials for e in api.get(f"/api/trials/{t['id']}/events").json()]
    parks = [e for e in events if e["kind"] == "pause" and "scheduler" in e["payload"]]
    assert parks, "no trial waited at a rung"
    expect(page.locator("#trials tbody")).not_to_contain_text("Paused", timeout=20_000)

    # A trial that waited at a rung until the study ended says so: in its row (the sentence
    # as the tooltip) and on its page, with the value it was compared on and the cut.
    pruned = [t for t in trials if t["state"] == "pruned"]
    if not pruned:
        return  # every parked trial was promoted and completed: nothing to explain
    why = pruned[0]["stopped_because"]
    assert why["kind"] == "prune" and why["scheduler"] == "asha" and "rung" in why, why
    cell = page.locator(f'#trials tr[data-trial-id="{pruned[0]["id"]}"] td[data-col=state] .why')
    expect(cell).to_contain_text(f"at rung {why['rung']}")
    sentence = cell.get_attribute("title") or ""
    assert sentence.startswith(f"Waited at rung {why['rung']} (epoch {why['resource']}) until")
    page.goto(f"/trials/{pruned[0]['id']}")
    expect(page.locator("#trial-why")).to_have_text(sentence + ".")
