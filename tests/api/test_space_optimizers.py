"""A space that ranges an optimizer's hyperparameter which no optimizer it tries reads is
refused, naming both (momentum ranged with Adam trains the same network whatever its value)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_study_errors import errors_of, post
from tests.conftest import DB

MOMENTUM = {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999}
BETA = {"dist": "one_minus_log_uniform", "low": 0.99, "high": 0.9999}


@pytest.mark.parametrize(
    ("space", "field", "words"),
    [
        # Adam (the default) reads beta1, beta2 and epsilon, never momentum.
        ({"momentum": MOMENTUM}, "space.momentum", "optimizer: 'adam', the default"),
        ({"momentum": MOMENTUM, "optimizer": "adam"}, "space.momentum", "optimizer: 'adam';"),
        (
            {"beta1": BETA, "optimizer": {"dist": "choice", "values": ["sgd", "momentum"]}},
            "space.beta1",
            "optimizer: one of 'sgd', 'momentum'; beta1 is used by 'adam'",
        ),
        (
            {"beta2": BETA, "optimizer": "momentum"},
            "space.beta2",
            "beta2 is used by 'rmsprop' and 'adam'",
        ),
        (
            {"epsilon": {"dist": "log_uniform", "low": 1e-10, "high": 1e-6}, "optimizer": "sgd"},
            "space.epsilon",
            "no optimizer of this space uses it",
        ),
    ],
)
def test_an_optimizer_hyperparameter_no_optimizer_reads_is_refused(
    client: TestClient, db: DB, space: dict[str, Any], field: str, words: str
) -> None:
    before = db.snapshot()
    r = post(client, space=space)
    assert r.status_code == 422 and r.json()["field"] == field, r.text
    message = errors_of(r)[field]
    assert message.startswith("ranged, but no optimizer of this space uses it"), message
    assert words in message
    assert db.snapshot() == before


@pytest.mark.parametrize(
    "space",
    [
        {"momentum": MOMENTUM, "optimizer": "momentum"},
        # Ranging the optimizer over a choice with one reader of momentum is enough.
        {"momentum": MOMENTUM, "optimizer": {"dist": "choice", "values": ["adam", "momentum"]}},
        {"beta2": BETA, "epsilon": {"dist": "log_uniform", "low": 1e-10, "high": 1e-6},
         "optimizer": "rmsprop"},
        {"beta1": BETA, "beta2": BETA},  # adam, the default
        {"momentum": 0.95},  # fixed: harmless, whatever the optimizer
    ],
)  # fmt: skip
def test_an_optimizer_hyperparameter_some_optimizer_reads_is_accepted(
    client: TestClient, space: dict[str, Any]
) -> None:
    r = post(client, space=space)
    assert r.status_code == 201, r.text


def test_every_optimizer_hyperparameter_left_unread_is_named(client: TestClient) -> None:
    r = post(client, space={"momentum": MOMENTUM, "beta1": BETA, "optimizer": "rmsprop"})
    assert set(errors_of(r)) == {"space.momentum", "space.beta1"}
