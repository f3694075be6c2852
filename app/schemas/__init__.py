"""Pydantic wire types, one module per resource, one family per entity (Create / Public /
sPublic). Everything is re-exported here: ``from app.schemas import TrialPublic``.
"""

from __future__ import annotations

from app.schemas.analysis import BestPublic, ImportancePublic
from app.schemas.common import Budget, FiniteFloat, Name, Strict, check_spec
from app.schemas.meta import (
    AlgorithmPublic,
    AlgorithmsPublic,
    Health,
    HParamPublic,
    PresetPublic,
    SettingPublic,
    TaskPublic,
    TasksPublic,
)
from app.schemas.rounds import (
    RetestCreate,
    RetestGroup,
    RetestPublic,
    RetestShape,
    RoundCreate,
    RoundPublic,
    RoundsPublic,
)
from app.schemas.studies import (
    Algorithm,
    BudgetCreate,
    Objective,
    ObjectivePublic,
    Progress,
    SamplerInfo,
    StudiesPublic,
    StudyCreate,
    StudyPlan,
    StudyPublic,
)
from app.schemas.trials import (
    CheckpointPublic,
    EventPublic,
    ForkRequest,
    TrialCreate,
    TrialPublic,
    TrialsPublic,
)
from app.schemas.workers import (
    Applied,
    CheckpointOut,
    CheckpointRef,
    ClaimIn,
    ClaimOut,
    DirectiveOut,
    FinishIn,
    FinishOut,
    ReportIn,
)

__all__ = [
    "Algorithm",
    "AlgorithmPublic",
    "AlgorithmsPublic",
    "Applied",
    "BestPublic",
    "Budget",
    "BudgetCreate",
    "CheckpointOut",
    "CheckpointPublic",
    "CheckpointRef",
    "ClaimIn",
    "ClaimOut",
    "DirectiveOut",
    "EventPublic",
    "FiniteFloat",
    "FinishIn",
    "FinishOut",
    "ForkRequest",
    "HParamPublic",
    "Health",
    "ImportancePublic",
    "Name",
    "Objective",
    "ObjectivePublic",
    "PresetPublic",
    "Progress",
    "ReportIn",
    "RetestCreate",
    "RetestGroup",
    "RetestPublic",
    "RetestShape",
    "RoundCreate",
    "RoundPublic",
    "RoundsPublic",
    "SamplerInfo",
    "SettingPublic",
    "StudiesPublic",
    "StudyCreate",
    "StudyPlan",
    "StudyPublic",
    "Strict",
    "TaskPublic",
    "TasksPublic",
    "TrialCreate",
    "TrialPublic",
    "TrialsPublic",
    "check_spec",
]
