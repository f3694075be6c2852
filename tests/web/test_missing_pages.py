"""A study or trial page for an id that does not exist answers 404 with a page that says so.

Before, the page rendered as usual and its JavaScript left "Loading…" on screen forever.
The HTTP tests use the in-process client (no workers: a created trial stays queued); the
browser test uses the real server and Chromium of tests/web/conftest.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from tests.factories import create_study, create_trial

MISSING = 999999


def main_html(html: str) -> str:
    """The page's own content: base.html's header links to "/" on every page."""
    found = re.search(r'<main id="main">(.*)</main>', html, re.DOTALL)
    assert found is not None, html
    return found.group(1)


def assert_not_found_page(response: Any, message: str) -> None:
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    main = main_html(response.text)
    assert f"<h1>{message}</h1>" in main
    assert re.search(r'<a [^>]*href="/"[^>]*>Back to the studies</a>', main)
    # No page script is loaded, so nothing is left waiting for data.
    assert "Loading…" not in response.text
    assert "/static/js/" not in response.text
    assert f"<title>{message} · panda-caviar</title>" in response.text  # base.html's layout


@pytest.mark.parametrize(("path", "message"), [
    (f"/studies/{MISSING}", f"Study {MISSING} not found"),
    (f"/trials/{MISSING}", f"Trial {MISSING} not found"),
])  # fmt: skip
def test_get_page_not_found(client: TestClient, path: str, message: str) -> None:
    assert_not_found_page(client.get(path), message)


@pytest.mark.parametrize(("prefix", "kind"), [("/studies", "Study"), ("/trials", "Trial")])
def test_get_page_of_out_of_range_id_not_found(client: TestClient, prefix: str, kind: str) -> None:
    # Longer than any 64-bit key: no row can have it, and the database cannot even bind it.
    huge = 2**64
    assert_not_found_page(client.get(f"{prefix}/{huge}"), f"{kind} {huge} not found")


def test_get_pages_ok_then_not_found_once_deleted(client: TestClient) -> None:
    study = create_study(client)
    trial = create_trial(client, study["id"])
    study_path, trial_path = f"/studies/{study['id']}", f"/trials/{trial['id']}"
    # While they exist the pages render as before, with the ids their scripts load.
    root_ids = [f'data-study-id="{study["id"]}"', f'data-trial-id="{trial["id"]}"']
    for path, root_id in zip([study_path, trial_path], root_ids, strict=True):
        existing = client.get(path)
        assert existing.status_code == 200
        assert root_id in existing.text
        assert "not found" not in main_html(existing.text)
    assert client.delete(f"/api/studies/{study['id']}").status_code == 204
    assert_not_found_page(client.get(study_path), f"Study {study['id']} not found")
    assert_not_found_page(client.get(trial_path), f"Trial {trial['id']} not found")


@pytest.mark.slow  # a real server and a real browser
def test_browser_shows_missing_trial(page: Any, console: Any, shot: Any) -> None:
    console.allow(r"status of 404")  # the browser logs the page's own 404 as an error
    response = page.goto(f"/trials/{MISSING}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Trial {MISSING} not found")
    expect(page.get_by_text("Loading…")).to_have_count(0)
    shot("trial-not-found")
    page.get_by_role("link", name="Back to the studies").click()
    page.wait_for_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Studies")
