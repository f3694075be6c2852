"""A scheduler's stop lands at the epoch it was decided for, however reports are batched.

A worker batches its reports by time (``report_seconds``); a small network trains many epochs
in one interval. The claim tells the worker at which epoch ends the study's scheduler decides
(ASHA: its rungs), and the worker reports at once there, so a pruned trial trains no further.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e import FAST, Api, StartServer, total_steps, wait_for

pytestmark = pytest.mark.slow

SPACE: dict[str, Any] = {
    "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1.0},
    **FAST,
}


def test_asha_prunes_at_the_rung_it_judged(start_server: StartServer) -> None:
    # Reports at most once a minute: without the decision points, no decision would reach
    # the worker before its trial's finish, and every trial would train all 8 epochs.
    server = start_server(workers=1, report_seconds=60)
    api = Api(server.url)
    study = api.create_study(
        mode="caviar",
        epochs=8,
        space=SPACE,
        budget={"trials": 8},
        parallelism=1,
        scheduler={"name": "asha", "min_resource": 1, "reduction_factor": 2},
    )
    sid = study["id"]
    wait_for(
        lambda: api.call("GET", f"/api/studies/{sid}")["state"] == "completed" or None,
        f"study {sid} completed",
        180,
    )
    trials = api.call("GET", f"/api/studies/{sid}/trials")["data"]
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned, [(t["state"], t["epoch"]) for t in trials]
    per_epoch = total_steps(FAST, 1)
    for t in pruned:
        prune = next(e for e in api.events(t["id"]) if e["kind"] == "prune")
        rung = prune["payload"]["resource"]
        assert rung in (1, 2, 4), prune
        # Stopped at the end of the epoch it was judged at: not one step further.
        assert (t["epoch"], t["step"]) == (rung, rung * per_epoch), (t, prune)
        assert prune["applied_step"] == rung * per_epoch, prune
    api.close()
