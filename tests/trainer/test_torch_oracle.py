"""PyTorch as the oracle: the same network, data and optimizer give the same numbers.

Our MLP (Dense without bias -> BatchNorm -> ReLU per hidden layer, Dense with bias, softmax
cross-entropy) and its optimizers are run side by side with the equivalent ``torch.nn`` model
and ``torch.optim`` optimizer, starting from the same weights, on the same batches. After every
step the loss, every gradient, every parameter and batch norm's running statistics must agree
to float rounding: a speed-up that changes a formula shows here before it shows in a curve.

Differences of convention that the comparison bridges, not hides:

- torch stores ``Linear.weight`` as ``(n_out, n_in)``; ours ``W`` is ``(n_in, n_out)``.
- torch's BatchNorm ``momentum`` weighs the new value: ours ``bn_momentum = 1 - momentum``.
- torch's running variance averages the unbiased batch variance, ours the biased one that
  normalises; the test rebuilds our recurrence from the pre-BN ``Z`` torch saw.
- our L2 adds ``l2 / 2 * sum(W**2)`` to the loss and ``l2 * W`` to ``dW`` of weight matrices only;
  torch gets ``weight_decay = l2`` on the weight matrices' parameter group and the penalty is
  added to its loss by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from trainer.layers import BatchNorm, Dense
from trainer.model import MLP
from trainer.optimizers import make_optimizer

torch = pytest.importorskip("torch")
nn = torch.nn
torch.set_num_threads(1)  # as the conftest's BLAS: tiny matrices, a shared 2-core machine

N_IN, HIDDEN, N_OUT, BATCH, STEPS = 12, 16, 5, 32, 6
BN_MOMENTUM = 0.9
# Normwise: max |ours - theirs| <= TOL * max |theirs| per array. float64 agrees to a few ulps;
# float32 differs by summation order in the GEMMs and reductions (torch and NumPy block them
# differently), amplified a little by Adam's division by the gradient's root mean square.
TOL: dict[Any, float] = {np.float64: 1e-13, np.float32: 1e-5}
TORCH_OPT = {
    "adam": lambda groups, lr: torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8),
    "rmsprop": lambda groups, lr: torch.optim.RMSprop(groups, lr=lr, alpha=0.999, eps=1e-8),
    "sgd": lambda groups, lr: torch.optim.SGD(groups, lr=lr),
}
LR = {"adam": 1e-2, "rmsprop": 1e-2, "sgd": 0.1}


def _pair(dtype: Any, l2: float, optimizer: str) -> tuple[MLP, Any, Any]:
    """Our model and optimizer, and torch's, with the same initial weights."""
    ours = MLP(
        N_IN,
        N_OUT,
        hidden_units=HIDDEN,
        num_layers=2,
        activation="relu",
        batch_norm=True,
        bn_momentum=BN_MOMENTUM,
        keep_prob=1.0,
        init="he",
        rng=np.random.default_rng(3),
        dtype=dtype,
    )
    # gamma, beta and b away from 1 and 0, so a mix-up of the two shows
    gen = np.random.default_rng(4)
    for name, p in ours.params.items():
        if not name.endswith("/W"):
            p += (0.3 * gen.standard_normal(p.shape)).astype(dtype)
    mods: list[Any] = []
    for _, block in ours.blocks[:-1]:
        dense, bn = block[0], block[1]
        assert isinstance(dense, Dense) and isinstance(bn, BatchNorm)
        lin = nn.Linear(dense.n_in, dense.n_out, bias=False)
        norm = nn.BatchNorm1d(dense.n_out, eps=bn.eps, momentum=1.0 - BN_MOMENTUM)
        mods += [lin, norm, nn.ReLU()]
    head = nn.Linear(HIDDEN, N_OUT)
    theirs = nn.Sequential(*mods, head).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        for (our_name, ours_p), their_p in zip(
            ours.params.items(), theirs.parameters(), strict=True
        ):
            value = ours_p.T if our_name.endswith("/W") else ours_p
            their_p.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    weights = [p for n, p in theirs.named_parameters() if n.endswith("weight") and p.ndim == 2]
    others = [
        p for n, p in theirs.named_parameters() if not (n.endswith("weight") and p.ndim == 2)
    ]
    groups = [{"params": weights, "weight_decay": l2}, {"params": others, "weight_decay": 0.0}]
    return ours, theirs, TORCH_OPT[optimizer](groups, LR[optimizer])


