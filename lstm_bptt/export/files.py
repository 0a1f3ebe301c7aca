"""Files: safetensors written and read with NumPy alone, atomic writes, and the metadata.

A safetensors file is ``[8 bytes: N, unsigned little-endian][N bytes: JSON header][raw
little-endian tensor bytes]``; the header maps each name to ``{"dtype": "F64", "shape": [...],
"data_offsets": [begin, end]}`` (offsets relative to the start of the byte buffer) and may hold
``"__metadata__"``, a str -> str map (https://github.com/huggingface/safetensors#format).
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ..checkpoint import _fsync_dir  # one directory fsync for every atomic write

# ------------------------------------------------------------------------- atomic writing


def _atomic_write(path, write: Callable, overwrite: bool) -> Path:
    """Write a file through ``write(fileobj)`` into a temporary file next to ``path``, then move
    it into place: ``os.replace`` when ``overwrite``, else a hard link that fails if ``path``
    exists (so a file appearing meanwhile is not replaced either)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"out: {path} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"out: {path} exists; refusing to replace it (pass overwrite=True "
                              "/ --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"out: {path} appeared while writing; refusing to replace "
                                      "it") from None
            except OSError:  # no hard links on this file system
                if path.exists():
                    raise FileExistsError(f"out: {path} exists; refusing to replace it") from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
        _fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def save_npz(path, arrays: Mapping, *, overwrite: bool = False) -> Path:
    """Write ``{name: ndarray}`` as an uncompressed ``.npz`` (``np.load(path)[name]``) atomically.

    Used for the Keras / Flax / CS231n exports, whose names contain ``/``.

    Raises
    ------
    FileExistsError
        ``path`` exists and not ``overwrite``.
    TypeError
        An object array (it would need pickle to load).
    """
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype.hasobject:
            raise TypeError(f"arrays[{k!r}]: expected a numeric array, got dtype {v.dtype}")
    return _atomic_write(path, lambda fh: np.savez(fh, **arrays), overwrite)


# ------------------------------------------------------------------------------ safetensors

# safetensors dtype codes -> little-endian NumPy dtypes (BF16 is read as float32, below)
_ST_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
_NP_TO_ST = {np.dtype(v).newbyteorder("=") if v[0] == "<" else np.dtype(v): k
             for k, v in _ST_DTYPES.items()}
MAX_HEADER_BYTES = 100_000_000  # the safetensors package's own limit


def save_safetensors(path, tensors: Mapping, metadata: Mapping | None = None, *,
                     overwrite: bool = False) -> Path:
    """Write ``tensors`` to a safetensors file, with NumPy only, atomically.

    Parameters
    ----------
    path : str or Path
        Target file (conventionally ``*.safetensors``); its directory is created if needed.
    tensors : Mapping str -> ndarray, or a module / model
        Any shapes (0-d and empty included) of dtype float64, float32, float16, int8..int64,
        uint8..uint64 or bool. Stored little-endian, C order, in the mapping's order. A module
        or model (anything with ``state_dict()``) stores its ``state_dict()`` and, in the
        metadata, its config (:func:`module_metadata`: class, sizes, dtype, layout).
    metadata : Mapping str -> str, optional
        The header's ``__metadata__`` (the format allows str values only: JSON-encode others);
        with a module, added to (and overriding) :func:`module_metadata`.
    overwrite : bool
        Replace an existing file. Without it an existing ``path`` is refused.

    Returns
    -------
    Path of the written file.

    Raises
    ------
    TypeError
        A name or metadata value not a str, or an unsupported dtype (e.g. object, complex).
    ValueError
        The name ``"__metadata__"`` or an empty name.
    FileExistsError
        ``path`` exists and not ``overwrite``.

    Notes
    -----
    The JSON header is padded with spaces to a multiple of 8 bytes so that the data starts
    aligned, as the reference writer does. References: the safetensors format description,
    https://github.com/huggingface/safetensors#format.
    """
    if not isinstance(tensors, Mapping) and callable(getattr(tensors, "state_dict", None)):
        metadata = {**module_metadata(tensors), **(metadata or {})}
        tensors = tensors.state_dict()
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors: expected a mapping of names to arrays or a module, got "
                        f"{type(tensors).__name__}")
    header: dict = {}
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata: expected a mapping str -> str, got "
                            f"{type(metadata).__name__}")
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"metadata: expected str keys and values (JSON-encode others), "
                                f"got {k!r}: {type(v).__name__}")
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensors: expected str names, got {name!r}")
        if name == "__metadata__" or not name:
            raise ValueError(f"tensors: the name {name!r} is not allowed")
        a = np.asarray(value)
        code = _NP_TO_ST.get(a.dtype.newbyteorder("=") if a.dtype.byteorder != "|" else a.dtype)
        if code is None:
            raise TypeError(f"tensors[{name!r}]: dtype {a.dtype} cannot be stored in safetensors "
                            "by this writer (float64/32/16, int, uint or bool)")
        data = np.ascontiguousarray(a, dtype=np.dtype(_ST_DTYPES[code])).tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    head += b" " * (-len(head) % 8)

    def write(fh):
        fh.write(len(head).to_bytes(8, "little"))
        fh.write(head)
        for data in blobs:
            fh.write(data)

    return _atomic_write(path, write, overwrite)


