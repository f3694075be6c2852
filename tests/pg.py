"""A private PostgreSQL server for the test run, and fresh databases on it.

The tests that run on PostgreSQL never touch a server of the machine: :class:`PostgresServer`
runs ``initdb`` into a temporary directory and starts ``postgres`` on 127.0.0.1 on a free port,
its unix socket in that directory too, and stops it at the end. Every test gets a database to
itself, migrated and empty: a copy (``CREATE DATABASE ... TEMPLATE``) of one that ``init_db``
migrated once, or one a finished test used, emptied with ``TRUNCATE ... RESTART IDENTITY``
(ids start at 1 again). Emptying takes 0.04 s where a copy takes 0.3 s.

When the binaries are missing the PostgreSQL tests are skipped, except on CI (``CI=true``),
where ``.ci/run`` installs Debian's ``postgresql`` package and a missing server is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

# Durability is worth nothing in a throwaway cluster and costs an fsync per commit.
SERVER_OPTIONS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
    # A test that deadlocks fails in a second instead of hanging until pytest's timeout.
    "deadlock_timeout": "1s",
}
TEMPLATE = "pandacaviar_template"
START_SECONDS = 60
# initdb and postgres refuse to run as root; Debian's package creates this user.
SYSTEM_USER = "postgres"


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, newest version first."""
    candidates = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    # Debian keeps them off PATH, under the major version.
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    candidates += [Path(p) for p in reversed(versions)]
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def unavailable(reason: str) -> NoReturn:
    """Skip the PostgreSQL tests, or fail them on CI, where PostgreSQL must be there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL tests cannot run on CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")  # outside CI only: CI failed above


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """``initdb`` + ``pg_ctl start`` in a temporary directory; ``stop()`` removes it all."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        root = os.geteuid() == 0
        # As root the server runs as another user, who must reach the directory: /tmp is open
        # to all where $TMPDIR may not be. A short path also keeps the socket's under 107 bytes.
        parent = "/tmp" if root and os.path.isdir("/tmp") else None
        self.root = Path(tempfile.mkdtemp(prefix="pandacaviar-pg-", dir=parent))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._names = itertools.count()
        self._template_ready = False
        self._free: list[str] = []
        self._run_as: dict[str, Any] = {}
        if root:
            try:
                user = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                unavailable(f"running as root and there is no {SYSTEM_USER!r} user to run it")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            # extra_groups=[] drops root's supplementary groups along with its uid.
            self._run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]], cwd=self.root, capture_output=True,
            text=True, stdin=subprocess.DEVNULL, **self._run_as,
        )  # fmt: skip
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}"
            )

    def start(self) -> PostgresServer:
        # Trust on loopback only: the cluster lives for one test run and nobody else knows
        # its port; C locale makes string ordering the same on every machine.
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        options = " ".join(f"-c {k}={v}" for k, v in SERVER_OPTIONS.items())
        options += f" -c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(START_SECONDS),
            "-o",
            options,
        )
        return self

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        """A SQLAlchemy URL for ``database`` (the psycopg 3 driver)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)

    def _template(self) -> str:
        """A database ``init_db`` migrated once, for new ones to be copied from."""
        if not self._template_ready:
            from app.storage.db import init_db, make_engine

            self._admin(f'CREATE DATABASE "{TEMPLATE}"')
            engine = make_engine(self.url(TEMPLATE))
            try:
                init_db(engine)
            finally:
                # A template must have no open connection while it is copied.
                engine.dispose()
            self._template_ready = True
        return TEMPLATE

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database: a copy of the migrated template, or empty (``migrated=False``)."""
        name = f"test_{next(self._names)}"
        template = self._template() if migrated else "template0"
        # WAL_LOG copies a small template block by block, without FILE_COPY's checkpoint.
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY WAL_LOG')
        return name

    def drop_database(self, name: str) -> None:
        # FORCE: a server process or pool a test left behind must not keep it alive.
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def acquire(self) -> str:
        """A migrated database with no rows, for one test; hand it back with :meth:`release`."""
        return self._free.pop() if self._free else self.create_database()

    def release(self, name: str) -> None:
        """Empty the database for the next test (or drop it if that fails)."""
        from app.storage.models import Base

        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        try:
            # A pool or server process the test left behind must not hold locks or rows.
            self._admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            self._admin(f"TRUNCATE {tables} RESTART IDENTITY CASCADE", database=name)
        except Exception:
            self.drop_database(name)
            return
        self._free.append(name)


def start_server() -> Iterator[PostgresServer]:
    """The body of the session fixture: skip (or fail on CI) without binaries or a driver."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("the psycopg driver is not installed (pip install -e '.[test]')")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        unavailable("initdb, pg_ctl and postgres not found (apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()
