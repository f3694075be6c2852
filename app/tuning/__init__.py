"""Pure search algorithms: search spaces, samplers, coarse-to-fine, schedulers, importance.

Only NumPy, SciPy, scikit-learn (importance) and the standard library are imported here; the
server converts its rows into :class:`TrialView` / :class:`RungRecord` and persists what the
algorithms return, so their state lives in the database.
"""

from __future__ import annotations

# The registry first: it defines the built-in algorithms in the order they are offered.
from app.tuning.registry import SAMPLERS, SCHEDULERS, make_sampler, make_scheduler

# isort: split
from app.tuning.asha import AshaScheduler
from app.tuning.base import (
    Algorithm,
    Decision,
    Direction,
    Preset,
    RungRecord,
    Sampler,
    Scheduler,
    SchedulerStep,
    Setting,
    TrialStatus,
    TrialView,
    completed_trials,
    ranked,
    trial_rng,
)
from app.tuning.coarse_to_fine import (
    check_within,
    narrow,
    narrow_from_top,
    near_centre,
    sample_near,
)
from app.tuning.grid import GridExhausted, GridSampler
from app.tuning.importance import ImportanceResult, importance
from app.tuning.median import MedianStoppingScheduler
from app.tuning.no_stopping import NoStoppingScheduler
from app.tuning.random_search import RandomSampler
from app.tuning.sobol import SobolSampler
from app.tuning.space import (
    Choice,
    DistKind,
    Distribution,
    IntUniform,
    LogInt,
    LogUniform,
    OneMinusLogUniform,
    SearchSpace,
    SpaceError,
    Uniform,
    dist_from_dict,
    parse_space,
)
from app.tuning.tpe import TpeSampler

__all__ = [
    "SAMPLERS",
    "SCHEDULERS",
    "Algorithm",
    "AshaScheduler",
    "Choice",
    "Decision",
    "Direction",
    "DistKind",
    "Distribution",
    "GridExhausted",
    "GridSampler",
    "ImportanceResult",
    "IntUniform",
    "LogInt",
    "LogUniform",
    "MedianStoppingScheduler",
    "NoStoppingScheduler",
    "OneMinusLogUniform",
    "Preset",
    "RandomSampler",
    "RungRecord",
    "Sampler",
    "Scheduler",
    "SchedulerStep",
    "SearchSpace",
    "Setting",
    "SobolSampler",
    "SpaceError",
    "TpeSampler",
    "TrialStatus",
    "TrialView",
    "Uniform",
    "check_within",
    "completed_trials",
    "dist_from_dict",
    "importance",
    "make_sampler",
    "make_scheduler",
    "narrow",
    "narrow_from_top",
    "near_centre",
    "parse_space",
    "ranked",
    "sample_near",
    "trial_rng",
]
