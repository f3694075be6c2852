from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.datafiles import DataError, check_class_counts, load_builtin, read_table


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rows(n_per_class: int = 3, labels: tuple[str, ...] = ("0", "1")) -> str:
    out = []
    for i, lab in enumerate(labels * n_per_class):
        out.append(f"{i}.5,{-i},{lab}")
    return "\n".join(out) + "\n"


# --- CSV: what is accepted ---------------------------------------------------------------


def test_csv_without_header_uses_last_column_as_integer_labels(tmp_path: Path) -> None:
    X, labels, names = read_table(write(tmp_path, rows()))
    assert X.shape == (6, 2) and X.dtype == np.float64
    assert X[1].tolist() == [1.5, -1.0]
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert names == ("x0", "x1")


def test_csv_header_names_features(tmp_path: Path) -> None:
    X, labels, names = read_table(write(tmp_path, "height,weight,species\n" + rows()))
    assert names == ("height", "weight")
    assert X.shape == (6, 2)


@pytest.mark.parametrize("label_name", ["label", "Target", "y"])
def test_csv_label_column_found_by_name(tmp_path: Path, label_name: str) -> None:
    text = f"a,{label_name},b\n" + "".join(f"{i},{i % 2},{2 * i}\n" for i in range(6))
    X, labels, names = read_table(write(tmp_path, text))
    assert names == ("a", "b")
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert X[:, 1].tolist() == [0, 2, 4, 6, 8, 10]


def test_csv_header_with_numeric_feature_names_found_by_label_name(tmp_path: Path) -> None:
    X, _, names = read_table(write(tmp_path, "0,1,label\n" + rows()))
    assert names == ("0", "1") and X.shape == (6, 2)


def test_csv_string_labels_without_header(tmp_path: Path) -> None:
    X, labels, _ = read_table(write(tmp_path, rows(labels=("cat", "dog", "ant"))))
    assert X.shape == (9, 2)
    assert labels.dtype.kind == "U"
    assert sorted(set(labels.tolist())) == ["ant", "cat", "dog"]


def test_csv_float_written_integer_labels_are_integers(tmp_path: Path) -> None:
    _, labels, _ = read_table(write(tmp_path, rows(labels=("1.0", "2.0"))))
    assert labels.dtype == np.int64 and set(labels.tolist()) == {1, 2}


def test_csv_blank_lines_bom_and_spaces_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    text = "\ufeffa, b ,label\n\n 1, 2 ,0\n3,4,1\n\n5,6,0\n7,8,1\n1,1,0\n2,2,1\n"
    path.write_bytes(text.encode())
    X, labels, names = read_table(path)
    assert names == ("a", "b")
    assert X.shape == (6, 2) and labels.tolist() == [0, 1, 0, 1, 0, 1]


# --- CSV: what is refused, and where ------------------------------------------------------


def test_csv_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        read_table(write(tmp_path, ""))


def test_csv_only_blank_lines_is_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        read_table(write(tmp_path, "\n\n  \n"))


def test_csv_header_only(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no data rows"):
        read_table(write(tmp_path, "a,b,label\n"))


def test_csv_single_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="at least two columns"):
        read_table(write(tmp_path, "1\n2\n3\n"))


def test_csv_ragged_row_names_the_line(tmp_path: Path) -> None:
    text = "a,b,label\n1,2,0\n3,4,1\n5,6\n"
    with pytest.raises(DataError, match=r"line 4 has 2 fields, expected 3"):
        read_table(write(tmp_path, text))


@pytest.mark.parametrize(
    ("cell", "what"),
    [
        ("nan", "not finite"),
        ("inf", "not finite"),
        ("-Infinity", "not finite"),
        ("abc", "not a number"),
        ("", "empty"),
    ],
)
def test_csv_bad_feature_cell_names_line_and_column(tmp_path: Path, cell: str, what: str) -> None:
    text = "a,b,label\n1,2,0\n3,4,1\n5,6,0\n" + f"7,{cell},1\n" + "1,1,0\n2,2,1\n"
    with pytest.raises(DataError, match=rf"line 5, column 'b'.*{what}"):
        read_table(write(tmp_path, text))


def test_csv_empty_label_names_the_line(tmp_path: Path) -> None:
    text = "a,label\n1,0\n2,1\n3,\n4,1\n5,0\n6,1\n"
    with pytest.raises(DataError, match=r"line 4: the label .* is empty"):
        read_table(write(tmp_path, text))


