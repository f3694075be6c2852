"""The writers' file lock: server processes sharing one SQLite file queue for it in turn."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import text

from app.db import make_engine, read_engine, session_scope

HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def test_a_writer_waits_while_another_process_holds_the_writers_lock(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    with session_scope(engine) as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "shared.db-writer.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == b"held\n"
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
        other.kill()
        engine.dispose()
    with session_scope(engine) as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 1


def test_reads_do_not_queue_behind_the_writers_lock(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    with session_scope(engine) as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    lock = tmp_path / "shared.db-writer.lock"
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == b"held\n"

        with read_engine(engine).connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0
    finally:
        other.kill()
        other.wait()
        engine.dispose()
