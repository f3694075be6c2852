"""The worker program: a separate process, an HTTP client of the server.

:mod:`loop` claims a trial, builds the trainer, trains, finishes, and claims the next;
:mod:`client` speaks the HTTP worker protocol (retries, batched reports, checkpoint uploads).
The same code runs next to the server (started by app.launchers) or on another machine
(``pandacaviar worker --server URL``).

May import: trainer/, httpx2, app.hashing (standard library only, shared with the server)
and the standard library. Nothing of the server: it never opens the database; the
import-linter contracts in pyproject.toml and tests/worker/test_loop.py hold it so.
"""
