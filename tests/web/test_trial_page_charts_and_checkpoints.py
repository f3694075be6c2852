"""Trial page and charts: fork with chosen values, lone points visible, live only when running,
a long checkpoint list that scrolls instead of growing the page."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

FINISHED = {"completed", "failed", "stopped", "pruned"}


def run_trial(api: httpx2.Client, name: str, epochs: int, **hparams: Any) -> dict[str, Any]:
    """A panda trial on digits, trained to the end."""
    study = api.post("/api/studies", json={
        "name": name, "mode": "panda", "task": "digits", "epochs": epochs,
    }).json()  # fmt: skip
    trial = api.post(f"/api/studies/{study['id']}/trials", json={"hparams": hparams}).json()
    deadline = time.monotonic() + 120
    while (trial := api.get(f"/api/trials/{trial['id']}").json())["state"] not in FINISHED:
        assert time.monotonic() < deadline, f"trial {trial['id']} did not finish"
        time.sleep(0.2)
    assert trial["state"] == "completed", trial
    return trial


def test_fork_from_a_checkpoint_with_a_new_learning_rate(
    page: Any, api: httpx2.Client, console: Any, shot: Any
) -> None:
    console.allow(r"status of 422")  # the browser logs the rejected request itself
    parent = run_trial(api, "fork me", epochs=15)
    ckpts = api.get(f"/api/trials/{parent['id']}/checkpoints").json()
    assert len(ckpts) >= 2
    step = ckpts[1]["step"]  # an earlier checkpoint than the last: a rewind
    page.goto(f"/trials/{parent['id']}")
    page.locator(f'#checkpoints li[data-step="{step}"] button.fork').click()

    # A form opens, filled in with the values in force at that checkpoint; nothing forked yet.
    form = page.locator("#fork-form")
    expect(form).to_be_visible()
    expect(page.locator("#fork-title")).to_contain_text(f"Fork from step {step}")
    chosen = page.locator(f'#checkpoints li[data-step="{step}"]')
    expect(chosen).to_have_class(re.compile("selected"))
    expect(page.locator("#fork-learning_rate")).to_have_value("1.00e-3")
    expect(page.locator("#fork-batch_size")).to_have_value("32")
    expect(page.locator("#fork-beta2")).to_have_value("0.999")
    assert page.url.endswith(f"/trials/{parent['id']}")

    # Cancel closes it; the server's refusal shows next to the field it names.
    page.click("#fork-cancel")
    expect(form).to_be_hidden()
    page.locator(f'#checkpoints li[data-step="{step}"] button.fork').click()
    page.fill("#fork-learning_rate", "20")
    page.click("#fork-submit")
    error = form.locator('[data-error-for="learning_rate"]')
    expect(error).to_contain_text("learning_rate")
    expect(error).to_contain_text("allowed")
    expect(page.locator("#fork-learning_rate")).to_have_attribute("aria-invalid", "true")
    assert page.url.endswith(f"/trials/{parent['id']}")
    shot("trial-fork-form-error")

    # Fork with a new learning rate: the child starts there with it, all else the parent's.
    page.fill("#fork-learning_rate", "0.003")
    page.click("#fork-submit")
    page.wait_for_url(lambda url: not url.endswith(f"/trials/{parent['id']}"))
    child_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#lineage")).to_contain_text(f"Forked from Trial {parent['number']}")
    child = api.get(f"/api/trials/{child_id}").json()
    assert (child["parent_id"], child["parent_step"]) == (parent["id"], step)
    assert child["hparams"]["learning_rate"] == 0.003
    assert {k: v for k, v in child["hparams"].items() if k != "learning_rate"} == {
        k: v for k, v in ckpts[1]["hparams"].items() if k != "learning_rate"
    }
    # Only the changed field was sent as an override.
    (fork,) = [e for e in api.get(f"/api/trials/{child_id}/events").json() if e["kind"] == "fork"]
    assert fork["payload"]["hparams"] == {"learning_rate": 0.003}
    api.post(f"/api/trials/{child_id}/stop")


PLOT_PIXELS = """([id, rgb]) => {
  // Pixels of one colour inside the plot area (the legend and the axes names stay outside).
  const node = document.getElementById(id);
  const canvas = node.querySelector("canvas");
  const r = window.devicePixelRatio || 1;
  const [left, right, top, bottom] = [70, 24, 48, 52].map((v) => Math.round(v * r));
  const img = canvas.getContext("2d").getImageData(left, top, canvas.width - left - right,
    canvas.height - top - bottom).data;
  let n = 0;
  for (let i = 0; i < img.length; i += 4) {
    const d = Math.abs(img[i] - rgb[0]) + Math.abs(img[i + 1] - rgb[1]) +
      Math.abs(img[i + 2] - rgb[2]);
    if (img[i + 3] > 200 && d < 60) n += 1;
  }
  return n;
}"""

SERIES = """(id) => echarts.getInstanceByDom(document.getElementById(id)).getOption().series
  .map((s) => ({ name: s.name, points: s.data.filter((d) => d[1] !== null).length,
                 showSymbol: s.showSymbol }))"""


def test_a_lone_metric_point_is_visible(page: Any, api: httpx2.Client, shot: Any) -> None:
    one = run_trial(api, "one epoch", epochs=1)  # like a trial pruned after its first epoch
    many = run_trial(api, "ten epochs", epochs=10)
    assert len(api.get(f"/api/trials/{one['id']}/metrics?names=dev_accuracy").json()[
        "dev_accuracy"]) == 1  # fmt: skip

    page.goto(f"/compare?trials={one['id']},{many['id']}")
    page.wait_for_function("""() => {
      const c = echarts.getInstanceByDom(document.getElementById("cmp-dev_accuracy"));
      return c && c.getOption().series.length === 2; }""")
    # Both are their study's Trial 0: the compare page adds the study's name.
    series = {s["name"]: s for s in page.evaluate(SERIES, "cmp-dev_accuracy")}
    assert series["Trial 0 · one epoch"] == {
        "name": "Trial 0 · one epoch", "points": 1, "showSymbol": True,
    }  # fmt: skip
    assert series["Trial 0 · ten epochs"]["points"] == 10
    assert series["Trial 0 · ten epochs"]["showSymbol"] is False  # a long curve stays a line
    # The lone value is drawn: its series colour (the palette's first) inside the plot area.
    page.locator("#cmp-dev_accuracy").scroll_into_view_if_needed()
    assert page.evaluate(PLOT_PIXELS, ["cmp-dev_accuracy", [0x1F, 0x6F, 0xB2]]) >= 10
    shot("compare-one-point")

    # The study page's curves too.
    page.goto(f"/studies/{one['study_id']}")
    page.wait_for_function("""() => {
      const c = echarts.getInstanceByDom(document.getElementById("chart-curves"));
      return c && c.getOption().series.length === 1 && c.getOption().series[0].data.length; }""")
    (only,) = page.evaluate(SERIES, "chart-curves")
    assert (only["points"], only["showSymbol"]) == (1, True)
    page.locator("#chart-curves").scroll_into_view_if_needed()
    assert page.evaluate(PLOT_PIXELS, ["chart-curves", [0x1F, 0x6F, 0xB2]]) >= 10


def test_live_only_while_running(page: Any, api: httpx2.Client) -> None:
    study = api.post("/api/studies", json={
        "name": "live", "mode": "panda", "task": "digits", "epochs": 200,
    }).json()  # fmt: skip
    trial = api.post(
        f"/api/studies/{study['id']}/trials", json={"hparams": {"batch_size": 4}}
    ).json()
    page.goto(f"/trials/{trial['id']}")
    expect(page.locator("#trial-root")).to_have_attribute("data-state", "running", timeout=20_000)
    expect(page.locator("#live")).to_have_text("· live")
    page.click("#stop")
    expect(page.locator("#trial-root")).to_have_attribute("data-state", "stopped", timeout=20_000)
    expect(page.locator("#live")).to_have_text("")
    # The study page: nothing runs in it any more.
    page.goto(f"/studies/{study['id']}")
    expect(page.locator("#trials tbody")).to_contain_text("Stopped")
    page.wait_for_timeout(1500)  # the stream opens meanwhile
    expect(page.locator("#live")).to_have_text("")


def test_a_long_checkpoint_list_scrolls(page: Any, api: httpx2.Client, shot: Any) -> None:
    trial = run_trial(api, "many checkpoints", epochs=200)
    ckpts = api.get(f"/api/trials/{trial['id']}/checkpoints").json()
    assert len(ckpts) >= 40
    page.goto(f"/trials/{trial['id']}")
    items = page.locator("#checkpoints li[data-step]")
    expect(items).to_have_count(len(ckpts))
    box = page.locator("#checkpoints").bounding_box()
    assert box["height"] <= 300, box
    scroll = page.evaluate("""() => { const n = document.getElementById("checkpoints");
      return [n.scrollHeight, n.clientHeight]; }""")
    assert scroll[0] > scroll[1], scroll
    # The last checkpoint can still be reached and forked from.
    last = items.last.locator("button.fork")
    last.scroll_into_view_if_needed()
    last.click()
    expect(page.locator("#fork-title")).to_contain_text(f"Fork from step {ckpts[-1]['step']}")
    expect(page.locator("#fork-form")).to_be_in_viewport()
    shot("trial-many-checkpoints")
