"""Optimizers against updates worked out by hand, state round trips and live edits.

Every hand-computed test uses the same tiny problem: a 2-element parameter starting at
``W0 = [1, -2]``, trained at ``LR = 0.1`` with three fixed gradients ``G1, G2, G3``.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from numpy.typing import NDArray

from trainer import optimizers
from trainer.optimizers import SGD, Adam, Momentum, Optimizer, RMSprop, make_optimizer, tiled

W0 = [1.0, -2.0]
G1 = [0.5, -1.0]
G2 = [0.2, 0.4]
G3 = [-0.3, 0.1]
LR = 0.1


def run_three(opt: Optimizer) -> list[NDArray[np.float64]]:
    """The parameter after each of the three steps (float64)."""
    params = {"w": np.array(W0)}
    out = []
    for g in (G1, G2, G3):
        opt.step(params, {"w": np.array(g)}, LR)
        out.append(params["w"].copy())
    return out


def test_sgd_three_steps_by_hand() -> None:
    got = run_three(SGD())
    # w -= 0.1 * g
    np.testing.assert_allclose(got[0], [1.0 - 0.05, -2.0 + 0.1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[1], [0.95 - 0.02, -1.9 - 0.04], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[2], [0.93 + 0.03, -1.94 - 0.01], rtol=0, atol=1e-12)


def test_momentum_three_steps_by_hand() -> None:
    opt = Momentum(momentum=0.9)
    got = run_three(opt)
    # v1 = 0.1 * G1 = [0.05, -0.1]; w1 = W0 - 0.1 * v1
    np.testing.assert_allclose(got[0], [0.995, -1.99], rtol=0, atol=1e-12)
    # v2 = 0.9 * [0.05, -0.1] + 0.1 * [0.2, 0.4] = [0.065, -0.05]
    np.testing.assert_allclose(got[1], [0.995 - 0.0065, -1.99 + 0.005], rtol=0, atol=1e-12)
    # v3 = 0.9 * [0.065, -0.05] + 0.1 * [-0.3, 0.1] = [0.0285, -0.035]
    np.testing.assert_allclose(got[2], [0.9885 - 0.00285, -1.985 + 0.0035], rtol=0, atol=1e-12)
    np.testing.assert_allclose(opt.state_dict()["v/w"], [0.0285, -0.035], rtol=0, atol=1e-12)


def test_rmsprop_three_steps_by_hand() -> None:
    eps = 1e-8
    opt = RMSprop(beta2=0.9, epsilon=eps)
    got = run_three(opt)
    # s1 = 0.1 * G1**2 = [0.025, 0.1]
    w1 = [1.0 - 0.1 * 0.5 / (math.sqrt(0.025) + eps), -2.0 + 0.1 * 1.0 / (math.sqrt(0.1) + eps)]
    # s2 = 0.9 * [0.025, 0.1] + 0.1 * [0.04, 0.16] = [0.0265, 0.106]
    w2 = [
        w1[0] - 0.1 * 0.2 / (math.sqrt(0.0265) + eps),
        w1[1] - 0.1 * 0.4 / (math.sqrt(0.106) + eps),
    ]
    # s3 = 0.9 * [0.0265, 0.106] + 0.1 * [0.09, 0.01] = [0.03285, 0.0964]
    w3 = [
        w2[0] + 0.1 * 0.3 / (math.sqrt(0.03285) + eps),
        w2[1] - 0.1 * 0.1 / (math.sqrt(0.0964) + eps),
    ]
    # The first step is lr * sign(g) / sqrt(1 - beta2): RMSprop has no bias correction.
    assert w1[0] == pytest.approx(1.0 - 0.1 * math.sqrt(10.0), abs=1e-7)
    for g, w in zip(got, (w1, w2, w3), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(opt.state_dict()["s/w"], [0.03285, 0.0964], rtol=1e-12)


def test_adam_three_steps_by_hand_with_bias_correction() -> None:
    eps = 1e-8
    opt = Adam(beta1=0.9, beta2=0.999, epsilon=eps)
    got = run_three(opt)
    # t=1: v = 0.1 * G1 = [0.05, -0.1], s = 0.001 * G1**2 = [0.00025, 0.001];
    # v_hat = v / 0.1 = G1, s_hat = s / 0.001 = G1**2: the first step is lr * sign(g).
    w1 = np.array([1.0 - 0.1 * 0.5 / (0.5 + eps), -2.0 + 0.1 * 1.0 / (1.0 + eps)])
    np.testing.assert_allclose(w1, [0.9, -1.9], atol=1e-8)
    # t=2: v = 0.9 * [0.05, -0.1] + 0.1 * [0.2, 0.4] = [0.065, -0.05]
    #      s = 0.999 * [0.00025, 0.001] + 0.001 * [0.04, 0.16] = [0.00028975, 0.001159]
    #      1 - 0.9**2 = 0.19, 1 - 0.999**2 = 0.001999
    v_hat = np.array([0.065, -0.05]) / 0.19
    s_hat = np.array([0.00028975, 0.001159]) / 0.001999
    w2 = w1 - 0.1 * v_hat / (np.sqrt(s_hat) + eps)
    # t=3: v = 0.9 * [0.065, -0.05] + 0.1 * [-0.3, 0.1] = [0.0285, -0.035]
    #      s = 0.999 * [0.00028975, 0.001159] + 0.001 * [0.09, 0.01]
    #        = [0.00037946025, 0.001167841]
    #      1 - 0.9**3 = 0.271, 1 - 0.999**3 = 0.002997001
    v_hat = np.array([0.0285, -0.035]) / 0.271
    s_hat = np.array([0.00037946025, 0.001167841]) / 0.002997001
    w3 = w2 - 0.1 * v_hat / (np.sqrt(s_hat) + eps)
    for g, w in zip(got, (w1, w2, w3), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    state = opt.state_dict()
    np.testing.assert_allclose(state["v/w"], [0.0285, -0.035], rtol=1e-12)
    np.testing.assert_allclose(state["s/w"], [0.00037946025, 0.001167841], rtol=1e-12)
    assert state["t"].dtype == np.int64 and state["t"].shape == () and int(state["t"]) == 3


def test_adam_epsilon_is_added_to_the_corrected_root() -> None:
    # A large epsilon makes its place in the formula visible: with g = 1 at t = 1,
    # v_hat = s_hat = 1, so the step is lr * 1 / (1 + eps) = 0.1 / 1.5.
    params = {"w": np.array([0.0])}
    Adam(epsilon=0.5).step(params, {"w": np.array([1.0])}, LR)
    np.testing.assert_allclose(params["w"], [-0.1 / 1.5], rtol=1e-12)


ALL = [SGD, Momentum, RMSprop, Adam]


def random_problem(seed: int) -> tuple[dict[str, NDArray[np.float32]], list[dict]]:
    rng = np.random.default_rng(seed)
    params = {
        "layer1/W": rng.standard_normal((4, 3)).astype(np.float32),
        "layer1/gamma": rng.standard_normal(3).astype(np.float32),
    }
    grads = [
        {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
        for _ in range(6)
    ]
    return params, grads


@pytest.mark.parametrize("cls", ALL)
def test_float32_in_float32_state_and_params(cls: type[Optimizer]) -> None:
    params, grads = random_problem(0)
    opt = cls()
    for g in grads:
        # An np.float64 rate must not turn the float32 computation into float64.
        opt.step(params, g, np.float64(1e-2))
    assert all(p.dtype == np.float32 for p in params.values())
    for key, value in opt.state_dict().items():
        assert value.dtype == (np.int64 if key == "t" else np.float32), key


@pytest.mark.parametrize("cls", ALL)
def test_step_updates_the_callers_arrays_in_place(cls: type[Optimizer]) -> None:
    model_storage = np.ones(6, dtype=np.float32)
    params = {"w": model_storage[:4], "b": model_storage[4:]}  # views, as a model hands out
    cls().step(params, {"w": np.ones(4, np.float32), "b": np.ones(2, np.float32)}, 0.1)
    assert np.all(model_storage < 1.0)


@pytest.mark.parametrize("cls", ALL)
def test_state_dict_round_trip_continues_bit_for_bit(cls: type[Optimizer]) -> None:
    params, grads = random_problem(1)
    straight = {k: v.copy() for k, v in params.items()}
    opt = cls()
    for g in grads:
        opt.step(straight, g, 3e-2)

    resumed = {k: v.copy() for k, v in params.items()}
    first = cls()
    for g in grads[:2]:
        first.step(resumed, g, 3e-2)
    buf = io.BytesIO()
    np.savez(buf, **first.state_dict())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as saved:
        second = cls()
        second.load_state_dict(dict(saved))
    for g in grads[2:]:
        second.step(resumed, g, 3e-2)

    for k in params:
        assert resumed[k].tobytes() == straight[k].tobytes(), k
    for k, v in opt.state_dict().items():
        assert second.state_dict()[k].tobytes() == v.tobytes(), k


def tile(arrays: dict[str, NDArray[np.float32]]) -> dict[str, NDArray[np.float32]]:
    """Copies of ``arrays`` as views tiling one buffer in order, as ``MLP`` stores them."""
    flat = np.concatenate([a.ravel() for a in arrays.values()])
    out, offset = {}, 0
    for k, a in arrays.items():
        out[k] = flat[offset : offset + a.size].reshape(a.shape)
        offset += a.size
    assert tiled(list(out.values())) is not None
    return out


@pytest.mark.parametrize("chunk_bytes", [optimizers.CHUNK_BYTES, 20])
@pytest.mark.parametrize("cls", ALL)
def test_tiled_parameters_update_in_one_call_with_the_same_bits(
    cls: type[Optimizer], chunk_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20 bytes: chunks of 5 float32 elements, cutting across the parameters' boundaries.
    monkeypatch.setattr(optimizers, "CHUNK_BYTES", chunk_bytes)
    params, grads = random_problem(3)
    separate, together = {k: v.copy() for k, v in params.items()}, tile(params)
    grad_buffer = tile(grads[0])  # one gradient buffer, overwritten every step like a model's
    one_by_one, at_once = cls(), cls()
    for g in grads[:3]:
        one_by_one.step(separate, g, 3e-2)
        for k, v in g.items():
            grad_buffer[k][...] = v
        at_once.step(together, grad_buffer, 3e-2)
    # Resume the tiled run from a saved state: the moments are laid out again, same bits.
    resumed = cls()
    resumed.load_state_dict(at_once.state_dict())
    for g in grads[3:]:
        one_by_one.step(separate, g, 3e-2)
        for k, v in g.items():
            grad_buffer[k][...] = v
        resumed.step(together, grad_buffer, 3e-2)
    for k in params:
        assert together[k].tobytes() == separate[k].tobytes(), k
    expected = one_by_one.state_dict()
    assert list(resumed.state_dict()) == list(expected)
    for k, v in resumed.state_dict().items():
        assert v.tobytes() == expected[k].tobytes(), k


def test_state_dict_is_a_copy() -> None:
    params, grads = random_problem(2)
    opt = Adam()
    opt.step(params, grads[0], 1e-3)
    snapshot = opt.state_dict()
    before = snapshot["v/layer1/W"].copy()
    opt.step(params, grads[1], 1e-3)
    np.testing.assert_array_equal(snapshot["v/layer1/W"], before)


def test_load_state_dict_rejects_unknown_keys_and_missing_t() -> None:
    with pytest.raises(ValueError, match="'t'"):
        Adam().load_state_dict({"v/w": np.zeros(2)})
    with pytest.raises(ValueError, match="velocity/w"):
        Momentum().load_state_dict({"t": np.array(1), "velocity/w": np.zeros(2)})
    with pytest.raises(ValueError, match="s/w"):
        Momentum().load_state_dict({"t": np.array(1), "s/w": np.zeros(2)})


def test_momentum_set_takes_effect_on_the_next_step() -> None:
    params = {"w": np.array(W0)}
    opt = Momentum(momentum=0.9)
    opt.step(params, {"w": np.array(G1)}, LR)  # v1 = [0.05, -0.1], w1 = [0.995, -1.99]
    opt.set(momentum=0.5)
    assert opt.hyperparameters == {"momentum": 0.5}
    opt.step(params, {"w": np.array(G2)}, LR)
    # v2 = 0.5 * [0.05, -0.1] + 0.5 * [0.2, 0.4] = [0.125, 0.15]
    np.testing.assert_allclose(params["w"], [0.995 - 0.0125, -1.99 - 0.015], atol=1e-12)


def test_adam_set_betas_take_effect_on_the_next_step() -> None:
    params = {"w": np.array(W0)}
    opt = Adam()
    opt.step(params, {"w": np.array(G1)}, LR)  # v = [0.05, -0.1], s = [0.00025, 0.001]
    opt.set(beta1=0.5, beta2=0.5, epsilon=1e-6)
    opt.step(params, {"w": np.array(G2)}, LR)
    # t=2: v = 0.5 * [0.05, -0.1] + 0.5 * [0.2, 0.4] = [0.125, 0.15], 1 - 0.5**2 = 0.75
    #      s = 0.5 * [0.00025, 0.001] + 0.5 * [0.04, 0.16] = [0.020125, 0.0805]
    v_hat = np.array([0.125, 0.15]) / 0.75
    s_hat = np.array([0.020125, 0.0805]) / 0.75
    expected = np.array([0.9, -1.9]) - 0.1 * v_hat / (np.sqrt(s_hat) + 1e-6)
    np.testing.assert_allclose(params["w"], expected, rtol=1e-7)


@pytest.mark.parametrize(
    ("opt", "values", "match"),
    [
        (SGD(), {"momentum": 0.9}, "momentum"),
        (Momentum(), {"beta1": 0.9}, "beta1"),
        (Adam(), {"momentum": 0.9}, "momentum"),
        (Adam(), {"beta1": 1.0}, "beta1"),
        (RMSprop(), {"epsilon": 0.0}, "epsilon"),
        (Momentum(), {"momentum": float("nan")}, "momentum"),
    ],
)
def test_set_rejects_foreign_names_and_bad_values(
    opt: Optimizer, values: dict[str, float], match: str
) -> None:
    before = opt.hyperparameters
    with pytest.raises(ValueError, match=match):
        opt.set(**values)
    assert opt.hyperparameters == before


def test_constructor_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="beta2"):
        Adam(beta2=-0.1)


def test_make_optimizer_reads_its_names_from_hparams() -> None:
    hp = {"beta1": 0.8, "beta2": 0.99, "epsilon": 1e-7, "momentum": 0.95, "learning_rate": 1.0}
    assert isinstance(make_optimizer("sgd", hp), SGD)
    assert make_optimizer("momentum", hp).hyperparameters == {"momentum": 0.95}
    assert make_optimizer("rmsprop", hp).hyperparameters == {"beta2": 0.99, "epsilon": 1e-7}
    adam = make_optimizer("adam", hp)
    assert isinstance(adam, Adam)
    assert adam.hyperparameters == {"beta1": 0.8, "beta2": 0.99, "epsilon": 1e-7}
    assert make_optimizer("adam", {}).hyperparameters == {
        "beta1": 0.9,
        "beta2": 0.999,
        "epsilon": 1e-8,
    }
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("adagrad", hp)
