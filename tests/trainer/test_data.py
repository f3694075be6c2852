from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainer.config import DType
from trainer.data import (
    TASKS,
    DataError,
    Dataset,
    TaskKind,
    check_task_options,
    load_task,
    standardise,
    stratified_split,
)
from trainer.datafiles import load_builtin

REPO = Path(__file__).resolve().parents[2]


def all_y(ds: Dataset) -> np.ndarray:
    return np.concatenate([ds.y_train, ds.y_dev, ds.y_test])


def all_X(ds: Dataset) -> np.ndarray:
    return np.concatenate([ds.X_train, ds.X_dev, ds.X_test])


# --- registry ------------------------------------------------------------------------------


def test_registry_lists_every_task_with_its_kind() -> None:
    kinds = {name: info.kind for name, info in TASKS.items()}
    assert kinds == {
        "digits": TaskKind.BUILTIN,
        "iris": TaskKind.BUILTIN,
        "wine": TaskKind.BUILTIN,
        "breast_cancer": TaskKind.BUILTIN,
        "spirals": TaskKind.SYNTHETIC,
        "moons": TaskKind.SYNTHETIC,
        "blobs": TaskKind.SYNTHETIC,
        "file": TaskKind.FILE,
        "quadratic": TaskKind.QUADRATIC,
    }
    for info in TASKS.values():
        assert info.description and "\n" not in info.description


def test_registry_is_json_ready() -> None:
    out = json.loads(json.dumps([info.to_dict() for info in TASKS.values()]))
    spirals = next(t for t in out if t["name"] == "spirals")
    assert spirals["kind"] == "synthetic"
    assert spirals["options"]["n_samples"] == {
        "name": "n_samples",
        "type": "int",
        "default": 1500,
        "low": 30,
        "high": 200_000,
        "length": None,
        "help": spirals["options"]["n_samples"]["help"],
        "required": False,
    }
    quadratic = next(t for t in out if t["name"] == "quadratic")
    assert quadratic["options"]["coefficients"]["default"] == [1.0, -10.0, 25.0]
    file = next(t for t in out if t["name"] == "file")
    assert file["options"]["path"]["required"] is True


# --- check_task_options --------------------------------------------------------------------


def test_check_task_options_fills_defaults() -> None:
    assert check_task_options("spirals", {}) == {"n_samples": 1500, "n_classes": 3, "noise": 0.2}
    assert check_task_options("blobs", {"n_features": 5})["n_features"] == 5
    assert check_task_options("digits") == {}
    assert check_task_options("quadratic") == {"coefficients": [1.0, -10.0, 25.0]}


def test_check_task_options_coerces_numbers() -> None:
    out = check_task_options("spirals", {"n_samples": 300.0, "noise": 1})
    assert out["n_samples"] == 300 and isinstance(out["n_samples"], int)
    assert out["noise"] == 1.0 and isinstance(out["noise"], float)
    coeffs = check_task_options("quadratic", {"coefficients": (2, 0, -1)})["coefficients"]
    assert coeffs == [2.0, 0.0, -1.0]


def test_check_task_options_default_list_is_a_fresh_copy() -> None:
    check_task_options("quadratic")["coefficients"].append(99.0)
    assert check_task_options("quadratic")["coefficients"] == [1.0, -10.0, 25.0]


def test_check_task_options_unknown_task_lists_known_tasks() -> None:
    with pytest.raises(DataError, match=r"unknown task 'mnist'; known tasks: digits, iris"):
        check_task_options("mnist", {})


def test_check_task_options_unknown_option_lists_allowed() -> None:
    with pytest.raises(DataError, match=r"unknown option\(s\) 'size'; allowed: n_samples, noise"):
        check_task_options("moons", {"size": 3})
    with pytest.raises(DataError, match="allowed: none"):
        check_task_options("iris", {"noise": 0.1})


