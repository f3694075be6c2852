"""The writers' file lock: server processes sharing one SQLite file queue for it in turn."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text

from app.storage.db import make_engine, read_engine, session_scope
from tests.flock import lock_held


def test_a_writer_waits_while_another_process_holds_the_writers_lock(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    with session_scope(engine) as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    try:
        with lock_held(tmp_path / "shared.db-writer.lock") as other:
            written = threading.Event()
            cpu_seconds: list[float] = []

            def write() -> None:
                start = time.thread_time()
                with session_scope(engine) as session:
                    session.execute(text("INSERT INTO t VALUES (1)"))
                cpu_seconds.append(time.thread_time() - start)
                written.set()

            writer = threading.Thread(target=write)
            writer.start()
            # SQLite itself is not locked: only our queue can be holding the writer back.
            assert not written.wait(0.5)
            assert other.stdin is not None
            other.stdin.close()
            other.wait(timeout=10)
            assert written.wait(10)
            writer.join()
            # It slept in the kernel until the lock was freed: polling every 0.2 ms for the
            # 0.5 s burned 40-60 ms of CPU here, which the lock's holder could have used.
            assert cpu_seconds[0] < 0.02, cpu_seconds
    finally:
        engine.dispose()
    with session_scope(engine) as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 1


def test_reads_do_not_queue_behind_the_writers_lock(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    with session_scope(engine) as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    try:
        with lock_held(tmp_path / "shared.db-writer.lock"), read_engine(engine).connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0
    finally:
        engine.dispose()
