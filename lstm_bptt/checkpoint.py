"""Checkpoints: one ``.npz`` file, no pickle, written atomically, read defensively.

A checkpoint is a nested dict (params, optimizer state, schedule state, rng state, step, config,
carried state, history, ...). Arrays are stored as ``.npz`` members under their path in the
tree (``"params/lstm.weight_ih_l0"``); everything else (numbers, strings, bools, None, lists of
those, and the tree's shape) goes into one JSON member ``__tree__``. Loading never unpickles,
so a checkpoint cannot execute code.

Atomicity: the file is written to a temporary file in the same directory, flushed and
fsync'ed, then moved over the target with :func:`os.replace` (atomic on POSIX and Windows), so a
crash at any moment leaves either the old checkpoint or the new one, never a half-written file.
The temporary file's name carries the writer's process id; the next save into that folder
removes the ones whose writer is no longer running (a run killed half-way through a write).

Defensive reading (a checkpoint may come from anywhere): only a regular file is opened (never a
device, a named pipe or a directory); the zip directory and the JSON skeleton are read first,
then only the members the skeleton refers to, each one after its declared size has been checked
against its ``.npy`` header, an optional expected shape/dtype and a total byte budget, so a
member declaring gigabytes is refused before anything is decompressed. Nesting depth and the
skeleton's size are bounded; every failure is a ``ValueError`` naming the member.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

_TREE_KEY = "__tree__"
_FORMAT = "lstm-bptt-checkpoint-v1"
#: largest JSON skeleton read (bytes): histories of millions of steps fit
MAX_TREE_BYTES = 64 << 20
#: default budget for all arrays of one checkpoint together (bytes); ``max_bytes`` raises it
MAX_ARRAY_BYTES = 1 << 30
#: deepest nesting of dicts/lists accepted in a checkpoint tree
MAX_DEPTH = 32
_ARRAY_KINDS = "biufcSU"  # bool, ints, floats, complex, bytes, str: never objects
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.pid(?P<pid>\d+)\.[^.]+\.tmp$")


class CheckpointError(ValueError):
    """A file that is not a valid lstm-bptt checkpoint (a ``ValueError``; the message names the
    file and the member at fault)."""


def _flatten(obj, path: str, arrays: dict, depth: int = 0):
    if depth > MAX_DEPTH:
        raise ValueError(f"checkpoint tree: nesting deeper than {MAX_DEPTH} levels at {path}")
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ARRAY_KINDS:
            # np.save would pickle it, and load_checkpoint (no pickle) could not read it
            # back: refuse at save time, naming where it is.
            raise TypeError(
                f"cannot store an object array (dtype {obj.dtype}) at {path or '/'} in a "
                "checkpoint: that would need pickle; convert it to a numeric or str array"
            )
        arrays[path] = obj
        return {"__array__": path}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint keys: expected str, got {k!r} at {path or '/'}")
            if "/" in k or not k:
                raise ValueError(f"checkpoint key at {path or '/'}: expected a non-empty str "
                                 f"without '/', got {k!r}")
            if not path and k == _TREE_KEY:
                raise ValueError(f"checkpoint key {k!r} is reserved (the file's own "
                                 "skeleton member); rename it")
            out[k] = _flatten(v, f"{path}/{k}" if path else k, arrays, depth + 1)
        return {"__dict__": out}
    if isinstance(obj, list | tuple):
        return {"__list__": [_flatten(v, f"{path}/{i}", arrays, depth + 1)
                             for i, v in enumerate(obj)]}
    if isinstance(obj, np.generic):
        return _flatten(obj.item(), path, arrays, depth)
    if obj is None or isinstance(obj, bool | int | float | str):
        if isinstance(obj, float) and not np.isfinite(obj):
            return {"__float__": repr(obj)}
        return obj
    raise TypeError(
        f"cannot store {type(obj).__name__} at {path or '/'} in a checkpoint "
        "(only arrays, numbers, str, bool, None, lists and dicts)"
    )


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: leave its file alone
    return True


def remove_stale_temp_files(directory) -> list[Path]:
    """Delete temporary checkpoint files in ``directory`` whose writing process has died.

    :func:`save_checkpoint` names its temporary file ``.<name>.pid<PID>.<random>.tmp``; a run
    killed during a write leaves one behind. Files of a process that is still running (a write
    in progress) are kept. Returns the removed paths.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for e in entries:
        m = _TMP_RE.match(e.name)
        if m is None or not e.is_file(follow_symlinks=False):
            continue
        pid = int(m["pid"])
        if pid != os.getpid() and _pid_alive(pid):
            continue
        try:
            os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            pass
    return removed


