"""Checkpoints: train N, save, restore in a fresh process, train M == train N+M, bit for bit."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainer.checkpoint import CheckpointError
from trainer.config import TrainConfig
from trainer.loop import FitStatus, Trainer
from trainer.reporting import Action, Directive, NullReporter, RecordingReporter

RESUME_SCRIPT = """
import json, sys
import numpy as np
from trainer.config import TrainConfig
from trainer.loop import Trainer
from trainer.reporting import NullReporter
config = TrainConfig.from_dict(json.loads(sys.argv[1]))
trainer = Trainer(config)
trainer.load_checkpoint(open(sys.argv[2], "rb").read())
if sys.argv[4]:
    trainer.update_hparams(json.loads(sys.argv[4]))
trainer.fit(NullReporter())
np.savez(sys.argv[3], **trainer.model.state_dict(), **{
    "optim/" + k: v for k, v in trainer.optimizer.state_dict().items()})
"""

CONFIGS = {
    "adam_bn_dropout": {"optimizer": "adam", "keep_prob": 0.8, "batch_norm": True},
    "momentum_decay": {
        "optimizer": "momentum",
        "decay_schedule": "exponential",
        "lr_decay": 0.9,
        "learning_rate": 0.05,
    },
    "rmsprop_no_bn_l2": {
        "optimizer": "rmsprop",
        "batch_norm": False,
        "l2": 0.01,
        "activation": "tanh",
        "init": "xavier",
    },
}


def _config(hparams: dict[str, object], max_steps: int) -> TrainConfig:
    # 45 steps is mid-epoch on digits at batch 48 (1257 train rows -> 27 steps an epoch).
    base = {"hidden_units": 48, "batch_size": 48, "epochs": 100, **hparams}
    return TrainConfig(task="digits", hparams=base, max_steps=max_steps, report_every=5)


def _resume_in_fresh_process(
    tmp_path: Path, config: TrainConfig, data: bytes, update: dict[str, object] | None
) -> dict[str, np.ndarray]:
    ckpt_file, out_file = tmp_path / "ckpt.npz", tmp_path / "out.npz"
    ckpt_file.write_bytes(data)
    subprocess.run(
        [
            sys.executable,
            "-c",
            RESUME_SCRIPT,
            json.dumps(config.to_dict()),
            str(ckpt_file),
            str(out_file),
            json.dumps(update) if update else "",
        ],
        check=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        cwd=Path(__file__).resolve().parents[2],
    )
    with np.load(out_file) as npz:
        return {k: npz[k] for k in npz.files}


def _state(trainer: Trainer) -> dict[str, np.ndarray]:
    out = dict(trainer.model.state_dict())
    out.update({"optim/" + k: v for k, v in trainer.optimizer.state_dict().items()})
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_train_n_save_restore_in_fresh_process_train_m_equals_n_plus_m(
    tmp_path: Path, name: str
) -> None:
    n, m = 45, 40
    straight = Trainer(_config(CONFIGS[name], n + m))
    straight.fit(NullReporter())
    first = Trainer(_config(CONFIGS[name], n))
    reporter = RecordingReporter()
    first.fit(reporter)
    assert reporter.checkpoints[-1][0] == n
    resumed = _resume_in_fresh_process(
        tmp_path, _config(CONFIGS[name], n + m), reporter.checkpoints[-1][1], None
    )
    expected = _state(straight)
    assert set(resumed) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)


def test_the_same_holds_with_an_update_in_between(tmp_path: Path) -> None:
    n, m = 45, 40
    update = {"learning_rate": 0.003, "batch_size": 32, "keep_prob": 0.9}
    hp = CONFIGS["adam_bn_dropout"]
    straight = Trainer(_config(hp, n + m))
    straight.fit(RecordingReporter({n: Directive(Action.UPDATE, update)}))
    first = Trainer(_config(hp, n))
    reporter = RecordingReporter()
    first.fit(reporter)
    resumed = _resume_in_fresh_process(
        tmp_path, _config(hp, n + m), reporter.checkpoints[-1][1], update
    )
    for key, value in _state(straight).items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)


def _checkpoint() -> bytes:
    trainer = Trainer(_config({}, 3))
    return trainer.checkpoint_bytes()


def test_truncated_file_gives_a_clear_error() -> None:
    data = _checkpoint()
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        Trainer(_config({}, 3)).load_checkpoint(data[: len(data) // 2])


def test_foreign_npz_gives_a_clear_error() -> None:
    buf = io.BytesIO()
    np.savez(buf, weights=np.ones(3))
    with pytest.raises(CheckpointError, match="not a panda-caviar checkpoint"):
        Trainer(_config({}, 3)).load_checkpoint(buf.getvalue())


def test_npz_with_pickled_objects_is_refused() -> None:
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(CheckpointError):
        Trainer(_config({}, 3)).load_checkpoint(buf.getvalue())


def test_checkpoint_of_another_architecture_is_refused() -> None:
    data = _checkpoint()
    with pytest.raises(CheckpointError, match="hidden_units"):
        Trainer(_config({"hidden_units": 16}, 3)).load_checkpoint(data)


def test_checkpoint_of_another_task_is_refused() -> None:
    data = _checkpoint()
    other = TrainConfig(task="iris", hparams={"hidden_units": 48, "batch_size": 48}, max_steps=3)
    with pytest.raises(CheckpointError, match="task"):
        Trainer(other).load_checkpoint(data)


class Later(RecordingReporter):
    """Takes checkpoints as ``checkpoint_later`` hands them over and writes each only at the
    end of training, as an upload thread would write it long after the trainer moved on."""

    def __init__(self, script: dict[int, Directive]) -> None:
        super().__init__(script)
        self.later: list[tuple[int, Any]] = []
        self.before_update: list[bool] = []
        self.pausing: list[bool] = []

    def checkpoint_later(
        self, step: int, make: Any, *, before_update: bool = False, pausing: bool = False
    ) -> None:
        self.later.append((step, make))
        self.before_update.append(before_update)
        self.pausing.append(pausing)


def test_a_checkpoint_written_later_holds_the_state_it_was_taken_in() -> None:
    config = TrainConfig(
        task="digits",
        hparams={"hidden_units": 16, "num_layers": 2, "batch_size": 32, "epochs": 2},
        report_every=5,
    )
    edit = Directive(Action.UPDATE, {"learning_rate": 0.05}, event_id=1)
    later = Later({10: Directive(Action.CHECKPOINT), 20: edit})
    Trainer(config).fit(later)
    twin = RecordingReporter({10: Directive(Action.CHECKPOINT), 20: edit})
    Trainer(config).fit(twin)  # the same run, each checkpoint written the moment it is taken
    taken = [(step, make()) for step, make in later.later]  # written after training ended
    assert [s for s, _ in taken] == [10, 20] and later.before_update == [False, True]
    assert later.pausing == [False, False]
    assert taken == [(s, b) for s, b in twin.checkpoints if s in (10, 20)]


class Waiting(Later):
    """Asks for each checkpoint's bytes from its own thread the moment it is handed over, as
    the worker's upload thread does once the points before it are sent."""

    def __init__(self, script: dict[int, Directive]) -> None:
        super().__init__(script)
        self.written: list[tuple[int, bytes]] = []
        self.threads: list[threading.Thread] = []

    def checkpoint_later(
        self, step: int, make: Any, *, before_update: bool = False, pausing: bool = False
    ) -> None:
        super().checkpoint_later(step, make, before_update=before_update, pausing=pausing)
        thread = threading.Thread(target=lambda: self.written.append((step, make())))
        thread.start()
        self.threads.append(thread)


def test_a_pause_hands_its_checkpoint_over_before_writing_it() -> None:
    config = _config({}, 40)
    waiting = Waiting({15: Directive(Action.PAUSE)})
    result = Trainer(config).fit(waiting)
    for thread in waiting.threads:
        thread.join(timeout=30)
    twin = RecordingReporter({15: Directive(Action.PAUSE)})
    Trainer(config).fit(twin)  # the same run, its pause written before it is handed over
    assert result.status is FitStatus.PAUSED and waiting.checkpoints == []
    assert waiting.pausing == [True]  # the reporter is told this checkpoint ends the run
    assert waiting.written == twin.checkpoints == [(result.step, twin.checkpoints[0][1])]
