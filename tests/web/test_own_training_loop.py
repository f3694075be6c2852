"""A study of the user's own training loop, from the dashboard: the new-study form's "Your own
training loop", the study page's snippet to paste, the user's processes running the trials
(``tests.pandacaviar.loop_program`` and ``own_loop_program``, through ``pandacaviar``) and
the trial page drawing every metric they report, by its name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

from tests.web import trials_of, wait_api
from tests.web.conftest import ROOT, THREAD_ENV, Server

pytestmark = pytest.mark.slow  # a real server, real user processes and a real browser

# Points of a chart's series by name, as ECharts holds them.
SERIES_POINTS = """([selector, name]) => {
  const chart = echarts.getInstanceByDom(document.querySelector(selector));
  const series = chart.getOption().series.find((s) => s.name === name);
  return series ? series.data.filter((p) => p[1] !== null).length : -1;
}"""


def user_process(server: Server, module: str, study_id: int, *args: str) -> None:
    """Runs one of the user's processes to its end: ``python -m <module>`` for the study."""
    cmd = [sys.executable, "-m", module, "--server", server.url, "--study", str(study_id), *args]
    done = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, **THREAD_ENV}, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()


def count_studies(api: httpx2.Client) -> int:
    return int(api.get("/api/studies").json()["count"])


