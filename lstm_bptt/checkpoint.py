"""Checkpoints: one ``.npz`` file, no pickle, written atomically.

A checkpoint is a nested dict (params, optimizer state, schedule state, rng state, step, config,
carried state, history, ...). Arrays are stored as ``.npz`` members under their path in the
tree (``"params/lstm.weight_ih_l0"``); everything else (numbers, strings, bools, None, lists of
those, and the tree's shape) goes into one JSON member ``__tree__``. Loading uses
``allow_pickle=False``, so a checkpoint cannot execute code.

Atomicity: the file is written to a temporary file in the same directory, flushed and
fsync'ed, then moved over the target with :func:`os.replace` (atomic on POSIX and Windows), so a
crash at any moment leaves either the old checkpoint or the new one, never a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

_TREE_KEY = "__tree__"
_FORMAT = "lstm-bptt-checkpoint-v1"


def _flatten(obj, path: str, arrays: dict):
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            # np.savez would pickle it, and load_checkpoint (allow_pickle=False) could not
            # read it back: refuse at save time, naming where it is.
            raise TypeError(
                f"cannot store an object array (dtype {obj.dtype}) at {path or '/'} in a "
                "checkpoint: that would need pickle; convert it to a numeric or str array"
            )
        key = path or "_root"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint keys must be str, got {k!r} at {path or '/'}")
            if "/" in k:
                raise ValueError(f"checkpoint key {k!r} at {path or '/'} must not contain '/'")
            out[k] = _flatten(v, f"{path}/{k}" if path else k, arrays)
        return {"__dict__": out}
    if isinstance(obj, list | tuple):
        return {"__list__": [_flatten(v, f"{path}/{i}", arrays) for i, v in enumerate(obj)]}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        if isinstance(obj, float) and not np.isfinite(obj):
            return {"__float__": repr(obj)}
        return obj
    raise TypeError(
        f"cannot store {type(obj).__name__} at {path or '/'} in a checkpoint "
        "(only arrays, numbers, str, bool, None, lists and dicts)"
    )


def _unflatten(node, arrays):
    if isinstance(node, dict):
        if "__array__" in node:
            return arrays[node["__array__"]]
        if "__dict__" in node:
            return {k: _unflatten(v, arrays) for k, v in node["__dict__"].items()}
        if "__list__" in node:
            return [_unflatten(v, arrays) for v in node["__list__"]]
        if "__float__" in node:
            return float(node["__float__"])
    return node


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path, tree: dict) -> Path:
    """Write ``tree`` to ``path`` (an ``.npz`` file) atomically.

    Parameters
    ----------
    path : str or Path
        Target file; its directory is created if needed. The name is used as given (no
        ``.npz`` is appended).
    tree : dict
        Nested dict whose leaves are ndarrays, Python/NumPy scalars, str, bool, None, or lists
        of those. Keys are str without '/'.

    Returns
    -------
    Path of the written file.

    Raises
    ------
    TypeError
        A leaf of another type (e.g. an arbitrary object, which would need pickle).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    skeleton = _flatten(tree, "", arrays)
    meta = json.dumps({"format": _FORMAT, "tree": skeleton})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **{_TREE_KEY: np.array(meta)}, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    dict : the tree, with arrays loaded into memory (dtype and shape as saved).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not an lstm-bptt checkpoint (not a zip/npz, or no ``__tree__`` member).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    # np.load would accept a .npy file (returning one array) or try to unpickle other bytes;
    # only a zip archive can be a checkpoint.
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a readable .npz checkpoint: not a zip archive")
    try:
        with np.load(path, allow_pickle=False) as data:
            if _TREE_KEY not in data.files:
                raise ValueError(f"{path} is an .npz file but not an lstm-bptt checkpoint "
                                 f"(no {_TREE_KEY!r} member; members: {data.files[:5]})")
            meta = json.loads(str(data[_TREE_KEY]))
            arrays = {k: data[k] for k in data.files if k != _TREE_KEY}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npz checkpoint: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else meta
        raise ValueError(f"{path}: unknown checkpoint format {fmt!r}")
    try:
        return _unflatten(meta["tree"], arrays)
    except KeyError as exc:
        raise ValueError(f"{path}: corrupt checkpoint, missing member {exc}") from exc


def rng_state(rng: np.random.Generator) -> str:
    """A numpy Generator's bit-generator state as a JSON string (its 128-bit integers do not
    fit an int64 array)."""
    return json.dumps(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: str) -> None:
    """Restore a state produced by :func:`rng_state` into ``rng`` in place."""
    rng.bit_generator.state = json.loads(state)
