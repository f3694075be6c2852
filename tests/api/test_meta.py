"""Health, catalogues, settings, the token and the body size limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.config import Settings
from app.main import create_app
from app.storage.models import Study
from tests.conftest import DB


def test_health(client: TestClient, backend: str) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["database"] == backend and body["streams"] == 0


def test_tasks(client: TestClient) -> None:
    body = client.get("/api/tasks").json()
    tasks = {t["name"]: t for t in body["data"]}
    assert body["count"] == len(tasks) and "digits" in tasks
    assert tasks["moons"]["options"]["noise"]["type"] == "float"


def test_hparams_catalogue(client: TestClient) -> None:
    specs = {h["name"]: h for h in client.get("/api/hparams").json()}
    assert specs["learning_rate"]["adjustable"] is True
    assert specs["learning_rate"]["range"] == "a finite number in (0, 10]"
    assert specs["hidden_units"]["adjustable"] is False


def test_openapi_lists_the_contract_paths(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/studies",
        "/api/trials/{trial_id}/fork",
        "/api/workers/claim",
        "/api/workers/trials/{trial_id}/report",
        "/api/trials/{trial_id}/stream",
    ):
        assert path in paths


def test_index_page_serves_the_studies_shell(client: TestClient) -> None:
    # The list itself is filled from /api/studies in the browser (tests/web checks that
    # names are shown as text); the page route only renders the shell and its script.
    page = client.get("/")
    assert page.status_code == 200
    assert "<h1>Studies</h1>" in page.text and "/static/js/studies.js" in page.text
    assert client.get("/static/vendor/echarts/echarts.min.js").status_code == 200


def test_json_body_limit(client: TestClient, db: DB) -> None:
    before = db.snapshot()
    r = client.post("/api/studies", json={"name": "x" * 2_000_000})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    chunked = client.post(
        "/api/studies",
        content=iter([b'{"name": "', b"x" * 2_000_000]),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status_code == 413
    assert db.snapshot() == before


def test_token_required_when_configured(settings: Settings) -> None:
    settings.token = "s3cret"
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/health").status_code == 200
        denied = client.get("/api/studies")
        assert denied.status_code == 401 and "token" in denied.json()["detail"]
        wrong = client.get("/api/studies", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401
        ok = client.get("/api/studies", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        # Never in the URL: URLs end up in access logs and browser history.
        assert client.get("/api/studies", params={"token": "s3cret"}).status_code == 401
        assert client.post("/api/studies", json={"name": "x"}).status_code == 401
        assert (
            client.get("/api/studies", headers={"Authorization": "Bearer s3cret"}).json()["count"]
            == 0
        )


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"workers": -1}, "workers"),
        ({"lease_seconds": 0}, "lease_seconds"),
        ({"report_seconds": float("nan")}, "report_seconds"),
        ({"max_failures": 0}, "max_failures"),
        ({"host": "0.0.0.0"}, "token"),
    ],
)
def test_settings_fail_fast(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(**fields)  # type: ignore[arg-type]


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PANDACAVIAR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PANDACAVIAR_WORKERS", "3")
    monkeypatch.setenv("PANDACAVIAR_HOST", "0.0.0.0")
    monkeypatch.setenv("PANDACAVIAR_TOKEN", "t")
    s = Settings()
    assert (s.workers, s.checkpoint_dir, s.server_url) == (
        3,
        tmp_path / "checkpoints",
        "http://127.0.0.1:8000",
    )


def test_importing_main_builds_no_app() -> None:
    import app.main

    assert "app" not in vars(app.main) or callable(app.main.create_app)
    assert Study.__tablename__ == "studies"