def test_a_study_of_your_own_loop_runs_in_your_processes_and_shows_your_metrics(
    page: Any, api: httpx2.Client, server: Server, shot: Any, tmp_path: Path
) -> None:
    page.goto("/studies/new")
    expect(page.locator("#task option[value=spirals]")).to_have_count(1)  # the tasks loaded
    page.check("input[name=mode][value=caviar]")
    page.select_option("#task", "external")
    note = page.locator("#external-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("Your processes run the trials; the server's workers do not.")
    expect(page.locator("#objective")).to_be_hidden()
    expect(page.locator("#objective-metric")).to_have_value("dev_accuracy")
    expect(page.locator("#objective-direction")).to_have_value("maximize")
    expect(page.locator("#name")).to_have_value("my training loop")
    page.fill("#epochs", "3")
    page.fill("#budget", "3")
    page.click("#add-hparam")
    page.fill("#own-1-name", "dropout")
    page.select_option("#own-1-scale", "uniform")
    page.fill("#own-1-low", "0")
    page.fill("#own-1-high", "0.5")
    shot("new-study-own-loop")
    # A full-page shot leaves the page scrolled past its end until the next layout, which a
    # click at its foot would then miss.
    page.evaluate("window.scrollTo(0, 0)")
    page.click("#create")
    page.wait_for_url(re.compile(r"/studies/\d+$"))
    study_id = int(page.url.rsplit("/", 1)[1])
    study = api.get(f"/api/studies/{study_id}").json()
    assert study["task"] == "external" and study["task_options"] == {}
    assert study["space"] == {
        "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1.0},
        "dropout": {"dist": "uniform", "low": 0.0, "high": 0.5},
    }
    assert study["objective"] == {"metric": "dev_accuracy", "direction": "maximize"}

    # The card: a snippet with this study and this server, and what the trials wait for.
    snippet = page.locator("#loop-snippet")
    expect(snippet).to_contain_text(
        f'pandacaviar.run(train, study={study_id}, server="{server.url}")'
    )
    expect(snippet).to_contain_text('dropout = trial.hparams["dropout"]')
    expect(snippet).to_contain_text(
        "trial.report(epoch=epoch + 1, train_loss=train_loss, dev_accuracy=dev_accuracy)"
    )
    expect(snippet).to_contain_text("if trial.should_stop:")
    expect(page.locator("#loop-status")).to_have_text(
        "2 queued trials wait for your processes: none is running. Start the snippet below in "
        "one or more processes; the server's workers do not run this study's trials."
    )
    why = page.locator("#trials tbody td[data-col=state] .why")
    expect(why.first).to_have_text("waits for your processes")
    expect(why.first).to_have_attribute("title", re.compile("one of your processes"))
    shot("study-own-loop-snippet")

    # The server's two workers leave the trials be; the user's processes run them.
    log = tmp_path / "loop.jsonl"
    user_process(server, "tests.pandacaviar.loop_program", study_id, "--log", str(log),
                 "--n-trials", "2", "--step-seconds", "0.02")  # fmt: skip
    user_process(server, "tests.web.own_loop_program", study_id)
    wait_api(lambda: api.get(f"/api/studies/{study_id}").json()["state"] == "completed", "end")
    trials = trials_of(api, study_id)
    assert [t["state"] for t in trials] == ["completed"] * 3
    claimed = [e["trial"] for e in map(json.loads, log.read_text().splitlines())
               if e["event"] == "claimed"]  # fmt: skip
    assert len(claimed) == 2
    expect(page.locator("#loop-status")).to_contain_text("Nothing is queued", timeout=20_000)

    # A trial of loop_program: train_loss and dev_accuracy in the built-in charts, no empty
    # learning-rate or per-layer charts.
    page.goto(f"/trials/{claimed[0]}")
    expect(page.locator("#latest-train_loss")).to_contain_text("at step 30")
    expect(page.locator("#latest-dev_accuracy")).to_contain_text("at step 30")
    expect(page.locator("#trial-meta")).to_contain_text("your own training loop")
    assert page.evaluate(SERIES_POINTS, ["#chart-loss", "train_loss"]) == 30
    assert page.evaluate(SERIES_POINTS, ["#chart-accuracy", "dev_accuracy"]) == 3
    expect(page.locator("#chart-lr")).to_be_hidden()
    expect(page.locator("#bn-section")).to_be_hidden()
    expect(page.locator("#latest-learning_rate")).to_have_count(0)

    # The trial of the user's own loop: its dev_confidence in a chart of its own, by name.
    own = next(t for t in trials if t["id"] not in claimed)
    page.goto(f"/trials/{own['id']}")
    chart = page.locator('[data-metric="dev_confidence"]')
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute("aria-label", "dev_confidence by step")
    expect(page.locator("#latest-dev_confidence")).to_contain_text("at step 30")
    assert page.evaluate(SERIES_POINTS, ['[data-metric="dev_confidence"]', "dev_confidence"]) == 3
    expect(page.locator('#adjust-form tr[data-adjust="dropout"]')).to_be_visible()
    expect(page.locator('#adjust-form tr[data-adjust="momentum"]')).to_be_hidden()
    shot("trial-own-loop-metrics")


def test_your_own_names_are_checked_next_to_their_row_and_fill_the_snippet(
    page: Any, api: httpx2.Client, console: Any
) -> None:
    console.allow(r"status of 422")  # the browser logs the rejected request itself
    before = count_studies(api)
    page.goto("/studies/new")
    expect(page.locator("#task option[value=spirals]")).to_have_count(1)
    page.check("input[name=mode][value=caviar]")
    page.select_option("#task", "external")
    page.click("#add-hparam")
    page.fill("#own-1-name", "1st")
    page.select_option("#own-1-scale", "int_uniform")
    page.fill("#own-1-low", "0.5")
    page.fill("#own-1-high", "400")
    page.fill("#objective-metric", "val_loss")
    expect(page.locator("#objective-direction")).to_have_value("minimize")
    expect(page.locator("#objective-example")).to_have_text("trial.report(val_loss=...)")

    # Caught in the page: a name Python could not spell, a name with a row of its own.
    error = page.locator("#own-1-error")
    page.click("#create")
    expect(error).to_have_text(re.compile(r'got "1st", allowed: a name of letters, digits'))
    expect(page.locator("#own-1-name")).to_have_attribute("aria-invalid", "true")
    page.fill("#own-1-name", "momentum")
    page.click("#create")
    expect(error).to_have_text(re.compile("momentum has its row above"))
    expect(page.locator("#hp-momentum-error")).to_be_empty()

    # Refused by the server, said next to the row: an integer range with a bound of 0.5.
    page.fill("#own-1-name", "num_trees")
    page.click("#create")
    expect(error).to_have_text("num_trees: low: got 0.5, allowed: an integer")
    expect(page.locator("#flash")).to_contain_text("fix the field marked below")
    assert count_studies(api) == before

    # As a panda study (fixed values), it opens on its page: the snippet and one queued trial.
    page.check("input[name=mode][value=panda]")
    expect(page.locator("#own-1-value")).to_be_visible()
    page.fill("#own-1-value", "200")
    page.click("#create")
    page.wait_for_url(re.compile(r"/studies/\d+$"))
    study_id = int(page.url.rsplit("/", 1)[1])
    study = api.get(f"/api/studies/{study_id}").json()
    assert study["mode"] == "panda" and study["space"]["num_trees"] == 200
    assert study["objective"] == {"metric": "val_loss", "direction": "minimize"}
    snippet = page.locator("#loop-snippet")
    expect(snippet).to_contain_text('num_trees = trial.hparams["num_trees"]')
    expect(snippet).to_contain_text("val_loss = ...  # the objective, minimized")
    expect(snippet).to_contain_text("train_loss=train_loss, val_loss=val_loss)")
    expect(page.locator("#loop-status")).to_contain_text("1 queued trial waits for your processes")
