"""The one JSON answer ASGI middleware sends itself, in the API's error envelope."""

from __future__ import annotations

import json

from starlette.types import Send


async def send_json(
    send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A ``{"detail": ...}`` answer sent straight from ASGI middleware."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
