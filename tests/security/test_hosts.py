"""Binding, peers, the Host allowlist (DNS rebinding) and CORS, on a real uvicorn server."""

from __future__ import annotations

import socket

import httpx2

from tests.security.conftest import StartUvicorn

STUDY = {"name": "rebound"}


def _lan_address() -> str:
    """A non-loopback address of this machine (no packet is sent: UDP connect only routes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        address = str(s.getsockname()[0])
    assert not address.startswith("127."), address
    return address


def _study_count(url: str, **headers: str) -> int:
    return int(httpx2.get(f"{url}/api/studies", headers=headers).json()["count"])


def test_default_hosts_accepted(start_uvicorn: StartUvicorn) -> None:
    server = start_uvicorn()
    for host in ("127.0.0.1", "localhost", "[::1]", f"localhost:{server.port}"):
        r = httpx2.get(f"{server.url}/api/studies", headers={"Host": host})
        assert r.status_code == 200, host


def test_rebinding_host_refused_and_nothing_written(start_uvicorn: StartUvicorn) -> None:
    server = start_uvicorn()
    for host in ("attacker.example", f"attacker.example:{server.port}", "127.0.0.1.nip.io"):
        headers = {"Host": host}
        read = httpx2.get(f"{server.url}/api/studies", headers=headers)
        assert read.status_code == 400 and "host" in read.json()["detail"]
        write = httpx2.post(f"{server.url}/api/studies", json=STUDY, headers=headers)
        assert write.status_code == 400
        page = httpx2.get(f"{server.url}/", headers=headers)
        assert page.status_code == 400
    assert _study_count(server.url) == 0


def test_configured_host_accepted(start_uvicorn: StartUvicorn) -> None:
    server = start_uvicorn(PANDACAVIAR_ALLOWED_HOSTS="tuner.lan, Other.Lan")
    for host in ("tuner.lan", f"other.lan:{server.port}"):
        assert httpx2.get(f"{server.url}/api/studies", headers={"Host": host}).status_code == 200
    assert httpx2.get(f"{server.url}/api/studies", headers={"Host": "x.lan"}).status_code == 400


def test_no_token_means_this_machine_only(start_uvicorn: StartUvicorn) -> None:
    # Bound wide by uvicorn itself (the settings still say loopback, so no token): a peer
    # from the network is refused even though the socket accepts it.
    server = start_uvicorn(bind="0.0.0.0")
    lan = f"http://{_lan_address()}:{server.port}"
    r = httpx2.post(f"{lan}/api/studies", json=STUDY, headers={"Host": "127.0.0.1"})
    assert r.status_code == 403 and "this machine" in r.json()["detail"]
    assert httpx2.get(f"{lan}/api/studies").status_code == 403
    assert _study_count(server.url) == 0


def test_wide_bind_with_token_accepts_ip_hosts_not_names(start_uvicorn: StartUvicorn) -> None:
    server = start_uvicorn(bind="0.0.0.0", PANDACAVIAR_HOST="0.0.0.0", PANDACAVIAR_TOKEN="tk")
    lan = f"http://{_lan_address()}:{server.port}"
    auth = {"Authorization": "Bearer tk"}
    assert httpx2.get(f"{lan}/api/studies", headers=auth).status_code == 200
    assert httpx2.get(f"{lan}/api/studies").status_code == 401
    named = httpx2.get(f"{lan}/api/studies", headers={**auth, "Host": "evil.example"})
    assert named.status_code == 400


def test_no_cors_headers(start_uvicorn: StartUvicorn) -> None:
    server = start_uvicorn()
    origin = {"Origin": "https://evil.example"}
    preflight = httpx2.options(
        f"{server.url}/api/studies",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    read = httpx2.get(f"{server.url}/api/studies", headers=origin)
    for r in (preflight, read):
        assert not [h for h in r.headers if h.lower().startswith("access-control-")]
    assert preflight.status_code in (404, 405)
