"""A small Tree-structured Parzen Estimator (Bergstra et al., 2011) over the unit-scaled space."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr, ndtri  # type: ignore[import-untyped]

from app.tuning.base import Direction, Sampler, Setting, TrialView, ranked
from app.tuning.space import Choice, Distribution, SearchSpace

# Bandwidth limits on the unit scale: below 0.05 a single good trial would pin the search to
# a sliver of the range; above 1 the kernel is flatter than the uniform prior.
_MIN_BANDWIDTH = 0.05
_MAX_BANDWIDTH = 1.0


class TpeSampler(Sampler):
    """Proposes the candidate with the largest ``l(x) / g(x)``.

    The usable history (completed trials, finite value, every ranged value inside the
    current space) is ranked; the best ``max(1, ceil(gamma * n))`` are "good", the rest
    "bad". Per ranged hyperparameter, on its unit (sampling) scale:

    * numeric: ``p(x) = (1 + sum_i N_[0,1](x; x_i, h)) / (m + 1)``, a uniform prior plus
      Gaussians truncated to [0, 1] at the ``m`` points, bandwidth
      ``h = clip(1.06 * std(x) * m**(-1/5), 0.05, 1)`` (Scott's rule);
    * choice: ``p(c) = (count(c) + 1) / (m + n_values)``.

    ``n_candidates`` points are drawn from the good densities ``l``, each scored with
    ``sum_dims log l(x_d) - log g(x_d)``; the best wins (the first on a tie). Before
    ``n_startup`` usable trials exist it samples at random. Everything it uses is the stored
    history and the trial's generator, so it keeps no state.

    Args:
        n_startup: usable trials needed before modelling (>= 2: one good, one bad).
        gamma: the fraction of usable trials taken as good, in (0, 1).
        n_candidates: candidates drawn from ``l`` per proposal (>= 1).
        direction: whether lower or higher objective values are better.
    """

    name = "tpe"
    label = "TPE (models the good trials)"
    help = (
        "Tree-structured Parzen Estimator: proposes values where the best trials are dense "
        "and the rest are not; random until enough trials have completed."
    )
    settings = (
        Setting("n_startup", "int", 10, "completed trials needed before modelling", low=2),
        Setting(
            "gamma", "float", 0.25, "the fraction of trials taken as good", low=0, high=1,
            low_open=True, high_open=True,
        ),
        Setting("n_candidates", "int", 24, "candidates drawn per proposal", low=1),
    )  # fmt: skip
    needs_direction = True

    def __init__(
        self,
        n_startup: int = 10,
        gamma: float = 0.25,
        n_candidates: int = 24,
        *,
        direction: Direction = Direction.MINIMIZE,
    ) -> None:
        self.n_startup = self._check("n_startup", n_startup)
        self.gamma = float(self._check("gamma", gamma))
        self.n_candidates = self._check("n_candidates", n_candidates)
        self.direction = Direction(direction)

    def sample(
        self,
        space: SearchSpace,
        history: Sequence[TrialView],
        rng: np.random.Generator,
        *,
        index: int,
    ) -> dict[str, object]:
        usable = [
            t
            for t in ranked(history, self.direction)
            if all(d.contains(t.hparams.get(name)) for name, d in space.ranged.items())
        ]
        if len(usable) < self.n_startup or not space.ranged:
            return space.sample(rng)
        n_good = min(len(usable) - 1, max(1, math.ceil(self.gamma * len(usable))))
        good, bad = usable[:n_good], usable[n_good:]
        score = np.zeros(self.n_candidates)
        draws: dict[str, list[object]] = {}
        for name, dist in space.ranged.items():
            xg = np.array([dist.to_unit(t.hparams[name]) for t in good])
            xb = np.array([dist.to_unit(t.hparams[name]) for t in bad])
            draws[name], log_ratio = self._candidates(dist, xg, xb, rng)
            score += log_ratio
        best = int(np.argmax(score))
        return space.complete({name: values[best] for name, values in draws.items()})

    def _candidates(
        self, dist: Distribution, xg: np.ndarray, xb: np.ndarray, rng: np.random.Generator
    ) -> tuple[list[object], np.ndarray]:
        """Candidate values drawn from ``l`` and their ``log l - log g``."""
        if isinstance(dist, Choice):
            n = len(dist.values)
            lw, gw = _category_weights(xg, n), _category_weights(xb, n)
            idx = rng.choice(n, size=self.n_candidates, p=lw)
            return [dist.values[i] for i in idx], np.log(lw[idx]) - np.log(gw[idx])
        u = _parzen_draw(xg, self.n_candidates, rng)
        return [dist.from_unit(float(x)) for x in u], _parzen_logpdf(u, xg) - _parzen_logpdf(u, xb)

    def __repr__(self) -> str:
        return (
            f"TpeSampler(n_startup={self.n_startup}, gamma={self.gamma}, "
            f"n_candidates={self.n_candidates}, direction={self.direction.value!r})"
        )


def _category_weights(x: np.ndarray, n: int) -> np.ndarray:
    """``(count(c) + 1) / (m + n)`` from unit coordinates ``(c + 0.5) / n``."""
    idx = np.minimum(np.floor(x * n).astype(int), n - 1)
    counts = np.bincount(idx, minlength=n).astype(float) + 1.0
    return np.asarray(counts / counts.sum())


def _bandwidth(x: np.ndarray) -> float:
    """Scott's rule ``1.06 * std * m**(-1/5)``, clipped to [0.05, 1]."""
    h: float = 1.06 * float(np.std(x)) * math.pow(len(x), -0.2)
    return min(_MAX_BANDWIDTH, max(_MIN_BANDWIDTH, h))


def _parzen_logpdf(u: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``log p(u)`` for ``p(u) = (1 + sum_i phi((u - x_i)/h) / (h Z_i)) / (m + 1)`` on [0, 1].

    ``Z_i = Phi((1 - x_i)/h) - Phi(-x_i/h)`` renormalises each Gaussian truncated to [0, 1].
    """
    h = _bandwidth(x)
    z = ndtr((1.0 - x) / h) - ndtr(-x / h)
    k = np.exp(-0.5 * ((u[:, None] - x[None, :]) / h) ** 2) / (h * math.sqrt(2 * math.pi) * z)
    return np.asarray(np.log((1.0 + k.sum(axis=1)) / (len(x) + 1)))


def _parzen_draw(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws from the mixture of :func:`_parzen_logpdf` (inverse-CDF truncated normal)."""
    h = _bandwidth(x)
    comp = rng.integers(0, len(x) + 1, size=n)  # index len(x) is the uniform prior
    prior = rng.random(n)
    mu = x[np.minimum(comp, len(x) - 1)]
    a, b = ndtr(-mu / h), ndtr((1.0 - mu) / h)
    kernel = mu + h * ndtri(a + rng.random(n) * (b - a))
    return np.asarray(np.clip(np.where(comp == len(x), prior, kernel), 0.0, 1.0))
