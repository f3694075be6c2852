"""The defaults of the server's settings that the command line shows: one source for both.

Standard library only: :mod:`app.config` builds ``Settings`` from these, and :mod:`app.cli`
reads them for its help text and the ``serve`` options without importing pydantic, which the
``worker`` command must never load.
"""

from __future__ import annotations

import os

ENV_PREFIX = "PANDACAVIAR_"
HOST = "127.0.0.1"
PORT = 8000
DATABASE_FILE = "./pandacaviar.db"
DATABASE_URL = "sqlite:///" + DATABASE_FILE
DATA_DIR = "data"


def workers() -> int:
    """Local worker processes: one per core."""
    return os.cpu_count() or 1
