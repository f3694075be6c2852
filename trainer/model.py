"""The multilayer perceptron trained by every trial.

Hidden block ``l`` (1-based, named ``layer{l}``)::

    Dense(no bias if batch norm) -> [BatchNorm] -> activation -> Dropout

then ``out: Dense(with bias)`` giving logits for softmax cross-entropy. Every block carries a
Dropout layer, even at ``keep_prob == 1`` where it is the identity and draws nothing, because
``keep_prob`` is adjustable on a running trial and the architecture must not change.

Parameters, gradients and buffers are exposed flat and name-keyed (``"layer1/W"``,
``"layer1/gamma"``, ``"layer1/running_mean"``, ``"out/b"``...). The arrays are the layers' own,
so an optimizer updating ``model.params[name]`` in place updates the model. The parameters are
views tiling one contiguous buffer in that order, and the gradients another, so an optimizer
can update all of them with one call per operation.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from trainer.activations import Dropout, ReLU, Sigmoid, Tanh
from trainer.config import HPARAM_SPECS, Activation, Init
from trainer.layers import BatchNorm, Dense, Layer, float_dtype
from trainer.losses import check_labels, log_softmax, softmax, softmax_cross_entropy

Array = NDArray[Any]

_ACTIVATIONS: dict[Activation, type[Layer]] = {
    Activation.RELU: ReLU,
    Activation.TANH: Tanh,
    Activation.SIGMOID: Sigmoid,
}


def _choice(name: str, value: Enum | str) -> str:
    """A categorical hyperparameter checked against its spec (the error lists the choices)."""
    return str(HPARAM_SPECS[name].check(value.value if isinstance(value, Enum) else value))


class MLP:
    """Softmax classifier ``n_in -> hidden_units x num_layers -> n_out``.

    Args:
        n_in: input features.
        n_out: classes ``C``.
        hidden_units, num_layers, activation, batch_norm, bn_momentum, keep_prob, init: the
            hyperparameters of the same names (ranges in :data:`trainer.config.HPARAM_SPECS`).
        rng: the trial's seeded generator; initial weights and dropout masks are drawn from it.
        dtype: float32 (fast, the default) or float64 (gradient checks); every parameter,
            gradient, buffer and output has this dtype.

    Raises:
        ValueError: a hyperparameter outside its range (``HParamError``) or a bad size.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        hidden_units: int,
        num_layers: int,
        activation: Activation | str,
        batch_norm: bool,
        bn_momentum: float,
        keep_prob: float,
        init: Init | str,
        rng: np.random.Generator,
        dtype: DTypeLike = np.float32,
    ) -> None:
        if n_in < 1 or n_out < 1:
            raise ValueError(f"n_in and n_out must be >= 1, got {n_in}, {n_out}")
        self.n_in, self.n_out = n_in, n_out
        self.hidden_units = HPARAM_SPECS["hidden_units"].check(hidden_units)
        self.num_layers = HPARAM_SPECS["num_layers"].check(num_layers)
        self.activation = Activation(_choice("activation", activation))
        self.init = Init(_choice("init", init))
        self.batch_norm: bool = HPARAM_SPECS["batch_norm"].check(batch_norm)
        self.dtype = float_dtype(dtype)
        self._bn_momentum: float = HPARAM_SPECS["bn_momentum"].check(bn_momentum)
        self._keep_prob: float = HPARAM_SPECS["keep_prob"].check(keep_prob)
        dt = self.dtype

        self.blocks: list[tuple[str, list[Layer]]] = []
        fan_in = n_in
        for i in range(1, self.num_layers + 1):
            block: list[Layer] = [
                Dense(
                    fan_in,
                    self.hidden_units,
                    bias=not self.batch_norm,
                    init=self.init,
                    rng=rng,
                    dtype=dt,
                )
            ]
            if self.batch_norm:
                block.append(BatchNorm(self.hidden_units, momentum=self._bn_momentum, dtype=dt))
            block.append(_ACTIVATIONS[self.activation](dt))
            block.append(Dropout(self._keep_prob, rng=rng, dtype=dt))
            self.blocks.append((f"layer{i}", block))
            fan_in = self.hidden_units
        self.blocks.append(
            ("out", [Dense(fan_in, n_out, bias=True, init=self.init, rng=rng, dtype=dt)])
        )

        self._layers: list[Layer] = [layer for _, block in self.blocks for layer in block]
        self._tile_parameters()
        self._params = self._collect("params")
        self._grads = self._collect("grads")
        self._buffers = self._collect("buffers")
        self._dense = [
            (layer.params["W"], layer.grads["W"])
            for _, block in self.blocks
            for layer in block
            if isinstance(layer, Dense)
        ]
        self._l2_tmp: list[Array] = [np.empty_like(w) for w, _ in self._dense]
        self._z: dict[str, Array] = {}

    def _tile_parameters(self) -> None:
        """Move every parameter into one contiguous 1-D buffer, in :attr:`params` order, and
        every gradient into another laid out alike; the layers keep views into them.

        An optimizer then updates all parameters with one ufunc call per operation
        (:func:`trainer.optimizers.tiled`) instead of one per operation and parameter.
        """
        entries = [(layer, key) for layer in self._layers for key in layer.params]
        total = sum(layer.params[key].size for layer, key in entries)
        flat_params = np.empty(total, self.dtype)
        flat_grads = np.zeros(total, self.dtype)
        offset = 0
        for layer, key in entries:
            p = layer.params[key]
            view = flat_params[offset : offset + p.size].reshape(p.shape)
            view[...] = p
            layer.params[key] = view
            layer.grads[key] = flat_grads[offset : offset + p.size].reshape(p.shape)
            offset += p.size

    def _collect(self, attr: str) -> dict[str, Array]:
        return {
            f"{name}/{key}": arr
            for name, block in self.blocks
            for layer in block
            for key, arr in getattr(layer, attr).items()
        }

    @property
    def params(self) -> dict[str, Array]:
        """Name -> parameter array (the layers' own arrays: update in place)."""
        return dict(self._params)

    @property
    def grads(self) -> dict[str, Array]:
        """Name -> gradient of the last :meth:`backward`, same keys as :attr:`params`."""
        return dict(self._grads)

    @property
    def buffers(self) -> dict[str, Array]:
        """Name -> batch norm running statistics (saved, not learned)."""
        return dict(self._buffers)

    @property
    def num_params(self) -> int:
        """Number of learnable scalars."""
        return sum(p.size for p in self._params.values())

    def _as_input(self, x: Array) -> Array:
        x = np.ascontiguousarray(x, dtype=self.dtype)  # no copy when already right
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"input must be (batch, {self.n_in}), got {x.shape}")
        return x

    def _forward(self, x: Array, training: bool) -> Array:
        for name, block in self.blocks:
            for j, layer in enumerate(block):
                x = layer.forward(x, training=training)
                if training and j == 0 and name != "out":
                    self._z[name] = x  # the Dense output Z, pre-BN; no layer writes into it
        return x

    def forward(self, x: Array, *, training: bool) -> Array:
        """Logits ``(batch, n_out)`` for ``x: (batch, n_in)`` (cast to the model's dtype).

        Training mode uses batch statistics, updates running averages, draws dropout masks
        and caches what :meth:`backward` needs; eval mode does none of that.
        """
        return self._forward(self._as_input(x), training).copy()

    def backward(self, dlogits: Array) -> None:
        """Back-propagate ``dlogits = dL/dlogits: (batch, n_out)``, overwriting :attr:`grads`.

        Valid after a training :meth:`forward`; no gradient is computed for the input.
        """
        if dlogits.dtype != self.dtype:
            raise TypeError(f"dlogits dtype {dlogits.dtype}, expected {self.dtype}")
        dy = dlogits
        for layer in reversed(self._layers[1:]):
            dy = layer.backward(dy)
        first = self._layers[0]
        assert isinstance(first, Dense)  # by construction: every network starts with Dense
        first.backward_params(dy)

    def loss_and_grads(self, x: Array, y: Array, *, l2: float) -> tuple[float, Array]:
        """One training step's loss and gradients.

        ``J = mean cross-entropy + l2 / 2 * sum_l ||W_l||^2`` over the weight matrices only
        (biases, gamma and beta are not penalised); fills :attr:`grads` with ``dJ/dparam``,
        i.e. ``dW += l2 * W``.

        Args:
            x: (batch, n_in) inputs.
            y: (batch,) integer labels in ``[0, n_out)``.
            l2: the L2 penalty lambda.

        Returns:
            ``(J, logits)`` with ``logits: (batch, n_out)`` from the training-mode forward.
        """
        l2 = HPARAM_SPECS["l2"].check(l2)
        logits = self._forward(self._as_input(x), True)
        loss, dlogits = softmax_cross_entropy(logits, y)
        self.backward(dlogits)
        if l2 > 0.0:
            for (w, dw), tmp in zip(self._dense, self._l2_tmp, strict=True):
                loss += 0.5 * l2 * float(np.vdot(w, w))  # one pass, no (n_in, n_out) temporary
                dw += np.multiply(w, l2, out=tmp)
        return loss, logits.copy()

    def _eval_batches(self, x: Array, batch_size: int) -> list[Array]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        x = self._as_input(x)
        return [self._forward(x[s : s + batch_size], False) for s in range(0, len(x), batch_size)]

    def evaluate(self, x: Array, y: Array, *, batch_size: int = 1024) -> tuple[float, float]:
        """Mean cross-entropy (no L2 term) and accuracy in eval mode.

        Uses the running averages and no dropout: draws nothing from the generator and
        changes no buffer.

        Args:
            x: (n, n_in) inputs, n >= 1; y: (n,) integer labels.
            batch_size: examples per forward pass (bounds memory, not the result).

        Returns:
            ``(loss, accuracy)`` as Python floats.
        """
        if len(x) == 0:
            raise ValueError("cannot evaluate on an empty set")
        y = np.asarray(y)
        check_labels(y, len(x), self.n_out)
        total, correct = 0.0, 0
        for s, z in zip(
            range(0, len(x), batch_size), self._eval_batches(x, batch_size), strict=True
        ):
            yb = y[s : s + len(z)]
            total -= float(np.sum(log_softmax(z)[np.arange(len(z)), yb], dtype=np.float64))
            correct += int(np.count_nonzero(np.argmax(z, axis=1) == yb))
        return total / len(x), correct / len(x)

    def predict_proba(self, x: Array, *, batch_size: int = 1024) -> Array:
        """Class probabilities ``softmax(logits): (n, n_out)`` in eval mode."""
        return np.concatenate([softmax(z) for z in self._eval_batches(x, batch_size)])

    def z_stats(self) -> dict[str, float]:
        """Mean and standard deviation over all entries of each hidden layer's ``Z = a @ W``
        (pre batch norm) in the last training forward: ``"layerN/z_mean"``, ``"layerN/z_std"``.

        Empty before the first training forward. Computed here, not per step, so training
        pays nothing for it. With batch norm, from the per-unit batch mean ``mu_j`` and
        variance ``sigma2_j`` it already computed (``n`` numbers, not ``m * n``), in float64:
        ``z_mean = mean_j(mu_j)``, ``z_std**2 = mean_j(sigma2_j + (mu_j - z_mean)**2)``.
        """
        out: dict[str, float] = {}
        norms = {
            name: layer
            for name, block in self.blocks
            for layer in block[1:2]
            if isinstance(layer, BatchNorm)
        }
        for name, z in self._z.items():
            bn = norms.get(name)
            if bn is not None and bn.batch_mean is not None and bn.batch_var is not None:
                mu = bn.batch_mean.astype(np.float64)
                z_mean = float(np.add.reduce(mu)) / mu.size
                mu -= z_mean
                mu *= mu
                mu += bn.batch_var
                z_var = float(np.add.reduce(mu)) / mu.size
            else:
                z_mean = float(np.mean(z, dtype=np.float64))
                z_var = float(np.var(z, dtype=np.float64))
            out[f"{name}/z_mean"] = z_mean
            out[f"{name}/z_std"] = z_var**0.5
        return out

    @property
    def keep_prob(self) -> float:
        return self._keep_prob

    def set_keep_prob(self, p: float) -> None:
        """Change the dropout keep probability of every hidden layer (from the next step)."""
        self._keep_prob = HPARAM_SPECS["keep_prob"].check(p)
        for layer in self._layers:
            if isinstance(layer, Dropout):
                layer.keep_prob = self._keep_prob

    @property
    def bn_momentum(self) -> float:
        return self._bn_momentum

    def set_bn_momentum(self, m: float) -> None:
        """Change the running-average momentum of every batch norm layer."""
        self._bn_momentum = HPARAM_SPECS["bn_momentum"].check(m)
        for layer in self._layers:
            if isinstance(layer, BatchNorm):
                layer.momentum = self._bn_momentum

    def state_dict(self) -> dict[str, Array]:
        """Copies of every parameter and buffer, keyed by name (what a checkpoint stores)."""
        return {k: v.copy() for k, v in {**self._params, **self._buffers}.items()}

    def load_state_dict(self, state: dict[str, Array]) -> None:
        """Copy ``state`` into the model in place (the optimizer's views stay valid).

        Everything is validated before anything is copied, so a bad dict changes nothing.

        Raises:
            ValueError: missing or unexpected keys, a shape mismatch or a non-float array.
        """
        own = {**self._params, **self._buffers}
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own)
        if missing or unexpected:
            raise ValueError(
                f"state_dict does not match the model: missing {missing}, unexpected {unexpected}"
            )
        arrays = {k: np.asarray(v) for k, v in state.items()}
        for k, v in arrays.items():
            if v.shape != own[k].shape:
                raise ValueError(f"state_dict[{k!r}]: shape {v.shape}, expected {own[k].shape}")
            if not np.issubdtype(v.dtype, np.floating):
                raise ValueError(f"state_dict[{k!r}]: dtype {v.dtype}, expected a float array")
        for k, v in arrays.items():
            np.copyto(own[k], v, casting="same_kind")

    def __repr__(self) -> str:
        lines = [f"MLP({self.n_in} -> {self.n_out}, params={self.num_params}, dtype={self.dtype})"]
        for name, block in self.blocks:
            lines.append(f"  {name}: " + " -> ".join(repr(layer) for layer in block))
        return "\n".join(lines)
