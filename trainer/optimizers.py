"""Gradient-descent optimizers: SGD, momentum, RMSprop and Adam (bias-corrected).

Every optimizer updates the model's parameter arrays in place, keeps its per-parameter state
(moments) keyed by the parameter's name, created lazily with ``np.zeros_like`` so a float32
model keeps float32 moments, and exposes its hyperparameters so a running trial can change them
between two steps (:meth:`Optimizer.set`).

The update formulas are written in the course's names: ``w`` a parameter (the notes' ``W``
or ``b``), ``dw`` its gradient (``dW``), ``alpha`` the learning rate of the step, ``v_dw`` and
``s_dw`` the exponentially weighted averages of ``dw`` and ``dw**2`` (``v_dW``, ``s_dW``),
``v_hat`` and ``s_hat`` their bias-corrected values (``v_dW^corrected``, ``s_dW^corrected``).

The step runs every mini-batch, so it is written with in-place ufuncs (``out=``) and
preallocated scratch: no array is allocated per step. Scalars are Python floats, which NumPy
treats as "weak" and never promotes a float32 array to float64 with.

When the parameters are views that tile one contiguous buffer end to end, in the mapping's
order, and so are the gradients (``MLP`` stores them so), the moments are laid out the same way
and every formula runs over the whole buffer: one ufunc call per operation instead of one per
operation and parameter. Either way the arrays are cut into chunks of ``CHUNK_BYTES`` that
stay in cache through all the operations of an update. The arithmetic per element is the same
whatever the grouping, so every path gives identical bits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from trainer.config import HPARAM_SPECS
from trainer.config import Optimizer as OptimizerName

Array = NDArray[np.floating]


@dataclass(frozen=True)
class _Group:
    """Arrays one ``_update`` call works on: a parameter (or the buffer all parameters tile),
    its gradient, its state slots in ``SLOTS`` order and scratch of the same shape."""

    w: Array
    dw: Array
    slots: tuple[Array, ...]
    tmp: Array


@dataclass(frozen=True)
class _Plan:
    """The groups of a step, valid while the same parameter and gradient arrays come back."""

    names: tuple[str, ...]
    params: tuple[Array, ...]
    grads: tuple[Array, ...]
    groups: list[_Group]

    def fits(self, names: tuple[str, ...], ws: Sequence[Array], dws: Sequence[Array]) -> bool:
        """The same names with the very same arrays (identity, not equality)."""
        return (
            names == self.names
            and all(a is b for a, b in zip(ws, self.params, strict=True))
            and all(a is b for a, b in zip(dws, self.grads, strict=True))
        )


# Bytes of one array's chunk. The chunks of the parameter, its gradient, two moments and the
# scratch (five arrays) are read from memory once and stay in cache through the dozen passes of
# an update, where whole arrays (2.7 MB each for the 784-512-512-10 network) stream from memory
# on every pass. Measured on that network: 128-256 KiB is best; 32 KiB loses to call overhead.
CHUNK_BYTES = 128 * 1024


def _chunks(
    w: Array, dw: Array, slots: tuple[Array, ...], scratch: dict[np.dtype[np.floating], Array]
) -> list[_Group]:
    """``w``, ``dw`` and ``slots`` cut into groups of at most ``CHUNK_BYTES`` per array, all
    sharing one scratch array per dtype (the updates run one after the other). Arrays that are
    not all C-contiguous stay one group with scratch of their own."""
    arrays = (w, dw, *slots)
    if not all(a.flags.c_contiguous for a in arrays):
        return [_Group(w, dw, slots, np.empty_like(w))]
    step = max(1, CHUNK_BYTES // w.itemsize)
    tmp = scratch.get(w.dtype)
    if tmp is None or tmp.size < min(step, w.size):
        tmp = scratch[w.dtype] = np.empty(min(step, w.size), w.dtype)
    flat = [a.reshape(-1) for a in arrays]  # views: every array is C-contiguous
    groups = []
    for start in range(0, w.size, step):
        stop = min(start + step, w.size)
        w_c, dw_c, *slot_c = (a[start:stop] for a in flat)
        groups.append(_Group(w_c, dw_c, tuple(slot_c), tmp[: stop - start]))
    return groups


def tiled(arrays: Sequence[Array]) -> Array | None:
    """The 1-D array that ``arrays`` fill end to end in order, or None.

    Not None only when every array is a C-contiguous view of the same 1-D buffer, of its
    dtype, each starting where the previous one ends; the result is a view of that buffer.
    """
    if not arrays:
        return None
    base = arrays[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    start = arrays[0].ctypes.data
    end = start
    for a in arrays:
        if a.base is not base or a.dtype != base.dtype or not a.flags.c_contiguous:
            return None
        if a.ctypes.data != end:
            return None
        end += a.nbytes
    first = (start - base.ctypes.data) // base.itemsize
    view: Array = base[first : first + (end - start) // base.itemsize]
    return view


class Optimizer(ABC):
    """Base class: lazy name-keyed state, editable hyperparameters, flat state dicts.

    Subclasses declare the names of their hyperparameters (``HPARAMS``, names of
    :data:`trainer.config.HPARAM_SPECS`) and of their per-parameter state slots (``SLOTS``),
    and implement :meth:`_update` for one parameter. The slot names are the course's ``v``
    (average of ``dw``) and ``s`` (average of ``dw**2``); they are the keys of
    :meth:`state_dict` and so of checkpoints.
    """

    NAME: ClassVar[OptimizerName]
    HPARAMS: ClassVar[tuple[str, ...]] = ()
    SLOTS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **hparams: float) -> None:
        self._hp: dict[str, float] = {}
        self.set(**hparams)
        # slot -> parameter name -> moment array (same shape and dtype as the parameter).
        self._state: dict[str, dict[str, Array]] = {slot: {} for slot in self.SLOTS}
        # How the last step grouped the arrays (scratch included: not state, its content never
        # survives a step); rebuilt when other arrays come or the state is replaced.
        self._plan: _Plan | None = None
        self.t = 0  # steps taken; Adam's bias correction uses it

    @property
    def hyperparameters(self) -> dict[str, float]:
        """This optimizer's hyperparameters, e.g. ``{"momentum": 0.9}``."""
        return dict(self._hp)

    def set(self, **values: float) -> None:
        """Change hyperparameters; the next :meth:`step` uses the new values.

        Raises:
            ValueError: a name this optimizer does not have, or a value outside its range
                (the message names the hyperparameter and the allowed range).
        """
        unknown = sorted(set(values) - set(self.HPARAMS))
        if unknown:
            allowed = ", ".join(self.HPARAMS) or "none"
            raise ValueError(
                f"{', '.join(unknown)}: not a hyperparameter of {self.NAME.value} "
                f"(its hyperparameters: {allowed})"
            )
        checked = {name: float(HPARAM_SPECS[name].check(v)) for name, v in values.items()}
        self._hp.update(checked)

    def step(self, params: Mapping[str, Array], grads: Mapping[str, Array], lr: float) -> None:
        """One update of every parameter, in place.

        Args:
            params: name -> parameter array (views into the model; modified in place).
            grads: name -> gradient of the loss, same shape and dtype as ``params[name]``.
            lr: the learning rate of this step (after decay), the course's ``alpha``.
        """
        alpha = float(lr)  # an np.float64 here would compute every update in float64
        self.t += 1
        names = tuple(params)
        ws = tuple(params.values())
        dws = tuple(grads[name] for name in names)
        plan = self._plan
        if plan is None or not plan.fits(names, ws, dws):
            plan = self._plan = self._make_plan(names, ws, dws)
        for g in plan.groups:
            self._update(g.w, g.dw, g.slots, alpha, g.tmp)

    @abstractmethod
    def _update(
        self, w: Array, dw: Array, slots: tuple[Array, ...], alpha: float, tmp: Array
    ) -> None:
        """Update ``w`` in place with its gradient ``dw``, its state ``slots`` (in ``SLOTS``
        order, updated in place) and the learning rate ``alpha``; ``tmp`` is scratch of
        ``w``'s shape and dtype. Purely elementwise, so a group of parameters may share a call.
        """

    def _make_plan(
        self, names: tuple[str, ...], ws: tuple[Array, ...], dws: tuple[Array, ...]
    ) -> _Plan:
        """One run over the buffer the parameters tile (moments laid out alike, existing
        moments copied in), else one per parameter; each run cut into cache-sized chunks.
        Moments start at zero."""
        flat_w, flat_dw = tiled(ws), tiled(dws)
        runs: list[tuple[Array, Array, tuple[Array, ...]]]
        if flat_w is not None and flat_dw is not None and flat_w.dtype == flat_dw.dtype:
            slots = tuple(self._tile_slot(slot, names, ws, flat_w) for slot in self.SLOTS)
            runs = [(flat_w, flat_dw, slots)]
        else:
            runs = [
                (w, dw, tuple(self._slot(slot, name, w) for slot in self.SLOTS))
                for name, w, dw in zip(names, ws, dws, strict=True)
            ]
        scratch: dict[np.dtype[np.floating], Array] = {}
        groups = [group for run in runs for group in _chunks(*run, scratch)]
        return _Plan(names, ws, dws, groups)

    def _slot(self, slot: str, name: str, like: Array) -> Array:
        """The ``slot`` moment of parameter ``name``, zeros on first use."""
        table = self._state[slot]
        arr = table.get(name)
        if arr is None:
            arr = table[name] = np.zeros_like(like)
        return arr

    def _tile_slot(
        self, slot: str, names: tuple[str, ...], ws: tuple[Array, ...], flat_w: Array
    ) -> Array:
        """A buffer shaped like ``flat_w`` holding the ``slot`` moment of every parameter (its
        current values, or zeros), with the state table's entries made views into it."""
        flat = np.zeros_like(flat_w)
        table, offset = self._state[slot], 0
        for name, w in zip(names, ws, strict=True):
            view = flat[offset : offset + w.size].reshape(w.shape)
            old = table.get(name)
            if old is not None:
                np.copyto(view, old)
            table[name] = view
            offset += w.size
        return flat

    def state_dict(self) -> dict[str, NDArray[np.generic]]:
        """A flat copy of the state: ``"<slot>/<param name>"`` arrays and ``"t"`` (0-d int64).

        Hyperparameters are not included; they travel with the trial's config.
        """
        out: dict[str, NDArray[np.generic]] = {"t": np.array(self.t, dtype=np.int64)}
        for slot, table in self._state.items():
            for name, arr in table.items():
                out[f"{slot}/{name}"] = arr.copy()
        return out

    def load_state_dict(self, state: Mapping[str, NDArray[np.generic]]) -> None:
        """Replace the state with ``state`` (as :meth:`state_dict` made it), bit for bit.

        Raises:
            ValueError: ``"t"`` is missing or negative, or a key names an unknown slot.
        """
        if "t" not in state:
            raise ValueError("state: missing 't' (the step counter)")
        t = int(np.asarray(state["t"]))
        if t < 0:
            raise ValueError(f"state: 't' got {t}, allowed: >= 0")
        tables: dict[str, dict[str, Array]] = {slot: {} for slot in self.SLOTS}
        for key, value in state.items():
            if key == "t":
                continue
            slot, sep, name = key.partition("/")
            if not sep or slot not in tables or not name:
                slots = ", ".join(f"'{s}/<param>'" for s in self.SLOTS) or "none"
                raise ValueError(
                    f"state: unexpected key {key!r} for {self.NAME.value} (keys: 't', {slots})"
                )
            tables[slot][name] = np.array(value, copy=True)
        self._state = tables
        self._plan = None  # the next step lays the new moments out again
        self.t = t

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._hp.items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Plain mini-batch gradient descent: ``w -= alpha * dw``."""

    NAME = OptimizerName.SGD

    def __init__(self) -> None:
        super().__init__()

    def _update(
        self, w: Array, dw: Array, slots: tuple[Array, ...], alpha: float, tmp: Array
    ) -> None:
        np.multiply(dw, alpha, out=tmp)
        np.subtract(w, tmp, out=w)


class Momentum(Optimizer):
    """Gradient descent with momentum, in the course's exponentially-weighted-average form.

    ``v_dw = beta * v_dw + (1 - beta) * dw``; ``w -= alpha * v_dw``. This differs from
    PyTorch's ``v = beta * v + g`` by the factor ``1 - beta`` on the step: the same trajectory
    needs a learning rate ``1 / (1 - beta)`` times larger here. State: ``"v/<param>"`` (``v_dw``).

    Args:
        momentum: beta in [0, 1); 0.9 averages over roughly the last 10 gradients.
    """

    NAME = OptimizerName.MOMENTUM
    HPARAMS = ("momentum",)
    SLOTS = ("v",)

    def __init__(self, momentum: float = 0.9) -> None:
        super().__init__(momentum=momentum)

    def _update(
        self, w: Array, dw: Array, slots: tuple[Array, ...], alpha: float, tmp: Array
    ) -> None:
        beta = self._hp["momentum"]
        (v_dw,) = slots
        # v_dw = beta * v_dw + (1 - beta) * dw
        v_dw *= beta
        np.multiply(dw, 1.0 - beta, out=tmp)
        v_dw += tmp
        # w -= alpha * v_dw
        np.multiply(v_dw, alpha, out=tmp)
        np.subtract(w, tmp, out=w)


class RMSprop(Optimizer):
    """RMSprop: divide the step by a running root mean square of the gradient.

    ``s_dw = beta2 * s_dw + (1 - beta2) * dw**2``; ``w -= alpha * dw / (sqrt(s_dw) + epsilon)``.
    No bias correction (as in the course). State: ``"s/<param>"`` (``s_dw``).

    Args:
        beta2: decay of the squared-gradient average, in [0, 1).
        epsilon: denominator guard, > 0.
    """

    NAME = OptimizerName.RMSPROP
    HPARAMS = ("beta2", "epsilon")
    SLOTS = ("s",)

    def __init__(self, beta2: float = 0.999, epsilon: float = 1e-8) -> None:
        super().__init__(beta2=beta2, epsilon=epsilon)

    def _update(
        self, w: Array, dw: Array, slots: tuple[Array, ...], alpha: float, tmp: Array
    ) -> None:
        beta2, epsilon = self._hp["beta2"], self._hp["epsilon"]
        (s_dw,) = slots
        # s_dw = beta2 * s_dw + (1 - beta2) * dw**2
        s_dw *= beta2
        np.multiply(dw, dw, out=tmp)
        tmp *= 1.0 - beta2
        s_dw += tmp
        # w -= alpha * dw / (sqrt(s_dw) + epsilon)
        np.sqrt(s_dw, out=tmp)
        tmp += epsilon
        np.divide(dw, tmp, out=tmp)
        tmp *= alpha
        np.subtract(w, tmp, out=w)


class Adam(Optimizer):
    """Adam: momentum and RMSprop together, with bias correction.

    With ``t`` the 1-based step number::

        v_dw = beta1 * v_dw + (1 - beta1) * dw     s_dw = beta2 * s_dw + (1 - beta2) * dw**2
        v_hat = v_dw / (1 - beta1**t)              s_hat = s_dw / (1 - beta2**t)
        w -= alpha * v_hat / (sqrt(s_hat) + epsilon)

    ``v_hat`` and ``s_hat`` are never stored: with the bias corrections
    ``bias_correction1 = 1 - beta1**t`` and ``bias_correction2_sqrt = sqrt(1 - beta2**t)``
    the last line is computed as ::

        w -= (alpha * bias_correction2_sqrt / bias_correction1)
             * v_dw / (sqrt(s_dw) + epsilon * bias_correction2_sqrt)

    the same value (multiply numerator and denominator by ``bias_correction2_sqrt``) with one
    pass over the arrays fewer. State: ``"v/<param>"`` (``v_dw``), ``"s/<param>"``
    (``s_dw``) and the step counter ``"t"``.

    Args:
        beta1: decay of the gradient average, in [0, 1).
        beta2: decay of the squared-gradient average, in [0, 1).
        epsilon: denominator guard, > 0.
    """

    NAME = OptimizerName.ADAM
    HPARAMS = ("beta1", "beta2", "epsilon")
    SLOTS = ("v", "s")

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8) -> None:
        super().__init__(beta1=beta1, beta2=beta2, epsilon=epsilon)

    def _update(
        self, w: Array, dw: Array, slots: tuple[Array, ...], alpha: float, tmp: Array
    ) -> None:
        beta1, beta2, epsilon = self._hp["beta1"], self._hp["beta2"], self._hp["epsilon"]
        bias_correction1 = 1.0 - beta1**self.t  # v_hat = v_dw / bias_correction1
        bias_correction2_sqrt = (1.0 - beta2**self.t) ** 0.5  # s_hat = s_dw / it**2
        v_dw, s_dw = slots
        # v_dw = beta1 * v_dw + (1 - beta1) * dw
        v_dw *= beta1
        np.multiply(dw, 1.0 - beta1, out=tmp)
        v_dw += tmp
        # s_dw = beta2 * s_dw + (1 - beta2) * dw**2
        s_dw *= beta2
        np.multiply(dw, dw, out=tmp)
        tmp *= 1.0 - beta2
        s_dw += tmp
        # w -= alpha * v_hat / (sqrt(s_hat) + epsilon), folded as in the class docstring
        np.sqrt(s_dw, out=tmp)
        tmp += epsilon * bias_correction2_sqrt
        np.divide(v_dw, tmp, out=tmp)
        tmp *= alpha * bias_correction2_sqrt / bias_correction1
        np.subtract(w, tmp, out=w)


_CLASSES: dict[OptimizerName, type[Optimizer]] = {
    cls.NAME: cls for cls in (SGD, Momentum, RMSprop, Adam)
}

# Which hyperparameters each optimizer reads, by its name: {"sgd": (), "momentum":
# ("momentum",), "rmsprop": ("beta2", "epsilon"), "adam": ("beta1", "beta2", "epsilon")}. A
# search that ranges one of these while no optimizer it tries reads it trains noise.
OPTIMIZER_HPARAMS: dict[str, tuple[str, ...]] = {
    key.value: cls.HPARAMS for key, cls in _CLASSES.items()
}


def make_optimizer(name: str | OptimizerName, hparams: Mapping[str, object]) -> Optimizer:
    """Build the optimizer ``name`` with its hyperparameters read from ``hparams``.

    Args:
        name: ``"sgd"``, ``"momentum"``, ``"rmsprop"`` or ``"adam"``.
        hparams: a hyperparameter mapping (names of :data:`trainer.config.HPARAM_SPECS`);
            other names are ignored, missing ones take their defaults.

    Raises:
        ValueError: an unknown ``name`` or an out-of-range value (naming it).
    """
    try:
        key = OptimizerName(name)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in OptimizerName)
        raise ValueError(f"optimizer: got {name!r}, allowed: one of {allowed}") from None
    cls = _CLASSES[key]
    values = {n: hparams.get(n, HPARAM_SPECS[n].default) for n in cls.HPARAMS}
    return cls(**values)  # type: ignore[arg-type]  # checked by Optimizer.set
