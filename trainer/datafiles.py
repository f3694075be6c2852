"""Reading data files into a feature matrix and a label vector: user CSV/NPZ, bundled sets.

Only the standard library's :mod:`csv` and NumPy are used; NPZ files are opened with
``allow_pickle=False`` so an uploaded file can never run code. Every problem becomes a
:class:`DataError` whose message says where the problem is (line, row, column, array name).
"""

from __future__ import annotations

import csv
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Header names that mark the label column (case-insensitive), in order of preference.
LABEL_COLUMN_NAMES = ("label", "target", "y")
# A row per split and class at least: stratified train/dev/test needs 3 rows of every class.
MIN_ROWS_PER_CLASS = 3
_ZIP_MAGIC = b"PK\x03\x04"


class DataError(ValueError):
    """A task cannot be built: unknown task, bad option, or a malformed data file."""


def read_table(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read a CSV or NPZ file of labelled examples.

    CSV: comma-separated, UTF-8; an optional header row (detected when a feature cell of the
    first row is not a number, or a cell is named ``label``/``target``/``y``). The label column
    is the one named ``label``, ``target`` or ``y``, else the last column. Labels may be
    integers or strings. NPZ: arrays ``X`` (n, d) numeric and ``y`` (n,) integer or string
    labels, optionally ``feature_names`` (d,) strings.

    Args:
        path: the file; ``.npz`` (or any zip archive) is read as NPZ, anything else as CSV.

    Returns:
        X: (n, d) float64 features, all finite; labels: (n,) int64 or str array;
        feature_names: d names.

    Raises:
        DataError: missing or malformed file, with the offending line/row/column named.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if not magic:
        raise DataError(f"{path.name}: the file is empty")
    if path.suffix.lower() == ".npz" or magic == _ZIP_MAGIC:
        X, labels, names = _read_npz(path)
    else:
        X, labels, names = _read_csv(path)
    check_class_counts(labels, path.name)
    return X, labels, names


def load_builtin(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Load one of scikit-learn's bundled data sets (``digits``, ``iris``, ``wine``...).

    Returns:
        X: (n, d) float64; y: (n,) int64 in 0..C-1; feature_names: d names;
        class_names: C names, ``class_names[i]`` for label i.
    """
    # Imported here, not at module level: scikit-learn (and SciPy) take about a second to
    # import and only builtin tasks need them. The bundled files are read; nothing downloads.
    from sklearn import datasets  # type: ignore[import-untyped]

    bunch = getattr(datasets, f"load_{name}")()
    X = np.asarray(bunch.data, dtype=np.float64)
    names = getattr(bunch, "feature_names", None)
    if names is None or len(names) != X.shape[1]:
        names = [f"x{j}" for j in range(X.shape[1])]
    y = np.asarray(bunch.target, dtype=np.int64)
    return X, y, tuple(str(n) for n in names), tuple(str(n) for n in bunch.target_names)


def check_class_counts(labels: np.ndarray, source: str) -> None:
    """Raise :class:`DataError` unless ``labels`` (n,) has >= 2 classes of >= 3 rows each."""
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise DataError(
            f"{source}: only one class ({_show(classes[0])}); a classifier needs at least two"
        )
    if len(labels) < MIN_ROWS_PER_CLASS * len(classes):
        raise DataError(
            f"{source}: {len(labels)} rows for {len(classes)} classes; need at least "
            f"{MIN_ROWS_PER_CLASS} rows per class (one each for train, dev and test)"
        )
    small = classes[counts < MIN_ROWS_PER_CLASS]
    if len(small):
        raise DataError(
            f"{source}: class {_show(small[0])} has only {int(counts[classes == small[0]][0])} "
            f"row(s); need at least {MIN_ROWS_PER_CLASS} per class (train, dev and test)"
        )


def _show(label: object) -> str:
    return repr(label.item() if isinstance(label, np.generic) else label)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    rows: list[tuple[int, list[str]]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for row in reader:
                cells = [c.strip() for c in row]
                if any(cells):  # blank lines are not rows
                    rows.append((reader.line_num, cells))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise DataError(f"{path.name}: not a valid CSV file ({exc})") from exc
    if not rows:
        raise DataError(f"{path.name}: the file is empty")
    width = len(rows[0][1])
    if width < 2:
        raise DataError(f"{path.name}: need at least two columns (features, then the label)")
    header = _header(rows[0][1])
    if header is not None:
        rows = rows[1:]
        if not rows:
            raise DataError(f"{path.name}: a header row but no data rows")
    for line, cells in rows:
        if len(cells) != width:
            raise DataError(
                f"{path.name}: line {line} has {len(cells)} fields, expected {width} "
                "(as in the first row)"
            )
    names = header if header is not None else [f"x{j}" for j in range(width - 1)] + ["label"]
    label_col = _label_column(names)
    feat_cols = [j for j in range(width) if j != label_col]
    feature_names = tuple(names[j] or f"x{j}" for j in feat_cols)
    cells_ = [[cells[j] for j in feat_cols] for _, cells in rows]
    try:
        X = np.array(cells_, dtype=np.float64).reshape(len(rows), len(feat_cols))
    except ValueError:
        X = _parse_cells(path, rows, feat_cols, feature_names)
    if not np.all(np.isfinite(X)):
        _parse_cells(path, rows, feat_cols, feature_names)  # raises, naming the cell
    for line, cells in rows:
        if not cells[label_col]:
            raise DataError(f"{path.name}: line {line}: the label ({names[label_col]!r}) is empty")
    return X, _labels_from_text([cells[label_col] for _, cells in rows]), feature_names


def _parse_cells(
    path: Path, rows: list[tuple[int, list[str]]], cols: list[int], names: tuple[str, ...]
) -> np.ndarray:
    """Parse the feature cells one by one; the first bad one raises a located DataError.

    The slow path behind NumPy's bulk conversion, which fails without saying where.
    """
    out = np.empty((len(rows), len(cols)), dtype=np.float64)
    for i, (line, cells) in enumerate(rows):
        for k, j in enumerate(cols):
            try:
                value = float(cells[j])
            except ValueError:
                value = None
            if value is None or not math.isfinite(value):
                what = (
                    "is empty"
                    if not cells[j]
                    else ("is not a number" if value is None else "is not finite")
                )
                raise DataError(
                    f"{path.name}: line {line}, column {names[k]!r}: {cells[j]!r} {what}; "
                    "features must be finite numbers"
                )
            out[i, k] = value
    return out


def _header(first: list[str]) -> list[str] | None:
    """The first row as column names if it looks like a header, else None."""
    if any(c.lower() in LABEL_COLUMN_NAMES for c in first):
        return first
    # The label may be a string even in data rows, so only the feature cells decide.
    if any(not _is_number(c) for c in first[:-1]):
        return first
    return None


def _label_column(names: Sequence[str]) -> int:
    lowered = [n.lower() for n in names]
    for wanted in LABEL_COLUMN_NAMES:
        if wanted in lowered:
            return lowered.index(wanted)
    return len(names) - 1


def _labels_from_text(texts: list[str]) -> np.ndarray:
    """Integer labels when every label is an integer (``3`` or ``3.0``), else strings."""
    try:
        return np.array([int(t) for t in texts], dtype=np.int64)
    except ValueError:
        pass
    try:
        values = [float(t) for t in texts]
    except ValueError:
        return np.array(texts, dtype=str)
    if all(math.isfinite(v) and v.is_integer() for v in values):
        return np.array(values, dtype=np.int64)
    return np.array(texts, dtype=str)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path.name}: not a valid .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path.name}: expected an .npz archive with arrays 'X' and 'y'")
    with archive:
        missing = [k for k in ("X", "y") if k not in archive.files]
        if missing:
            raise DataError(
                f"{path.name}: missing array(s) {', '.join(map(repr, missing))}; the archive "
                f"holds {', '.join(map(repr, archive.files)) or 'nothing'} (need 'X' and 'y')"
            )
        arrays = {k: _npz_array(archive, k, path) for k in archive.files}
    X, y = arrays["X"], arrays["y"]
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise DataError(
            f"{path.name}: X must be a 2-D numeric array (n_samples, n_features), got shape "
            f"{X.shape} of dtype {X.dtype}"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{path.name}: y must be 1-D (n_samples,), got shape {y.shape}")
    if len(X) != len(y):
        raise DataError(f"{path.name}: X has {len(X)} rows but y has {len(y)}; they must match")
    if len(X) == 0 or X.shape[1] == 0:
        raise DataError(f"{path.name}: X is empty (shape {X.shape})")
    X = X.astype(np.float64)
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        r, c = (int(v) for v in bad[0])
        raise DataError(f"{path.name}: X[row {r}, column {c}] is {X[r, c]}; must be finite")
    return X, _npz_labels(y, path), _npz_feature_names(arrays.get("feature_names"), X, path)


def _npz_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except ValueError as exc:
        # numpy refuses object arrays when allow_pickle=False: unpickling could run code.
        raise DataError(
            f"{path.name}: array {key!r} holds pickled objects (an object array); save plain "
            "numeric or string arrays instead"
        ) from exc


def _npz_labels(y: np.ndarray, path: Path) -> np.ndarray:
    if y.dtype.kind in "biu":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        if np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            return y.astype(np.int64)
        raise DataError(f"{path.name}: y holds non-integer numbers; labels must be classes")
    if y.dtype.kind in "US":
        return y.astype(str)
    raise DataError(f"{path.name}: y must hold integer or string labels, got dtype {y.dtype}")


def _npz_feature_names(names: np.ndarray | None, X: np.ndarray, path: Path) -> tuple[str, ...]:
    if names is None:
        return tuple(f"x{j}" for j in range(X.shape[1]))
    if names.dtype.kind not in "US" or names.shape != (X.shape[1],):
        raise DataError(
            f"{path.name}: feature_names must be {X.shape[1]} strings, got shape {names.shape} "
            f"of dtype {names.dtype}"
        )
    return tuple(str(n) for n in names.astype(str))
