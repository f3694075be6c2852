"""The API docs page works offline: Swagger UI comes from our static files, not a CDN."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.slow  # a real server and a real browser


def test_api_docs_render_from_our_own_files(page: Any, shot: Any) -> None:
    hosts: list[str] = []
    page.on("request", lambda r: hosts.append(urlsplit(r.url).hostname or ""))
    page.goto("/")
    page.get_by_role("link", name="API docs").click()
    # Swagger UI lists the operations it read from /openapi.json.
    expect(page.locator(".opblock-summary-path", has_text="/api/studies").first).to_be_visible()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("panda-caviar")
    shot("api-docs")
    assert set(hosts) == {"127.0.0.1"}, hosts
