"""The API token: file, bearer header, login page, session cookie, ``pandacaviar serve``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.serving import security
from tests.conftest import DB, ROOT, free_port

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def guarded(settings: Settings) -> Iterator[TestClient]:
    settings.token = TOKEN
    with TestClient(create_app(settings)) as client:
        yield client


def test_token_file_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "token"
    token = security.load_or_create_token(path)
    assert len(token) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert security.load_or_create_token(path) == token
    path.chmod(0o644)
    assert security.load_or_create_token(path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["token"]


def test_session_cookie_signed_and_expiring() -> None:
    value = security.session_value(TOKEN)
    assert security.valid_session(TOKEN, value)
    assert not security.valid_session("another-token", value)
    expires, _, mac = value.partition(".")
    assert not security.valid_session(TOKEN, f"{int(expires) + 1}.{mac}")
    assert not security.valid_session(TOKEN, value, now=time.time() + security.SESSION_SECONDS + 5)
    assert not security.valid_session(TOKEN, "garbage")


def test_api_needs_the_bearer_token(guarded: TestClient, db: DB) -> None:
    assert guarded.get("/api/health").status_code == 200
    before = db.snapshot()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = guarded.get("/api/studies", headers=headers)
        assert r.status_code == 401 and "token" in r.json()["detail"]
        assert guarded.post("/api/studies", json={"name": "x"}, headers=headers).status_code == 401
    # In a URL the token would end up in access logs and browser history: not accepted.
    assert guarded.get("/api/studies", params={"token": TOKEN}).status_code == 401
    assert guarded.get("/openapi.json", follow_redirects=False).status_code == 303
    assert db.snapshot() == before
    ok = guarded.post(
        "/api/studies", json={"name": "x"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert ok.status_code == 201


def test_pages_need_a_session_from_the_login_page(guarded: TestClient) -> None:
    first = guarded.get("/studies/new", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=%2Fstudies%2Fnew"
    login = guarded.get("/login")
    assert login.status_code == 200 and TOKEN not in login.text
    wrong = guarded.post(
        "/login", data={"token": "nope", "next": "/studies/new"}, follow_redirects=False
    )
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    ok = guarded.post(
        "/login", data={"token": TOKEN, "next": "/studies/new"}, follow_redirects=False
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/studies/new"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    page = guarded.get("/studies/new")  # the client keeps the cookie
    assert page.status_code == 200 and TOKEN not in page.text
    assert guarded.get("/api/studies").status_code == 200  # the pages' fetches use it too


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
def test_login_never_redirects_off_site(guarded: TestClient, target: str) -> None:
    r = guarded.post("/login", data={"token": TOKEN, "next": target}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_serve_wide_bind_generates_the_token_file(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANDACAVIAR_")}
    cmd = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--db",
        str(tmp_path / "t.db"),
        "--data-dir",
        str(data),
        "--workers",
        "0",
    ]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_health(url, proc)
        token_file = data / "token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert httpx2.get(f"{url}/api/studies").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx2.get(f"{url}/api/studies", headers=auth).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    printed = log.read_text()
    assert str(token_file.resolve()) in printed and token not in printed


def _wait_for_health(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert proc.poll() is None, "serve exited"
        try:
            if httpx2.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve did not come up")