def _their_params(theirs: Any) -> list[np.ndarray]:
    return [p.detach().numpy() for p in theirs.parameters()]


def _close(ours: np.ndarray, theirs: np.ndarray, dtype: Any, what: str) -> None:
    """``max |ours - theirs| <= TOL[dtype] * max |theirs|`` (normwise, float64 arithmetic)."""
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert a.shape == b.shape, what
    err = float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-30)
    assert err <= TOL[dtype], f"{what}: normwise relative difference {err:.3g}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("optimizer", "l2"), [("adam", 0.0), ("adam", 0.05), ("rmsprop", 0.0), ("sgd", 0.01)]
)
def test_steps_match_torch(dtype: Any, optimizer: str, l2: float) -> None:
    ours, theirs, their_opt = _pair(dtype, l2, optimizer)
    our_opt = make_optimizer(optimizer, {"beta2": 0.999, "epsilon": 1e-8})
    bns = [m for m in theirs if isinstance(m, nn.BatchNorm1d)]
    seen_z: list[np.ndarray] = []
    for bn in bns:
        bn.register_forward_hook(lambda _m, inp, _out: seen_z.append(inp[0].detach().numpy()))
    running_var = [np.ones(HIDDEN) for _ in bns]
    rng = np.random.default_rng(5)
    for step in range(STEPS):
        x = rng.standard_normal((BATCH, N_IN)).astype(dtype)
        y = rng.integers(0, N_OUT, BATCH)
        loss, logits = ours.loss_and_grads(x, y, l2=l2)
        seen_z.clear()
        their_logits = theirs(torch.from_numpy(x))
        their_loss = nn.functional.cross_entropy(their_logits, torch.from_numpy(y))
        their_opt.zero_grad()
        their_loss.backward()
        penalty = sum(float(np.vdot(w, w)) for n, w in ours.params.items() if n.endswith("/W"))
        where = f"{optimizer}, l2={l2}, {np.dtype(dtype).name}, step {step + 1}"
        _close(np.array(loss), np.array(their_loss.item() + 0.5 * l2 * penalty), dtype, where)
        _close(logits, their_logits.detach().numpy(), dtype, f"logits, {where}")
        for (name, g), p in zip(ours.grads.items(), theirs.parameters(), strict=True):
            their_g = p.grad.numpy() + (l2 * p.detach().numpy() if name.endswith("/W") else 0)
            _close(g, their_g.T if name.endswith("/W") else their_g, dtype, f"d{name}, {where}")
        our_opt.step(ours.params, ours.grads, LR[optimizer])
        their_opt.step()
        for (name, p), their_p in zip(ours.params.items(), _their_params(theirs), strict=True):
            _close(p, their_p.T if name.endswith("/W") else their_p, dtype, f"{name}, {where}")
        for i, (bn, z) in enumerate(zip(bns, seen_z, strict=True)):
            running_var[i] = BN_MOMENTUM * running_var[i] + (1 - BN_MOMENTUM) * z.var(axis=0)
            buffers = ours.buffers
            name = f"layer{i + 1}"
            mean, var = buffers[f"{name}/running_mean"], buffers[f"{name}/running_var"]
            _close(mean, bn.running_mean.numpy(), dtype, f"{name}/running_mean, {where}")
            _close(var, running_var[i], dtype, f"{name}/running_var, {where}")
