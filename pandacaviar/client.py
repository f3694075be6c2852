"""The connection to a panda-caviar server: studies of your own loop, and their trials.

Over the worker protocol's HTTP client (:class:`app.worker.client.WorkerClient`): transport
errors and a restarting server are retried with backoff, a stale attempt ends its trial
cleanly, and every call carries the API token when one is configured.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from app.worker.client import IDLE_CAP_SECONDS, LONG_POLL_SECONDS, Backoff, WorkerClient
from app.worker.loop import hand_back
from pandacaviar.trial import Load, OnUpdate, Save, Trial

EXTERNAL_TASK = "external"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Client:
    """A connection to the server at ``server`` (``http://127.0.0.1:8000``).

    Args:
        server: the server's base URL.
        token: the API token (``PANDACAVIAR_TOKEN`` by default), sent as a bearer token.
        name: how the dashboard names this process (``host-pid`` by default).
        handle_signals: SIGTERM and SIGINT hand the trial in hand back to the queue (checkpointed
            with its ``save`` function) instead of killing it; call from the main thread.
    """

    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        name: str | None = None,
        handle_signals: bool = False,
    ) -> None:
        self.worker = WorkerClient(server, token or os.environ.get("PANDACAVIAR_TOKEN"))
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        if handle_signals:
            for sig in STOP_SIGNALS:
                signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        # A second signal ends the process at once (the lease then requeues the trial).
        signal.signal(signum, signal.SIG_DFL)
        self.worker.stop.set()

    def close(self) -> None:
        self.worker.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- studies -----------------------------------------------------------------------------

    def create_study(
        self,
        name: str,
        space: Mapping[str, Any],
        *,
        metric: str = "dev_accuracy",
        direction: str | None = None,
        mode: str = "caviar",
        **fields: Any,
    ) -> int:
        """A study whose trials your processes run; returns its id.

        ``space`` maps each hyperparameter to a value or a distribution
        (``{"dist": "log_uniform", "low": 1e-4, "high": 1}``); ``fields`` are the other
        fields of ``POST /api/studies`` (``epochs``, ``budget``, ``parallelism``,
        ``scheduler``, ``seed``...).
        """
        objective: dict[str, Any] = {"metric": metric}
        if direction is not None:
            objective["direction"] = direction
        body = {"name": name, "mode": mode, "task": EXTERNAL_TASK, "space": dict(space)}
        body |= {"objective": objective, **fields}
        return int(self.worker.request("POST", "/api/studies", json=body).json()["id"])

    def study(self, study_id: int) -> dict[str, Any]:
        """The study as ``GET /api/studies/{id}`` shows it (state, counts, progress...)."""
        return dict(self.worker.request("GET", f"/api/studies/{study_id}").json())

    # -- trials ----------------------------------------------------------------------------

    def ask(
        self,
        study: int,
        *,
        wait: bool = True,
        save: Save | None = None,
        load: Load | None = None,
        on_update: OnUpdate | None = None,
    ) -> Trial | None:
        """Claim the study's next trial; end it with :meth:`tell` (or ``trial.finish()``).

        With ``wait`` it waits while the study is active and nothing is queued (trials
        running elsewhere, a paused trial, the next round not started); None once the study
        completed, or at once without ``wait``, or when the process is told to stop.
        """
        idle = Backoff(cap=IDLE_CAP_SECONDS)
        while not self.worker.leaving:
            body = {"worker": self.name, "study_id": study, "wait": LONG_POLL_SECONDS * wait}
            try:
                response = self.worker.request("POST", "/api/workers/claim", json=body)
            except InterruptedError:
                return None
            if response.status_code != 204:
                claim = self.worker.claimed(dict(response.json()))
                return Trial(self.worker, claim, save=save, load=load, on_update=on_update)
            if not wait or self.study(study)["state"] == "completed":
                return None
            self.worker.stop.wait(idle.next_delay())
        return None

    def tell(self, trial: Trial, value: float | None = None, *, error: str | None = None) -> None:
        """End an asked trial: with its final ``value``, or failed with ``error``."""
        if error is not None:
            trial.fail(error)
        else:
            trial.finish(value)

    @contextmanager
    def trial(
        self,
        study: int,
        *,
        save: Save | None = None,
        load: Load | None = None,
        on_update: OnUpdate | None = None,
    ) -> Iterator[Trial]:
        """``with client.trial(study) as trial:`` claim one trial, end it on leaving.

        Leaving normally completes it (or pauses or stops it, as the controls said); an
        exception fails it and goes on; Ctrl-C hands it back. Raises ``LookupError`` when
        the study has nothing left to run.
        """
        trial = self.ask(study, save=save, load=load, on_update=on_update)
        if trial is None:
            raise LookupError(f"study {study} has no trial left to run")
        with trial:
            yield trial

    def run(
        self,
        train: Callable[[Trial], Any],
        study: int,
        *,
        n_trials: int | None = None,
        save: Save | None = None,
        load: Load | None = None,
        on_update: OnUpdate | None = None,
    ) -> int:
        """Call ``train(trial)`` for each trial claimed, until the study completes, ``n_trials``
        trials were run, or the process is told to stop. Returns the trials run.

        What ``train`` returns, if a number, is the trial's final objective value. An
        exception fails that trial and is raised again.
        """
        done, claim, trial = 0, None, None
        hooks: dict[str, Any] = {"save": save, "load": load, "on_update": on_update}
        try:
            while n_trials is None or done < n_trials:
                trial = Trial(self.worker, claim, **hooks) if claim else self.ask(study, **hooks)
                claim = None
                if trial is None:
                    break
                if n_trials is None or done + 1 < n_trials:
                    trial.claim_next = (self.name, study)  # the finish claims the next one
                with trial:
                    value = train(trial)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        trial.finish(float(value))
                claim, done = trial.next_claim, done + 1
        finally:
            # Claimed with the last finish (a failed trial's too) and never started: back.
            left = claim or (trial.next_claim if trial is not None else None)
            if left is not None:
                hand_back(self.worker, left)
        return done


def run(
    train: Callable[[Trial], Any],
    *,
    study: int,
    server: str = "http://127.0.0.1:8000",
    n_trials: int | None = None,
    token: str | None = None,
    save: Save | None = None,
    load: Load | None = None,
    on_update: OnUpdate | None = None,
) -> int:
    """Hand over your loop: ``train(trial)`` is called for each trial of ``study`` this
    process claims (see :meth:`Client.run`). SIGTERM hands the trial in hand back when called
    from the main thread. Returns the trials run."""
    handle = threading.current_thread() is threading.main_thread()
    with Client(server, token, handle_signals=handle) as client:
        return client.run(
            train, study, n_trials=n_trials, save=save, load=load, on_update=on_update
        )
