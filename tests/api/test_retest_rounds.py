"""A re-test round names what it re-runs (top k, seeds each) in the rounds API, not ranges."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.test_rounds import done_study


def test_retest_round_shows_its_top_and_seeds(client: TestClient) -> None:
    sid = done_study(client)
    r = client.post(f"/api/studies/{sid}/retest", json={"top": 2, "seeds": 3})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "retest" and r.json()["retest"] == {"top": 2, "seeds": 3}
    r = client.post(f"/api/studies/{sid}/retest", json={"top": 3, "seeds": 1})
    assert r.status_code == 201, r.text
    listed = client.get(f"/api/studies/{sid}/rounds").json()["data"]
    assert [(rd["number"], rd["kind"], rd["retest"]) for rd in listed] == [
        (1, "search", None),
        (2, "retest", {"top": 2, "seeds": 3}),
        (3, "retest", {"top": 3, "seeds": 1}),
    ]


def test_search_round_has_no_retest_shape(client: TestClient) -> None:
    sid = done_study(client)
    r = client.post(f"/api/studies/{sid}/rounds", json={"from_top": 2, "trials": 3})
    assert r.status_code == 201, r.text
    assert r.json()["retest"] is None
    listed = client.get(f"/api/studies/{sid}/rounds").json()["data"]
    assert [rd["retest"] for rd in listed] == [None, None]
