"""Domain exceptions and the one handler that turns them into ``{"detail": ...}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from trainer.config import HParamError


class DomainError(Exception):
    """Base of the errors the API reports; ``status_code`` picks the HTTP status."""

    status_code = 400

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    """The resource is in the wrong state for this request (finished trial, stale attempt)."""

    status_code = 409


class Invalid(DomainError):
    """Input that parses but breaks a rule; ``field`` names it."""

    status_code = 422

    @classmethod
    def from_hparam(cls, exc: HParamError, prefix: str = "") -> Invalid:
        return cls(f"{prefix}{exc}", field=f"{prefix}{exc.name}")


def _body(detail: Any, field: str | None = None) -> dict[str, Any]:
    return {"detail": detail} if field is None else {"detail": detail, "field": field}


def _loc(loc: tuple[int | str, ...]) -> str:
    # "body" is noise to a client; query/path parameters keep their own name.
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return JSONResponse(_body(exc.detail, exc.field), status_code=exc.status_code)


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Pydantic's errors as one sentence per field, e.g. ``budget.trials: Input should be...``.

    A body that is not JSON at all names ``body`` and where it broke (see :func:`_not_json`).
    """
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if broken is not None:
        return JSONResponse(_body(_not_json(broken, exc.body), "body"), status_code=422)
    fields = [_loc(tuple(e.get("loc", ()))) for e in errors]
    messages = [_message(e) for e in errors]
    detail = "; ".join(f"{f}: {m}" for f, m in zip(fields, messages, strict=True))
    return JSONResponse(_body(detail, fields[0] if fields else None), status_code=422)


def _not_json(error: Any, doc: Any) -> str:
    """``body: not valid JSON: Expecting value at line 1 column 13``.

    FastAPI reports a JSON syntax error at ``("body", <character offset>)``: the bare offset
    would read as a field named "12". Line and column count from 1, as :mod:`json` counts.
    """
    reason = str((error.get("ctx") or {}).get("error") or "cannot be parsed")
    loc = tuple(error.get("loc", ()))
    pos = loc[-1] if len(loc) > 1 and isinstance(loc[-1], int) else None
    if pos is None or not isinstance(doc, str | bytes):
        return f"body: not valid JSON: {reason}"
    text = doc.decode("utf-8", "replace") if isinstance(doc, bytes) else doc
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    return f"body: not valid JSON: {reason} at line {line} column {column}"


# Pydantic's bound errors, in the words our own checks use: "got 0, allowed: >= 1".
_BOUNDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}
_BOUND_KEYS = {">=": "ge", ">": "gt", "<=": "le", "<": "lt"}


def _message(error: Any) -> str:
    """One pydantic error as our sentence (without the field, which the caller adds)."""
    kind, msg, ctx = error.get("type"), str(error.get("msg", "invalid")), error.get("ctx") or {}
    if kind == "value_error":
        # Our validators raise ValueError with a finished sentence; pydantic prefixes it.
        return msg.removeprefix("Value error, ")
    op = _BOUNDS.get(str(kind))
    if op is not None and _BOUND_KEYS[op] in ctx:
        return f"got {error.get('input')!r}, allowed: {op} {ctx[_BOUND_KEYS[op]]}"
    return msg


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        _body(exc.detail), status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


# What every 4xx body looks like; OpenAPI shows it for the 422s FastAPI documents itself.
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"type": "string"}, "field": {"type": "string"}},
}


def _document_envelope(app: FastAPI) -> None:
    # FastAPI documents its own list-of-errors 422 body; ours is one sentence and a field.
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = build().get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = ERROR_SCHEMA
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


async def overflow_handler(request: Request, exc: Exception) -> JSONResponse:
    """An integer past SQLite's 64 bits (an id, a step, an attempt) is bad input, not a 500."""
    return JSONResponse(_body(f"an integer is out of range: {exc}"), status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, domain_error_handler)
    app.add_exception_handler(OverflowError, overflow_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    _document_envelope(app)
