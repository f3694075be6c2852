"""Request body limits, enforced before a handler reads the body."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.serving.responses import send_json

MULTIPART_OVERHEAD = 64 * 1024  # part headers and boundaries around an uploaded file


class BodyLimitMiddleware:
    """413 for bodies over the limit: checkpoint uploads get a larger one than JSON."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def _limit(self, scope: Scope) -> int:
        path = scope.get("path", "")
        if scope.get("method") == "PUT" and path.endswith("/checkpoints"):
            return self.settings.max_checkpoint_bytes
        if scope.get("method") == "POST" and path == "/api/uploads":
            return self.settings.max_upload_bytes + MULTIPART_OVERHEAD
        return self.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self._limit(scope)
        detail = f"body: larger than the limit of {limit} bytes"
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await send_json(send, 413, detail)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # An HTTPException passes FastAPI's body parsing untouched (-> 413).
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, limited, send)
