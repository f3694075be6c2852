"""Worker connections kept spread evenly over the processes of ``serve --processes N``.

The N processes share one listening socket. Whichever wakes first accepts, and asyncio accepts
every connection pending at that moment in one go, so two workers that start together often
land on the same process, which then answers both while the other idles; their connections
are kept alive, so it lasts. Measured with ``bench/orchestration_vs_optuna.py``'s clients, 2
workers on 2 processes: 3 runs in 8 landed on one process and ran 1.0x as fast as 1 worker,
the others 1.2-1.7x.

So each process counts the clients it served in the last ``WINDOW`` seconds and writes that
count to a file of its own in a shared directory; when it serves at least two more than the
least busy live process, it answers one worker request with ``Connection: close``. The
worker's HTTP client opens a new connection for its next request, and the kernel hands it to
a process that is waiting in ``accept``, usually an idle one: a busy process's event loop
waits for the GIL. A process that stops writing (it died, or hangs) is left out after
``STALE`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

WINDOW = 1.0  # a client counts while it sent a request this recently
PUBLISH_SECONDS = 0.2  # how often a process writes its count and reads the others'
STALE = 2.0  # a count file not rewritten for this long belongs to no live process
CLOSE_SECONDS = 0.5  # at most one connection closed per process this often
WORKER_PATHS = "/api/workers/"  # only workers' connections are moved


class Spread:
    """One process's count of recent clients, and its view of the other processes' counts.

    Args:
        directory: shared by the N processes; this one writes ``<pid>`` in it.
        clock: seconds, for the tests (``time.time``: file times are compared with it).
    """

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.path = directory / str(os.getpid())
        self.clock = clock
        self.seen: dict[object, float] = {}  # client (host, port) -> its last request
        self.least_other: int | None = None  # the least busy live other process's count
        self._next_close = 0.0

    def publish(self) -> None:
        """Forget clients quiet for ``WINDOW``, write our count, read the others' counts."""
        now = self.clock()
        self.seen = {c: t for c, t in self.seen.items() if t > now - WINDOW}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(len(self.seen)))
        os.utime(tmp, (now, now))
        tmp.replace(self.path)  # readers never see a half-written count
        counts = []
        for entry in os.scandir(self.directory):
            if entry.name == self.path.name or not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError):
                if entry.stat().st_mtime > now - STALE:
                    counts.append(int(Path(entry.path).read_text()))
        self.least_other = min(counts) if counts else None

    def served(self, client: object) -> bool:
        """Note a worker request from ``client``; True: close its connection after answering."""
        now = self.clock()
        self.seen[client] = now
        if self.least_other is None or now < self._next_close:
            return False
        if len(self.seen) < self.least_other + 2:
            return False
        del self.seen[client]  # it will come back on a new connection, maybe here
        self._next_close = now + CLOSE_SECONDS
        return True

    def remove(self) -> None:
        """Leave the directory (at shutdown): the others stop counting us at once."""
        self.path.unlink(missing_ok=True)

    async def publish_forever(self) -> None:
        """Keep our count fresh, also while idle: an idle process must show its zero."""
        while True:
            self.publish()
            await asyncio.sleep(PUBLISH_SECONDS)


class SpreadMiddleware:
    """Adds ``Connection: close`` to a worker's answer when :class:`Spread` says so."""

    def __init__(self, app: ASGIApp, spread: Spread) -> None:
        self.app = app
        self.spread = spread

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("client") is None
            or not scope.get("path", "").startswith(WORKER_PATHS)
            or not self.spread.served(tuple(scope["client"]))
        ):
            return await self.app(scope, receive, send)

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)