def _unique_keys(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r} in the header")
        d[k] = v
    return d


def _read_header(fh, path: Path, size: int) -> tuple[dict, int]:
    if size < 8:
        raise ValueError(f"{path}: not a safetensors file ({size} bytes, less than the 8-byte "
                         "header length)")
    n = int.from_bytes(fh.read(8), "little")
    if n > MAX_HEADER_BYTES:
        raise ValueError(f"{path}: not a safetensors file (header length {n} bytes exceeds the "
                         f"limit of {MAX_HEADER_BYTES})")
    if 8 + n > size:
        raise ValueError(f"{path}: truncated or not a safetensors file (header length {n} "
                         f"bytes, file {size} bytes)")
    raw = fh.read(n)
    if not raw.startswith(b"{"):
        raise ValueError(f"{path}: not a safetensors file (the header does not start with '{{')")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{path}: invalid safetensors header (not a JSON object)")
    return header, 8 + n


def _open_regular(path) -> tuple[Path, object, int]:
    path = Path(path)
    st = os.stat(path)  # FileNotFoundError with the path
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: not a regular file")
    fh = open(path, "rb")  # noqa: SIM115 - closed by the callers
    st = os.fstat(fh.fileno())
    if not stat.S_ISREG(st.st_mode):  # replaced between the two calls
        fh.close()
        raise ValueError(f"{path}: not a regular file")
    return path, fh, st.st_size


def safetensors_metadata(path) -> dict:
    """The ``__metadata__`` map (str -> str) of a safetensors file; ``{}`` if it has none.

    Reads the header only. Raises as :func:`load_safetensors`.
    """
    path, fh, size = _open_regular(path)
    with fh:
        header, _ = _read_header(fh, path, size)
    meta = header.get("__metadata__", {})
    _check_metadata(meta, path)
    return dict(meta)


def _check_metadata(meta, path) -> None:
    if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ValueError(f"{path}: invalid safetensors header (__metadata__ must map str to str)")


