"""Domain exceptions and the one handler that turns them into ``{"detail": ...}``.

A 422 names every bad field it found: ``{"detail": "a: ...; b: ...", "field": "a",
"errors": [{"field": "a", "message": "..."}, {"field": "b", "message": "..."}]}``. ``field``
is the first of them, ``detail`` every one as a sentence (one error: just that sentence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from trainer.config import HParamError


@dataclass(frozen=True)
class FieldError:
    """One bad field of a request: ``message`` is the sentence without the field's name.

    ``said``: the whole sentence, when it is not ``"<field>: <message>"`` (a setting of a
    scheduler says ``"scheduler: grace: ..."`` for the field ``scheduler.grace``).
    """

    field: str
    message: str
    said: str = ""

    @property
    def sentence(self) -> str:
        return self.said or f"{self.field}: {self.message}"

    @classmethod
    def of(cls, detail: str, field: str) -> FieldError:
        """From a sentence that may start with its field (``"space.x: got 2..."``)."""
        message = detail.removeprefix(f"{field}: ")
        return cls(field, message, "" if message != detail else detail)


class DomainError(Exception):
    """Base of the errors the API reports; ``status_code`` picks the HTTP status."""

    status_code = 400

    def __init__(
        self, detail: str, *, field: str | None = None, errors: Sequence[FieldError] = ()
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.errors: list[FieldError] = list(errors)
        if not self.errors and field is not None:
            self.errors = [FieldError.of(detail, field)]


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

    @classmethod
    def every(cls, errors: Sequence[FieldError]) -> Invalid:
        """One 422 naming every field of ``errors`` (at least one), the first as ``field``."""
        assert errors, "an Invalid names at least one field"
        detail = "; ".join(e.sentence for e in errors)
        return cls(detail, field=errors[0].field, errors=errors)


def _body(
    detail: Any, field: str | None = None, errors: Sequence[FieldError] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {"detail": detail}
    if field is not None:
        out["field"] = field
    if errors:
        out["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return out


def _loc(loc: tuple[int | str, ...]) -> str:
    # "body" is noise to a client; query/path parameters keep their own name.
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    body = _body(exc.detail, exc.field, exc.errors)
    return JSONResponse(body, status_code=exc.status_code)


def field_errors(exc: RequestValidationError) -> list[FieldError] | None:
    """Pydantic's errors as ours, one per field (``budget.trials``, a plain sentence); None
    for a body that is not JSON at all."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return None
    return [FieldError(_loc(tuple(e.get("loc", ()))), _message(e)) for e in errors]


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Pydantic's errors as one sentence per field, e.g. ``budget.trials: a whole number...``.

    A body that is not JSON at all names ``body`` and where it broke (see :func:`_not_json`).
    """
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc)
    if errors is None:
        broken = next(e for e in exc.errors() if e.get("type") == "json_invalid")
        return JSONResponse(_body(_not_json(broken, exc.body), "body"), status_code=422)
    if not errors:
        return JSONResponse(_body("the request is invalid"), status_code=422)
    invalid = Invalid.every(errors)
    return JSONResponse(_body(invalid.detail, invalid.field, errors), status_code=422)


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


# Pydantic's wording of common errors, in plain words ("String should have at least 1
# character" is "got '', allowed: at least 1 character").
_PLAIN = {
    "missing": "required, but not given",
    "extra_forbidden": "not a field of this request (a typo?)",
    "int_parsing": "allowed: a whole number",
    "int_type": "allowed: a whole number",
    "int_from_float": "allowed: a whole number",
    "float_parsing": "allowed: a number",
    "float_type": "allowed: a number",
    "finite_number": "allowed: a finite number",
    "bool_parsing": "allowed: true or false",
    "bool_type": "allowed: true or false",
    "string_type": "allowed: a string",
    "dict_type": "allowed: an object",
    "model_type": "allowed: an object",
    "list_type": "allowed: a list",
}


def _characters(n: Any) -> str:
    return f"{n} character{'' if n == 1 else 's'}"


def _message(error: Any) -> str:
    """One pydantic error as our sentence (without the field, which the caller adds)."""
    kind, msg, ctx = error.get("type"), str(error.get("msg", "invalid")), error.get("ctx") or {}
    got = f"got {error.get('input')!r}"
    if kind == "value_error":
        # Our validators raise ValueError with a finished sentence; pydantic prefixes it.
        return msg.removeprefix("Value error, ")
    op = _BOUNDS.get(str(kind))
    if op is not None and _BOUND_KEYS[op] in ctx:
        return f"{got}, allowed: {op} {ctx[_BOUND_KEYS[op]]}"
    if kind == "enum" and "expected" in ctx:
        return f"{got}, allowed: {ctx['expected']}"
    if kind == "string_too_short" and "min_length" in ctx:
        return f"{got}, allowed: at least {_characters(ctx['min_length'])}"
    if kind == "string_too_long" and "max_length" in ctx:
        return f"got {len(str(error.get('input')))} characters, allowed: at most " + _characters(
            ctx["max_length"]
        )
    if kind in _PLAIN and kind not in ("missing", "extra_forbidden"):
        return f"{got}, {_PLAIN[kind]}"
    return _PLAIN.get(str(kind), msg)


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
    "properties": {
        "detail": {"type": "string"},
        "field": {"type": "string", "description": "the first bad field"},
        "errors": {
            "type": "array",
            "description": "every bad field found, each with its message",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def _document_envelope(app: FastAPI) -> None:
    # FastAPI documents its own list-of-errors 422 body; ours is a sentence, a field, a list.
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
