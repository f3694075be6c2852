"""Hyperparameter checks: the error names the allowed range in readable numbers."""

from __future__ import annotations

import pytest

from trainer.config import HParamError, HParamSpec, check_hparams


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("seed", -1, "allowed: an integer in [0, 4294967295]"),  # in full, not 4.29497e+09
        ("learning_rate", 0.0, "allowed: a finite number in (0, 10]"),
        ("epochs", 0, "[1, 100000]"),
    ],
)
def test_range_in_error(name: str, value: float, allowed: str) -> None:
    with pytest.raises(HParamError) as err:
        check_hparams({name: value})
    assert allowed in str(err.value)


def test_small_bounds_stay_short() -> None:
    tiny = HParamSpec("tiny", float, 1e-5, 1e-5, 1.0)
    assert tiny.range_text() == "a finite number in [1e-05, 1]"
