"""The application factory.

Run with ``uvicorn app.main:create_app --factory`` (or ``pandacaviar serve``). ``app.main.app``
also exists for ``uvicorn app.main:app``, but it is built on first access (PEP 562 module
``__getattr__``), so importing this module has no side effects.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.api import api_router, uploads
from app.config import Settings, get_settings
from app.errors import install_error_handlers
from app.launchers.dask import DaskLauncher
from app.launchers.local import Dispatcher, stop_workers_first
from app.serving.limits import BodyLimitMiddleware
from app.serving.security import SecurityMiddleware
from app.serving.spread import Spread, SpreadMiddleware
from app.storage.db import init_db, make_engine
from app.trials import leases
from app.web import web_router

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = ROOT / "static"
SWAGGER_UI = "/static/vendor/swagger-ui"


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured app; the database, reaper and workers start with its lifespan."""
    settings = settings or get_settings()
    for module in settings.plugins:  # e.g. samplers and schedulers: they register on import
        importlib.import_module(module)
    # /docs is ours (_api_docs); FastAPI's own pages load Swagger UI and ReDoc from a CDN.
    app = FastAPI(
        title="panda-caviar", version="0.1.0", lifespan=_lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = settings
    app.state.streams = 0
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(uploads.router, prefix="/api")
    app.include_router(web_router)
    _api_docs(app)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.state.spread = Spread(settings.spread_dir) if settings.spread_dir else None
    if app.state.spread is not None:  # one of several server processes
        app.add_middleware(SpreadMiddleware, spread=app.state.spread)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(SecurityMiddleware, settings=settings)  # outermost: refuse before reading
    return app


def _api_docs(app: FastAPI) -> None:
    """``GET /docs``: Swagger UI from our static files, so it works on a machine offline."""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
        )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    settings.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    init_db(engine)
    app.state.engine = engine
    dispatcher = await _start_launcher(settings)
    app.state.dispatcher = dispatcher
    reaper = asyncio.create_task(leases.reap_forever(app))
    spread: Spread | None = app.state.spread
    spreading = asyncio.create_task(spread.publish_forever()) if spread else None
    try:
        yield
    finally:
        if spreading is not None and spread is not None:
            spreading.cancel()
            await asyncio.gather(spreading, return_exceptions=True)
            spread.remove()
        if dispatcher is not None:
            await run_in_threadpool(dispatcher.stop)
        reaper.cancel()
        await asyncio.gather(reaper, return_exceptions=True)
        engine.dispose()


def _launch_turn(settings: Settings) -> bool:
    """Whether this process launches the workers: always, unless it is one of several.

    Of the processes of one ``pandacaviar serve --processes N``, the one that holds the
    exclusive ``flock`` on ``launch_lock`` does; the kernel drops the lock with its process,
    and the replacement uvicorn starts takes it. The descriptor stays open for the process's
    lifetime on purpose: closing it would release the lock.
    """
    if settings.launch_lock is None:
        return True
    fd = os.open(settings.launch_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    return True


async def _start_launcher(settings: Settings) -> Any:
    if not settings.start_dispatcher or settings.workers == 0 or not _launch_turn(settings):
        return None
    launcher: Any
    if settings.launcher == "dask":
        launcher = DaskLauncher(
            settings.server_url, settings.workers, token=settings.token,
            scheduler=settings.dask_scheduler, cache_dir=settings.worker_cache_dir,
        )  # fmt: skip
        # Off the event loop: distributed runs its own loop in a thread of its own.
        await run_in_threadpool(launcher.start)
    else:
        launcher = Dispatcher(
            settings.server_url,
            settings.workers,
            token=settings.token,
            cache_dir=settings.worker_cache_dir,
        )
        launcher.start()
    # SIGTERM: the workers hand their trials back while the server still answers.
    stop_workers_first(launcher)
    return launcher


def __getattr__(name: str) -> FastAPI:
    # `uvicorn app.main:app` works, yet importing app.main builds nothing.
    if name == "app":
        built = create_app()
        globals()["app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
