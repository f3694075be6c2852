"""A round narrowed around the top-k: trained in full, every other trial drawn near a top one."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.search import study_config
from app.storage.models import Round, Study
from app.tuning import AshaScheduler, SearchSpace, parse_space, sample_near, trial_rng
from tests.api.test_caviar import caviar_study, complete, trials_of

SPACE = parse_space(
    {
        "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1.0},
        "optimizer": "momentum",
        "epochs": 27,
    }
)


def _study(scheduler: str | None, given: dict[str, Any] | None) -> Study:
    return Study(scheduler=scheduler, scheduler_given=given, epochs=27, direction="maximize")


def test_a_round_from_the_top_stops_no_trial_early() -> None:
    study = _study("asha", {"mode": "pause"})
    settings = study_config.round_settings(study, SPACE, 12, from_top=True)
    assert settings == {"name": "none"}
    assert study_config.scheduler_for(study, Round(scheduler_settings=settings)) is None


def test_a_round_from_an_explicit_space_keeps_its_fitted_rungs() -> None:
    study = _study("asha", {"mode": "pause"})
    settings = study_config.round_settings(study, SPACE, 12)
    # 12 trials of 27 epochs, eta 3: one rung, at 27 / 3 = 9 epochs (about 4 in full).
    assert settings is not None and settings["min_resource"] == 9
    scheduler = study_config.scheduler_for(study, Round(scheduler_settings=settings))
    assert isinstance(scheduler, AshaScheduler) and scheduler.rung_resources() == (9,)


@pytest.mark.parametrize(
    ("scheduler", "given"),
    [("asha", {"min_resource": 1}), ("median", {"grace": 2}), ("none", {}), (None, None)],
)
def test_where_the_user_set_the_rungs_a_round_from_the_top_keeps_them(
    scheduler: str | None, given: dict[str, Any] | None
) -> None:
    settings = study_config.round_settings(_study(scheduler, given), SPACE, 12, from_top=True)
    assert settings != {"name": "none"}
    if given:
        assert settings is not None and given.items() <= settings.items()


def _round_from_top_two(client: TestClient) -> tuple[int, SearchSpace]:
    """Study seed 5, one at a time: trials 0-2 end at 0.5, 0.7 and 0.6, then a round of 4
    from the top 2; the study's id and the round's narrowed space."""
    sid = int(caviar_study(client, budget={"trials": 3}, parallelism=1, seed=5)["id"])
    for value in (0.5, 0.7, 0.6):
        complete(client, value)
    r = client.post(f"/api/studies/{sid}/rounds", json={"from_top": 2, "trials": 4})
    assert r.status_code == 201, r.text
    return sid, parse_space(r.json()["space"])


def test_every_other_trial_of_a_round_from_the_top_is_drawn_near_a_top_trial(
    client: TestClient,
) -> None:
    sid, child = _round_from_top_two(client)
    for _ in range(4):
        complete(client, 0.4)
    first = {t["number"]: t["hparams"] for t in trials_of(client, sid)}
    top = [first[1], first[2]]  # 0.7, then 0.6
    for index, number in enumerate(range(3, 7)):
        got = {k: first[number][k] for k in child.names}
        rng = trial_rng(5, number)
        if index % 2:  # the study's sampler: uniform in the narrowed box
            assert got == child.sample(rng)
        else:  # index 0 near the best, index 2 near the second
            assert got == sample_near(child, top[index // 2], rng)


def test_a_round_from_the_top_draws_near_its_own_trials_once_they_lead(
    client: TestClient,
) -> None:
    sid, child = _round_from_top_two(client)
    for value in (0.9, 0.4, 0.4, 0.4):  # the round's first trial beats every earlier one
        complete(client, value)
    hparams = {t["number"]: t["hparams"] for t in trials_of(client, sid)}
    # Index 2 of the round is drawn near the second of the top two so far: trial 1 (0.7),
    # behind the round's own trial 3 (0.9), no longer trial 2 (0.6).
    got = {k: hparams[5][k] for k in child.names}
    assert got == sample_near(child, hparams[1], trial_rng(5, 5))
