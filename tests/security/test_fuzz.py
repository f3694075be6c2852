"""Schemathesis against ``/openapi.json``: generated requests, valid and not, on every route.

Checks: no 5xx, the content type is the declared one, and every documented answer matches
its schema. The live streams are left out (they never end); the examples per route are
bounded so the whole run fits a CI job.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from app.config import Settings
from app.main import create_app
from tests.factories import claim, create_study, create_trial, npz_bytes, report, upload

EXAMPLES = 12  # per route: ~35 routes stay well under a minute
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app with a study, trials, metrics and a checkpoint, so ids 1 and 2 exist."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp / 'fuzz.db'}",
            data_dir=tmp / "data",
            workers=0,
            start_dispatcher=False,
            reaper_seconds=3600,
        )
    )
    with TestClient(app) as client:  # the lifespan opens the database for the whole module
        study = create_study(client)
        create_trial(client, study["id"])
        running = claim(client)
        report(client, running["trial_id"], running["attempt"], 5)
        upload(client, running["trial_id"], running["attempt"], 5, npz_bytes(5))
        create_trial(client, study["id"])
        raw = client.get("/openapi.json").json()
        schema = schemathesis.openapi.from_dict(_without_prefix_items(raw))
        schema.app = app  # requests go to the app in process, as with from_asgi
        yield schema.exclude(path_regex=r"/stream$")


def _without_prefix_items(node: Any) -> Any:
    """``prefixItems`` (a tuple: metric points) as ``items: {anyOf: ...}``.

    Schemathesis 4.32 rewrites a response's ``prefixItems`` into the draft-4 list form of
    ``items`` and then rejects that form as an invalid 2020-12 schema; the looser equivalent
    keeps the check (every element's type) without tripping over it.
    """
    if isinstance(node, list):
        return [_without_prefix_items(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _without_prefix_items(v) for k, v in node.items() if k != "prefixItems"}
    if "prefixItems" in node:
        out["items"] = {"anyOf": _without_prefix_items(node["prefixItems"])}
    return out


def test_api_fuzz(api_schema: Any) -> None:
    # Each operation's strategy is driven by Hypothesis directly rather than through
    # schemathesis' pytest plugin, which breaks on newer pytest releases.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:
        # No shrinking: a failure is reported as found (with a curl line), in seconds.
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        check()
