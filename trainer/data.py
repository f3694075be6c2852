"""Tasks (data sets): the registry, option checking, stratified splits and standardisation.

``load_task(name, options, split_seed=...)`` is the one entry point: it builds the raw data
(a scikit-learn bundled set, a synthetic generator, a user file, or the course's quadratic
cost), splits it 70/15/15 stratified by class, and standardises the features with the
training split's statistics. The result is a pure function of (name, options, split_seed), so
every trial of a study sees the same split without anything being cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from trainer.datafiles import DataError, check_class_counts, load_builtin, read_table
from trainer.options import OptionSpec, OptionType
from trainer.synthetic import make_synthetic

__all__ = [
    "TASKS",
    "DataError",
    "Dataset",
    "OptionSpec",
    "OptionType",
    "TaskInfo",
    "TaskKind",
    "check_task_options",
    "load_task",
    "standardise",
    "stratified_split",
]

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)  # train, dev, test


class TaskKind(Enum):
    BUILTIN = "builtin"
    SYNTHETIC = "synthetic"
    FILE = "file"
    QUADRATIC = "quadratic"


@dataclass(frozen=True)
class TaskInfo:
    """A task as the dashboard lists it: name, kind, one-line description, its options."""

    name: str
    kind: TaskKind
    description: str
    options: dict[str, OptionSpec] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for ``GET /api/tasks``."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "description": self.description,
            "options": {n: s.to_dict() for n, s in self.options.items()},
        }


# eq=False: the array fields make the generated __eq__ ambiguous; compare arrays explicitly.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A task's data, split and standardised.

    ``X_*`` are (n_split, n_features) arrays of the requested float dtype; ``y_*`` are
    (n_split,) int64 class indices in ``0..n_classes-1`` (``class_names[i]`` names class i).
    For the quadratic task every ``X_*`` is the (1, 3) coefficient row ``[[c0, c1, c2]]``,
    every ``y_*`` is ``[0]`` and ``n_classes`` is 0.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_dev: np.ndarray
    y_dev: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_features: int
    n_classes: int
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...]


_N_SAMPLES = OptionSpec(
    "n_samples",
    OptionType.INT,
    1500,
    30,
    200_000,
    help="total number of points, split evenly over the classes",
)
_N_CLASSES = OptionSpec("n_classes", OptionType.INT, 3, 2, 10, help="number of classes")


def _builtin(name: str, description: str) -> TaskInfo:
    return TaskInfo(name, TaskKind.BUILTIN, description)


TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in [
        _builtin("digits", "8x8 handwritten digits, 1797 images, 64 pixels, 10 classes"),
        _builtin("iris", "Iris flowers, 150 rows, 4 measurements, 3 species"),
        _builtin("wine", "Wine recognition, 178 rows, 13 chemical features, 3 cultivars"),
        _builtin(
            "breast_cancer", "Breast cancer Wisconsin, 569 rows, 30 features, 2 classes (logistic)"
        ),
        TaskInfo(
            "spirals",
            TaskKind.SYNTHETIC,
            "Interleaved 2-D spiral arms, one per class",
            {
                "n_samples": _N_SAMPLES,
                "n_classes": _N_CLASSES,
                "noise": OptionSpec(
                    "noise",
                    OptionType.FLOAT,
                    0.2,
                    0.0,
                    2.0,
                    help="standard deviation of the angle noise, radians",
                ),
            },
        ),
        TaskInfo(
            "moons",
            TaskKind.SYNTHETIC,
            "Two interleaving 2-D half circles, 2 classes",
            {
                "n_samples": _N_SAMPLES,
                "noise": OptionSpec(
                    "noise",
                    OptionType.FLOAT,
                    0.2,
                    0.0,
                    2.0,
                    help="standard deviation of the Gaussian noise",
                ),
            },
        ),
        TaskInfo(
            "blobs",
            TaskKind.SYNTHETIC,
            "Gaussian clusters, one per class",
            {
                "n_samples": _N_SAMPLES,
                "n_features": OptionSpec(
                    "n_features", OptionType.INT, 2, 1, 100, help="dimension of the points"
                ),
                "n_classes": _N_CLASSES,
                "noise": OptionSpec(
                    "noise",
                    OptionType.FLOAT,
                    1.0,
                    0.0,
                    50.0,
                    help="cluster standard deviation (centres lie in [-10, 10])",
                ),
            },
        ),
        TaskInfo(
            "file",
            TaskKind.FILE,
            "Your own CSV or NPZ file of features and labels",
            {
                "path": OptionSpec(
                    "path",
                    OptionType.STR,
                    None,
                    help="CSV (label column last or named label/target/y) or NPZ (arrays X and y)",
                ),
            },
        ),
        TaskInfo(
            "quadratic",
            TaskKind.QUADRATIC,
            "The notes' cost J(w) = c0*w^2 + c1*w + c2, coefficients fed in as data",
            {
                "coefficients": OptionSpec(
                    "coefficients",
                    OptionType.FLOAT_LIST,
                    (1.0, -10.0, 25.0),
                    -1e6,
                    1e6,
                    length=3,
                    help="[c0, c1, c2]; the default has its minimum at w = 5",
                ),
            },
        ),
    ]
}


def check_task_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate a task's options and fill in the defaults.

    Args:
        name: a key of :data:`TASKS`.
        options: option name -> value; missing options take their defaults.

    Returns:
        Every option of the task, coerced (ints, floats, a list of floats, a str).

    Raises:
        DataError: unknown task (lists the known ones), unknown option (lists the task's
            options), a missing required option, or a value outside its range.
    """
    info = TASKS.get(name)
    if info is None:
        raise DataError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        allowed = ", ".join(info.options) or "none"
        raise DataError(
            f"task {name!r}: unknown option(s) {', '.join(map(repr, unknown))}; allowed: {allowed}"
        )
    try:
        return {
            o: spec.check(options[o]) if o in options else spec.fill()
            for o, spec in info.options.items()
        }
    except DataError as exc:
        raise DataError(f"task {name!r}: {exc}") from exc


