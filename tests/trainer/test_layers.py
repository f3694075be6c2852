"""Layers and initialisers: float64 finite-difference checks, batch norm and dropout semantics."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.activations import Dropout, ReLU, Sigmoid, Tanh, sigmoid
from trainer.gradcheck import check_layer
from trainer.init import he, initializer, xavier
from trainer.layers import BatchNorm, Dense, Layer

TOL = 1e-6
F64 = np.float64


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def assert_grads_ok(errors: dict[str, float]) -> None:
    assert errors, "nothing was checked"
    bad = {k: v for k, v in errors.items() if not v < TOL}
    assert not bad, f"relative errors above {TOL}: {bad}"


# ---- initialisers -------------------------------------------------------------------------


@pytest.mark.parametrize(("fn", "var"), [(he, 2.0), (xavier, 1.0)])
def test_init_variance_and_dtype(fn, var, rng) -> None:
    w = fn(400, 300, rng, np.float32)
    assert w.shape == (400, 300)
    assert w.dtype == np.float32
    assert abs(w.mean()) < 0.02 * np.sqrt(var / 400)  # the mean's std is ~0.003 sigma
    assert np.std(w) == pytest.approx(np.sqrt(var / 400), rel=0.01)


def test_init_reproducible_from_seed() -> None:
    a = he(5, 4, np.random.default_rng(7), F64)
    b = he(5, 4, np.random.default_rng(7), F64)
    c = he(5, 4, np.random.default_rng(8), F64)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_initializer_lookup() -> None:
    assert initializer("he") is he
    assert initializer("xavier") is xavier
    with pytest.raises(ValueError, match="xavier"):
        initializer("glorot")


# ---- gradient checks ----------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradcheck(bias, rng) -> None:
    layer = Dense(5, 4, bias=bias, init="xavier", rng=rng, dtype=F64)
    if bias:
        layer.params["b"][:] = rng.standard_normal(4)
    assert set(layer.params) == ({"W", "b"} if bias else {"W"})
    assert_grads_ok(check_layer(layer, rng.standard_normal((6, 5)), rng=rng))


def test_batchnorm_gradcheck_training(rng) -> None:
    layer = BatchNorm(4, momentum=0.9, dtype=F64)
    layer.params["gamma"][:] = rng.uniform(0.5, 2.0, 4)
    layer.params["beta"][:] = rng.standard_normal(4)
    x = 3.0 * rng.standard_normal((8, 4)) + 1.5
    errors = check_layer(layer, x, rng=rng)
    assert set(errors) == {"x", "gamma", "beta"}
    assert_grads_ok(errors)


def test_relu_gradcheck_away_from_kink(rng) -> None:
    # |x| >= 0.1 keeps every +-1e-6 perturbation on one side of the kink.
    x = rng.uniform(0.1, 2.0, (6, 5)) * rng.choice([-1.0, 1.0], (6, 5))
    assert_grads_ok(check_layer(ReLU(F64), x, rng=rng))


@pytest.mark.parametrize("cls", [Tanh, Sigmoid])
def test_smooth_activation_gradcheck(cls, rng) -> None:
    assert_grads_ok(check_layer(cls(F64), 2.0 * rng.standard_normal((6, 5)), rng=rng))


def test_dropout_gradcheck_with_fixed_mask(rng) -> None:
    drop_rng = np.random.default_rng(99)
    state = drop_rng.bit_generator.state
    layer = Dropout(0.6, rng=drop_rng, dtype=F64)

    def reset() -> None:
        drop_rng.bit_generator.state = state

    x = rng.standard_normal((6, 5))
    assert_grads_ok(check_layer(layer, x, rng=rng, reset=reset))
    reset()
    y = layer.forward(x, training=True)
    assert np.any(y == 0.0), "the mask dropped nothing, so the check proved little"


# ---- batch norm semantics -----------------------------------------------------------------


def test_batchnorm_training_uses_batch_statistics(rng) -> None:
    layer = BatchNorm(3, dtype=F64)
    x = rng.standard_normal((64, 3)) * np.array([0.5, 3.0, 10.0]) + np.array([-2.0, 5.0, 40.0])
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=0), 1.0, rtol=1e-4)  # eps shrinks it by ~eps/var
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + layer.eps)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_batchnorm_eval_uses_running_averages(rng) -> None:
    layer = BatchNorm(3, dtype=F64)
    mean, var = np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.25, 9.0])
    gamma, beta = np.array([2.0, 0.5, -1.0]), np.array([0.1, 0.2, 0.3])
    layer.buffers["running_mean"][:] = mean
    layer.buffers["running_var"][:] = var
    layer.params["gamma"][:] = gamma
    layer.params["beta"][:] = beta
    x = rng.standard_normal((5, 3))
    y = layer.forward(x, training=False)
    np.testing.assert_allclose(y, gamma * (x - mean) / np.sqrt(var + layer.eps) + beta, rtol=1e-12)
    np.testing.assert_array_equal(layer.buffers["running_mean"], mean)
    np.testing.assert_array_equal(layer.buffers["running_var"], var)


def test_batchnorm_running_averages_follow_ewa_after_two_batches(rng) -> None:
    mom = 0.8
    layer = BatchNorm(4, momentum=mom, dtype=F64)
    x1 = rng.standard_normal((10, 4)) * 2.0 + 1.0
    x2 = rng.standard_normal((7, 4)) * 0.5 - 3.0
    layer.forward(x1, training=True)
    layer.forward(x2, training=True)
    exp_mean = mom * (mom * 0.0 + (1 - mom) * x1.mean(0)) + (1 - mom) * x2.mean(0)
    exp_var = mom * (mom * 1.0 + (1 - mom) * x1.var(0)) + (1 - mom) * x2.var(0)
    np.testing.assert_allclose(layer.buffers["running_mean"], exp_mean, rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], exp_var, rtol=1e-12)


def test_batchnorm_one_example_in_eval_mode(rng) -> None:
    layer = BatchNorm(4, dtype=F64)
    for _ in range(20):
        layer.forward(rng.standard_normal((16, 4)) * 3.0 + 2.0, training=True)
    batch = rng.standard_normal((5, 4))
    before = {k: v.copy() for k, v in layer.buffers.items()}
    one = layer.forward(batch[:1], training=False)
    assert one.shape == (1, 4)
    assert np.all(np.isfinite(one))
    # Eval treats examples independently: one example equals its row in a batch.
    np.testing.assert_allclose(one[0], layer.forward(batch, training=False)[0], rtol=1e-12)
    for k, v in before.items():
        np.testing.assert_array_equal(layer.buffers[k], v)


def test_batchnorm_momentum_is_mutable_and_validated(rng) -> None:
    layer = BatchNorm(2, momentum=0.9, dtype=F64)
    layer.momentum = 0.5
    x = rng.standard_normal((8, 2))
    layer.forward(x, training=True)
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.5 * x.mean(0), rtol=1e-12)
    with pytest.raises(ValueError, match="bn_momentum"):
        layer.momentum = 1.0


# ---- dropout semantics --------------------------------------------------------------------


def test_dropout_identity_in_eval_and_at_keep_prob_one(rng) -> None:
    drop_rng = np.random.default_rng(3)
    state = drop_rng.bit_generator.state
    x = rng.standard_normal((4, 3))
    assert Dropout(0.5, rng=drop_rng, dtype=F64).forward(x, training=False) is x
    layer = Dropout(1.0, rng=drop_rng, dtype=F64)
    assert layer.forward(x, training=True) is x
    g = rng.standard_normal((4, 3))
    assert layer.backward(g) is g
    assert drop_rng.bit_generator.state == state, "an identity dropout drew random numbers"


def test_dropout_is_inverted_and_keep_prob_mutable() -> None:
    layer = Dropout(0.8, rng=np.random.default_rng(5), dtype=F64)
    x = np.ones((200, 500))
    y = layer.forward(x, training=True)
    kept = y != 0.0
    assert kept.mean() == pytest.approx(0.8, abs=0.01)
    assert np.all(y[kept] == y[kept][0])  # one scale for every kept unit...
    assert y[kept][0] == pytest.approx(1.0 / 0.8, rel=1e-4)  # ...within 2**-16 of 1/keep_prob
    assert y.mean() == pytest.approx(1.0, abs=0.02)
    np.testing.assert_array_equal(layer.backward(x), y)  # dx = dy * mask / keep_prob
    layer.keep_prob = 0.3
    assert (layer.forward(x, training=True) != 0.0).mean() == pytest.approx(0.3, abs=0.01)
    with pytest.raises(ValueError, match="keep_prob"):
        layer.keep_prob = 0.0


# ---- numerics and dtypes ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable(dtype) -> None:
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        y = sigmoid(x)
    assert y.dtype == dtype
    assert np.all(np.isfinite(y))
    assert y[0] == 0.0 and y[2] == 0.5 and y[4] == 1.0
    assert y[1] == pytest.approx(np.exp(-50.0), rel=1e-5)  # tiny values keep precision


def _float32_layers(rng: np.random.Generator) -> list[tuple[Layer, int]]:
    return [
        (Dense(6, 4, bias=True, rng=rng), 6),
        (BatchNorm(6), 6),
        (ReLU(), 6),
        (Tanh(), 6),
        (Sigmoid(), 6),
        (Dropout(0.5, rng=rng), 6),
    ]


def test_float32_layers_stay_float32(rng) -> None:
    for layer, n_in in _float32_layers(rng):
        x = rng.standard_normal((5, n_in), dtype=np.float32)
        for training in (True, False):
            assert layer.forward(x, training=training).dtype == np.float32, layer
        y = layer.forward(x, training=True)
        assert layer.backward(np.ones_like(y)).dtype == np.float32, layer
        for arr in [*layer.params.values(), *layer.grads.values(), *layer.buffers.values()]:
            assert arr.dtype == np.float32, layer


def test_layers_refuse_other_dtypes_and_shapes(rng) -> None:
    layer = Dense(3, 2, rng=rng)
    with pytest.raises(TypeError, match="float64"):
        layer.forward(np.zeros((2, 3)), training=True)
    with pytest.raises(ValueError, match="shape"):
        layer.forward(np.zeros((2, 4), np.float32), training=True)


def test_backward_before_training_forward_raises(rng) -> None:
    for layer, _ in _float32_layers(rng):
        with pytest.raises(RuntimeError, match="before a training forward"):
            layer.backward(np.ones((5, 6), np.float32))


def test_forward_and_backward_do_not_touch_inputs(rng) -> None:
    for layer, n_in in _float32_layers(rng):
        x = rng.standard_normal((5, n_in), dtype=np.float32)
        x0 = x.copy()
        y = layer.forward(x, training=True)
        dy = np.ones_like(y)
        layer.backward(dy)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(dy, 1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Dense(6, 4, bias=True, rng=np.random.default_rng(0)),
        lambda: BatchNorm(6),
        ReLU,
        Tanh,
        Sigmoid,
    ],
)
def test_a_smaller_batch_after_a_larger_one_computes_as_in_a_fresh_layer(make, rng) -> None:
    # The last batch of an epoch is smaller: it reuses the first rows of the buffers.
    big, small = rng.standard_normal((9, 6), np.float32), rng.standard_normal((5, 6), np.float32)
    used, fresh = make(), make()
    used.backward(np.ones_like(used.forward(big, training=True)))
    y = used.forward(small, training=True).copy()
    dy = rng.standard_normal(y.shape, np.float32)
    dx = used.backward(dy).copy()
    assert y.tobytes() == fresh.forward(small, training=True).tobytes()
    assert dx.tobytes() == fresh.backward(dy).tobytes()
    for name, g in used.grads.items():
        assert g.tobytes() == fresh.grads[name].tobytes(), name


def test_repr_names_the_layer(rng) -> None:
    assert repr(Dense(3, 2, bias=False, rng=rng)) == "Dense(3, 2, bias=False)"
    assert repr(BatchNorm(4, momentum=0.99)) == "BatchNorm(4, momentum=0.99, eps=1e-05)"
    assert repr(Dropout(0.5, rng=rng)) == "Dropout(keep_prob=0.5)"
