"""The MLP: whole-network gradient check, name-keyed state, eval semantics, dtypes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from trainer.activations import Dropout
from trainer.gradcheck import check_params
from trainer.layers import BatchNorm
from trainer.losses import softmax_cross_entropy
from trainer.model import MLP
from trainer.optimizers import tiled


def make(seed: int = 0, **overrides: Any) -> MLP:
    kw: dict[str, Any] = dict(
        hidden_units=6,
        num_layers=2,
        activation="relu",
        batch_norm=True,
        bn_momentum=0.9,
        keep_prob=1.0,
        init="he",
        rng=np.random.default_rng(seed),
        dtype=np.float64,
    )
    kw.update(overrides)
    return MLP(4, 3, **kw)


def data(n: int = 10, seed: int = 1, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype(dtype), rng.integers(0, 3, n)


@pytest.mark.parametrize(
    ("activation", "batch_norm"),
    [("tanh", True), ("relu", True), ("sigmoid", True), ("tanh", False)],
)
def test_whole_network_gradcheck(activation, batch_norm) -> None:
    model = make(activation=activation, batch_norm=batch_norm, init="xavier")
    x, y = data(8)
    gen = np.random.default_rng(5)
    for name, p in model.params.items():  # move gamma/beta/b away from 1/0
        if not name.endswith("/W"):
            p += 0.3 * gen.standard_normal(p.shape)
    l2 = 0.05
    model.loss_and_grads(x, y, l2=l2)
    analytic = {k: g.copy() for k, g in model.grads.items()}
    errors = check_params(lambda: model.loss_and_grads(x, y, l2=l2)[0], model.params, analytic)
    assert set(errors) == set(model.params)
    bad = {k: v for k, v in errors.items() if not v < 1e-6}
    assert not bad, bad


def test_l2_adds_the_penalty_to_loss_and_weight_grads_only() -> None:
    model = make()
    x, y = data()
    base, _ = model.loss_and_grads(x, y, l2=0.0)
    g0 = {k: g.copy() for k, g in model.grads.items()}
    lam = 0.3
    pen, _ = model.loss_and_grads(x, y, l2=lam)
    weights = [p for k, p in model.params.items() if k.endswith("/W")]
    assert pen - base == pytest.approx(lam / 2 * sum(float(np.sum(w**2)) for w in weights))
    for k, g in model.grads.items():
        extra = lam * model.params[k] if k.endswith("/W") else 0.0
        np.testing.assert_allclose(g, g0[k] + extra, rtol=1e-10, atol=1e-12)


def test_parameter_buffer_and_gradient_names() -> None:
    bn = make()
    assert set(bn.params) == {
        "layer1/W",
        "layer1/gamma",
        "layer1/beta",
        "layer2/W",
        "layer2/gamma",
        "layer2/beta",
        "out/W",
        "out/b",
    }
    assert set(bn.grads) == set(bn.params)
    assert set(bn.buffers) == {
        "layer1/running_mean",
        "layer1/running_var",
        "layer2/running_mean",
        "layer2/running_var",
    }
    plain = make(batch_norm=False, num_layers=1)
    assert set(plain.params) == {"layer1/W", "layer1/b", "out/W", "out/b"}
    assert plain.buffers == {}
    assert bn.params["layer1/W"].shape == (4, 6)
    assert bn.params["out/W"].shape == (6, 3)


def test_params_are_the_layers_arrays() -> None:
    model = make()
    x, _ = data()
    before = model.forward(x, training=False)
    model.params["out/b"] += 1.0  # an optimizer's in-place update
    np.testing.assert_allclose(model.forward(x, training=False), before + 1.0, rtol=1e-12)


def test_parameters_and_gradients_each_tile_one_buffer() -> None:
    model = make()
    flat_params = tiled(list(model.params.values()))
    flat_grads = tiled(list(model.grads.values()))
    assert flat_params is not None and flat_grads is not None
    assert flat_params.size == flat_grads.size == model.num_params
    assert not np.shares_memory(flat_params, flat_grads)


def test_float32_model_keeps_float32_everywhere() -> None:
    model = make(dtype=np.float32, keep_prob=0.7)
    x, y = data(dtype=np.float64)  # float64 input is cast at the door, never upcasting
    loss, logits = model.loss_and_grads(x, y, l2=0.01)
    assert isinstance(loss, float) and np.isfinite(loss)
    assert logits.dtype == np.float32
    for group in (model.params, model.grads, model.buffers, model.state_dict()):
        for name, arr in group.items():
            assert arr.dtype == np.float32, name
    assert model.forward(x, training=True).dtype == np.float32
    assert model.forward(x, training=False).dtype == np.float32
    assert model.predict_proba(x).dtype == np.float32
    for layer in model._layers:
        for buf in layer._scratch.values():
            assert buf.dtype == np.float32, layer


def test_evaluate_uses_no_randomness_and_changes_no_buffer() -> None:
    model = make(keep_prob=0.5)
    x, y = data(25)
    for _ in range(3):
        model.loss_and_grads(x, y, l2=0.0)
    rng = model._layers[3].rng  # type: ignore[attr-defined]
    state = rng.bit_generator.state
    buffers = {k: v.copy() for k, v in model.buffers.items()}
    loss, acc = model.evaluate(x, y)
    assert rng.bit_generator.state == state
    for k, v in buffers.items():
        np.testing.assert_array_equal(model.buffers[k], v)
    logits = model.forward(x, training=False)
    assert loss == pytest.approx(softmax_cross_entropy(logits, y)[0], rel=1e-12)
    assert acc == pytest.approx(np.mean(np.argmax(logits, axis=1) == y))
    assert model.evaluate(x, y, batch_size=4) == pytest.approx((loss, acc), rel=1e-12)


def test_one_example_in_eval_mode() -> None:
    model = make()
    x, y = data(12)
    model.loss_and_grads(x, y, l2=0.0)
    probs = model.predict_proba(x)
    one = model.predict_proba(x[:1])
    assert one.shape == (1, 3)
    np.testing.assert_allclose(one[0], probs[0], rtol=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)


def test_z_stats_describe_the_pre_bn_z_of_the_last_training_forward() -> None:
    model = make(num_layers=2)
    assert model.z_stats() == {}
    x, y = data(16)
    model.loss_and_grads(x, y, l2=0.0)
    stats = model.z_stats()
    assert set(stats) == {"layer1/z_mean", "layer1/z_std", "layer2/z_mean", "layer2/z_std"}
    z1 = x @ model.params["layer1/W"]
    assert stats["layer1/z_mean"] == pytest.approx(float(z1.mean()), rel=1e-12)
    assert stats["layer1/z_std"] == pytest.approx(float(z1.std()), rel=1e-12)
    model.forward(2.0 * x, training=False)  # eval passes do not count
    assert model.z_stats() == stats


@pytest.mark.parametrize("batch_norm", [True, False])
def test_z_stats_of_a_float32_model_are_those_of_its_z(batch_norm: bool) -> None:
    # With batch norm they come from its per-unit statistics, without from Z itself.
    model = make(dtype=np.float32, batch_norm=batch_norm)
    x, y = data(16, dtype=np.float32)
    model.loss_and_grads(x, y, l2=0.0)
    z1 = x.astype(np.float64) @ model.params["layer1/W"].astype(np.float64)
    stats = model.z_stats()
    assert stats["layer1/z_mean"] == pytest.approx(float(z1.mean()), rel=1e-5, abs=1e-6)
    assert stats["layer1/z_std"] == pytest.approx(float(z1.std()), rel=1e-5)


def test_setters_reach_the_layers_and_validate() -> None:
    model = make(keep_prob=1.0)
    x, _ = data()
    a = model.forward(x, training=True)
    np.testing.assert_allclose(model.forward(x, training=True), a, rtol=1e-12)
    model.set_keep_prob(0.5)
    assert not np.allclose(model.forward(x, training=True), a)  # masks now drawn per step
    assert all(layer.keep_prob == 0.5 for layer in model._layers if isinstance(layer, Dropout))
    model.set_bn_momentum(0.99)
    assert all(layer.momentum == 0.99 for layer in model._layers if isinstance(layer, BatchNorm))
    with pytest.raises(ValueError, match="keep_prob"):
        model.set_keep_prob(1.5)
    with pytest.raises(ValueError, match="bn_momentum"):
        model.set_bn_momentum(-0.1)


def test_same_seed_same_model_and_masks() -> None:
    x, y = data()
    a, b = make(seed=3, keep_prob=0.6), make(seed=3, keep_prob=0.6)
    (loss_a, logits_a), (loss_b, logits_b) = (m.loss_and_grads(x, y, l2=0.0) for m in (a, b))
    assert loss_a == loss_b
    np.testing.assert_array_equal(logits_a, logits_b)
    for k in a.params:
        np.testing.assert_array_equal(a.grads[k], b.grads[k])
    assert not np.array_equal(make(seed=4).params["layer1/W"], a.params["layer1/W"])


def test_state_dict_round_trip() -> None:
    x, y = data(20)
    src = make(seed=1)
    for _ in range(3):
        src.loss_and_grads(x, y, l2=0.0)
        for k, p in src.params.items():
            p -= 0.1 * src.grads[k]
    state = src.state_dict()
    assert set(state) == set(src.params) | set(src.buffers)
    dst = make(seed=2)
    views = dst.params
    dst.load_state_dict(state)
    np.testing.assert_array_equal(dst.forward(x, training=False), src.forward(x, training=False))
    for k, v in views.items():
        assert v is dst.params[k]  # loaded in place: optimizer views stay valid
    state["out/b"] += 100.0  # state_dict hands out copies
    assert not np.any(src.params["out/b"] >= 100.0)


def test_load_state_dict_validates_before_copying() -> None:
    model = make()
    good = model.state_dict()
    bad_keys = {k: v for k, v in good.items() if k != "out/b"} | {"out/bias": good["out/b"]}
    with pytest.raises(ValueError, match=r"missing \['out/b'\].*unexpected \['out/bias'\]"):
        model.load_state_dict(bad_keys)
    bad_shape = dict(good, **{"layer1/W": np.zeros((4, 7)), "out/b": good["out/b"] + 1.0})
    with pytest.raises(ValueError, match="layer1/W.*shape"):
        model.load_state_dict(bad_shape)
    np.testing.assert_array_equal(model.params["out/b"], good["out/b"])  # nothing copied


def test_repr_prints_the_architecture() -> None:
    text = repr(make(num_layers=2, activation="tanh"))
    assert "layer1: Dense(4, 6, bias=False) -> BatchNorm(6" in text
    assert "Tanh() -> Dropout(keep_prob=1)" in text
    assert "out: Dense(6, 3, bias=True)" in text


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"num_layers": 0}, "num_layers"),
        ({"activation": "gelu"}, "activation"),
        ({"init": "zeros"}, "init"),
        ({"keep_prob": 0.0}, "keep_prob"),
        ({"dtype": np.float16}, "float32 or float64"),
    ],
)
def test_bad_hyperparameters_are_refused(override, match) -> None:
    with pytest.raises(ValueError, match=match):
        make(**override)
