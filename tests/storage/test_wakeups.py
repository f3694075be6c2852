"""Wake-ups after a commit: a waiter subscribed before its read hears a change made after it."""

from __future__ import annotations

import asyncio
import threading

from app.storage.wakeups import Wakeups


def test_a_publication_between_the_read_and_the_wait_still_wakes_the_waiter() -> None:
    wakeups = Wakeups()

    async def waiter() -> bool:
        heard = wakeups.subscribe("k")
        # The read happens here; the change is committed (and published) from another thread
        # before this waiter gets to wait.
        done = threading.Thread(target=wakeups.publish, args=({"k"},))
        done.start()
        done.join()
        try:
            return await wakeups.wait_for(heard, timeout=30.0)
        finally:
            wakeups.unsubscribe("k", heard)

    assert asyncio.run(waiter()) is True  # woken by the publication, not the 30 s timeout
    assert wakeups._waiters == {}  # noqa: SLF001 - nothing left subscribed


def test_an_unpublished_key_times_out_and_leaves_no_subscription() -> None:
    wakeups = Wakeups()

    async def wait() -> bool:
        heard = wakeups.subscribe("k")
        wakeups.publish({"other"})
        try:
            return await wakeups.wait_for(heard, timeout=0.05)
        finally:
            wakeups.unsubscribe("k", heard)

    assert asyncio.run(wait()) is False
    assert wakeups._waiters == {}  # noqa: SLF001