def test_csv_single_class(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="only one class"):
        read_table(write(tmp_path, rows(labels=("a",))))


def test_csv_fewer_rows_than_three_per_class(tmp_path: Path) -> None:
    text = "1,0\n2,1\n3,2\n4,3\n5,0\n"
    with pytest.raises(DataError, match=r"5 rows for 4 classes.*at least 3 rows per class"):
        read_table(write(tmp_path, text))


def test_csv_one_class_too_small(tmp_path: Path) -> None:
    text = "".join(f"{i},a\n" for i in range(5)) + "9,b\n10,b\n"
    with pytest.raises(DataError, match=r"class 'b' has only 2 row"):
        read_table(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_table(tmp_path / "nope.csv")


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"a,label\n\xe9,0\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_table(path)


# --- NPZ ----------------------------------------------------------------------------------


def npz(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_npz_reads_X_and_y(tmp_path: Path) -> None:
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    Xr, labels, names = read_table(npz(tmp_path, X=X, y=np.array([0, 1, 0, 1, 0, 1])))
    assert Xr.dtype == np.float64 and np.array_equal(Xr, X)
    assert labels.dtype == np.int64 and names == ("x0", "x1")


def test_npz_string_labels_and_feature_names(tmp_path: Path) -> None:
    path = npz(
        tmp_path, X=np.ones((6, 2)), y=np.array(["b", "a"] * 3), feature_names=np.array(["p", "q"])
    )
    _, labels, names = read_table(path)
    assert labels.tolist() == ["b", "a"] * 3 and names == ("p", "q")


def test_npz_detected_by_content_without_extension(tmp_path: Path) -> None:
    path = npz(tmp_path, X=np.ones((6, 1)), y=np.array([0, 1] * 3))
    renamed = path.rename(tmp_path / "upload-123")
    X, _, _ = read_table(renamed)
    assert X.shape == (6, 1)


def test_npz_object_array_holds_pickled_objects(tmp_path: Path) -> None:
    y = np.array([0, 1, "a", None, 1, 0], dtype=object)
    path = npz(tmp_path, X=np.ones((6, 2)), y=y)
    with pytest.raises(DataError, match="holds pickled objects"):
        read_table(path)


@pytest.mark.parametrize("missing", ["X", "y"])
def test_npz_missing_array(tmp_path: Path, missing: str) -> None:
    arrays = {"X": np.ones((6, 2)), "y": np.array([0, 1] * 3)}
    del arrays[missing]
    with pytest.raises(DataError, match=rf"missing array\(s\) '{missing}'"):
        read_table(npz(tmp_path, **arrays))


def test_npz_mismatched_lengths(tmp_path: Path) -> None:
    path = npz(tmp_path, X=np.ones((7, 2)), y=np.array([0, 1] * 3))
    with pytest.raises(DataError, match="X has 7 rows but y has 6"):
        read_table(path)


def test_npz_X_must_be_2d(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="X must be a 2-D numeric array"):
        read_table(npz(tmp_path, X=np.ones(6), y=np.array([0, 1] * 3)))


def test_npz_non_finite_feature_names_row_and_column(tmp_path: Path) -> None:
    X = np.ones((6, 3))
    X[4, 2] = np.nan
    with pytest.raises(DataError, match=r"X\[row 4, column 2\] is nan"):
        read_table(npz(tmp_path, X=X, y=np.array([0, 1] * 3)))


def test_npz_fractional_labels(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="non-integer"):
        read_table(npz(tmp_path, X=np.ones((6, 1)), y=np.array([0.5, 1.0] * 3)))


def test_npz_single_class(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="only one class"):
        read_table(npz(tmp_path, X=np.ones((6, 1)), y=np.zeros(6, dtype=int)))


def test_npz_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        read_table(npz(tmp_path, X=np.ones((0, 2)), y=np.zeros(0, dtype=int)))


def test_npz_garbage(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a valid .npz"):
        read_table(path)


# --- helpers -------------------------------------------------------------------------------


def test_check_class_counts_accepts_three_per_class() -> None:
    check_class_counts(np.array([0, 0, 0, 1, 1, 1]), "x")


def test_load_builtin_iris() -> None:
    X, y, features, classes = load_builtin("iris")
    assert X.shape == (150, 4) and y.dtype == np.int64
    assert classes == ("setosa", "versicolor", "virginica")
    assert len(features) == 4
