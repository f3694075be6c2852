"""A body that is not JSON is a 422 naming ``body`` and where the JSON broke, never a field
named after a character offset."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.factories import create_study

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"name": "x", "epochs": }', "Expecting value at line 1 column 25"),
        (b'{"name": "x",\n  "epochs": 2,\n}', "Expecting property name enclosed in double quotes"),
        (b'{"name": "x"', "at line 1 column 13"),
    ],
)
def test_a_broken_json_body_names_body_and_where(
    client: TestClient, raw: bytes, where: str
) -> None:
    r = client.post("/api/studies", content=raw, headers=JSON)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == "body"
    assert body["detail"].startswith("body: not valid JSON: ")
    assert where in body["detail"]
    assert client.get("/api/studies").json()["count"] == 0


def test_the_line_and_column_count_from_one_across_lines(client: TestClient) -> None:
    study = create_study(client)
    raw = b'{\n  "hparams": {\n    "learning_rate": 0.01,,\n  }\n}'
    r = client.post(f"/api/studies/{study['id']}/trials", content=raw, headers=JSON)
    assert r.status_code == 422
    assert r.json() == {
        "detail": "body: not valid JSON: Expecting property name enclosed in double quotes "
        "at line 3 column 27",
        "field": "body",
    }


def test_valid_json_that_breaks_a_rule_still_names_its_field(client: TestClient) -> None:
    r = client.post("/api/studies", content=b'{"name": "x", "epochs": 0}', headers=JSON)
    assert r.status_code == 422
    assert r.json()["field"] == "epochs"
