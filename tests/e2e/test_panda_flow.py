"""Babysitting one model end to end: a real uvicorn server and its two real worker processes.

A trial completes; another is paused, adjusted and resumed; a live adjustment lands at a safe
point; a fork continues from an earlier checkpoint; pause/resume and rewind change nothing
(the trainer is deterministic bit for bit, so the final dev loss is compared exactly).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e import (
    FAST,
    NEW_LR,
    OLD_LR,
    REPORT_EVERY,
    SLOW,
    Api,
    adjust_when_running,
    assert_whole_curve,
    final_dev_loss,
    total_steps,
    wait_for,
)

pytestmark = pytest.mark.slow


def start_trial(api: Api, hparams: dict[str, Any], epochs: int) -> int:
    study = api.create_study(epochs=epochs)
    return int(api.create_trial(study["id"], {**hparams, "epochs": epochs})["id"])


def pause_mid_run(api: Api, trial_id: int, after_step: int = 100) -> int:
    """Pause once the trial trained ``after_step`` steps; returns the step it paused at."""
    api.wait_trial(
        trial_id,
        lambda t: t["state"] == "running" and t["step"] >= after_step,
        f"running past step {after_step}",
    )
    api.call("POST", f"/api/trials/{trial_id}/pause")
    paused = api.wait_state(trial_id, "paused")
    assert paused["step"] in [c["step"] for c in api.checkpoints(trial_id)]
    return int(paused["step"])


def test_digits_trial_completes(api: Api) -> None:
    trial_id = start_trial(api, FAST, epochs=3)
    done = api.wait_state(trial_id, "completed", "failed")
    assert done["state"] == "completed", done
    assert done["attempt"] == 1
    assert done["step"] == total_steps(FAST, 3)
    metrics = api.metrics(trial_id)
    assert {"train_loss", "dev_loss", "dev_accuracy", "learning_rate"} <= set(metrics)
    assert metrics["dev_accuracy"][-1][1] > 0.5
    assert_whole_curve(metrics["train_loss"], done["step"])


def test_pause_adjust_resume_completes(api: Api) -> None:
    epochs = 10
    trial_id = start_trial(api, {**SLOW, "learning_rate": OLD_LR}, epochs)
    pause_step = pause_mid_run(api, trial_id)
    assert pause_step < total_steps(SLOW, epochs)

    api.call("PATCH", f"/api/trials/{trial_id}/hparams", json={"learning_rate": NEW_LR})
    api.call("POST", f"/api/trials/{trial_id}/resume")
    done = api.wait_state(trial_id, "completed", "failed")

    assert done["state"] == "completed", done
    assert done["hparams"]["learning_rate"] == NEW_LR
    assert done["step"] == total_steps(SLOW, epochs)
    (adjust,) = [e for e in api.events(trial_id) if e["kind"] == "adjust"]
    assert adjust["applied_step"] == pause_step + 1
    lr = api.metrics(trial_id, "learning_rate")["learning_rate"]
    before = [v for s, v in lr if s < adjust["applied_step"]]
    after = [v for s, v in lr if s >= adjust["applied_step"]]
    assert before and after
    assert before == pytest.approx([OLD_LR] * len(before), rel=1e-6)
    assert after == pytest.approx([NEW_LR] * len(after), rel=1e-6)
    assert_whole_curve(api.metrics(trial_id, "train_loss")["train_loss"], done["step"])


def test_live_adjustment_applies_at_a_safe_point(api: Api) -> None:
    trial_id = start_trial(api, {**SLOW, "learning_rate": OLD_LR}, epochs=30)
    event = adjust_when_running(api, trial_id, {"learning_rate": NEW_LR})
    first = int(event["applied_step"])
    # The checkpoint taken just before applying lets a rewind land on the old values. It
    # uploads in the background, so it may land just after the report that applied the change.
    wait_for(
        lambda: first - 1 in [c["step"] for c in api.checkpoints(trial_id)],
        "the checkpoint taken just before the adjustment",
    )
    api.wait_trial(trial_id, lambda t: t["step"] >= first + 2 * REPORT_EVERY, "training on")
    api.call("POST", f"/api/trials/{trial_id}/stop")
    stopped = api.wait_state(trial_id, "stopped", "completed", "failed")
    assert stopped["state"] == "stopped", stopped
    lr = api.metrics(trial_id, "learning_rate")["learning_rate"]
    assert all(v == pytest.approx(OLD_LR, rel=1e-6) for s, v in lr if s < first)
    assert all(v == pytest.approx(NEW_LR, rel=1e-6) for s, v in lr if s >= first)
    assert any(s >= first for s, _ in lr)


def test_pause_resume_matches_a_straight_run(api: Api) -> None:
    epochs = 8
    study = api.create_study(epochs=epochs)
    hparams = {**SLOW, "epochs": epochs, "seed": 11}
    paused_id = int(api.create_trial(study["id"], hparams)["id"])
    straight_id = int(api.create_trial(study["id"], hparams)["id"])

    pause_mid_run(api, paused_id)
    api.call("POST", f"/api/trials/{paused_id}/resume")
    for trial_id in (paused_id, straight_id):
        done = api.wait_state(trial_id, "completed", "failed")
        assert done["state"] == "completed", done

    assert final_dev_loss(api, paused_id) == final_dev_loss(api, straight_id)
    last = total_steps(SLOW, epochs)
    assert_whole_curve(api.metrics(paused_id, "train_loss")["train_loss"], last)


def test_fork_from_an_earlier_checkpoint_continues_from_parent_step(api: Api) -> None:
    epochs = 7  # checkpoints at epoch 5 (checkpoint_every) and at the end
    parent_id = start_trial(api, {**FAST, "learning_rate": OLD_LR}, epochs)
    parent = api.wait_state(parent_id, "completed", "failed")
    assert parent["state"] == "completed", parent
    fork_step = min(c["step"] for c in api.checkpoints(parent_id))
    assert 0 < fork_step < parent["step"]

    body = {"step": fork_step, "hparams": {"learning_rate": NEW_LR}}
    child = api.call("POST", f"/api/trials/{parent_id}/fork", 201, json=body)
    rewind = api.call("POST", f"/api/trials/{parent_id}/fork", 201, json={"step": fork_step})
    assert child["parent_id"] == parent_id and child["parent_step"] == fork_step
    assert child["hparams"] == {**parent["hparams"], "learning_rate": NEW_LR}
    assert rewind["hparams"] == parent["hparams"]

    for trial_id in (child["id"], rewind["id"]):
        done = api.wait_state(trial_id, "completed", "failed")
        assert done["state"] == "completed", done
        assert done["step"] == parent["step"]
        curve = api.metrics(trial_id, "train_loss")["train_loss"]
        assert_whole_curve(curve, parent["step"], first_step=fork_step)

    lr = api.metrics(child["id"], "learning_rate")["learning_rate"]
    assert [v for _, v in lr] == pytest.approx([NEW_LR] * len(lr), rel=1e-6)
    # Rewinding without a change replays the parent exactly; with one, it trains differently.
    assert final_dev_loss(api, rewind["id"]) == final_dev_loss(api, parent_id)
    assert final_dev_loss(api, child["id"]) != final_dev_loss(api, parent_id)