def _write_npz(fh, members: dict[str, np.ndarray]) -> None:
    """Write ``members`` as an uncompressed ``.npz`` (what ``np.savez`` writes, without its
    keyword arguments, so no member name can collide with them)."""
    with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in members.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as fid:
                np.lib.format.write_array(fid, np.asanyarray(arr), allow_pickle=False)


def save_checkpoint(path, tree: dict) -> Path:
    """Write ``tree`` to ``path`` (an ``.npz`` file) atomically.

    Parameters
    ----------
    path : str or Path
        Target file; its directory is created if needed. The name is used as given (no
        ``.npz`` is appended).
    tree : dict
        Nested dict whose leaves are ndarrays (numeric, bool or str dtypes), Python/NumPy
        scalars, str, bool, None, or lists of those. Keys are non-empty str without '/'; the
        top-level key ``"__tree__"`` is reserved. At most ``MAX_DEPTH`` levels deep.

    Returns
    -------
    Path of the written file.

    Raises
    ------
    TypeError
        ``tree`` is not a dict, or a leaf of another type (e.g. an arbitrary object, which
        would need pickle).
    ValueError
        A key that is empty, contains '/', or is reserved; nesting too deep.
    """
    if not isinstance(tree, dict):
        raise TypeError(f"tree: expected a dict, got {type(tree).__name__}")
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    skeleton = _flatten(tree, "", arrays)
    meta = json.dumps({"format": _FORMAT, "tree": skeleton})
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.pid{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_npz(fh, {_TREE_KEY: np.array(meta), **arrays})
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


# ------------------------------------------------------------------------------------ reading
class ArrayInfo:
    """What a checkpoint member declares (read from its ``.npy`` header, no data):
    ``name``, ``shape``, ``dtype``. :func:`peek_checkpoint` puts these where arrays will be."""

    __slots__ = ("name", "shape", "dtype", "_offset")

    def __init__(self, name, shape, dtype, offset):
        self.name, self.shape, self.dtype, self._offset = name, shape, dtype, offset

    def __repr__(self) -> str:
        return f"ArrayInfo({self.name!r}, shape={self.shape}, dtype={self.dtype})"


def _open_regular(path: Path):
    """Open ``path`` for reading if it is a regular file (never blocks on a FIFO)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: expected a checkpoint file, got a directory") from None
    except PermissionError as exc:
        raise PermissionError(f"{path}: cannot read the checkpoint: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else
                "a named pipe" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise CheckpointError(f"{path}: expected a regular checkpoint file, got {kind}")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str):
    """(shape, dtype, header length) of a ``.npy`` member, checked against its declared size."""
    try:
        with zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            header_len = fh.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError) as exc:
        raise CheckpointError(f"{where}: not a readable .npy member ({exc})") from None
    if dtype.kind not in _ARRAY_KINDS or dtype.hasobject:
        raise CheckpointError(f"{where}: expected a numeric, bool or str array, got dtype "
                              f"{dtype} (objects would need pickle)")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if info.file_size != header_len + nbytes:
        raise CheckpointError(
            f"{where}: declared size {info.file_size:,} bytes does not match its header "
            f"(shape {shape}, dtype {dtype}: {header_len + nbytes:,} bytes); corrupt or forged")
    return shape, dtype, nbytes


def _read_skeleton(path: Path, zf: zipfile.ZipFile):
    names = {}
    for info in zf.infolist():
        n = info.filename
        names[n[:-4] if n.endswith(".npy") else n] = info
    info = names.get(_TREE_KEY)
    if info is None:
        shown = sorted(names)[:5]
        raise CheckpointError(f"{path} is an .npz file but not an lstm-bptt checkpoint "
                              f"(no {_TREE_KEY!r} member; members: {shown})")
    where = f"{path}: member {_TREE_KEY}"
    shape, dtype, nbytes = _read_header(zf, info, where)
    if shape != () or dtype.kind != "U":
        raise CheckpointError(f"{where}: expected a 0-d str array, got shape {shape} dtype "
                              f"{dtype}")
    if nbytes > MAX_TREE_BYTES:
        raise CheckpointError(f"{where}: {nbytes:,} bytes, more than the {MAX_TREE_BYTES:,} "
                              "accepted for the skeleton")
    with zf.open(info) as fh:
        text = str(np.lib.format.read_array(fh, allow_pickle=False))
    try:
        meta = json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{where}: nesting too deep") from None
    except ValueError as exc:
        raise CheckpointError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else meta
        raise CheckpointError(f"{path}: unknown checkpoint format {str(fmt)[:80]!r}")
    if "tree" not in meta:
        raise CheckpointError(f"{where}: expected a 'tree' entry, got keys {sorted(meta)[:5]}")
    return names, meta["tree"]


def _unflatten(node, leaf: Callable, where: str, depth: int = 0):
    """Rebuild the tree from the skeleton; ``leaf(name, where)`` supplies each array."""
    if depth > MAX_DEPTH:
        raise CheckpointError(f"{where}: nesting deeper than {MAX_DEPTH} levels")
    if isinstance(node, dict):
        if len(node) != 1:
            raise CheckpointError(f"{where}: malformed skeleton node with keys "
                                  f"{sorted(node)[:5]}")
        (kind, value), = node.items()
        if kind == "__array__" and isinstance(value, str):
            return leaf(value, where)
        if kind == "__dict__" and isinstance(value, dict):
            return {k: _unflatten(v, leaf, f"{where}/{k}" if where else k, depth + 1)
                    for k, v in value.items()}
        if kind == "__list__" and isinstance(value, list):
            return [_unflatten(v, leaf, f"{where}/{i}", depth + 1) for i, v in enumerate(value)]
        if kind == "__float__" and value in ("nan", "inf", "-inf"):
            return float(value)
        raise CheckpointError(f"{where}: malformed skeleton node {kind!r}")
    if isinstance(node, list):
        raise CheckpointError(f"{where}: malformed skeleton (bare list)")
    return node


def _scan(path, expect, max_bytes):
    """Open ``path`` and return (file, zip, tree of ArrayInfo leaves) after every check that
    needs no decompression of array data."""
    path = Path(path)
    fh = _open_regular(path)
    try:
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a readable .npz checkpoint: not a zip "
                                  f"archive ({exc})") from None
        names, skeleton = _read_skeleton(path, zf)
        budget = [MAX_ARRAY_BYTES if max_bytes is None else int(max_bytes)]
        seen = set()

        def info_leaf(name, where):
            info = names.get(name)
            if info is None or name == _TREE_KEY:
                raise CheckpointError(f"{path}: {where or '/'}: the array member {name!r} is "
                                      "missing; the file is corrupt")
            if name in seen:
                raise CheckpointError(f"{path}: {where}: member {name!r} is used twice")
            seen.add(name)
            shape, dtype, nbytes = _read_header(zf, info, f"{path}: member {name}")
            want = None if expect is None else (
                expect(name) if callable(expect) else expect.get(name))
            if want is not None:
                wshape, wdtype = tuple(want[0]), np.dtype(want[1])
                if shape != wshape or dtype != wdtype:
                    raise CheckpointError(
                        f"{path}: member {name}: expected shape {wshape} and dtype {wdtype}, "
                        f"got shape {shape} and dtype {dtype}")
            budget[0] -= nbytes
            if budget[0] < 0:
                limit = MAX_ARRAY_BYTES if max_bytes is None else int(max_bytes)
                raise CheckpointError(
                    f"{path}: member {name}: the arrays declare more than max_bytes = "
                    f"{limit:,} bytes in total; refusing to decompress them (pass a larger "
                    "max_bytes if this checkpoint is genuine)")
            return ArrayInfo(name, shape, dtype, info)

        try:
            tree = _unflatten(skeleton, info_leaf, "")
        except RecursionError:
            raise CheckpointError(f"{path}: checkpoint tree nested too deeply") from None
        return fh, zf, tree
    except BaseException:
        fh.close()
        raise


def _map_leaves(tree, fn):
    if isinstance(tree, ArrayInfo):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: _map_leaves(v, fn) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_map_leaves(v, fn) for v in tree]
    return tree


def _read_data(member) -> np.ndarray:
    """One array member's data (its header was checked by :func:`_scan`)."""
    return np.lib.format.read_array(member, allow_pickle=False)


def peek_checkpoint(path, *, max_bytes=None) -> dict:
    """The checkpoint's tree with every array replaced by its :class:`ArrayInfo` (name, shape,
    dtype), without reading array data: for checking a config before building a model.

    Raises
    ------
    As :func:`load_checkpoint`.
    """
    fh, zf, tree = _scan(path, None, max_bytes)
    fh.close()
    return tree


def load_checkpoint(path, *, expect=None, max_bytes=None) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or Path
        A regular file (devices, named pipes and directories are refused without reading).
    expect : mapping or callable, optional
        Member name (``"params/head.weight"``) -> ``(shape, dtype)`` that member must have, or a
        callable returning that pair or None for a name. Checked from the ``.npy`` headers,
        before any array data is read.
    max_bytes : int, optional
        Budget for all arrays together (default :data:`MAX_ARRAY_BYTES`, 1 GiB), checked from
        the declared sizes before decompression.

    Returns
    -------
    dict : the tree, with arrays loaded into memory (dtype and shape as saved). Members the
    skeleton does not refer to are never read.

    Raises
    ------
    FileNotFoundError
        No such file.
    PermissionError
        The file cannot be read.
    CheckpointError (a ValueError)
        Not a regular file, not a zip/npz, not an lstm-bptt checkpoint, a malformed or too
        deeply nested skeleton, a member missing, forged (declared size vs header), of an
        object dtype, of an unexpected shape/dtype, or over the byte budget. The message names
        the member.
    """
    fh, zf, tree = _scan(path, expect, max_bytes)
    path = Path(path)

    def read(info: ArrayInfo):
        try:
            with zf.open(info._offset) as member:
                arr = _read_data(member)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise CheckpointError(f"{path}: member {info.name}: unreadable ({exc})") from None
        return arr

    try:
        return _map_leaves(tree, read)
    finally:
        fh.close()


def check_finite_tree(tree, where: str = "") -> None:
    """Raise ValueError naming the first float array in ``tree`` holding NaN or inf."""
    if isinstance(tree, np.ndarray):
        if tree.dtype.kind in "fc" and not np.isfinite(tree).all():
            bad = tree[~np.isfinite(tree)].ravel()[0]
            raise ValueError(f"{where}: expected finite values, got {bad} "
                             f"({int((~np.isfinite(tree)).sum())} of {tree.size} non-finite)")
    elif isinstance(tree, Mapping):
        for k, v in tree.items():
            check_finite_tree(v, f"{where}/{k}" if where else str(k))
    elif isinstance(tree, list | tuple):
        for i, v in enumerate(tree):
            check_finite_tree(v, f"{where}/{i}")


def rng_state(rng: np.random.Generator) -> str:
    """A numpy Generator's bit-generator state as a JSON string (its 128-bit integers do not
    fit an int64 array)."""
    return json.dumps(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: str) -> None:
    """Restore a state produced by :func:`rng_state` into ``rng`` in place.

    Raises
    ------
    ValueError
        ``state`` is not such a JSON string for this bit generator.
    """
    try:
        rng.bit_generator.state = json.loads(state)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"rng state: expected the JSON state of a "
                         f"{type(rng.bit_generator).__name__}, got {str(state)[:60]!r} "
                         f"({exc})") from None
