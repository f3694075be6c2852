"""Who may talk to the server, and from where: one ASGI middleware and the token helpers.

Checks, in order, for every HTTP request:

1. **Peer**: without a token, only this machine may connect (a loopback client address).
2. **Host header** against an allowlist: a DNS-rebinding page reaches us under *its* name.
3. **Cross-site writes**: a state-changing request whose ``Origin`` or ``Sec-Fetch-Site``
   names another site is refused, and an ``/api`` write must be JSON (or the one raw type its
   route takes), so a plain HTML form on another site cannot forge it.
4. **Token**: with one configured, ``/api`` needs ``Authorization: Bearer <token>`` or the
   session cookie the login page hands out; pages need the cookie. Health, static files and
   the login page stay open.

No CORS headers are ever added: other origins get the browser's default, deny.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import WILDCARD_HOSTS, Settings, is_loopback
from app.serving.responses import send_json

SESSION_COOKIE = "pandacaviar_session"
SESSION_SECONDS = 7 * 24 * 3600
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = ("/api/health", "/static/", "/login")
# Sec-Fetch-Site values a browser sends for our own pages or a typed URL; "same-site" is
# refused too: another port of localhost is the same site but not us.
TRUSTED_FETCH_SITES = frozenset({"same-origin", "none"})
JSON_TYPES = ("application/json",)
# The /api writes whose body is not JSON by design: (method, path suffix) -> content type.
RAW_BODIES = {
    ("PUT", "/checkpoints"): "application/octet-stream",
    ("POST", "/api/uploads"): "multipart/form-data",
}


# -- the token and the session cookie --------------------------------------------------------


def load_or_create_token(path: Path) -> str:
    """The token stored at ``path``, created (``secrets.token_urlsafe``, mode 0600) if absent.

    Raises:
        OSError: the file cannot be read or written.
    """
    if path.is_file():
        if path.stat().st_mode & 0o077:  # readable by others: tighten rather than trust it
            path.chmod(0o600)
        token = path.read_text().strip()
        if token:
            return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created 0600 from the first byte (O_EXCL: never through a planted symlink).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return token


def token_matches(expected: str, given: str) -> bool:
    """Constant-time comparison (a timing difference must not reveal a prefix)."""
    return hmac.compare_digest(expected.encode(), given.encode())


def _session_key(token: str) -> bytes:
    # Derived from the token: a new token logs every browser out.
    return hmac.new(token.encode(), b"pandacaviar session v1", hashlib.sha256).digest()


def session_value(token: str, now: float | None = None) -> str:
    """A cookie value ``<expiry>.<hmac>``, valid for :data:`SESSION_SECONDS`."""
    expires = int((time.time() if now is None else now) + SESSION_SECONDS)
    mac = hmac.new(_session_key(token), str(expires).encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def valid_session(token: str, value: str, now: float | None = None) -> bool:
    """True for an unexpired cookie value signed with this token's key."""
    expires, _, mac = value.partition(".")
    if not expires.isdigit() or int(expires) < (time.time() if now is None else now):
        return False
    good = hmac.new(_session_key(token), expires.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(good, mac)


def session_cookie_header(token: str, *, secure: bool) -> str:
    """The ``Set-Cookie`` value: HttpOnly (no script reads it), SameSite=Strict."""
    flags = f"; Max-Age={SESSION_SECONDS}; Path=/; HttpOnly; SameSite=Strict"
    return f"{SESSION_COOKIE}={session_value(token)}{flags}{'; Secure' if secure else ''}"


# -- request checks: each returns None (fine) or the reason for refusing ----------------------


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _over_network(scope: Scope) -> bool:
    # The in-process test transport names its server "testserver": no socket, no browser.
    server = scope.get("server")
    return not (server and server[1] is not None and not _is_ip(str(server[0])))


def host_name(host_header: str) -> str:
    """``"[::1]:8000"`` -> ``"::1"``, ``"Example.org:80"`` -> ``"example.org"``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def host_refusal(host_header: str | None, settings: Settings) -> str | None:
    """Refuse a Host header that is not ours (DNS rebinding serves us under a foreign name)."""
    if not host_header:
        return "host: the Host header is required"
    allowed = settings.host_allowlist
    name = host_name(host_header)
    if name in allowed or "*" in allowed:
        return None
    # Bound to every interface, any IP literal is one of ours; rebinding needs a DNS name.
    if settings.host.strip("[]") in WILDCARD_HOSTS and _is_ip(name):
        return None
    return (
        f"host: {name!r} is not an allowed host name for this server; add it to "
        "PANDACAVIAR_ALLOWED_HOSTS if you reach the server by that name"
    )


def _netloc(value: str, scheme: str) -> str:
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    value = value.lower()
    return value[: -len(default)] if default and value.endswith(default) else value


def cross_site_refusal(headers: dict[str, str], scheme: str) -> str | None:
    """Refuse a write that a page of another origin made the browser send."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in TRUSTED_FETCH_SITES:
        return f"origin: a {site} request may not change anything here"
    origin = headers.get("origin")
    if origin is None:  # curl, workers, old browsers on same-origin requests
        return None
    parts = urlsplit(origin)
    same = _netloc(parts.netloc, parts.scheme) == _netloc(headers.get("host", ""), scheme)
    if origin == "null" or not same:
        return f"origin: requests from {origin!r} may not change anything here"
    return None


def content_type_refusal(method: str, path: str, headers: dict[str, str]) -> str | None:
    """An /api write must be JSON (or its route's raw type): HTML forms cannot send JSON."""
    declared = headers.get("content-type")
    if declared is None:
        return None  # no body (``curl -XPOST .../pause``); a form always declares a type
    media = declared.split(";")[0].strip().lower()
    wanted = next(
        (t for (m, suffix), t in RAW_BODIES.items() if m == method and path.endswith(suffix)), None
    )
    if wanted is not None:
        return None if media == wanted else f"content-type: got {media!r}, allowed: {wanted}"
    if media in JSON_TYPES or media.endswith("+json"):
        return None
    return f"content-type: got {media!r}, allowed: application/json"


def authenticated(headers: dict[str, str], token: str) -> bool:
    """A bearer token or a valid session cookie."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token_matches(token, given.strip()):
        return True
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE and valid_session(token, value):
            return True
    return False


# -- the middleware ---------------------------------------------------------------------------


class SecurityMiddleware:
    """Applies the checks of this module to every HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self._refusal(scope)
        if refusal is not None:
            status, detail, extra = refusal
            return await send_json(send, status, detail, extra)
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        path, method, token = scope["path"], scope["method"], self.settings.token
        if _over_network(scope):
            client = scope.get("client")
            if not token and client and _is_ip(client[0]) and not is_loopback(client[0]):
                return 403, "this server takes requests from this machine only (no token)", []
            reason = host_refusal(headers.get("host"), self.settings)
            if reason is not None:
                return 400, reason, []
        if method in STATE_CHANGING:
            reason = cross_site_refusal(headers, scope.get("scheme", "http"))
            if reason is None and path.startswith("/api/"):
                reason = content_type_refusal(method, path, headers)
            if reason is not None:
                status = 415 if reason.startswith("content-type") else 403
                return status, reason, []
        if not token or path.startswith(OPEN_PATHS) or authenticated(headers, token):
            return None
        if path.startswith("/api/") or method not in {"GET", "HEAD"}:
            return 401, "missing or wrong API token", [(b"www-authenticate", b"Bearer")]
        target = quote(
            path + ("?" + scope["query_string"].decode() if scope["query_string"] else ""), safe=""
        )
        return 303, "log in first", [(b"location", f"/login?next={target}".encode())]