@pytest.mark.parametrize(
    ("task", "options", "message"),
    [
        (
            "spirals",
            {"n_samples": 29},
            r"'n_samples': got 29, allowed: an integer in \[30, 200000\]",
        ),
        ("spirals", {"n_samples": 200_001}, "'n_samples': got 200001"),
        ("spirals", {"n_samples": 100.5}, "'n_samples': got 100.5"),
        ("spirals", {"n_samples": "100"}, "'n_samples': got '100'"),
        ("spirals", {"n_samples": True}, "'n_samples': got True"),
        ("spirals", {"n_samples": 10**400}, "'n_samples': got 1000"),
        ("spirals", {"n_classes": 11}, r"'n_classes': got 11, allowed: an integer in \[2, 10\]"),
        ("spirals", {"noise": -0.1}, r"'noise': got -0.1, allowed: a finite number in \[0, 2\]"),
        ("moons", {"noise": float("nan")}, "'noise': got nan"),
        ("blobs", {"n_features": 0}, "'n_features': got 0"),
        ("quadratic", {"coefficients": [1, 2]}, "'coefficients'.*a list of 3 finite numbers"),
        ("quadratic", {"coefficients": [1, 2, float("inf")]}, "'coefficients'"),
        ("quadratic", {"coefficients": "1,2,3"}, "'coefficients'"),
        ("file", {}, "option 'path' is required"),
        ("file", {"path": ""}, "'path': got ''"),
    ],
)
def test_check_task_options_rejects_bad_values(
    task: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DataError, match=message) as info:
        check_task_options(task, options)
    assert str(info.value).startswith(f"task {task!r}: ")


# --- builtin tasks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "n_rows", "n_features", "n_classes"),
    [
        ("digits", 1797, 64, 10),
        ("iris", 150, 4, 3),
        ("wine", 178, 13, 3),
        ("breast_cancer", 569, 30, 2),
    ],
)
def test_builtin_task_shapes(name: str, n_rows: int, n_features: int, n_classes: int) -> None:
    ds = load_task(name)
    assert ds.name == name
    assert ds.n_features == n_features and ds.n_classes == n_classes
    assert len(all_y(ds)) == n_rows
    for X, y in [(ds.X_train, ds.y_train), (ds.X_dev, ds.y_dev), (ds.X_test, ds.y_test)]:
        assert X.ndim == 2 and X.shape[1] == n_features and X.dtype == np.float32
        assert y.shape == (len(X),) and y.dtype == np.int64
    assert sorted(np.unique(all_y(ds)).tolist()) == list(range(n_classes))
    assert len(ds.class_names) == n_classes and len(ds.feature_names) == n_features


def test_builtin_class_names_follow_labels() -> None:
    assert load_task("iris").class_names == ("setosa", "versicolor", "virginica")
    assert load_task("digits").class_names == tuple(str(d) for d in range(10))


