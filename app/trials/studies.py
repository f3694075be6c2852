"""New studies and their trials, checked: the task and its options, a panda study's fixed
values, a caviar study's space and algorithms, a trial's complete hyperparameters.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Invalid
from app.schemas import StudyCreate
from app.search import feeder, study_config
from app.storage.models import Round, RoundKind, Study, StudyMode
from trainer.config import HPARAM_SPECS, HParamError, complete_hparams


def check_task(task: str, options: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The task's options with defaults filled in, or 422 naming the field."""
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


def check_space(space: dict[str, Any]) -> None:
    """A panda study's space: fixed values the trainer accepts, no distributions."""
    try:
        for name, value in space.items():
            if name in HPARAM_SPECS and isinstance(value, dict):
                raise HParamError(name, "a panda study takes fixed values, not distributions")
        complete_hparams(space)
    except HParamError as exc:
        raise Invalid.from_hparam(exc, "space.") from None


def create_study(session: Session, body: StudyCreate, settings: Settings) -> Study:
    """A new study; a caviar one also gets round 1 and its first sampled trials."""
    options = check_task(body.task, body.task_options, settings)
    sampler, sampler_settings = study_config.split(body.sampler, "sampler")
    scheduler, scheduler_settings = study_config.split(body.scheduler, "scheduler")
    space = body.space
    if body.mode is StudyMode.PANDA:
        check_space(space)
    else:
        space, scheduler_settings, _ = _caviar_plan(body, scheduler, scheduler_settings)
    assert body.objective.direction is not None  # filled in by the schema
    study = Study(
        name=body.name,
        mode=body.mode,
        task=body.task,
        task_options=options,
        space=space,
        objective_metric=body.objective.metric,
        direction=body.objective.direction,
        sampler=sampler,
        sampler_settings=sampler_settings,
        scheduler=scheduler,
        scheduler_settings=scheduler_settings,
        budget_trials=body.budget.trials,
        budget_epochs=body.budget.epochs,
        epochs=body.epochs,
        parallelism=body.parallelism,
        seed=body.seed,
    )
    if body.mode is StudyMode.CAVIAR:
        study_config.check_algorithms(study)
    session.add(study)
    session.flush()
    if body.mode is StudyMode.CAVIAR:
        session.add(
            Round(
                study_id=study.id,
                number=1,
                kind=RoundKind.SEARCH,
                space=space,
                budget_trials=body.budget.trials,
                budget_epochs=body.budget.epochs,
            )
        )
        feeder.settle(session, study)
    return study


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
    fixed = {k: v for k, v in study.space.items() if not isinstance(v, dict)}
    try:
        return complete_hparams({"epochs": study.epochs, **fixed, **explicit})
    except HParamError as exc:
        raise Invalid.from_hparam(exc, "hparams.") from None