def load_safetensors(path) -> dict:
    """Read every tensor of a safetensors file into NumPy arrays (no ``safetensors`` package).

    Parameters
    ----------
    path : str or Path
        A regular file written by this module, by ``safetensors.torch.save_file``,
        ``safetensors.numpy.save_file``, or any conforming writer.

    Returns
    -------
    dict str -> ndarray
        In the header's order; native byte order, writeable copies. F64/F32/F16, I8..I64,
        U8..U64 and BOOL keep their dtype; BF16 is widened to float32 (exactly: bfloat16 is the
        top half of a float32).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a regular file; a header length beyond 100 MB or the file; a header that is not a
        JSON object, has duplicate keys, an entry without exactly ``dtype``, ``shape``,
        ``data_offsets``, an unknown dtype, offsets that disagree with dtype x shape, overlap,
        leave a gap or do not end at the end of the file.
    """
    path, fh, size = _open_regular(path)
    with fh:
        header, start = _read_header(fh, path, size)
        nbuf = size - start
        entries = []
        for name, e in header.items():
            if name == "__metadata__":
                _check_metadata(e, path)
                continue
            where = f"{path}: tensor {name!r}"
            if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
                raise ValueError(f"{where}: expected an entry with keys dtype, shape, "
                                 f"data_offsets, got {e!r}")
            code, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
            if code not in _ST_DTYPES and code != "BF16":
                raise ValueError(f"{where}: unsupported dtype {code!r} (supported: "
                                 f"{sorted([*_ST_DTYPES, 'BF16'])})")
            if not (isinstance(shape, list) and all(
                    isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
                raise ValueError(f"{where}: expected a list of non-negative int shape, "
                                 f"got {shape!r}")
            if not (isinstance(offs, list) and len(offs) == 2 and all(
                    isinstance(o, int) and not isinstance(o, bool) for o in offs)):
                raise ValueError(f"{where}: expected data_offsets [begin, end], got {offs!r}")
            itemsize = 2 if code == "BF16" else np.dtype(_ST_DTYPES[code]).itemsize
            nbytes = math.prod(shape) * itemsize
            b, end = offs
            if not 0 <= b <= end <= nbuf or end - b != nbytes:
                raise ValueError(f"{where}: data_offsets {offs} do not hold {code} x {shape} "
                                 f"= {nbytes} bytes inside the {nbuf}-byte buffer")
            entries.append((b, end, name, code, shape))
        pos = 0
        for b, end, name, _, _ in sorted(entries):
            if b != pos:
                raise ValueError(f"{path}: tensor {name!r} starts at byte {b} of the buffer, "
                                 f"expected {pos} (tensors must be contiguous, without gaps "
                                 "or overlaps)")
            pos = end
        if pos != nbuf:
            raise ValueError(f"{path}: the tensors cover {pos} bytes of a {nbuf}-byte buffer "
                             "(truncated file or trailing data)")
        buf = fh.read(nbuf)
    if len(buf) != nbuf:  # pragma: no cover - file shrank while reading
        raise ValueError(f"{path}: file changed while reading")
    out = {}
    for b, end, name, code, shape in entries:  # header order
        if code == "BF16":
            bits = np.frombuffer(buf, "<u2", (end - b) // 2, b).astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(shape)
        else:
            dt = np.dtype(_ST_DTYPES[code])
            a = np.frombuffer(buf, dt, (end - b) // dt.itemsize, b).reshape(shape)
            out[name] = a.astype(dt.newbyteorder("="), copy=True)
    return out


def module_metadata(obj) -> dict:
    """The ``__metadata__`` written with a module's or model's weights (str -> str).

    Keys: ``format`` = ``"pt"`` (the tensors are in PyTorch's layout, what
    ``transformers``-style loaders check for), ``lstm_bptt.class`` (e.g. ``"CharLM"``,
    ``"LSTM"``), ``lstm_bptt.config`` (JSON of the constructor arguments: sizes,
    num_layers, bidirectional, the cell and its options such as ``nonlinearity``; a model's
    ``config()``), ``lstm_bptt.layout`` (names and gate order, human-readable), and
    ``lstm_bptt.dtype``.
    """
    cls = type(obj).__name__
    if hasattr(obj, "config") and callable(obj.config):
        config = obj.config()
    else:
        names = ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
                 "bidirectional", "proj_size", "nonlinearity", "in_features", "out_features",
                 "num_embeddings", "embedding_dim")
        config = {n: getattr(obj, n) for n in names if hasattr(obj, n)}
        cell = getattr(obj, "cell", None)
        if cell is not None and hasattr(cell, "name"):
            config["cell"] = cell.name
            # the cell's own options (nonlinearity, proj_size, ...), which PyTorch takes as
            # constructor arguments
            config["cell_options"] = {k: v for k, v in getattr(cell, "__dict__", {}).items()
                                      if isinstance(v, str | int | float | bool)}
    dtype = getattr(obj, "dtype", None)
    return {
        "format": "pt",
        "lstm_bptt.class": cls,
        "lstm_bptt.config": json.dumps(config, sort_keys=True, default=str),
        "lstm_bptt.dtype": "" if dtype is None else np.dtype(dtype).name,
        "lstm_bptt.layout": "PyTorch names and shapes (weight_ih_l{k} (G*H, D), weight_hh_l{k} "
                            "(G*H, H); LSTM gates i, f, g, o; GRU r, z, n)",
    }
