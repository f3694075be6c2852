"""The trial state machine, both sides of it.

- the user's side: :mod:`controls` (pause, resume, stop, adjust, request a checkpoint, fork),
  :mod:`studies` (new studies and trials, checked);
- the worker's side: :mod:`claims` (one claim, atomic), :mod:`assignment` (what the worker
  gets), :mod:`worker_calls` (report and its directive, checkpoint, finish), :mod:`leases`
  (the reaper, the attempt rule).

May import: app.search, app.storage, app.schemas, app.tuning, app.config, app.errors, trainer's
config and reporting vocabulary. Never app.api, app.web, app.worker or app.launchers.
"""
