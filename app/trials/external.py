"""Studies whose trials run in the user's own processes: task ``"external"``.

The server samples, schedules, pauses, adjusts and forks such trials as it does the built-in
trainer's, but its own workers never claim them: the user's processes do, through the
``pandacaviar`` client (``POST /api/workers/claim`` with the study's id). Their hyperparameters
are the user's: any name is allowed; a name the built-in trainer knows (``learning_rate``,
``momentum``, ``batch_size``...) keeps its allowed range, any other value is a finite number,
a string or a boolean. Checkpoints are the user's bytes, stored as they come.
"""

from __future__ import annotations

import math
import re
from typing import Any

from app.errors import FieldError, Invalid
from app.search import study_config
from app.storage.models import EXTERNAL_TASK, Study, Trial
from app.tuning import SearchSpace
from trainer.config import HPARAM_SPECS, HParamError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
NAME_RULE = "a name of letters, digits, '_', '.' or '-' (at most 100, not starting with a digit)"


def check_value(name: str, value: object) -> object:
    """One value of the user's: the trainer's range for a name it knows, else a finite
    number, a string or a boolean. Raises ``ValueError`` in words."""
    if not _NAME.match(name):
        raise ValueError(f"allowed names: {NAME_RULE}")
    if name in HPARAM_SPECS:
        return HPARAM_SPECS[name].check(value)
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    raise ValueError(f"got {value!r}, allowed: a finite number, a string or true/false")


def _checked(name: str, value: object) -> object:
    try:
        return check_value(name, value)
    except HParamError as exc:
        raise ValueError(exc.message) from None


def check_space(data: object) -> tuple[SearchSpace | None, list[FieldError]]:
    """The space and every hyperparameter it gets wrong, each naming ``space.<name>``."""
    return study_config.parse_each(data, _checked)


def panda_space_errors(space: dict[str, Any]) -> list[FieldError]:
    """A panda study's fixed values: each one a value :func:`check_value` accepts."""
    errors = []
    for name, value in space.items():
        if isinstance(value, dict):
            errors.append(FieldError(f"space.{name}", "a panda study takes fixed values"))
            continue
        try:
            _checked(name, value)
        except ValueError as exc:
            errors.append(FieldError(f"space.{name}", str(exc)))
    return errors


def trial_hparams(study: Study, explicit: dict[str, Any]) -> dict[str, Any]:
    """A trial's values: the study's epochs < its fixed values < ``explicit`` (checked)."""
    fixed = {k: v for k, v in study.space.items() if not isinstance(v, dict)}
    values = {"epochs": study.epochs, **fixed, **explicit}
    for name, value in explicit.items():
        try:
            _checked(name, value)
        except ValueError as exc:
            raise Invalid(f"hparams.{name}: {exc}", field=f"hparams.{name}") from None
    return values


def check_adjustment(
    values: dict[str, Any], base: dict[str, Any], prefix: str = ""
) -> dict[str, Any]:
    """An adjustment of a user's trial: names it already has, values of the same kind."""
    out = {}
    for name, value in values.items():
        field = f"{prefix}{name}"
        if name not in base:
            known = ", ".join(sorted(base)) or "none"
            raise Invalid(f"{field}: the trial has no such value; it has: {known}", field=field)
        if _kind(value) != _kind(base[name]):
            allowed = f"a value like {base[name]!r}"
            raise Invalid(f"{field}: got {value!r}, allowed: {allowed}", field=field)
        try:
            out[name] = _checked(name, value)
        except ValueError as exc:
            raise Invalid(f"{field}: {exc}", field=field) from None
    return out


def _kind(value: object) -> type:
    return bool if isinstance(value, bool) else str if isinstance(value, str) else float


def claim_config(trial: Trial) -> dict[str, Any]:
    """What a user's process gets for a claimed trial: its values and the study's objective."""
    study = trial.study
    return {
        "task": EXTERNAL_TASK,
        "study_id": study.id,
        "number": trial.number,
        "hparams": dict(trial.hparams),
        "epochs": study.epochs,
        "objective": {"metric": study.objective_metric, "direction": study.direction.value},
    }
