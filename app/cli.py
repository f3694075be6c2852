"""The ``pandacaviar`` command: ``serve`` the dashboard or run a ``worker``.

``serve`` turns its options into ``PANDACAVIAR_*`` settings and runs uvicorn on the app
factory; ``worker`` claims and trains trials from a server, local or remote. The worker path
imports no web or database code.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from app import defaults
from app.launchers import DEFAULT_LAUNCHER, LAUNCHERS
from app.launchers.local import CACHE_ENV, PARENT_ENV, SINGLE_THREAD_ENV, TOKEN_ENV

EXIT_USAGE = 2


def _env(name: str) -> str | None:
    return os.environ.get(defaults.ENV_PREFIX + name) or None


def _database_url(db: str | None) -> str | None:
    """``--db`` takes a SQLite file path or a full database URL."""
    if db is None or "://" in db:
        return db
    return "sqlite:///" + db


def _serve(args: argparse.Namespace) -> int:
    if args.processes < 1:
        print(
            f"pandacaviar serve: --processes: got {args.processes}, allowed: >= 1", file=sys.stderr
        )
        return EXIT_USAGE
    host = args.host or _env("HOST") or defaults.HOST
    port = args.port or int(_env("PORT") or defaults.PORT)
    token = args.token or _env("TOKEN")
    data_dir = args.data_dir or _env("DATA_DIR") or defaults.DATA_DIR
    from app.config import is_loopback  # pydantic: kept off the worker's import path

    if not is_loopback(host.strip("[]")) and not token:
        token = _stored_token(Path(data_dir) / "token")
        if token is None:
            return EXIT_USAGE
    # The server reads one Settings object from the environment; options become settings.
    settings = {
        "HOST": host,
        "PORT": str(port),
        "DATABASE_URL": _database_url(args.db),
        "DATA_DIR": data_dir,
        "WORKERS": None if args.workers is None else str(args.workers),
        "TOKEN": token,
        "ALLOWED_HOSTS": ",".join(args.allow_host) if args.allow_host else None,
        "LAUNCHER": args.launcher,
        "DASK_SCHEDULER": args.dask_scheduler,
    }
    lock = Path(data_dir) / f"serve-{os.getpid()}.lock"
    spread = Path(data_dir) / f"serve-{os.getpid()}-spread"
    if args.processes > 1:
        spread.mkdir(parents=True, exist_ok=True)
        settings["LAUNCH_LOCK"] = str(lock)  # one of the N processes launches the workers
        settings["SPREAD_DIR"] = str(spread)  # and they share the workers' connections out
    for name, value in settings.items():
        if value is not None:
            os.environ[defaults.ENV_PREFIX + name] = value
    from app.serving.run import run as run_server  # only the serve path needs the web stack

    try:
        run_server(host, port, processes=args.processes, access_log=args.access_log)
    finally:
        lock.unlink(missing_ok=True)
        shutil.rmtree(spread, ignore_errors=True)
    return 0


def _stored_token(path: Path) -> str | None:
    """The token file's token (created on first run); says where it is, never what it is."""
    from app.serving.security import load_or_create_token

    try:
        token = load_or_create_token(path)
    except OSError as exc:
        print(
            f"pandacaviar serve: a wide bind needs an API token, and {path} cannot be "
            f"used ({exc}); set {TOKEN_ENV} (or --token), or bind 127.0.0.1",
            file=sys.stderr,
        )
        return None
    print(
        f"pandacaviar serve: the API token is in {path.resolve()} (mode 0600): send it as "
        "'Authorization: Bearer <token>', or paste it on the /login page",
        file=sys.stderr,
    )
    return token


def _worker_pool(args: argparse.Namespace, token: str | None) -> int:
    """``--processes N``: N worker processes kept alive (and replaced) by a dispatcher.

    SIGTERM or Ctrl-C stops them the dispatcher's way: each checkpoints at its next safe
    point and hands its trial back; one that lingers past the grace period is killed.
    """
    import signal

    from app.launchers.local import Dispatcher

    cache = Path(args.cache_dir) if args.cache_dir else None
    pool = Dispatcher(args.server, args.processes, token=token, cache_dir=cache)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    pool.start()
    print(
        f"pandacaviar worker: {args.processes} worker processes on {args.server}", file=sys.stderr
    )
    while not stop.wait(1.0):
        pass
    pool.stop()
    return 0


def _worker(args: argparse.Namespace) -> int:
    if args.processes < 1:
        print(
            f"pandacaviar worker: --processes: got {args.processes}, allowed: >= 1",
            file=sys.stderr,
        )
        return EXIT_USAGE
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if args.processes > 1:
        return _worker_pool(args, token)
    # Before numpy is imported (by trainer, via app.worker.loop): one BLAS thread per worker.
    for name, value in SINGLE_THREAD_ENV.items():
        os.environ.setdefault(name, value)
    parent = os.environ.get(PARENT_ENV, "")
    from app.worker.client import ProtocolError
    from app.worker.loop import run_worker

    cache = Path(args.cache_dir) if args.cache_dir else None
    try:
        run_worker(
            args.server,
            token,
            once=args.once,
            handle_signals=True,
            cache_dir=cache,
            parent_pid=int(parent) if parent.isdigit() else None,
        )
    except ProtocolError as exc:  # e.g. 401: a wrong token is not worth a traceback
        print(f"pandacaviar worker: the server refused: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pandacaviar", description="Tune neural networks: babysit one (panda) or many."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the dashboard server and its local workers")
    serve.add_argument("--host", help=f"address to bind (default {defaults.HOST})")
    serve.add_argument("--port", type=int, help=f"port (default {defaults.PORT})")
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="log every HTTP request (off: idle workers poll every second)",
    )
    serve.add_argument(
        "--db",
        help=f"SQLite database file or database URL (default {defaults.DATABASE_FILE})",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help=f"local worker processes (default: one per core, {defaults.workers()} here)",
    )
    serve.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="server processes on the one port (default 1): more serve many "
        "workers of short trials faster",
    )
    serve.add_argument(
        "--data-dir", help=f"checkpoints and uploads (default ./{defaults.DATA_DIR})"
    )
    serve.add_argument(
        "--token",
        help=f"API token (prefer the {TOKEN_ENV} variable; a wide "
        "bind without one uses DATA_DIR/token, created on first run)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="also accept this Host header (a name the server is reached by)",
    )
    serve.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        help=f"who runs the workers: local processes or a Dask cluster "
        f"(default {DEFAULT_LAUNCHER})",
    )
    serve.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="Dask scheduler, e.g. tcp://host:8786 (default: a LocalCluster)",
    )
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="claim and train trials from a server")
    worker.add_argument("--server", required=True, help="server URL, e.g. http://host:8000")
    worker.add_argument("--token", help=f"API token (default: ${TOKEN_ENV})")
    worker.add_argument("--once", action="store_true", help="exit after one trial")
    worker.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="worker processes to run from this command (default 1)",
    )
    worker.add_argument(
        "--cache-dir",
        help=f"where uploaded data sets are cached (default ${CACHE_ENV} or ~/.cache/pandacaviar)",
    )
    worker.set_defaults(func=_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pandacaviar`` and ``python -m app.cli``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    # Idle workers poll for work every second and migrations announce every plugin: at INFO
    # these libraries would bury what the server itself has to say.
    for noisy in ("httpx2", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
