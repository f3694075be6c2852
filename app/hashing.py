"""SHA-256 digests of files and bytes: the one helper both the server and the worker use.

Standard library only: the worker program (app.worker) imports this and nothing else of the
server, and the server never imports app.worker. A body hashed while it streams in (an
upload, a checkpoint) keeps its own ``hashlib.sha256()`` object and calls ``update`` per chunk.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 1024 * 1024


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file at ``path``, read in 1 MiB chunks (raises ``OSError``)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def bytes_sha256(data: bytes) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
