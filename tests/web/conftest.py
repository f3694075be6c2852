"""Browser fixtures: a real uvicorn server with real workers, and headless Debian Chromium.

Playwright drives the system ``chromium`` (never a downloaded browser). Without it the tests
skip, except on CI (``CI=true``) where a missing browser fails the run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A ``uvicorn app.main:create_app --factory`` process on a free loopback port."""

    data: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.data.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ, **THREAD_ENV,
            "PANDACAVIAR_DATABASE_URL": f"sqlite:///{self.data / 't.db'}",
            "PANDACAVIAR_DATA_DIR": str(self.data),
            "PANDACAVIAR_WORKERS": "2",
            "PANDACAVIAR_PORT": str(self.port),  # the URL the server's workers call back on
        }  # fmt: skip
        env.pop("PANDACAVIAR_TOKEN", None)
        cmd = [
            sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
        ]  # fmt: skip
        with (self.data / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"server did not start:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def _healthy(self) -> bool:
        try:
            return httpx2.get(f"{self.url}/api/health", timeout=2).status_code == 200
        except httpx2.TransportError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its worker processes too
        self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 60) -> str:
        path = self.data / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server (and its two workers) per test module, on a fresh database."""
    srv = Server(tmp_path_factory.mktemp("web")).start()
    yield srv
    srv.stop()
    print(f"--- server log ---\n{srv.log_tail()}")


@pytest.fixture
def api(server: Server) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        reason = "Debian's chromium is not installed (apt-get install chromium); CI installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)  # outside CI only: under CI=true it failed just above
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Console:
    """Console errors and uncaught exceptions of a page; ``allow`` expected ones by pattern."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Any, server: Server, console: Console) -> Iterator[Any]:
    """A fresh page; the test fails if any page it visited logged an error."""
    context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=server.url)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.on(
        "console",
        lambda m: m.type == "error" and console.errors.append(f"{pg.url}: {m.text} {m.location}"),
    )
    pg.on("pageerror", lambda e: console.errors.append(f"{pg.url}: uncaught {e}"))
    yield pg
    context.close()
    assert console.unexpected() == [], console.unexpected()


@pytest.fixture
def shot(page: Any) -> Any:
    """``shot("name")`` saves a full-page screenshot under test-artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
