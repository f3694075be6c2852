"""GET /api/algorithms and the study checks built from the algorithms' declarations."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

import app.storage.models
import app.tuning
from app.config import Settings
from app.main import create_app
from tests.api.test_caviar import claim_one, epoch_report
from tests.conftest import DB

PLUGIN = "tests.tuning.toy_scheduler"
SPACE = {"epochs": 4, "learning_rate": {"dist": "log_uniform", "low": 1e-3, "high": 1.0}}


def test_one_direction_enum() -> None:
    assert app.storage.models.Direction is app.tuning.Direction
    assert [d.value for d in app.tuning.Direction] == ["minimize", "maximize"]


def test_the_catalogue_lists_the_built_in_algorithms_with_their_settings(
    client: TestClient,
) -> None:
    body = client.get("/api/algorithms").json()
    samplers = {a["name"]: a for a in body["samplers"]}
    schedulers = {a["name"]: a for a in body["schedulers"]}
    assert list(samplers)[:4] == ["random", "grid", "sobol", "tpe"]
    assert list(schedulers)[:3] == ["none", "asha", "median"]
    assert samplers["random"]["settings"] == [] and not samplers["random"]["needs_direction"]
    assert samplers["tpe"]["needs_direction"] and schedulers["asha"]["needs_direction"]
    (points,) = samplers["grid"]["settings"]
    assert points == {
        "name": "points_per_dim",
        "type": "int",
        "default": 3,
        "low": 1.0,
        "high": None,
        "low_open": False,
        "high_open": False,
        "choices": [],
        "range": "an integer >= 1",
        "help": points["help"],
    }
    asha = {s["name"]: s for s in schedulers["asha"]["settings"]}
    assert asha["max_resource"]["default"] is None  # filled in from the study's epochs
    assert asha["mode"]["choices"] == ["stop", "pause"] and asha["eager_top"]["type"] == "bool"
    presets = {p["key"]: p["settings"] for p in schedulers["asha"]["presets"]}
    assert presets == {"pause": {"mode": "pause"}, "eager": {"mode": "pause", "eager_top": True}}


def caviar(client: TestClient, **fields: Any) -> Any:
    study = {"name": "s", "mode": "caviar", "space": SPACE, "budget": {"trials": 2}}
    return client.post("/api/studies", json={**study, "parallelism": 2, **fields})


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"sampler": "bayes"}, "sampler", "sampler: got 'bayes', allowed: one of random, grid"),
        ({"sampler": {"name": "bayes"}}, "sampler", "allowed: one of random, grid, sobol, tpe"),
        ({"scheduler": "hyperband"}, "scheduler", "allowed: one of none, asha, median"),
        (
            {"scheduler": {"name": "asha", "eta": 3}},
            "scheduler.eta",
            "scheduler: eta: got an unknown setting, allowed: one of min_resource",
        ),
        (
            {"sampler": {"name": "tpe", "gamma": 1.5}},
            "sampler.gamma",
            "sampler: gamma: got 1.5, allowed: 0 < gamma < 1",
        ),
        (
            {"scheduler": {"name": "none", "grace": 1}},
            "scheduler.grace",
            "grace: got an unknown setting, allowed: no settings",
        ),
    ],
)
def test_names_and_settings_are_checked_from_the_registry(
    client: TestClient, db: DB, fields: dict[str, Any], field: str, message: str
) -> None:
    before = db.snapshot()
    r = caviar(client, **fields)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and message in r.json()["detail"], r.json()
    assert db.snapshot() == before


@pytest.fixture
def plugin_client(settings: Settings) -> Any:
    """A server started with ``PANDACAVIAR_PLUGINS=tests.tuning.toy_scheduler``."""
    with TestClient(create_app(settings.model_copy(update={"plugins": [PLUGIN]}))) as c:
        yield c


def test_a_plugin_scheduler_is_listed_and_used(plugin_client: TestClient) -> None:
    schedulers = plugin_client.get("/api/algorithms").json()["schedulers"]
    toy = next(a for a in schedulers if a["name"] == "toy-threshold")
    assert toy["needs_direction"] is True
    assert [(s["name"], s["default"], s["range"]) for s in toy["settings"]] == [
        ("at_epoch", 1, "an integer >= 1"),
        ("threshold", 0.5, "0 <= threshold <= 1"),
    ]

    r = caviar(plugin_client, scheduler={"name": "toy-threshold", "threshold": 0.25})
    assert r.status_code == 201, r.text
    study = r.json()
    assert study["scheduler"] == "toy-threshold"
    # Echoed as applied: the declared default of at_epoch too.
    assert study["scheduler_settings"] == {"threshold": 0.25, "at_epoch": 1}
    # It decides: dev_accuracy is maximised, so below 0.25 at epoch 1 stops the trial.
    (a, att_a), (b, att_b) = claim_one(plugin_client), claim_one(plugin_client)
    assert epoch_report(plugin_client, a, att_a, 1, 0.5) == "continue"
    assert epoch_report(plugin_client, b, att_b, 1, 0.1) == "stop"

    bad = caviar(plugin_client, scheduler={"name": "toy-threshold", "threshold": 2})
    assert bad.status_code == 422
    assert bad.json() == {
        "detail": "scheduler: threshold: got 2, allowed: 0 <= threshold <= 1",
        "field": "scheduler.threshold",
        "errors": [
            {
                "field": "scheduler.threshold",
                "message": "threshold: got 2, allowed: 0 <= threshold <= 1",
            }
        ],
    }
