"""A caviar study's configuration: its search space checked against the trainer, and its
sampler and scheduler built from the stored names and settings.

Nothing here is kept between calls: the feeder (``app.search.feeder``) rebuilds an algorithm
from the study row whenever it needs one, so a restarted server builds the same one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.errors import FieldError, Invalid
from app.storage.models import Round, Study
from app.tuning import (
    SCHEDULERS,
    Choice,
    Sampler,
    Scheduler,
    SearchSpace,
    SpaceError,
    make_sampler,
    make_scheduler,
    parse_space,
)
from trainer.config import HPARAM_SPECS, HParamError, complete_hparams
from trainer.optimizers import OPTIMIZER_HPARAMS

# The trainer's only cross-field rule ties these two; their range corners are checked at once.
COMBINED = ("lr_decay", "decay_schedule")


def check_value(name: str, value: object) -> object:
    """``parse_space``'s checker: an unknown name or a value the trainer refuses raises."""
    if name not in HPARAM_SPECS:
        raise ValueError("unknown hyperparameter; known: " + ", ".join(HPARAM_SPECS))
    return HPARAM_SPECS[name].check(value)


def parse(data: dict[str, Any], epochs: int) -> SearchSpace:
    """A validated search space, or 422 naming every bad ``space.<hyperparameter>``."""
    space, errors = check_space(data, epochs)
    if space is None or errors:
        raise Invalid.every(errors)
    return space


def parse_each(
    data: object, check: Callable[[str, object], object]
) -> tuple[SearchSpace | None, list[FieldError]]:
    """The space, each value checked by ``check``; None and one error per bad hyperparameter
    (``space.<name>``) when any is bad: parsed one at a time, so every bad one is named."""
    if not isinstance(data, Mapping):
        return None, [FieldError("space", f"got {data!r}, allowed: an object")]
    errors = []
    for name, spec in data.items():
        try:
            parse_space({name: spec}, check_value=check)
        except SpaceError as exc:
            errors.append(FieldError(f"space.{exc.name}", exc.message))
    if errors:
        return None, errors
    return parse_space(data, check_value=check), []


def check_space(data: object, epochs: int) -> tuple[SearchSpace | None, list[FieldError]]:
    """The space and every rule it breaks, one error per hyperparameter: its own values, then
    the trainer's cross-field rules and the optimizer rule (:func:`unused_by_optimizers`).

    The space is None when a hyperparameter's own values are bad (nothing more is checked).
    """
    space, errors = parse_each(data, check_value)
    if space is None:
        return None, errors
    try:
        dims = {n: _corners(d) for n, d in space.ranged.items() if n in COMBINED}
        for n, values in dims.items():  # each rule dimension's extremes against the fixed values
            for v in values:
                complete_hparams({"epochs": epochs, **space.fixed, n: v})
        complete_hparams({"epochs": epochs, **space.fixed})
    except HParamError as exc:
        errors.append(FieldError(f"space.{exc.name}", exc.message))
    return space, errors + unused_by_optimizers(space)


def unused_by_optimizers(space: SearchSpace) -> list[FieldError]:
    """An optimizer's hyperparameter ranged while no optimizer the space tries reads it: its
    values could not change a trial, so the search would rank noise. ``momentum`` ranged
    with ``optimizer`` fixed to ``"adam"`` (Adam reads beta1, beta2 and epsilon) is one;
    ranging ``optimizer`` over a choice that includes ``"momentum"`` makes it useful.
    """
    fixed = space.fixed.get("optimizer", HPARAM_SPECS["optimizer"].default)
    choice = space.ranged.get("optimizer")
    tried = [str(v) for v in choice.values] if isinstance(choice, Choice) else [str(fixed)]
    if isinstance(choice, Choice):
        said = "one of " + ", ".join(repr(v) for v in tried)
    elif "optimizer" in space.fixed:
        said = repr(tried[0])
    else:
        said = f"{tried[0]!r}, the default"
    errors = []
    for name in space.ranged:
        users = [o for o, reads in OPTIMIZER_HPARAMS.items() if name in reads]
        if not users or any(o in users for o in tried):
            continue
        errors.append(
            FieldError(
                f"space.{name}",
                f"ranged, but no optimizer of this space uses it (optimizer: {said}; {name} "
                f"is used by {' and '.join(repr(o) for o in users)}): fix {name}, or let "
                "optimizer be one that uses it",
            )
        )
    return errors


def _corners(dist: Any) -> list[Any]:
    return list(dist.values) if isinstance(dist, Choice) else [dist.low, dist.high]


def max_epochs(space: SearchSpace, default: int) -> int:
    """The most epochs a trial of ``space`` can train: ASHA's maximum resource."""
    if "epochs" in space.fixed:
        return int(space.fixed["epochs"])
    dist = space.ranged.get("epochs")
    return default if dist is None else max(int(v) for v in _corners(dist))


def applied_settings(
    scheduler: str | None, given: dict[str, Any], trials: int, longest: int
) -> dict[str, Any]:
    """A scheduler's settings as the study applies them: every declared default, the
    defaults fitted to the budget (``Scheduler.budget_defaults``), then what the user gave.

    ``trials``: the round's trial budget (about how many trials a budget of epochs buys);
    ``longest``: the most epochs a trial can train. The study echoes the result, so what
    runs is what it shows.
    """
    cls = SCHEDULERS.get(scheduler or "")
    if cls is None or scheduler == "none":
        return dict(given)
    declared = {s.name: s.default for s in cls.settings if s.default is not None}
    try:
        fitted = cls.budget_defaults(trials, longest, given)
    except (TypeError, ValueError, OverflowError):
        fitted = {}  # a setting it reads is bad (NaN, a string): building the scheduler says so
    return {**declared, **fitted, **given}


