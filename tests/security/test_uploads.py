"""Data-set uploads: server-chosen names, streaming size limit, the trainer's validation."""

from __future__ import annotations

import hashlib
import io
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.storage.models import Study
from tests.conftest import DB
from tests.security.conftest import StartUvicorn

CSV = b"a,b,label\n" + b"".join(
    b"%d,%d,%s\n" % (i, i * i, b"ab"[i % 2 : i % 2 + 1]) for i in range(12)
)
SERVER_NAME = re.compile(r"^[0-9a-f]{32}\.(csv|npz)$")


def multipart(filename: bytes, content: bytes, field: bytes = b"file") -> tuple[bytes, str]:
    """A body built by hand, so any bytes (NUL, ``..``) reach the server as sent."""
    body = (
        b'--BOUNDARY\r\nContent-Disposition: form-data; name="'
        + field
        + b'"; filename="'
        + filename
        + b'"\r\nContent-Type: text/csv\r\n\r\n'
        + content
        + b"\r\n--BOUNDARY--\r\n"
    )
    return body, "multipart/form-data; boundary=BOUNDARY"


def post(client: TestClient, filename: bytes, content: bytes) -> object:
    body, content_type = multipart(filename, content)
    return client.post("/api/uploads", content=body, headers={"Content-Type": content_type})


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def npz(**arrays: object) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def test_upload_csv_then_train_on_it(client: TestClient, app: FastAPI, db: DB) -> None:
    r = post(client, b"iris.csv", CSV)
    assert r.status_code == 201  # type: ignore[attr-defined]
    out = r.json()  # type: ignore[attr-defined]
    assert SERVER_NAME.match(out["path"]) and out["path"].endswith(".csv")
    assert (out["name"], out["rows"], out["features"], out["classes"]) == ("iris.csv", 12, 2, 2)
    stored = app.state.settings.upload_dir / out["path"]
    assert stored.read_bytes() == CSV and out["sha256"] == hashlib.sha256(CSV).hexdigest()
    study = client.post(
        "/api/studies",
        json={"name": "mine", "task": "file", "task_options": {"path": out["path"]}},
    )
    assert study.status_code == 201, study.text


def test_upload_npz(client: TestClient, app: FastAPI) -> None:
    data = npz(X=np.arange(30.0).reshape(10, 3), y=np.array([0, 1] * 5))
    r = post(client, b"x.npz", data)
    assert r.status_code == 201  # type: ignore[attr-defined]
    out = r.json()  # type: ignore[attr-defined]
    assert out["path"].endswith(".npz") and (out["rows"], out["features"]) == (10, 3)


@pytest.mark.parametrize(
    "filename",
    [
        b"../x.csv",
        b"%2e%2e%2fx.csv",
        b"/etc/passwd",
        b"a\x00b.csv",
        b"..\\..\\x.csv",
        b"x" * 900 + b".csv",
        b"",
        b"\xff\xfe.csv",
    ],
    ids=["dotdot", "encoded", "absolute", "nul", "backslash", "long", "empty", "not-utf8"],
)
def test_hostile_names_stored_under_a_server_name(
    client: TestClient, app: FastAPI, tmp_path: Path, filename: bytes
) -> None:
    before = files_under(tmp_path)
    r = post(client, filename, CSV)
    assert r.status_code == 201  # type: ignore[attr-defined]
    out = r.json()  # type: ignore[attr-defined]
    assert SERVER_NAME.match(out["path"])
    assert "/" not in out["name"] and "\x00" not in out["name"] and len(out["name"]) <= 100
    upload_dir = app.state.settings.upload_dir
    assert files_under(tmp_path) - before == {upload_dir / out["path"]}


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        (b"ragged.csv", b"a,b,label\n1,2,0\n1,2\n", "line 3 has 2 fields"),
        (b"nan.csv", b"a,label\n1,0\nnan,1\n2,0\n3,1\n4,0\n5,1\n", "not finite"),
        (b"one.csv", b"a,label\n1,0\n2,0\n3,0\n", "only one class"),
        (b"empty.csv", b"", "empty"),
        (
            b"pickle.npz",
            npz(X=np.array([[1], [object()]], dtype=object), y=np.array([0, 1])),
            "pickled objects",
        ),
        (b"x.npz", CSV, "named .npz"),
        (b"x.csv", npz(X=np.zeros((6, 2)), y=np.array([0, 1] * 3)), "named .csv"),
    ],
)
def test_bad_files_refused_and_nothing_kept(
    client: TestClient,
    app: FastAPI,
    db: DB,
    tmp_path: Path,
    filename: bytes,
    content: bytes,
    message: str,
) -> None:
    before, rows = files_under(tmp_path), db.snapshot()
    r = post(client, filename, content)
    assert r.status_code == 422  # type: ignore[attr-defined]
    detail = r.json()["detail"]  # type: ignore[attr-defined]
    assert message in detail and ".part" not in detail
    assert files_under(tmp_path) == before and db.snapshot() == rows
    assert list(app.state.settings.upload_dir.iterdir()) == []


