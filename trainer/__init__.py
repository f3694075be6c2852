"""The NumPy training engine: tasks, an MLP with batch norm, optimizers, the loop, checkpoints.

Pure NumPy and the standard library (scikit-learn only to load its bundled data sets), so a
worker process imports no web or database code. Names are exported lazily: importing one
submodule (``trainer.config`` in the server) does not load the whole engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "CheckpointError": "trainer.checkpoint",
    "ADJUSTABLE": "trainer.config",
    "HPARAM_SPECS": "trainer.config",
    "HParamError": "trainer.config",
    "NotAdjustableError": "trainer.config",
    "TrainConfig": "trainer.config",
    "check_hparams": "trainer.config",
    "complete_hparams": "trainer.config",
    "DivergedError": "trainer.metrics",
    "FitResult": "trainer.loop",
    "FitStatus": "trainer.loop",
    "Trainer": "trainer.loop",
    "Action": "trainer.reporting",
    "Directive": "trainer.reporting",
    "NullReporter": "trainer.reporting",
    "RecordingReporter": "trainer.reporting",
    "Reporter": "trainer.reporting",
}

__all__ = [
    "ADJUSTABLE",
    "HPARAM_SPECS",
    "Action",
    "CheckpointError",
    "Directive",
    "DivergedError",
    "FitResult",
    "FitStatus",
    "HParamError",
    "NotAdjustableError",
    "NullReporter",
    "RecordingReporter",
    "Reporter",
    "TrainConfig",
    "Trainer",
    "check_hparams",
    "complete_hparams",
]

if TYPE_CHECKING:
    from trainer.checkpoint import CheckpointError
    from trainer.config import (
        ADJUSTABLE,
        HPARAM_SPECS,
        HParamError,
        NotAdjustableError,
        TrainConfig,
        check_hparams,
        complete_hparams,
    )
    from trainer.loop import FitResult, FitStatus, Trainer
    from trainer.metrics import DivergedError
    from trainer.reporting import Action, Directive, NullReporter, RecordingReporter, Reporter


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