def load_task(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    split_seed: int = 0,
    dtype: DTypeLike = np.float32,
) -> Dataset:
    """Build a task's data set, split 70/15/15 (stratified) and standardised.

    One ``np.random.default_rng(split_seed)`` drives everything random: a synthetic task first
    draws its points from it, then the split draws its permutations, so the data set is a pure
    function of (name, options, split_seed).

    Args:
        name: a key of :data:`TASKS`.
        options: the task's options (see :func:`check_task_options`).
        split_seed: seeds the synthetic data and the split; shared by a study's trials.
        dtype: float dtype of the ``X_*`` arrays (float32 or float64).

    Returns:
        The :class:`Dataset`.

    Raises:
        DataError: bad task, options, seed, dtype or data file.
    """
    opts = check_task_options(name, options)
    if (
        isinstance(split_seed, bool)
        or not isinstance(split_seed, int | np.integer)
        or split_seed < 0
    ):
        raise DataError(f"split_seed: got {split_seed!r}, allowed: an integer >= 0")
    dt = np.dtype(dtype.value if isinstance(dtype, Enum) else dtype)
    if dt.kind != "f":
        raise DataError(f"dtype: got {dt}, allowed: a float dtype such as float32 or float64")
    rng = np.random.default_rng(split_seed)
    kind = TASKS[name].kind
    if kind is TaskKind.QUADRATIC:
        return _quadratic(opts["coefficients"], dt)
    if kind is TaskKind.BUILTIN:
        X, labels, feature_names, class_names = load_builtin(name)
    elif kind is TaskKind.FILE:
        X, labels, feature_names = read_table(opts["path"])
        class_names = None
    else:
        X, labels = make_synthetic(name, opts, rng)
        feature_names = tuple(f"x{j}" for j in range(X.shape[1]))
        class_names = None
    classes, y = np.unique(labels, return_inverse=True)
    y = y.reshape(-1).astype(np.int64)  # labels mapped to 0..C-1 in sorted order
    if class_names is None:
        class_names = tuple(str(c) for c in classes)
    else:
        class_names = tuple(class_names[int(c)] for c in classes)
    train, dev, test = stratified_split(y, rng)
    Xs = standardise(X[train], X[dev], X[test])
    return Dataset(
        name=name,
        X_train=Xs[0].astype(dt),
        y_train=y[train],
        X_dev=Xs[1].astype(dt),
        y_dev=y[dev],
        X_test=Xs[2].astype(dt),
        y_test=y[test],
        n_features=X.shape[1],
        n_classes=len(classes),
        class_names=class_names,
        feature_names=tuple(feature_names),
    )


def stratified_split(
    y: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split row indices 70/15/15 into train/dev/test, class by class.

    Each class gives ``round(0.15 * n_c)`` rows (at least one) to dev and to test and the rest
    to train, so every split holds every class in about the data set's proportions. Each
    split's indices come out in random order.

    Args:
        y: (n,) int64 class indices.
        rng: draws the permutations.

    Returns:
        Three disjoint (n_split,) int64 index arrays covering ``0..n-1``.

    Raises:
        DataError: a class has fewer than 3 rows.
    """
    check_class_counts(y, "data set")
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_dev, n_test = (max(1, int(f * len(idx) + 0.5)) for f in SPLIT_FRACTIONS[1:])
        parts[0].append(idx[n_dev + n_test :])
        parts[1].append(idx[:n_dev])
        parts[2].append(idx[n_dev : n_dev + n_test])
    train, dev, test = (rng.permutation(np.concatenate(p)).astype(np.int64) for p in parts)
    return train, dev, test


def standardise(X_train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Centre and scale features with the training split's mean and standard deviation.

    A column that is constant on the training split keeps std 1 (it is only centred), so it
    cannot blow up into huge values on dev/test.

    Args:
        X_train: (n_train, d) features that define the statistics.
        *others: (n_k, d) arrays (dev, test) transformed with the same statistics.

    Returns:
        The float64 arrays, train first, in the order given.
    """
    X_train = np.asarray(X_train, dtype=np.float64)
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    # A relative threshold: the std of a constant column is rounding noise, not exactly 0.
    std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
    return tuple((np.asarray(X, dtype=np.float64) - mean) / std for X in (X_train, *others))


def _quadratic(coefficients: list[float], dt: np.dtype[Any]) -> Dataset:
    row = np.array([coefficients], dtype=dt)
    zero = np.zeros(1, dtype=np.int64)
    return Dataset(
        name="quadratic",
        X_train=row,
        y_train=zero,
        X_dev=row.copy(),
        y_dev=zero.copy(),
        X_test=row.copy(),
        y_test=zero.copy(),
        n_features=3,
        n_classes=0,
        class_names=(),
        feature_names=("c0", "c1", "c2"),
    )
