"""Running uvicorn: one process, or N processes sharing one listening socket.

Kept apart from ``app.cli`` so that the worker command never imports the web stack, and at
module level because uvicorn sends its config to each of the N processes by pickling it.
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import Multiprocess

from app.config import get_settings

APP = "app.main:create_app"


class NoDelayConfig(uvicorn.Config):
    """uvicorn's config whose shared listening socket has ``TCP_NODELAY`` set.

    With ``workers > 1`` uvicorn binds one socket for all processes with protocol 0, and
    asyncio sets ``TCP_NODELAY`` only on sockets whose protocol is TCP. Without it a response
    written in two parts waits for the client's delayed ACK: about 45 ms per request instead
    of 1-2 ms (seen with ``bench/orchestration_vs_optuna.py``). Linux hands the option down
    to every connection the socket accepts.
    """

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def run(host: str, port: int, *, processes: int = 1, access_log: bool = False) -> None:
    """Serve the app factory until a signal; ``processes`` > 1 shares the port among them."""
    if processes == 1:
        uvicorn.run(APP, factory=True, host=host, port=port, access_log=access_log)
        return
    config = multiprocess_config(host, port, processes=processes, access_log=access_log)
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def multiprocess_config(
    host: str, port: int, *, processes: int, access_log: bool = False
) -> NoDelayConfig:
    """The supervisor's config for ``processes`` server processes sharing one port."""
    return NoDelayConfig(
        APP,
        factory=True,
        host=host,
        port=port,
        access_log=access_log,
        workers=processes,
        timeout_worker_healthcheck=get_settings().process_healthcheck_seconds,
    )