# A round narrowed around the top-k trains every trial in full: its early stopping, as stored.
IN_FULL: dict[str, Any] = {"name": "none"}


def round_settings(
    study: Study, space: SearchSpace, trials: int, *, from_top: bool = False
) -> dict[str, Any] | None:
    """A later search round's scheduler settings: the user's, the rest fitted to the round's
    own budget of about ``trials`` trials, so a smaller narrowed round still trains a useful
    number of its trials in full. None when the study's settings apply as they are.

    A round narrowed around the top-k (``from_top``) stops no trial early (:data:`IN_FULL`)
    unless the user set where the scheduler decides (a setting its budget fitting would
    choose: ASHA's ``min_resource``, median stopping's ``grace``): inside that box a trial's
    early rank hardly predicts its final one (Spearman's rho between epochs 9 and 27 of 27:
    about 0.9 in round 1, 0.47 (digits) and 0.0 (spirals) in the narrowed round, user-loop
    bench), so a rung there would stop trials by noise.
    """
    if study.scheduler in (None, "none"):
        return None
    given = study.scheduler_given
    longest = max_epochs(space, study.epochs)
    if from_top and not _decides_where_given(study.scheduler, given or {}, trials, longest):
        return dict(IN_FULL)
    if given is None:
        return None
    return applied_settings(study.scheduler, given, trials, longest)


def _decides_where_given(scheduler: str, given: dict[str, Any], trials: int, longest: int) -> bool:
    """Whether ``given`` holds a setting the scheduler would otherwise fit to the budget."""
    cls = SCHEDULERS.get(scheduler)
    if cls is None:
        return False
    return not given.keys().isdisjoint(cls.budget_defaults(trials, longest, {}))


def trials_of_budget(trials: int | None, epochs: int | None, longest: int) -> int:
    """About how many trials a round's budget buys: its trials, or, for a budget of epochs,
    three trials for each full training (most stop early)."""
    if trials is not None:
        return trials
    return max(1, round(3 * (epochs or 0) / max(1, longest)))


def plan(study: Study, trials: int) -> str:
    """The scheduler's plan for about ``trials`` trials (empty without one)."""
    scheduler = scheduler_for(study)
    return "" if scheduler is None else scheduler.plan(trials)


def split(spec: str | dict[str, Any] | None, what: str) -> tuple[str | None, dict[str, Any]]:
    """``"asha"`` or ``{"name": "asha", **settings}`` -> (name, settings)."""
    if spec is None or isinstance(spec, str):
        return spec, {}
    settings = dict(spec)
    name = settings.pop("name", None)
    if not isinstance(name, str):
        raise Invalid(
            f'{what}.name: got {name!r}, allowed: a name, e.g. {{"name": "random"}}',
            field=f"{what}.name",
        )
    if "direction" in settings or "seed" in settings:
        raise Invalid(
            f"{what}: direction and seed come from the study's objective and seed", field=what
        )
    return name, settings


def check_algorithms(study: Study) -> None:
    """Build the study's sampler and scheduler once so bad names or settings give a 422."""
    errors = algorithm_errors(study)
    if errors:
        raise Invalid.every(errors)


def algorithm_errors(study: Study) -> list[FieldError]:
    """What building the study's sampler and its scheduler refuses, each naming its field."""
    checks = (
        ("sampler", sampler_for, study.sampler_settings),
        ("scheduler", scheduler_for, study.scheduler_settings),
    )
    errors = []
    for what, build, settings in checks:
        try:
            build(study)
        except ValueError as exc:
            message = str(exc).removeprefix(f"{what}: ")
            key = message.split(":", 1)[0]
            if key == "max_resource":
                message += " (max_resource defaults to the most epochs a trial can train)"
            if key in settings:  # "scheduler: grace: ..." names the field scheduler.grace
                field, said = f"{what}.{key}", f"{what}: {message}"
                errors.append(FieldError(field, message, said))
            else:
                errors.append(FieldError(what, message))
    return errors


def sampler_for(study: Study, round_number: int = 1) -> Sampler:
    """The study's sampler for one of its rounds."""
    # Sobol's scrambling seed differs per round, so a narrowed round gets fresh points.
    seed = study.seed + round_number - 1
    return make_sampler(study.sampler, seed, direction=study.direction, **study.sampler_settings)


def scheduler_for(study: Study, rnd: Round | None = None) -> Scheduler | None:
    """The study's early-stopping scheduler, or None (none, or ``"none"``: nothing to ask).

    With ``rnd``, the round's own settings when it has some (fitted to its own budget); a
    ``"name"`` among them names the round's own scheduler (:data:`IN_FULL`: ``"none"``).
    """
    if study.scheduler is None:
        return None
    name, settings = study.scheduler, study.scheduler_settings
    if rnd is not None and rnd.scheduler_settings is not None:
        settings = dict(rnd.scheduler_settings)
        name = settings.pop("name", name)
    scheduler = make_scheduler(name, direction=study.direction, **settings)
    return None if name == "none" else scheduler