def test_npz_bomb_refused(client: TestClient, app: FastAPI) -> None:
    app.state.settings.max_upload_bytes = 200_000
    buf = io.BytesIO()
    np.savez_compressed(buf, X=np.zeros((2_000_000, 1)), y=np.zeros(2_000_000, dtype=int))
    assert len(buf.getvalue()) < 200_000  # 32 MB of arrays in a few kilobytes
    r = post(client, b"bomb.npz", buf.getvalue())
    assert r.status_code == 422 and "unpack" in r.json()["detail"]  # type: ignore[attr-defined]
    assert list(app.state.settings.upload_dir.iterdir()) == []


def test_malformed_requests_refused(client: TestClient, app: FastAPI) -> None:
    body, content_type = multipart(b"x.csv", CSV, field=b"other")
    no_file = client.post("/api/uploads", content=body, headers={"Content-Type": content_type})
    assert no_file.status_code == 422 and "file" in no_file.json()["detail"]
    raw = client.post("/api/uploads", content=CSV, headers={"Content-Type": "text/csv"})
    assert raw.status_code == 415
    broken = client.post(
        "/api/uploads",
        content=b"garbage",
        headers={"Content-Type": "multipart/form-data; boundary=zz"},
    )
    assert broken.status_code == 422
    huge_name = post(client, b"x" * 20_000 + b".csv", CSV)  # past the part-header limit
    assert huge_name.status_code == 422  # type: ignore[attr-defined]
    assert list(app.state.settings.upload_dir.iterdir()) == []


def test_file_task_path_must_be_an_upload(client: TestClient, db: DB, tmp_path: Path) -> None:
    (tmp_path / "outside.csv").write_bytes(CSV)
    for path in ("../outside.csv", str(tmp_path / "outside.csv"), "/etc/passwd", "nope.csv"):
        r = client.post(
            "/api/studies", json={"name": "x", "task": "file", "task_options": {"path": path}}
        )
        assert r.status_code == 422 and r.json()["field"] == "task_options.path", path
    assert db.count(Study) == 0


def test_size_checked_while_streaming(start_uvicorn: StartUvicorn) -> None:
    # Chunked (no Content-Length): the server must answer 413 once the limit is passed,
    # without waiting for the rest of the body, and keep no partial file.
    server = start_uvicorn(PANDACAVIAR_MAX_UPLOAD_BYTES="100000")
    head, content_type = multipart(b"big.csv", b"")
    head = head[: head.index(b"\r\n--BOUNDARY--")]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            + content_type.encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"1,2,0\n" * 10_000  # 60 kB a chunk; the body is never finished
        for piece in (head, chunk, chunk, chunk):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    uploads = server.data / "files" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
