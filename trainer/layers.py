"""Layers with ``forward`` and ``backward`` side by side (micrograd style, NumPy only).

Conventions every layer follows:

- Arrays are ``(batch, features)`` in the layer's dtype; an input of another dtype is refused
  rather than silently up- or down-cast.
- ``params`` and ``grads`` have the same keys; ``grads`` are preallocated and overwritten (not
  accumulated) by ``backward``. Parameters are only ever updated in place, so a dict of views
  built once (``MLP.params``) stays valid.
- A training ``forward`` and every ``backward`` write into buffers the layer owns and reuses
  (no allocation per step, a smaller last batch uses the first rows); the returned array is
  valid until the layer's next training call. An eval ``forward`` returns a fresh array.
- A layer never writes into its input ``x`` or its upstream gradient ``dy``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from trainer.config import HPARAM_SPECS, Init
from trainer.init import Initializer, initializer

Array = NDArray[Any]


def float_dtype(dtype: DTypeLike) -> np.dtype[Any]:
    """``dtype`` as a NumPy dtype; only float32 and float64 are allowed."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


class Layer(ABC):
    """A differentiable map ``y = f(x)`` with its vector-Jacobian product ``dx = dy . df/dx``.

    Attributes:
        params: name -> learnable array (empty for activations).
        grads: name -> d loss / d param, same keys and shapes as ``params``.
        buffers: name -> state that is saved but not learned (batch norm's running stats).
        dtype: float32 or float64, the dtype of every array the layer holds or returns.
    """

    def __init__(self, dtype: DTypeLike) -> None:
        self.dtype = float_dtype(dtype)
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        self._scratch: dict[str, Array] = {}

    @abstractmethod
    def forward(self, x: Array, *, training: bool) -> Array:
        """``x: (batch, n_in) -> y: (batch, n_out)``; ``training`` selects batch statistics,
        dropout masks and the caching ``backward`` needs."""

    @abstractmethod
    def backward(self, dy: Array) -> Array:
        """``dy = dL/dy: (batch, n_out) -> dx = dL/dx: (batch, n_in)``; fills ``grads``.
        Valid only after a training ``forward``."""

    def _buf(self, name: str, shape: tuple[int, ...]) -> Array:
        """A reusable scratch array of ``shape = (batch, ...)``.

        Allocated for the largest batch seen; a smaller batch (an epoch's last) gets a view of
        its first rows, still C-contiguous, so alternating batch sizes allocate nothing.
        """
        b = self._scratch.get(name)
        if b is not None and b.shape == shape:
            return b
        if b is None or b.shape[1:] != shape[1:] or b.shape[0] < shape[0]:
            b = np.empty(shape, self.dtype)
            self._scratch[name] = b
        return b if b.shape[0] == shape[0] else b[: shape[0]]

    def _check(self, x: Array, n: int | None = None) -> None:
        if x.dtype != self.dtype:
            raise TypeError(f"{self!r}: input dtype {x.dtype}, expected {self.dtype}")
        if x.ndim != 2 or (n is not None and x.shape[1] != n):
            want = f"(batch, {n})" if n is not None else "(batch, features)"
            raise ValueError(f"{self!r}: input shape {x.shape}, expected {want}")


