"""Caviar: the search around the trials.

:mod:`feeder` samples a study's next trials and asks its scheduler at each epoch end,
:mod:`parking` holds the trials ASHA paused at a rung and promotes them, :mod:`rounds` narrows
the space coarse-to-fine and re-tests the best, :mod:`analysis` ranks, exports and measures
importance, :mod:`curves` serves a study's curves by epoch, :mod:`study_config` builds a
study's sampler and scheduler from its row. The algorithms themselves are pure, in app.tuning.

May import: app.storage, app.schemas, app.tuning, app.config, app.errors. Never app.trials,
app.api, app.web or the worker program.
"""
