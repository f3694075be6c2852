"""``run()`` hands the loop over: one request a trial, and nothing left claimed behind it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import pandacaviar
from tests.e2e import Api, ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path / "server", workers=0).start()
    yield s
    s.stop()


def study_of(api: Api, trials: int) -> tuple[int, list[int]]:
    study = api.create_study(task="external", epochs=2, space={"learning_rate": 0.1})
    return study["id"], [api.create_trial(study["id"], {})["id"] for _ in range(trials)]


def two_epochs(trial: pandacaviar.Trial) -> float:
    for epoch in (1, 2):
        trial.report(epoch=epoch, dev_accuracy=0.5 + epoch / 10)
    return 0.7


def test_each_finish_claims_the_next_trial_so_a_trial_costs_one_request(
    server: ServerProcess,
) -> None:
    api = Api(server.url)
    study, ids = study_of(api, 3)
    client = pandacaviar.Client(server.url)
    sent: list[str] = []
    client.worker.http.event_hooks["request"].append(
        lambda r: sent.append(f"{r.method} {r.url.path}")
    )
    assert client.run(two_epochs, study) == 3
    claims = [s for s in sent if s.endswith("/claim")]
    finishes = [s for s in sent if s.endswith("/finish")]
    # One claim, then each finish carried the next; the last finish found nothing queued
    # and the study complete (a claim request more would wait for a trial).
    assert len(finishes) == 3 and len(claims) <= 2
    assert [api.trial(i)["state"] for i in ids] == ["completed"] * 3
    assert [api.trial(i)["last_value"] for i in ids] == [0.7] * 3


def test_a_loop_that_raises_fails_its_trial_and_hands_back_the_one_claimed_with_it(
    server: ServerProcess,
) -> None:
    api = Api(server.url)
    study, ids = study_of(api, 2)

    def broken(trial: pandacaviar.Trial) -> None:
        raise RuntimeError("my loop has a bug")

    with pytest.raises(RuntimeError, match="bug"):
        pandacaviar.Client(server.url).run(broken, study)
    first, second = (api.trial(i) for i in ids)
    assert first["state"] == "failed" and "my loop has a bug" in first["error"]
    assert second["state"] == "queued"  # claimed by the failed finish, then handed back
