"""Checkpoints: one ``.npz`` holding everything needed to continue bit for bit.

Layout (every entry a plain array, so the file loads with ``allow_pickle=False``):

- ``__meta__``: a 0-d unicode array with JSON: format name and version, step and epoch
  counters, position in the epoch's order, hyperparameters, the run's identity (task, task
  options, split seed, dtype) and the ``np.random.Generator``'s bit-generator state.
- ``model/<name>``: weights and batch-norm running statistics (``MLP.state_dict()``).
- ``optim/<name>``: optimizer moments and its step counter.
- ``order``: the current epoch's permutation of the training rows (absent between epochs).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FORMAT = "panda-caviar-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt, foreign or does not fit this run."""


@dataclass(frozen=True)
class CheckpointState:
    """The decoded content of a checkpoint."""

    meta: dict[str, Any]
    model: dict[str, NDArray[Any]]
    optimizer: dict[str, NDArray[Any]]
    order: NDArray[np.int64] | None


def dumps(
    meta: Mapping[str, Any],
    model: Mapping[str, NDArray[Any]],
    optimizer: Mapping[str, NDArray[Any]],
    order: NDArray[np.int64] | None,
) -> bytes:
    """Serialise a checkpoint to ``.npz`` bytes (uncompressed: weights barely compress)."""
    arrays: dict[str, NDArray[Any]] = {
        "__meta__": np.array(json.dumps({"format": FORMAT, "version": VERSION, **meta}))
    }
    arrays.update({f"model/{k}": np.asarray(v) for k, v in model.items()})
    arrays.update({f"optim/{k}": np.asarray(v) for k, v in optimizer.items()})
    if order is not None:
        arrays["order"] = np.asarray(order, dtype=np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def loads(data: bytes) -> CheckpointState:
    """Decode ``.npz`` bytes made by :func:`dumps`.

    Raises:
        CheckpointError: the bytes are not a complete npz, hold pickled objects, or were not
            written by this product (format name or version differ).
    """
    arrays = _read(data, None)
    meta = _meta(arrays.pop("__meta__"))
    return CheckpointState(
        meta=meta,
        model={k[6:]: v for k, v in arrays.items() if k.startswith("model/")},
        optimizer={k[6:]: v for k, v in arrays.items() if k.startswith("optim/")},
        order=arrays.get("order"),
    )


def peek(data: bytes) -> tuple[dict[str, Any], int | None]:
    """The metadata and the epoch order's length, without decoding the weights.

    Raises:
        CheckpointError: as :func:`loads`.
    """
    arrays = _read(data, ("__meta__", "order"))
    order = arrays.get("order")
    return _meta(arrays["__meta__"]), None if order is None else len(order)


def _read(data: bytes, names: tuple[str, ...] | None) -> dict[str, NDArray[Any]]:
    """The npz entries ``names`` (all when None) that exist; ``__meta__`` must."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            wanted = npz.files if names is None else [n for n in names if n in npz.files]
            arrays = {name: npz[name] for name in wanted}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"not a readable checkpoint file ({exc})") from exc
    if "__meta__" not in arrays:
        raise CheckpointError("not a panda-caviar checkpoint: no __meta__ entry")
    return arrays


def _meta(raw: NDArray[Any]) -> dict[str, Any]:
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint metadata is not JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError("not a panda-caviar checkpoint: wrong format name")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"checkpoint version {meta.get('version')} is not {VERSION}")
    return meta


def check_identity(meta: Mapping[str, Any], identity: Mapping[str, Any]) -> None:
    """Refuse a checkpoint taken on another task, split or dtype than this run's."""
    stored = meta.get("identity", {})
    for key, value in identity.items():
        if stored.get(key) != value:
            raise CheckpointError(
                f"checkpoint belongs to another run: {key} is {stored.get(key)!r}, "
                f"this run has {value!r}"
            )
