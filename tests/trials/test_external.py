"""The rules of a study whose trials run in the user's loop: its space, values and adjustments."""

from __future__ import annotations

import pytest

from app.errors import Invalid
from app.storage.models import Direction, Study, StudyMode, Trial
from app.trials import external


def study(**space: object) -> Study:
    return Study(
        id=7, mode=StudyMode.CAVIAR, task="external", space=dict(space), epochs=12,
        objective_metric="val_auc", direction=Direction.MAXIMIZE,
    )  # fmt: skip


def test_a_users_space_takes_names_the_trainer_does_not_know() -> None:
    space, errors = external.check_space(
        {
            "weight_decay": {"dist": "log_uniform", "low": 1e-6, "high": 1e-2},
            "dropout": {"dist": "uniform", "low": 0.0, "high": 0.5},
            "arch": {"dist": "choice", "values": ["resnet", "vit"]},
            "warmup": 3,
        }
    )
    assert errors == [] and space is not None
    assert set(space.ranged) == {"weight_decay", "dropout", "arch"}
    assert space.fixed == {"warmup": 3}


def test_a_name_the_trainer_knows_keeps_its_range_and_every_bad_one_is_named() -> None:
    _, errors = external.check_space(
        {
            "learning_rate": {"dist": "log_uniform", "low": -1, "high": 1},
            "9lives": 1,
            "ok": 1.5,
            "nan": float("nan"),
        }
    )
    by_field = {e.field: e.message for e in errors}
    assert set(by_field) == {"space.learning_rate", "space.9lives", "space.nan"}
    assert "allowed" in by_field["space.9lives"] and "finite" in by_field["space.nan"]


def test_a_panda_study_of_the_users_loop_takes_fixed_values_only() -> None:
    errors = external.panda_space_errors({"lr": {"dist": "uniform", "low": 0, "high": 1}, "x": 1})
    assert [e.field for e in errors] == ["space.lr"]


def test_an_adjustment_changes_values_the_trial_has_to_values_of_the_same_kind() -> None:
    base = {"learning_rate": 0.1, "arch": "vit", "epochs": 12}
    assert external.check_adjustment({"learning_rate": 0.05}, base) == {"learning_rate": 0.05}
    with pytest.raises(Invalid) as unknown:
        external.check_adjustment({"momentum": 0.9}, base, "hparams.")
    assert unknown.value.field == "hparams.momentum" and "it has: arch, epochs" in str(
        unknown.value.detail
    )
    with pytest.raises(Invalid) as kind:
        external.check_adjustment({"arch": 3}, base)
    assert kind.value.field == "arch"
    with pytest.raises(Invalid) as rng:
        external.check_adjustment({"learning_rate": -1.0}, base)
    assert rng.value.field == "learning_rate"


def test_a_trial_gets_the_study_epochs_its_fixed_values_and_explicit_ones_on_top() -> None:
    s = study(warmup=3, lr={"dist": "uniform", "low": 0, "high": 1})
    assert external.trial_hparams(s, {"lr": 0.3}) == {"epochs": 12, "warmup": 3, "lr": 0.3}
    with pytest.raises(Invalid) as bad:
        external.trial_hparams(s, {"lr": float("inf")})
    assert bad.value.field == "hparams.lr"


def test_a_claim_tells_the_users_process_its_values_and_the_objective() -> None:
    s = study()
    trial = Trial(id=3, number=2, hparams={"lr": 0.1, "epochs": 12}, study=s)
    assert external.claim_config(trial) == {
        "task": "external", "study_id": 7, "number": 2, "hparams": {"lr": 0.1, "epochs": 12},
        "epochs": 12, "objective": {"metric": "val_auc", "direction": "maximize"},
    }  # fmt: skip