def test_import_does_not_load_sklearn_until_a_builtin_task_is_used() -> None:
    code = (
        "import sys, trainer.data\n"
        "assert 'sklearn' not in sys.modules, 'imported too early'\n"
        "trainer.data.load_task('spirals')\n"
        "assert 'sklearn' not in sys.modules, 'synthetic task pulled sklearn in'\n"
        "trainer.data.load_task('iris')\n"
        "assert 'sklearn' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# --- splits --------------------------------------------------------------------------------


def test_split_is_disjoint_covers_all_rows_and_is_70_15_15() -> None:
    y = np.repeat(np.arange(4), [100, 60, 37, 3])
    train, dev, test = stratified_split(y, np.random.default_rng(0))
    joined = np.concatenate([train, dev, test])
    assert len(joined) == len(y) and np.array_equal(np.sort(joined), np.arange(len(y)))
    assert len(dev) == 15 + 9 + 6 + 1 and len(test) == len(dev)
    assert len(train) == len(y) - 2 * len(dev)


def test_split_is_stratified() -> None:
    ds = load_task("digits")
    n_all = np.bincount(all_y(ds))
    for y in (ds.y_dev, ds.y_test):
        expected = np.maximum(1, np.floor(0.15 * n_all + 0.5))
        assert np.array_equal(np.bincount(y, minlength=10), expected)


def test_split_keeps_every_class_in_every_split_even_when_tiny() -> None:
    y = np.repeat(np.arange(3), 3)
    for part in stratified_split(y, np.random.default_rng(1)):
        assert sorted(y[part].tolist()) == [0, 1, 2]


def test_split_refuses_a_class_with_fewer_than_three_rows() -> None:
    with pytest.raises(DataError, match="class 1 has only 2 row"):
        stratified_split(np.array([0, 0, 0, 0, 1, 1]), np.random.default_rng(0))


def test_file_task_split_is_disjoint_and_covers_rows(tmp_path: Path) -> None:
    # A row-id feature survives standardisation as distinct values, one per row.
    n = 200
    path = tmp_path / "ids.csv"
    path.write_text("id,label\n" + "".join(f"{i},{i % 3}\n" for i in range(n)))
    ds = load_task("file", {"path": str(path)}, dtype=np.float64)
    ids = all_X(ds)[:, 0]
    assert len(ids) == n and len(np.unique(ids)) == n


def test_same_split_seed_same_split_other_seed_other_split() -> None:
    a, b = load_task("wine", split_seed=3), load_task("wine", split_seed=3)
    c = load_task("wine", split_seed=4)
    for name in ("X_train", "y_train", "X_dev", "y_dev", "X_test", "y_test"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(np.sort(a.X_dev[:, 0]), np.sort(c.X_dev[:, 0]))


# --- standardisation -----------------------------------------------------------------------


def test_train_split_is_standardised() -> None:
    ds = load_task("digits", dtype=np.float64)
    std = ds.X_train.std(axis=0)
    varying = std > 0
    assert varying.sum() < 64  # digits has pixels that are always blank
    assert np.allclose(ds.X_train.mean(axis=0), 0.0, atol=1e-9)
    assert np.allclose(std[varying], 1.0)
    assert np.all(ds.X_train[:, ~varying] == 0.0)


def test_dev_and_test_use_the_training_statistics() -> None:
    # load_task's split is fixed by np.random.default_rng(split_seed) (builtins draw nothing
    # else), so the raw rows of each split can be recovered here.
    X, y, _, _ = load_builtin("iris")
    train, dev, test = stratified_split(y, np.random.default_rng(7))
    ds = load_task("iris", split_seed=7, dtype=np.float64)
    mean, std = X[train].mean(axis=0), X[train].std(axis=0)
    assert np.allclose(ds.X_train, (X[train] - mean) / std)
    assert np.allclose(ds.X_dev, (X[dev] - mean) / std)
    assert np.allclose(ds.X_test, (X[test] - mean) / std)
    assert not np.allclose(ds.X_dev.mean(axis=0), 0.0, atol=1e-6)


def test_standardise_constant_column_gets_std_one() -> None:
    train = np.array([[1.0, 0.1], [3.0, 0.1], [5.0, 0.1]])
    dev = np.array([[3.0, 2.1]])
    z_train, z_dev = standardise(train, dev)
    assert np.allclose(z_train[:, 1], 0.0)
    assert z_dev[0, 1] == pytest.approx(2.0)
    assert z_dev[0, 0] == pytest.approx(0.0)


@pytest.mark.parametrize("dtype", [np.float64, "float64", DType.FLOAT64])
def test_dtype_is_honoured(dtype: Any) -> None:
    ds = load_task("moons", {"n_samples": 60}, dtype=dtype)
    assert ds.X_train.dtype == np.float64 and ds.y_train.dtype == np.int64


def test_bad_dtype_and_seed_are_refused() -> None:
    with pytest.raises(DataError, match="dtype"):
        load_task("iris", dtype=np.int32)
    with pytest.raises(DataError, match="split_seed"):
        load_task("iris", split_seed=-1)


# --- synthetic and file tasks -------------------------------------------------------------


def test_spirals_honour_size_and_classes() -> None:
    ds = load_task("spirals", {"n_samples": 500, "n_classes": 5})
    assert len(all_y(ds)) == 500 and ds.n_classes == 5 and ds.n_features == 2
    assert np.bincount(all_y(ds)).tolist() == [100] * 5
    assert ds.class_names == ("0", "1", "2", "3", "4")


def test_blobs_honour_features_and_noise() -> None:
    tight = load_task("blobs", {"n_samples": 300, "n_features": 6, "noise": 0.0})
    loose = load_task("blobs", {"n_samples": 300, "n_features": 6, "noise": 5.0})
    assert tight.n_features == 6 and tight.X_train.shape[1] == 6
    spread = [
        np.mean([ds.X_train[ds.y_train == c].std(axis=0).mean() for c in range(3)])
        for ds in (tight, loose)
    ]
    assert spread[0] < 1e-5 < spread[1]


def test_moons_have_two_classes_and_noise_changes_the_points() -> None:
    a = load_task("moons", {"n_samples": 100, "noise": 0.0})
    b = load_task("moons", {"n_samples": 100, "noise": 0.5})
    assert a.n_classes == 2 and len(all_y(a)) == 100
    assert not np.allclose(a.X_train, b.X_train)


def test_synthetic_data_is_a_function_of_options_and_seed() -> None:
    a = load_task("spirals", {"n_samples": 90}, split_seed=1)
    b = load_task("spirals", {"n_samples": 90}, split_seed=1)
    c = load_task("spirals", {"n_samples": 90}, split_seed=2)
    assert np.array_equal(a.X_train, b.X_train)
    assert not np.array_equal(np.sort(all_X(a), axis=0), np.sort(all_X(c), axis=0))


def test_file_task_string_labels_map_to_sorted_indices(tmp_path: Path) -> None:
    path = tmp_path / "pets.csv"
    path.write_text(
        "w,kind\n" + "".join(f"{i},{k}\n" for i, k in enumerate(["dog", "cat", "ant"] * 4))
    )
    ds = load_task("file", {"path": str(path)})
    assert ds.class_names == ("ant", "cat", "dog") and ds.feature_names == ("w",)
    assert ds.n_classes == 3 and np.bincount(all_y(ds)).tolist() == [4, 4, 4]


def test_file_task_sparse_integer_labels_are_remapped(tmp_path: Path) -> None:
    path = tmp_path / "codes.npz"
    np.savez(path, X=np.arange(9.0).reshape(9, 1), y=np.array([10, 3, 7] * 3))
    ds = load_task("file", {"path": str(path)})
    assert ds.class_names == ("3", "7", "10")
    assert set(all_y(ds).tolist()) == {0, 1, 2}


def test_file_task_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_task("file", {"path": str(tmp_path / "gone.csv")})


# --- quadratic -----------------------------------------------------------------------------


def test_quadratic_returns_the_coefficients() -> None:
    ds = load_task("quadratic")
    assert ds.n_classes == 0 and ds.n_features == 3 and ds.class_names == ()
    for X, y in [(ds.X_train, ds.y_train), (ds.X_dev, ds.y_dev), (ds.X_test, ds.y_test)]:
        assert X.shape == (1, 3) and X.tolist() == [[1.0, -10.0, 25.0]]
        assert y.tolist() == [0] and y.dtype == np.int64


def test_quadratic_custom_coefficients_are_not_standardised() -> None:
    ds = load_task("quadratic", {"coefficients": [2.0, 4.0, -1.5]}, dtype=np.float64)
    assert ds.X_train.dtype == np.float64
    assert ds.X_train.tolist() == [[2.0, 4.0, -1.5]]
