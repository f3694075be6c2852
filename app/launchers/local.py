"""The local launcher: worker child processes of the server (``app.dispatcher``).

The dispatcher keeps its historical home in ``app/dispatcher.py`` (its signal helper and the
constants the CLI shares live there); this module names it as a launcher.
"""

from __future__ import annotations

from app.dispatcher import Dispatcher as LocalLauncher

__all__ = ["LocalLauncher"]
