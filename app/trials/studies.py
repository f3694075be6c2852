"""New studies and their trials, checked: the task and its options, a panda study's fixed
values, a caviar study's space and algorithms, a trial's complete hyperparameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import FieldError, Invalid
from app.schemas import StudyCreate
from app.search import feeder, study_config
from app.storage.models import EXTERNAL_TASK, Round, RoundKind, Study, StudyMode
from app.trials import external
from trainer.config import HPARAM_SPECS, HParamError, check_hparams, complete_hparams


def check_task(task: str, options: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The task's options with defaults filled in, or 422 naming the field."""
    if task == EXTERNAL_TASK:
        if options:
            raise Invalid(
                "task_options: got options, allowed: none (your own loop loads its data)",
                field="task_options",
            )
        return {}
    from trainer.data import DataError, check_task_options  # NumPy/scikit-learn: load lazily

    try:
        options = check_task_options(task, options)
    except DataError as exc:
        field = "task" if task not in _task_names() else "task_options"
        raise Invalid(f"{field}: {exc}", field=field) from None
    if "path" in options:
        # Only files uploaded to the server: a study must not read arbitrary server files.
        root = settings.upload_dir.resolve()
        path = (root / str(options["path"])).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise Invalid(
                f"task_options.path: {options['path']!r} is not an uploaded file",
                field="task_options.path",
            )
        options["path"] = str(path)
    return options


def _task_names() -> list[str]:
    from trainer.data import TASKS

    return list(TASKS)


def panda_space_errors(space: dict[str, Any]) -> list[FieldError]:
    """Every value of a panda study's space the trainer refuses, then its cross-field rules."""
    errors = []
    for name, value in space.items():
        try:
            if name in HPARAM_SPECS and isinstance(value, dict):
                raise HParamError(name, "a panda study takes fixed values, not distributions")
            check_hparams({name: value})
        except HParamError as exc:
            errors.append(FieldError(f"space.{exc.name}", exc.message))
    if not errors:
        try:
            complete_hparams(space)
        except HParamError as exc:
            errors.append(FieldError(f"space.{exc.name}", exc.message))
    return errors


@dataclass
class Checked:
    """A new study's body checked beyond its schema: what to store, and every rule it breaks
    (each naming its field); the study is created only when ``errors`` is empty."""

    options: dict[str, Any]
    sampler: str | None = None
    sampler_settings: dict[str, Any] = field(default_factory=dict)
    scheduler: str | None = None
    scheduler_settings: dict[str, Any] = field(default_factory=dict)
    scheduler_given: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Any] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)


def check_study(body: StudyCreate, settings: Settings) -> Checked:
    """Every rule a new study breaks beyond its schema: its task and options, its space (each
    hyperparameter), its sampler's and scheduler's settings."""
    errors: list[FieldError] = []
    try:
        options = check_task(body.task, body.task_options, settings)
    except Invalid as exc:
        options, errors = {}, [*errors, *exc.errors]
    checked = Checked(options, space=body.space, errors=errors)
    try:
        checked.sampler, checked.sampler_settings = study_config.split(body.sampler, "sampler")
    except Invalid as exc:
        errors.extend(exc.errors)
    try:
        checked.scheduler, given = study_config.split(body.scheduler, "scheduler")
        checked.scheduler_settings, checked.scheduler_given = given, dict(given)
    except Invalid as exc:
        errors.extend(exc.errors)
    own = body.task == EXTERNAL_TASK
    if body.mode is StudyMode.PANDA:
        errors.extend((external.panda_space_errors if own else panda_space_errors)(body.space))
        return checked
    named = not errors  # the sampler's and scheduler's names and the task are good
    if own:
        space, space_errors = external.check_space(body.space)
    else:
        space, space_errors = study_config.check_space(body.space, body.epochs)
    errors.extend(space_errors)
    if not named:
        return checked  # the algorithms are built from good names only
    # A bad space still lets the settings be checked, with the study's epochs as the longest.
    longest = body.epochs if space is None else study_config.max_epochs(space, body.epochs)
    trials = study_config.trials_of_budget(body.budget.trials, body.budget.epochs, longest)
    checked.space = {} if space is None else space.to_dict()
    checked.scheduler_settings = study_config.applied_settings(
        checked.scheduler, checked.scheduler_settings, trials, longest
    )
    errors.extend(study_config.algorithm_errors(_study_of(body, checked)))
    return checked


