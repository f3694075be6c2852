"""HTML pages (Jinja2); the JSON API lives in app.api."""

from __future__ import annotations

from app.web.pages import router as web_router

__all__ = ["web_router"]
