"""The training loop: accuracy on real tasks, safe points, directives, divergence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.config import NotAdjustableError, TrainConfig
from trainer.loop import FitStatus, Trainer
from trainer.metrics import DivergedError
from trainer.reporting import Action, Directive, NullReporter, RecordingReporter


def _fit(config: TrainConfig, reporter: RecordingReporter | None = None) -> tuple[Trainer, object]:
    trainer = Trainer(config)
    return trainer, trainer.fit(reporter or NullReporter())


def test_digits_default_config_reaches_97_percent_within_30_epochs() -> None:
    reporter = RecordingReporter()
    _, result = _fit(TrainConfig(task="digits", hparams={"epochs": 30}), reporter)
    best = max(m["dev_accuracy"] for _, _, m in reporter.reports if "dev_accuracy" in m)
    assert best >= 0.97
    assert result.status is FitStatus.COMPLETED
    assert {"test_loss", "test_accuracy"} <= set(result.metrics)


def test_breast_cancer_reaches_95_percent() -> None:
    _, result = _fit(TrainConfig(task="breast_cancer", hparams={"epochs": 30}))
    assert result.metrics["dev_accuracy"] >= 0.95


def test_three_class_spirals_reach_95_percent_with_two_hidden_layers() -> None:
    config = TrainConfig(
        task="spirals",
        task_options={"n_classes": 3},
        hparams={"num_layers": 2, "epochs": 60, "learning_rate": 0.01},
    )
    _, result = _fit(config)
    assert result.metrics["dev_accuracy"] >= 0.95


def _small(**hparams: object) -> TrainConfig:
    base = {"epochs": 3, "hidden_units": 32, "batch_size": 32}
    return TrainConfig(task="iris", hparams={**base, **hparams}, report_every=2)


def test_safe_points_every_report_every_steps_and_at_epoch_ends() -> None:
    reporter = RecordingReporter()
    trainer, _ = _fit(_small(), reporter)
    steps = [s for s, _, _ in reporter.reports]
    per_epoch = math.ceil(trainer.n_train / 32)
    expected = sorted({s for s in range(1, 3 * per_epoch + 1) if s % 2 == 0 or s % per_epoch == 0})
    assert steps == expected
    expected_keys = {"train_loss", "learning_rate", "grad_norm", "layer1/z_mean", "layer2/z_std"}
    for step, _, metrics in reporter.reports:
        assert ("dev_loss" in metrics) == (step % per_epoch == 0)
        assert expected_keys <= set(metrics)
        assert all(math.isfinite(v) for v in metrics.values())


def test_pause_checkpoints_and_returns_paused() -> None:
    reporter = RecordingReporter({4: Directive(Action.PAUSE)})
    trainer, result = _fit(_small(), reporter)
    assert result.status is FitStatus.PAUSED and result.step == 4
    assert [s for s, _ in reporter.checkpoints] == [4]


def test_stop_returns_stopped_without_training_further() -> None:
    reporter = RecordingReporter({2: Directive(Action.STOP)})
    trainer, result = _fit(_small(), reporter)
    assert result.status is FitStatus.STOPPED and trainer.step == 2


def test_update_applies_from_the_next_step_after_a_checkpoint() -> None:
    update = Directive(Action.UPDATE, {"learning_rate": 0.5}, event_id=7)
    reporter = RecordingReporter({4: update})
    _fit(_small(learning_rate=0.01), reporter)
    assert reporter.applied_steps == [(update, 5)]
    assert 4 in [s for s, _ in reporter.checkpoints]
    lr = {s: m["learning_rate"] for s, _, m in reporter.reports}
    assert lr[4] == pytest.approx(0.01) and lr[6] == pytest.approx(0.5)


def test_update_of_an_architecture_hyperparameter_names_it() -> None:
    trainer = Trainer(_small())
    with pytest.raises(NotAdjustableError, match="hidden_units"):
        trainer.update_hparams({"hidden_units": 64})


def test_checkpoint_directive_hands_over_a_checkpoint() -> None:
    reporter = RecordingReporter({2: Directive(Action.CHECKPOINT)})
    _fit(_small(), reporter)
    assert reporter.checkpoints[0][0] == 2


def test_divergence_stops_with_the_step_and_never_reports_nan() -> None:
    # GD on w^2 - 10w + 25 at lr 10 multiplies w by -19 each step: float32 overflows.
    config = TrainConfig(
        task="quadratic", hparams={"optimizer": "sgd", "learning_rate": 10.0}, max_steps=500
    )
    reporter = RecordingReporter()
    with pytest.raises(DivergedError, match=r"diverged at step \d+"):
        Trainer(config).fit(reporter)
    assert reporter.reports, "reports were made before divergence"
    assert all(math.isfinite(v) for _, _, m in reporter.reports for v in m.values())


def test_decay_lowers_the_reported_rate_each_epoch() -> None:
    reporter = RecordingReporter()
    _fit(_small(decay_schedule="inverse_time", lr_decay=1.0, learning_rate=0.2), reporter)
    rates = sorted({round(m["learning_rate"], 9) for _, _, m in reporter.reports}, reverse=True)
    # epoch_num 1, 2, 3 -> 0.2/2, 0.2/3, 0.2/4
    assert rates == pytest.approx([0.1, 0.2 / 3, 0.05])


def test_pause_then_resume_trains_exactly_like_a_straight_run() -> None:
    config = _small(keep_prob=0.8, epochs=4)
    straight, _ = _fit(config)
    paused_reporter = RecordingReporter({6: Directive(Action.PAUSE)})
    first, _ = _fit(config, paused_reporter)
    resumed = Trainer(config)
    resumed.load_checkpoint(paused_reporter.checkpoints[-1][1])
    final = resumed.fit(NullReporter())
    assert final.status is FitStatus.COMPLETED
    for name, value in straight.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[name], value)
    assert final.metrics["dev_loss"] == straight.evaluate("dev")["dev_loss"]