class Dense(Layer):
    """Fully connected: ``y = x @ W + b``; ``x: (batch, n_in)``, ``W: (n_in, n_out)``,
    ``b: (n_out,)``.

    Backward: ``dW = x.T @ dy``, ``db = sum_batch dy``, ``dx = dy @ W.T``. Use ``bias=False``
    when batch norm follows: its ``beta`` plays the role of ``b`` and the mean subtraction would
    cancel ``b`` anyway.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        bias: bool = True,
        init: Init | str | Initializer = Init.HE,
        rng: np.random.Generator,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__(dtype)
        self.n_in, self.n_out, self.bias = n_in, n_out, bias
        init_fn = init if callable(init) else initializer(init)
        w = np.ascontiguousarray(init_fn(n_in, n_out, rng, self.dtype), dtype=self.dtype)
        self.params["W"] = w
        self.grads["W"] = np.zeros_like(w)
        if bias:
            self.params["b"] = np.zeros(n_out, self.dtype)
            self.grads["b"] = np.zeros(n_out, self.dtype)
        self._x: Array | None = None

    def forward(self, x: Array, *, training: bool) -> Array:
        self._check(x, self.n_in)
        w = self.params["W"]
        if training:
            y = np.matmul(x, w, out=self._buf("y", (x.shape[0], self.n_out)))
            self._x = x
        else:
            y = x @ w
        if self.bias:
            np.add(y, self.params["b"], out=y)
        return y

    def backward_params(self, dy: Array) -> None:
        """Fill ``grads`` only; the first layer of a network needs no ``dx``, and skipping that
        matmul saves a third of its backward cost."""
        if self._x is None:
            raise RuntimeError(f"{self!r}: backward before a training forward")
        np.matmul(self._x.T, dy, out=self.grads["W"])
        if self.bias:
            np.add.reduce(dy, axis=0, out=self.grads["b"])

    def backward(self, dy: Array) -> Array:
        self.backward_params(dy)
        return np.matmul(dy, self.params["W"].T, out=self._buf("dx", (dy.shape[0], self.n_in)))

    def __repr__(self) -> str:
        return f"Dense({self.n_in}, {self.n_out}, bias={self.bias})"


class BatchNorm(Layer):
    """Batch norm on ``Z`` before the activation, per unit over the batch (course notes).

    In the notes' names, for the layer's input ``z`` (the Dense output ``Z``) of ``m`` rows::

        mu = (1/m) * sum_i z[i]                 sigma2 = (1/m) * sum_i (z[i] - mu)**2
        z_norm = (z - mu) / sqrt(sigma2 + epsilon)
        z_tilde = gamma * z_norm + beta

    ``z, z_tilde: (m, n)``; ``gamma, beta, mu, sigma2: (n,)``. The layer's ``x`` and ``y`` are
    ``z`` and ``z_tilde``; ``epsilon`` is the attribute ``eps``.

    Training uses the batch's ``mu``/``sigma2`` and updates the running averages by an
    exponentially weighted average, ``running = momentum * running + (1 - momentum) * batch``
    (the notes' convention: ``momentum`` weighs the OLD value, unlike PyTorch's). The running
    variance averages the same biased batch variance ``sigma2`` used to normalise (PyTorch
    averages the unbiased one). Eval uses the running averages in place of ``mu`` and
    ``sigma2``, so a single example works. ``eps`` defaults to 1e-5 (PyTorch's), inside the
    square root as the notes' test-time formula. Running stats start at mean 0, variance 1.
    """

    def __init__(
        self, n: int, *, momentum: float = 0.9, eps: float = 1e-5, dtype: DTypeLike = np.float32
    ) -> None:
        super().__init__(dtype)
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.n, self.eps = n, float(eps)
        self.momentum = momentum
        self.params["gamma"] = np.ones(n, self.dtype)
        self.params["beta"] = np.zeros(n, self.dtype)
        self.grads["gamma"] = np.zeros(n, self.dtype)
        self.grads["beta"] = np.zeros(n, self.dtype)
        self.buffers["running_mean"] = np.zeros(n, self.dtype)
        self.buffers["running_var"] = np.ones(n, self.dtype)
        self.batch_mean: Array | None = None  # mu of the last training batch
        self.batch_var: Array | None = None  # sigma2 of the last training batch
        self._z_centered: Array | None = None  # z - mu
        self._inv_std: Array | None = None  # 1 / sqrt(sigma2 + epsilon)
        # Per-unit (n,) vectors, reused every step: mu, sigma2, inv_std and the factors below.
        self._vec = {
            k: np.empty(n, self.dtype) for k in ("mu", "sigma2", "inv_std", "k", "c", "d")
        }

    @property
    def momentum(self) -> float:
        """Weight of the old value in the running averages (hyperparameter ``bn_momentum``)."""
        return self._momentum

    @momentum.setter
    def momentum(self, value: float) -> None:
        self._momentum = float(HPARAM_SPECS["bn_momentum"].check(value))

    def forward(self, x: Array, *, training: bool) -> Array:
        """``z = x: (m, n) -> z_tilde: (m, n)``, with the batch's ``mu`` and ``sigma2`` when
        ``training``, else with the running averages."""
        self._check(x, self.n)
        z = x
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not training:
            # z_tilde = gamma * (z - mu) / sqrt(sigma2 + epsilon) + beta with the running mu and
            # sigma2, folded into one scale and one shift per unit.
            scale = gamma / np.sqrt(self.buffers["running_var"] + self.eps)
            return z * scale + (beta - self.buffers["running_mean"] * scale)
        m, vec = z.shape[0], self._vec
        mu = np.add.reduce(z, axis=0, out=vec["mu"])  # ufunc methods skip np.mean's wrapper
        mu *= 1.0 / m
        z_centered = np.subtract(z, mu, out=self._buf("z_centered", z.shape))
        # sigma2 = (1/m) * sum_i (z[i] - mu)**2, without an (m, n) temporary
        sigma2 = np.einsum("ij,ij->j", z_centered, z_centered, out=vec["sigma2"])
        sigma2 *= 1.0 / m
        inv_std = np.add(sigma2, self.eps, out=vec["inv_std"])
        np.sqrt(inv_std, out=inv_std)
        np.divide(1.0, inv_std, out=inv_std)
        # z_tilde = gamma * z_norm + beta, z_norm = z_centered * inv_std. Keep z_centered and
        # inv_std instead of z_norm: z_tilde and backward both fold inv_std into per-unit
        # factors, which saves one full pass over (m, n).
        scale = np.multiply(gamma, inv_std, out=vec["k"])
        z_tilde: Array = np.multiply(z_centered, scale, out=self._buf("z_tilde", z.shape))
        np.add(z_tilde, beta, out=z_tilde)
        mom, tmp = self._momentum, vec["c"]
        for running, batch in (
            (self.buffers["running_mean"], mu),
            (self.buffers["running_var"], sigma2),
        ):
            running *= mom
            running += np.multiply(batch, 1.0 - mom, out=tmp)
        self.batch_mean, self.batch_var = mu, sigma2
        self._z_centered, self._inv_std = z_centered, inv_std
        return z_tilde

    def backward(self, dy: Array) -> Array:
        """``dy = dL/dz_tilde -> dx = dL/dz``, fused (sums over the batch)::

            dbeta = sum(dy)        dgamma = sum(dy * z_norm)
            dx = gamma * inv_std / m * (m * dy - sum(dy) - z_norm * sum(dy * z_norm))

        with ``inv_std = 1 / sqrt(sigma2 + epsilon)`` and ``z_norm = (z - mu) * inv_std``: two
        reductions and four passes over ``(m, n)``; every other factor is per unit ``(n,)``."""
        if self._z_centered is None or self._inv_std is None:
            raise RuntimeError(f"{self!r}: backward before a training forward")
        z_centered, inv_std, vec = self._z_centered, self._inv_std, self._vec
        m = dy.shape[0]
        dbeta = np.add.reduce(dy, axis=0, out=self.grads["beta"])
        # dgamma = sum(dy * z_norm) = sum(dy * z_centered) * inv_std
        dgamma = np.einsum("ij,ij->j", dy, z_centered, out=self.grads["gamma"])
        dgamma *= inv_std
        k = np.multiply(self.params["gamma"], inv_std, out=vec["k"])
        # dx = k*dy - c*z_centered - d with c = k*inv_std*dgamma/m and d = k*dbeta/m.
        c = np.multiply(k, inv_std, out=vec["c"])
        c *= dgamma
        c *= 1.0 / m
        d = np.multiply(k, dbeta, out=vec["d"])
        d *= 1.0 / m
        dx: Array = np.multiply(dy, k, out=self._buf("dx", dy.shape))
        tmp = np.multiply(z_centered, c, out=self._buf("tmp", dy.shape))
        np.subtract(dx, tmp, out=dx)
        np.subtract(dx, d, out=dx)
        return dx

    def __repr__(self) -> str:
        return f"BatchNorm({self.n}, momentum={self._momentum:g}, eps={self.eps:g})"
