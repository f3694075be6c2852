"""Cross-site writes: Origin / Sec-Fetch-Site checks and JSON-only /api writes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.storage.models import TrialState
from tests.conftest import DB
from tests.factories import create_study, create_trial

BODY = b'{"name": "forged"}'
SELF = "http://testserver"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver:8080"},  # another port of the same host: another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_site_writes_refused(client: TestClient, db: DB, headers: dict[str, str]) -> None:
    trial = create_trial(client, create_study(client)["id"])
    before = db.snapshot()
    json_type = {"Content-Type": "application/json", **headers}
    r = client.post("/api/studies", content=BODY, headers=json_type)
    assert r.status_code == 403 and "origin" in r.json()["detail"]
    assert client.post(f"/api/trials/{trial['id']}/pause", headers=headers).status_code == 403
    assert client.delete(f"/api/studies/{trial['study_id']}", headers=headers).status_code == 403
    assert client.post("/login", data={"token": "x"}, headers=headers).status_code == 403
    assert db.snapshot() == before


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
    ],
)
def test_form_types_refused_on_json_routes(client: TestClient, db: DB, content_type: str) -> None:
    # What a plain HTML form (or a no-cors fetch) can send without a preflight.
    trial = create_trial(client, create_study(client)["id"])
    before = db.snapshot()
    for path in (
        "/api/studies",
        f"/api/trials/{trial['id']}/pause",
        f"/api/studies/{trial['study_id']}/trials",
    ):
        r = client.post(path, content=BODY, headers={"Content-Type": content_type})
        assert r.status_code == 415 and "application/json" in r.json()["detail"], path
    assert db.snapshot() == before


def test_same_origin_and_non_browser_writes_pass(client: TestClient, db: DB) -> None:
    same = {"Origin": SELF, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}
    assert client.post("/api/studies", content=BODY, headers=same).status_code == 201
    trial = create_trial(client, create_study(client)["id"])
    # curl -XPOST .../pause: no Origin, no body, no content type.
    assert client.post(f"/api/trials/{trial['id']}/pause").status_code == 200
    assert client.get(f"/api/trials/{trial['id']}").json()["state"] == TrialState.PAUSED.value


def test_reads_are_not_blocked_by_origin(client: TestClient) -> None:
    # A cross-site page cannot read the answer anyway (no CORS headers): GETs stay simple.
    r = client.get("/api/studies", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