def _study_of(body: StudyCreate, checked: Checked) -> Study:
    assert body.objective.direction is not None  # filled in by the schema
    return Study(
        name=body.name,
        mode=body.mode,
        task=body.task,
        task_options=checked.options,
        space=checked.space,
        objective_metric=body.objective.metric,
        direction=body.objective.direction,
        sampler=checked.sampler,
        sampler_settings=checked.sampler_settings,
        scheduler=checked.scheduler,
        scheduler_settings=checked.scheduler_settings,
        scheduler_given=checked.scheduler_given,
        budget_trials=body.budget.trials,
        budget_epochs=body.budget.epochs,
        epochs=body.epochs,
        parallelism=body.parallelism,
        seed=body.seed,
    )


def create_study(session: Session, body: StudyCreate, settings: Settings) -> Study:
    """A new study; a caviar one also gets round 1 and its first sampled trials.

    Raises:
        Invalid: naming every field that breaks a rule (:func:`check_study`).
    """
    checked = check_study(body, settings)
    if checked.errors:
        raise Invalid.every(checked.errors)
    study = _study_of(body, checked)
    session.add(study)
    session.flush()
    if body.mode is StudyMode.CAVIAR:
        session.add(
            Round(
                study_id=study.id,
                number=1,
                kind=RoundKind.SEARCH,
                space=checked.space,
                budget_trials=body.budget.trials,
                budget_epochs=body.budget.epochs,
                scheduler_settings=study.scheduler_settings,
            )
        )
        feeder.settle(session, study)
    return study


# A body's fields whose check needs another field: left unchecked when that one is bad.
_NEEDS = {"mode": ("space", "sampler", "scheduler"), "task": ("task_options",)}


def errors_beyond_schema(raw: object, bad: set[str], settings: Settings) -> list[FieldError]:
    """The rules of :func:`check_study` broken by a body its schema refused, so one 422 names
    every bad field: ``bad`` are the fields the schema refused; their top-level keys (and
    the fields checked against them) take their defaults and are not reported again."""
    if not isinstance(raw, dict):
        return []
    tops = {f.split(".", 1)[0] for f in bad}
    for key, needing in _NEEDS.items():
        if key in tops:
            tops.update(needing)
    data = {k: v for k, v in raw.items() if k not in tops}
    data.setdefault("name", "-")  # required: its own error is among ``bad`` already
    try:
        body = StudyCreate.model_validate(data)
    except ValidationError:
        return []
    return [e for e in check_study(body, settings).errors if e.field.split(".")[0] not in tops]


def _caviar_plan(
    body: StudyCreate, scheduler: str | None, given: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """A caviar study's checked space, its scheduler's settings as applied (budget-fitted
    defaults included) and about how many trials round 1's budget buys."""
    parsed = study_config.parse(body.space, body.epochs)
    longest = study_config.max_epochs(parsed, body.epochs)
    trials = study_config.trials_of_budget(body.budget.trials, body.budget.epochs, longest)
    applied = study_config.applied_settings(scheduler, given, trials, longest)
    return parsed.to_dict(), applied, trials


def preview(body: StudyCreate) -> tuple[dict[str, Any], str | None]:
    """What a caviar study's scheduler would run with, before the study exists: its settings
    as applied and its plan (``"rungs at 3 and 9 epochs; about 3 of 24 trials train all 27
    epochs"``). Bad settings raise the 422 the creation would; nothing is written."""
    scheduler, given = study_config.split(body.scheduler, "scheduler")
    if body.mode is not StudyMode.CAVIAR or scheduler in (None, "none"):
        return given, None
    space, applied, trials = _caviar_plan(body, scheduler, given)
    assert body.objective.direction is not None  # filled in by the schema
    study = Study(
        mode=body.mode, space=space, epochs=body.epochs, sampler="random", sampler_settings={},
        scheduler=scheduler, scheduler_settings=applied, direction=body.objective.direction,
        seed=body.seed,
    )  # fmt: skip
    study_config.check_algorithms(study)
    return applied, study_config.plan(study, trials) or None


def trial_hparams(study: Study, explicit: dict[str, Any]) -> dict[str, Any]:
    """Complete hyperparameters: defaults < the study's fixed values and epochs < ``explicit``."""
    if study.external:
        return external.trial_hparams(study, explicit)
    fixed = {k: v for k, v in study.space.items() if not isinstance(v, dict)}
    try:
        return complete_hparams({"epochs": study.epochs, **fixed, **explicit})
    except HParamError as exc:
        raise Invalid.from_hparam(exc, "hparams.") from None
