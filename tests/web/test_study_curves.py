"""The study page's curves compare trials by epoch, whatever their batch sizes."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.web import trials_of, wait_api

pytestmark = pytest.mark.slow  # a real server, real workers and a real browser

EPOCHS = 2

# What the curves chart shows: title, x-axis name, and per series the x values and the axis's
# upper end (what a user sees as the axis's last tick).
CHART = """() => {
  const chart = echarts.getInstanceByDom(document.getElementById("chart-curves"));
  const option = chart.getOption();
  const axis = chart.getModel().getComponent("xAxis", 0).axis;
  return {
    title: option.title[0].text,
    xName: option.xAxis[0].name,
    xMax: axis.scale.getExtent()[1],
    series: Object.fromEntries(option.series.map((s) => [s.name, s.data.map((p) => p[0])])),
  };
}"""
DRAWN = f"""([names, epochs]) => {{
  const shown = ({CHART})().series;
  return JSON.stringify(Object.keys(shown).sort()) === JSON.stringify(names)
    && Object.values(shown).every((xs) => xs.length === epochs);
}}"""


def test_curves_of_different_batch_sizes_share_the_epoch_axis(
    page: Any, api: httpx2.Client, shot: Any
) -> None:
    # A grid over batch sizes 32 and 256: 45 and 6 steps an epoch on digits' training split.
    space = {"batch_size": {"dist": "log_int", "low": 32, "high": 256}, "epochs": EPOCHS}
    r = api.post("/api/studies", json={
        "name": "batch sizes", "mode": "caviar", "task": "digits", "space": space,
        "sampler": {"name": "grid", "points_per_dim": 2}, "budget": {"trials": 2},
        "parallelism": 2,
    })  # fmt: skip
    assert r.status_code == 201, r.text
    study_id = r.json()["id"]

    def completed() -> list[dict[str, Any]] | None:
        trials = trials_of(api, study_id)
        return trials if trials and all(t["state"] == "completed" for t in trials) else None

    trials = wait_api(completed, "both trials to complete", timeout=120)
    assert sorted(t["hparams"]["batch_size"] for t in trials) == [32, 256]
    assert len({t["step"] for t in trials}) == 2  # the same epochs, different step counts

    page.goto(f"/studies/{study_id}")
    names = sorted(f"Trial {t['number']}" for t in trials)
    page.wait_for_function(DRAWN, arg=[names, EPOCHS])
    chart = page.evaluate(CHART)
    shot("study-curves-by-epoch")
    assert chart["title"] == "Objective by epoch"
    assert chart["xName"].startswith("epoch")
    assert chart["series"] == {name: [1, 2] for name in names}
    assert chart["xMax"] == EPOCHS  # not a step count: 2 * 45 = 90 for the small batch
    label = page.get_attribute("#chart-curves", "aria-label")
    assert label == "Objective by epoch for several trials"
