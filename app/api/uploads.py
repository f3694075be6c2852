"""Data-set uploads: a CSV or NPZ file stored under a server-chosen name for ``file`` tasks.

The multipart body is parsed as it streams in: the file part goes straight to a hidden temp
file in ``data_dir/uploads``, the size is checked on every chunk (413 the moment it passes the
limit), and the file is read back with the trainer's own reader before it gets its final
name ``<uuid>.csv`` or ``<uuid>.npz``. Whatever goes wrong, no partial file is left behind.
The client's file name is only shown back, never used as a path.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException

from app.deps import SettingsDep
from app.errors import Invalid, NotFound
from app.hashing import file_sha256

router = APIRouter(prefix="/uploads", tags=["uploads"])
ZIP_MAGIC = b"PK\x03\x04"
MAX_NAME = 100  # characters of the client's file name shown back
# An NPZ may be compressed: its arrays may expand to this many times the upload limit.
MAX_EXPANSION = 8
# The names the server gives uploads (``<uuid hex>.csv|npz``): nothing else is ever served.
STORED_NAME = re.compile(r"[0-9a-f]{32}\.(csv|npz)")
SHA256_HEADER = "X-Dataset-Sha256"
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


class DatasetOut(BaseModel):
    path: str = Field(description="the server's name for the file")
    bytes: int
    sha256: str


class UploadOut(BaseModel):
    path: str = Field(description="the server's name for the file: task_options.path")
    name: str = Field(description="the client's file name, for display only")
    bytes: int
    sha256: str
    rows: int
    features: int
    classes: int


@dataclass
class _Receiver:
    """Multipart callbacks that write the ``file`` part to ``tmp`` and count its bytes."""

    tmp: Path
    limit: int
    name: str | None = None
    size: int = 0
    head: bytes = b""
    digest: Any = field(default_factory=hashlib.sha256)
    _fh: IO[bytes] | None = None
    _header: bytes = b""
    _headers: dict[bytes, bytes] = field(default_factory=dict)

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._headers.clear,
            "on_header_field": self._field,
            "on_header_value": self._value,
            "on_headers_finished": self._open,
            "on_part_data": self._data,
            "on_part_end": self._close,
        }

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header = data[start:end].lower()

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._headers[self._header] = self._headers.get(self._header, b"") + data[start:end]

    def _open(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if params.get(b"name") != b"file":
            return  # another form field: ignored
        if self.name is not None:
            raise Invalid("file: send one file per upload", field="file")
        self.name = display_name(params.get(b"filename", b"").decode("utf-8", "replace"))
        # Created 0600 and O_EXCL: never through a planted link, never readable by others.
        self._fh = os.fdopen(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._fh is None:
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.limit:
            raise HTTPException(413, f"file: larger than the limit of {self.limit} bytes")
        self._fh.write(chunk)
        self.digest.update(chunk)
        self.head = (self.head + chunk)[:4]

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)


def display_name(raw: str) -> str:
    """The last path component, printable characters only, at most :data:`MAX_NAME` long."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    shown = "".join(c for c in base if unicodedata.category(c)[0] != "C")
    return shown[:MAX_NAME] or "upload"


async def _receive(request: Request, receiver: _Receiver) -> None:
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise Invalid("body: send the file as multipart/form-data (field 'file')", field="body")
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise Invalid(f"body: not valid multipart/form-data ({exc})", field="body") from None
    if receiver.name is None:
        raise Invalid("file: no file in the form (send it in the field 'file')", field="file")


def _extension(receiver: _Receiver) -> str:
    """The server's extension: from the content, checked against the name's if it has one."""
    ext = ".npz" if receiver.head == ZIP_MAGIC else ".csv"
    claimed = Path(receiver.name or "").suffix.lower()
    if claimed in {".csv", ".npz"} and claimed != ext:
        raise Invalid(
            f"file: {receiver.name!r} is named {claimed} but its content is "
            f"{'a zip archive' if ext == '.npz' else 'not a zip archive'}",
            field="file",
        )
    return ext


def _check_expansion(path: Path, limit: int) -> None:
    # A compressed NPZ could unpack to gigabytes (a zip bomb): check the declared sizes first.
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise Invalid(f"file: not a valid .npz archive ({exc})", field="file") from None
    if unpacked > MAX_EXPANSION * limit:
        raise Invalid(
            f"file: its arrays unpack to {unpacked} bytes, more than the limit of "
            f"{MAX_EXPANSION * limit}",
            field="file",
        )


def _store(receiver: _Receiver, directory: Path) -> UploadOut:
    """Read the file with the trainer's reader, then give it its final name."""
    from trainer.datafiles import DataError, read_table  # NumPy: loaded on first upload

    ext = _extension(receiver)
    if ext == ".npz":
        _check_expansion(receiver.tmp, receiver.limit)
    try:
        X, labels, _ = read_table(receiver.tmp)
    except DataError as exc:
        detail = str(exc).replace(receiver.tmp.name, receiver.name or "upload")
        raise Invalid(f"file: {detail}", field="file") from None
    final = directory / f"{receiver.tmp.stem.lstrip('.')}{ext}"
    os.replace(receiver.tmp, final)
    return UploadOut(
        path=final.name,
        name=receiver.name or "upload",
        bytes=receiver.size,
        sha256=receiver.digest.hexdigest(),
        rows=int(X.shape[0]),
        features=int(X.shape[1]),
        classes=len(set(labels.tolist())),
    )


@router.post(
    "",
    response_model=UploadOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=UPLOAD_BODY,
    responses={413: {"description": "file too large"}, 422: {"description": "bad file"}},
)
async def upload_dataset(request: Request, settings: SettingsDep) -> UploadOut:
    """Store a CSV or NPZ data set; use the answer's ``path`` as a file task's ``path``."""
    directory = settings.upload_dir
    directory.mkdir(parents=True, exist_ok=True)
    receiver = _Receiver(directory / f".{uuid.uuid4().hex}.part", settings.max_upload_bytes)
    try:
        await _receive(request, receiver)
        return await run_in_threadpool(_store, receiver, directory)
    finally:
        receiver.abort()  # after a success the temp name no longer exists: a no-op


def _stored(name: str, directory: Path) -> Path:
    """The uploaded file called ``name``; 404 for anything else (no path ever escapes)."""
    path = directory / name
    if not STORED_NAME.fullmatch(name) or not path.is_file():
        raise NotFound(f"upload {name!r} not found")
    return path


@router.get("/{name}", response_model=DatasetOut)
async def dataset_info(name: str, settings: SettingsDep) -> DatasetOut:
    """Size and sha256 of an upload: a remote worker checks its cached copy against them.

    The digest is computed from the file as stored now (uploads are never rewritten, so it
    equals the upload's answer), which also catches a file damaged on the server's disk.
    """
    path = _stored(name, settings.upload_dir)
    digest = await run_in_threadpool(file_sha256, path)
    return DatasetOut(path=name, bytes=path.stat().st_size, sha256=digest)


@router.get(
    "/{name}/content",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def dataset_content(name: str, settings: SettingsDep) -> FileResponse:
    """The upload's bytes, for workers on other machines (``file`` tasks)."""
    path = _stored(name, settings.upload_dir)
    digest = await run_in_threadpool(file_sha256, path)
    return FileResponse(
        path, media_type="application/octet-stream", headers={SHA256_HEADER: digest}
    )
