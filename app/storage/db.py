"""Engine, sessions and the SQLite settings that make concurrent writers safe.

Transactions: every transaction on the engine begins with ``BEGIN IMMEDIATE`` (SQLAlchemy's
documented pysqlite recipe: the driver's own BEGIN is switched off in a ``connect`` event and
ours is emitted in a ``begin`` event). A read-then-write transaction therefore holds SQLite's
write lock from its first read, so two requests can never both read "queued" and both write
"running"; a competing writer waits up to ``busy_timeout`` instead of failing with "database is
locked". The one exception is :func:`read_engine`: GET requests and the SSE pollers never
write, so they use a plain deferred ``BEGIN`` and read a WAL snapshot without queueing behind
the writers.

Durability is a group commit: SQLite commits without syncing (``synchronous=NORMAL``), every
lock is released, and only then does the committing thread ``fdatasync`` the WAL, before the
request is answered (:class:`_DurableConnection`). A 2xx still means the write is on disk, as
with ``synchronous=FULL``, but the few milliseconds a sync takes here no longer hold the one
write lock: other writers run meanwhile, and one sync covers every commit before it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Engine, MetaData, create_engine, event, inspect
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session
from starlette.requests import Request

from app.storage import migrations
from app.storage.models import Base

BUSY_TIMEOUT_MS = 10_000
DEFERRED = "pandacaviar_deferred"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, busy_timeout, foreign keys and BEGIN IMMEDIATE."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return _postgresql_engine(parsed)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        # The server's thread pool hands sessions between threads; SQLite itself is serialized.
        connect_args={
            "check_same_thread": False,
            "timeout": BUSY_TIMEOUT_MS / 1000,
            "factory": _DurableConnection,
        },
        pool_size=10,
        max_overflow=30,
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    on_disk = parsed.database and parsed.database != ":memory:"
    writers = _WriterQueue(Path(f"{parsed.database}-writer.lock") if on_disk else None)
    event.listen(engine, "begin", writers.on_begin)
    # No "commit" listener: SQLAlchemy fires it BEFORE the COMMIT, and a turn handed over
    # then sends the next writer into SQLite's sleeping busy handler. _DurableConnection
    # hands the turn over right after its COMMIT instead.
    event.listen(engine, "rollback", writers.on_end)
    # A connection that goes back to the pool never keeps the turn (invalidated, say).
    event.listen(engine, "checkin", writers.on_checkin)
    return engine


def _postgresql_engine(url: URL) -> Engine:
    """PostgreSQL through psycopg 3 (the ``postgres`` extra), at its default READ COMMITTED.

    Transactions run side by side here, unlike SQLite's: the read-then-write paths lock the
    rows they decide on (app.storage.locks). ``postgresql://`` means psycopg 3, the driver the
    extra installs, rather than SQLAlchemy's default psycopg2.
    """
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    # 20 connections a process: requests beyond wait for one (pool_timeout), which costs less
    # on a few cores than more backends; PostgreSQL's max_connections (100 by default) must
    # cover every server process on the database.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Switch off pysqlite's own BEGIN so that _sqlite_on_begin decides how transactions start.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # NORMAL: SQLite syncs the WAL only at checkpoints, and _DurableConnection syncs it after
    # each writing commit, outside the locks. Together they are as durable as FULL for every
    # answered request (a 2xx to a worker must mean the report is on disk), and WAL with
    # NORMAL never corrupts the file on power loss.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class _DurableConnection(sqlite3.Connection):
    """A pysqlite connection that makes its writing commits durable after releasing the locks.

    ``commit()`` runs SQLite's COMMIT (no sync: ``synchronous=NORMAL``), calls ``committed``
    (set by :class:`_WriterQueue` when a writing transaction begins: it hands the writers'
    turn on), then ``fdatasync``s the WAL file, the way ``synchronous=FULL`` would have
    inside the lock. A sync flushes every WAL frame written before it, so when two writers
    commit back to back the second sync has little left to do (a group commit). Reading
    transactions never set ``committed`` and never sync.
    """

    def __init__(self, database: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        name = os.fspath(database)
        on_disk = name not in ("", ":memory:") and not name.startswith("file:")
        self.wal_path = f"{name}-wal" if on_disk else None
        self.committed: Callable[[], None] | None = None
        self._wal_fd: int | None = None

    def commit(self) -> None:
        super().commit()
        committed, self.committed = self.committed, None
        if committed is None:
            return
        committed()
        self.sync_wal()

    def sync_wal(self) -> None:
        """``fdatasync`` the WAL (kept open: SQLite never deletes it while we are connected)."""
        if self.wal_path is None:
            return
        if self._wal_fd is None:
            self._wal_fd = os.open(self.wal_path, os.O_RDONLY | os.O_CLOEXEC)
        os.fdatasync(self._wal_fd)

    def close(self) -> None:
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        super().close()


class _WriterQueue:
    """Writing transactions take turns on a lock before ``BEGIN IMMEDIATE``.

    SQLite's busy handler makes waiting writers poll with growing sleeps (1, 2, 5, 10 ms...),
    which is slow and unfair: under load one request can keep losing the race until
    "database is locked". So writers queue on locks of our own: a thread lock inside the
    process, then, when several server processes share the file (``serve --processes N``),
    an exclusive ``flock`` on ``<database>-writer.lock``, held by one thread per process at a
    time and released by the kernel if its process dies. After ``busy_timeout`` on the thread
    lock the transaction goes ahead and SQLite's own wait applies, so a transaction left open
    by mistake cannot deadlock the server. The wait for the file lock blocks in ``flock``
    (its holder is a live process inside a transaction): the kernel wakes the next waiter the
    moment it is released, and a waiting process spends no CPU that the holder needs.
    docs/decisions.md has the measurements.
    """

    KEY = "pandacaviar_writer"
    FILE_KEY = "pandacaviar_writer_file"

    def __init__(self, lock_path: Path | None = None) -> None:
        self.lock = threading.Lock()
        self.lock_path = lock_path
        self._fd: int | None = None

    def _file_fd(self) -> int:
        if self._fd is None:
            assert self.lock_path is not None
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def on_begin(self, conn: Connection) -> None:
        if conn.get_execution_options().get(DEFERRED):
            conn.exec_driver_sql("BEGIN")
            return
        if self.lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
            conn.info[self.KEY] = True
            # Only the thread holding the thread lock takes the file lock, so one flock
            # per process is ever held or awaited.
            if self.lock_path is not None:
                fcntl.flock(self._file_fd(), fcntl.LOCK_EX)
                conn.info[self.FILE_KEY] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self.on_end(conn)
            raise
        dbapi = conn.connection.dbapi_connection
        if isinstance(dbapi, _DurableConnection):
            info = conn.info
            dbapi.committed = lambda: self._release(info)

    def on_end(self, conn: Connection) -> None:
        # Released by whichever thread ends the transaction (threading.Lock allows it).
        dbapi = conn.connection.dbapi_connection
        if isinstance(dbapi, _DurableConnection):
            dbapi.committed = None  # rolled back: nothing to sync
        self._release(conn.info)

    def on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            self._release(record.info)

    def _release(self, info: dict[Any, Any]) -> None:
        # The file lock first: it is only ever held under the thread lock.
        if info.pop(self.FILE_KEY, False):
            fcntl.flock(self._file_fd(), fcntl.LOCK_UN)
        if info.pop(self.KEY, False):
            self.lock.release()


def read_engine(engine: Engine) -> Engine:
    """The same pool, but transactions begin deferred: only for code that never writes."""
    return engine.execution_options(**{DEFERRED: True})


def init_db(engine: Engine) -> None:
    """Bring the database to the current schema, keeping every row it holds.

    A new database gets ``create_all`` and is stamped with the newest revision (fast, and what
    the tests use); one with an ``alembic_version`` table is upgraded; one with our tables but
    no ``alembic_version`` was made before migrations existed, so it is stamped with the
    revision its tables match and then upgraded. Everything runs in one transaction: a failed
    migration leaves the database as it was.
    """
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # SQLite changes a table by copying it and dropping the old one; with foreign keys
            # on, that DROP would cascade-delete the rows of every referring table. The pragma
            # is ignored inside a transaction, hence before BEGIN, on this connection only.
            _set_foreign_keys(conn, on=False)
        try:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    # Two servers starting on one database migrate one after the other.
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7260551)")
                cfg = migrations.config(conn)
                tables = set(inspect(conn).get_table_names())
                if "alembic_version" in tables:
                    command.upgrade(cfg, "head")
                elif not tables & set(Base.metadata.tables):
                    _create_all(conn)
                    command.stamp(cfg, "head")
                else:
                    # The caviar tables arrived with the last schema made before migrations.
                    made_by = (
                        migrations.LAST_UNVERSIONED
                        if "rung_records" in tables
                        else migrations.FIRST
                    )
                    command.stamp(cfg, made_by)
                    command.upgrade(cfg, "head")
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                _set_foreign_keys(conn, on=True)


def _create_all(conn: Connection) -> None:
    """``create_all``; on a database that adds the trials <-> checkpoints cycle by ALTER
    (PostgreSQL), from a copy of the tables.

    SQLAlchemy marks a ``use_alter`` constraint it added by ALTER as never to be created with
    its table again, on the shared metadata: a SQLite database created later in the same
    process (the tests make both) would lack that foreign key.
    """
    if conn.dialect.name == "sqlite":
        Base.metadata.create_all(conn)
        return
    copy = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(copy)
    copy.create_all(conn)


def _set_foreign_keys(conn: Connection, *, on: bool) -> None:
    # Straight on the driver connection: through SQLAlchemy it would autobegin a transaction.
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    dbapi.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error (background tasks)."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def get_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: GET requests read a snapshot, every other method writes IMMEDIATE.

    Handlers commit explicitly; anything not committed is rolled back when the request ends,
    so a rejected call writes nothing.
    """
    engine: Engine = request.app.state.engine
    if request.method in ("GET", "HEAD"):
        engine = read_engine(engine)
    with Session(engine, expire_on_commit=False) as session:
        yield session
