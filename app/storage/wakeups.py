"""Wake-ups after a commit: a trial was queued, or a running trial was asked for something.

A worker waiting for work, or for a directive of its trial, holds one long request (``wait``
seconds) instead of polling. What it waits for is written by some other request of the same
server process, through the ORM: a session listener notes what a flush queued or asked, and
after the commit the waiting requests wake at once. Writes of other server processes (or
Core statements) are seen by the waiters' own re-check a few times a second, so a wake-up is
an acceleration, never the only way a waiter learns.

Keys: :data:`QUEUE` (some trial became queued), ``("trial", id)`` (a pause, stop, prune,
adjustment or checkpoint request of that trial is pending, or it is no longer running) and
:data:`CHANGED` (some trial or its events changed: new points, a new state, an event; the
dashboard's live streams wait on it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.storage.models import Event, EventKind, Trial, TrialState

QUEUE: Hashable = "queue"
CHANGED: Hashable = "changed"
# The kinds of pending event a running trial's worker must act on (app.trials.worker_calls).
DIRECTIVES = frozenset(
    {EventKind.STOP, EventKind.PRUNE, EventKind.PAUSE, EventKind.ADJUST, EventKind.CHECKPOINT}
)
_INFO_KEY = "pandacaviar.wakeups"


def trial_key(trial_id: int) -> Hashable:
    return ("trial", trial_id)


class Wakeups:
    """Waiters of this process by key; :meth:`publish` wakes them from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[Hashable, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]]
        self._waiters = {}

    def subscribe(self, key: Hashable) -> asyncio.Future[None]:
        """A future resolved at the next publication of ``key``.

        Taken BEFORE the read that decides whether to wait: a change committed between that
        read and the wait then still wakes the waiter, instead of leaving it to its re-check.
        Wait with :meth:`wait_for`; drop it with :meth:`unsubscribe` when done (or take it with
        :meth:`subscription`).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiters.setdefault(key, []).append((loop, future))
        return future

    def unsubscribe(self, key: Hashable, future: asyncio.Future[None]) -> None:
        """Forget ``future`` (idempotent: a publication already removed it)."""
        with self._lock:
            waiting = self._waiters.get(key, [])
            for entry in [e for e in waiting if e[1] is future]:
                waiting.remove(entry)
            if not waiting:
                self._waiters.pop(key, None)

    @staticmethod
    async def wait_for(future: asyncio.Future[None], timeout: float) -> bool:
        """Wait until ``future`` (from :meth:`subscribe`) resolves or ``timeout`` seconds
        pass; True if woken. The caller unsubscribes."""
        try:
            await asyncio.wait_for(asyncio.shield(future), max(0.0, timeout))
            return True
        except TimeoutError:
            return False

    @contextmanager
    def subscription(self, key: Hashable) -> Iterator[asyncio.Future[None]]:
        """:meth:`subscribe` for the block, :meth:`unsubscribe` after it."""
        future = self.subscribe(key)
        try:
            yield future
        finally:
            self.unsubscribe(key, future)

    def publish(self, keys: set[Hashable]) -> None:
        """Wake every waiter of ``keys`` (thread-safe: handlers run in worker threads)."""
        with self._lock:
            woken = [w for key in keys for w in self._waiters.pop(key, [])]
        for loop, future in woken:
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


WAKEUPS = Wakeups()


@event.listens_for(Session, "after_flush")
def _note(session: Session, context: Any) -> None:
    """Note what this flush queued or asked; published after the commit."""
    keys: set[Hashable] = set()
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, Trial | Event):
            keys.add(CHANGED)
        if isinstance(obj, Trial) and obj.state is TrialState.QUEUED:
            keys.add(QUEUE)
        if isinstance(obj, Trial) and obj.state is not TrialState.RUNNING:
            keys.add(trial_key(obj.id))  # its worker's directive request answers 409 at once
        elif isinstance(obj, Event) and obj.applied_at is None and obj.kind in DIRECTIVES:
            keys.add(trial_key(obj.trial_id))
    if keys:
        session.info.setdefault(_INFO_KEY, set()).update(keys)


@event.listens_for(Session, "after_commit")
def _publish(session: Session) -> None:
    keys = session.info.pop(_INFO_KEY, None)
    if keys:
        WAKEUPS.publish(keys)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_INFO_KEY, None)
