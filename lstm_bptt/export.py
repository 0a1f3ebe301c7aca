"""Weights in and out: state dicts, safetensors written by hand, and converters to other layouts.

Three things live here, all NumPy only:

* **State dicts** (:class:`StateDictMixin`, mixed into every module and model): ``state_dict()``
  returns copies of the parameters under PyTorch's names and shapes; ``load_state_dict(sd,
  strict=True)`` copies values *into* the existing arrays (so an optimizer holding them keeps
  working) after checking every key and shape first (nothing is changed when a check fails).
* **safetensors** (:func:`save_safetensors`, :func:`load_safetensors`,
  :func:`safetensors_metadata`): the format of Hugging Face's ``safetensors`` package, written
  and read here without it. A file is ``[8 bytes: N, unsigned little-endian][N bytes: JSON
  header][raw little-endian tensor bytes]``; the header maps each name to ``{"dtype": "F64",
  "shape": [...], "data_offsets": [begin, end]}`` (offsets relative to the start of the byte
  buffer) and may hold ``"__metadata__"``, a str -> str map. A file written here loads with
  ``safetensors.torch.load_file`` straight into ``torch.nn.LSTM(...).load_state_dict(...)``.
* **Converters** between PyTorch's LSTM layout and Keras 3, Flax linen and the CS231n layout
  (:func:`lstm_to_keras`, :func:`lstm_from_keras`, :func:`lstm_to_flax`, :func:`lstm_from_flax`,
  :func:`lstm_to_cs231n`, :func:`lstm_from_cs231n`), the GRU ones for Keras and Flax
  (:func:`gru_to_keras`, :func:`gru_from_keras`, :func:`gru_to_flax`, :func:`gru_from_flax`),
  and for whole modules and models (:func:`export_weights`, :func:`import_weights`), which
  also convert Linear (dense) and Embedding layers.

Layouts (D input features, H hidden units, gate blocks of H rows or columns):

==========  ==========================================  ==========  =========================
library     weights                                     gate order  bias
==========  ==========================================  ==========  =========================
PyTorch     weight_ih (4H, D), weight_hh (4H, H)         i, f, g, o  bias_ih (4H,), bias_hh
Keras 3     kernel (D, 4H), recurrent_kernel (H, 4H)     i, f, c, o  bias (4H,) (one)
Flax linen  ii/if/ig/io kernel (D, H), hi/hf/hg/ho       one dense   hi/hf/hg/ho bias (H,)
            kernel (H, H)                                per gate    (one per gate)
CS231n      Wx (D, 4H), Wh (H, 4H)                       i, f, o, g  b (4H,) (one)
==========  ==========================================  ==========  =========================

For the LSTM, Keras's c is PyTorch's g (the candidate, tanh). Keras, Flax and CS231n have one
bias where PyTorch has two; only the sum b_ih + b_hh enters the equations, so ``to_*`` writes
the sum and ``from_*`` puts it into ``bias_ih`` and zeros into ``bias_hh``. Hence
``to(from(w)) == w`` exactly, and ``from(to(sd))`` has the same sum (so the same outputs, up to
the rounding of one addition: ~1e-16 relative in float64) but not the same split. States: Keras
passes ``initial_state=[h, c]``, Flax's carry is ``(c, h)``.

GRU (gates r, z, n in PyTorch): Keras 3 ``GRU(reset_after=True)`` has kernel (D, 3H) and
recurrent_kernel (H, 3H) in the order z, r, h and bias (2, 3H) = (input, recurrent), exactly
PyTorch's two biases; Flax ``GRUCell`` has ``ir, iz, in`` (D, H) with bias, ``hr, hz, hn``
(H, H) and a bias on ``hn`` only (see :func:`gru_to_flax`).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "StateDictMixin", "IncompatibleKeys", "load_state_dict_into", "save_safetensors",
    "load_safetensors", "safetensors_metadata", "module_metadata", "save_npz", "FORMATS",
    "lstm_to_keras", "lstm_from_keras", "lstm_to_flax", "lstm_from_flax",
    "lstm_to_cs231n", "lstm_from_cs231n", "gru_to_keras", "gru_from_keras", "gru_to_flax",
    "gru_from_flax", "rnn_to_keras", "rnn_from_keras", "rnn_to_flax", "rnn_from_flax",
    "export_weights", "import_weights",
]

# ------------------------------------------------------------------------------- state dicts


class IncompatibleKeys(NamedTuple):
    """What :meth:`StateDictMixin.load_state_dict` skipped with ``strict=False`` (as PyTorch's
    ``_IncompatibleKeys``): parameters left unchanged, and keys of the state dict not used."""

    missing_keys: list
    unexpected_keys: list


def _prefix_hint(missing, unexpected) -> str:
    """A hint when the state dict is a model's (``lstm.weight_ih_l0``) but a module's was
    expected (``weight_ih_l0``), or the other way round."""
    for m in missing:
        for u in unexpected:
            if u.endswith("." + m):
                p = u[: -len(m)]
                return (f"; the state dict's keys carry the prefix {p!r}: pass "
                        f"{{k[{len(p)}:]: v for k, v in sd.items() if k.startswith({p!r})}}")
            if m.endswith("." + u):
                p = m[: -len(u)]
                return (f"; this model's keys carry the prefix {p!r}: pass "
                        f"{{{p!r} + k: v for k, v in sd.items()}}")
    return ""


def load_state_dict_into(params: dict, sd, strict: bool = True,
                         owner: str = "module") -> IncompatibleKeys:
    """Copy the values of ``sd`` into the arrays of ``params`` in place.

    The logic behind every ``load_state_dict`` method.

    Parameters
    ----------
    params : dict str -> ndarray
        The parameters to fill (a module's or model's ``params``); their arrays are written in
        place with :func:`numpy.copyto`, never replaced.
    sd : Mapping str -> array_like
        Values under the same names and shapes (NumPy arrays, or anything ``np.asarray``
        accepts, e.g. CPU torch tensors). Dtypes: the parameter's own, or a floating dtype
        that converts to it exactly (float16 or float32 into float64, float16 into float32).
        float64 into a float32 module is refused, unlike ``torch.Tensor.copy_``, because it
        would round silently: cast it yourself (``{k: v.astype(np.float32) ...}``).
    strict : bool
        True: every parameter must be present and no other key allowed. False: missing
        parameters keep their values and unexpected keys are ignored; both are returned.
    owner : str
        Name used in error messages.

    Returns
    -------
    IncompatibleKeys (missing_keys, unexpected_keys), both empty when ``strict``.

    Raises
    ------
    TypeError
        ``sd`` is not a mapping, a key is not a str, or a value is not real floating point
        (integer, bool, complex or object arrays are refused rather than cast), or would lose
        precision (float64 into float32).
    ValueError
        (``strict``) a missing or unexpected key; (always) a value whose shape differs from the
        parameter's, or NaN / inf values (a damaged model). All checks run before any copy,
        so on error ``params`` is unchanged.
    """
    if not isinstance(sd, Mapping):
        raise TypeError(f"state_dict: expected a mapping of names to arrays, got "
                        f"{type(sd).__name__}")
    bad = [k for k in sd if not isinstance(k, str)]
    if bad:
        raise TypeError(f"state_dict: expected str keys, got {bad[0]!r}")
    missing = [k for k in params if k not in sd]
    unexpected = [k for k in sd if k not in params]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing key(s) {missing}")
        if unexpected:
            parts.append(f"unexpected key(s) {unexpected}")
        raise ValueError(f"state_dict for {owner}: expected exactly the keys {list(params)}, "
                         f"got {' and '.join(parts)}{_prefix_hint(missing, unexpected)}")
    values = {}
    for k, p in params.items():
        if k not in sd:
            continue
        v = np.asarray(sd[k])
        if v.dtype.kind != "f":
            raise TypeError(f"state_dict[{k!r}]: expected a floating-point array, got dtype "
                            f"{v.dtype}")
        if not np.can_cast(v.dtype, p.dtype, casting="safe"):
            raise TypeError(f"state_dict[{k!r}]: expected dtype {p.dtype} (or one that "
                            f"converts exactly), got {v.dtype}; cast it yourself if you mean "
                            "to round")
        if v.shape != p.shape:
            raise ValueError(f"state_dict[{k!r}]: expected shape {p.shape} (as {owner}'s "
                             f"parameter), got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"state_dict[{k!r}]: expected finite values, got "
                             f"{int((~np.isfinite(v)).sum())} NaN/inf")
        values[k] = v
    for k, v in values.items():
        np.copyto(params[k], v, casting="safe")
    return IncompatibleKeys(missing if not strict else [], unexpected if not strict else [])


class StateDictMixin:
    """``state_dict`` / ``load_state_dict`` with PyTorch's names, for any class with ``params``.

    The key names are those of the equivalent PyTorch module: ``weight_ih_l0``, ...,
    ``bias_hh_l1_reverse`` for ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` (plus ``weight_hr_l{k}``
    with ``proj_size``), ``weight``/``bias`` for ``nn.Linear`` and ``nn.Embedding``, and
    ``<attribute>.<name>`` for a model (``"lstm.weight_ih_l0"``, ``"head.weight"``,
    ``"embedding.weight"``), i.e. what ``state_dict()`` gives for a ``torch.nn.Module`` with
    attributes ``embedding = nn.Embedding(V, E)`` (CharLM with ``embedding_dim``), ``lstm =
    nn.LSTM(D, H, L)`` (named after the cell: ``gru = nn.GRU(...)``, ``rnn = nn.RNN(...)``)
    and ``head = nn.Linear(H, out)`` (``2H`` inputs after a bidirectional layer).
    """

    params: dict

    def state_dict(self) -> dict:
        """Copies of the parameters: ``{name: ndarray}`` in PyTorch's order, names and shapes
        (e.g. ``weight_ih_l0`` (4H, D)); changing them does not change the module."""
        return {k: np.array(v, copy=True) for k, v in self.params.items()}

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy ``state_dict``'s values into the parameters, in place.

        Parameters
        ----------
        state_dict : Mapping str -> array_like
            As returned by :meth:`state_dict` (here or by PyTorch, converted with ``.numpy()``
            or read from safetensors); shapes must match exactly; the dtype must be the
            module's or convert to it exactly (float32 into float64: yes; float64 into
            float32: refused).
        strict : bool
            Refuse missing and unexpected keys (default), or skip them and report them.

        Returns
        -------
        IncompatibleKeys (missing_keys, unexpected_keys)

        Raises
        ------
        TypeError, ValueError
            See :func:`load_state_dict_into`; the module is unchanged when it raises.
        """
        return load_state_dict_into(self.params, state_dict, strict, type(self).__name__)


# ------------------------------------------------------------------------- atomic writing


def _fsync_dir(directory: Path) -> None:
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


# ------------------------------------------------------------------------------ converters

FORMATS = ("keras", "flax", "cs231n")
_GATES = "ifgo"  # PyTorch's order of the four H-blocks
_CS231N_ORDER = [0, 1, 3, 2]  # CS231n's (i, f, o, g) as PyTorch block indices (self-inverse)
_LAYER_KEY = re.compile(r"^weight_ih_l(\d+)(_reverse)?$")
_KNOWN_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l\d+(_reverse)?$")


def _layers(sd: Mapping) -> list[str]:
    """Layer suffixes ``l0``, ``l0_reverse``, ``l1``, ... of a recurrent state dict, in order.

    Any other key is refused, so that a parameter these layouts cannot hold (a peephole or
    layer-norm weight, say) is never dropped silently.
    """
    found = []
    for k in sd:
        if not _KNOWN_KEY.match(str(k)):
            raise ValueError(f"state_dict: key {k!r} has no equivalent in the Keras, Flax or "
                             "CS231n layouts (expected weight_ih_l<k>, weight_hh_l<k>, "
                             "bias_ih_l<k>, bias_hh_l<k>, optionally with _reverse)")
        m = _LAYER_KEY.match(k)
        if m:
            found.append((int(m.group(1)), bool(m.group(2)), k[len("weight_ih_"):]))
    if not found:
        raise ValueError(f"state_dict: expected recurrent weights named weight_ih_l0, ..., got "
                         f"keys {list(sd)[:6]}")
    return [s for _, _, s in sorted(found)]


def _rec_layer(sd: Mapping, s: str, G: int, cell: str):
    """(W_ih (G*H, D), W_hh (G*H, H), b_ih, b_hh (G*H,) or None, H) of layer suffix ``s``."""
    if f"weight_hr_{s}" in sd:
        raise ValueError(f"state_dict: weight_hr_{s} present: an LSTM with proj_size has no "
                         "equivalent in Keras, Flax or CS231n")
    try:
        w_ih, w_hh = np.asarray(sd[f"weight_ih_{s}"]), np.asarray(sd[f"weight_hh_{s}"])
    except KeyError as exc:
        raise ValueError(f"state_dict: missing {exc.args[0]}") from None
    if w_hh.ndim != 2 or w_ih.ndim != 2 or w_hh.shape[0] != G * w_hh.shape[1] \
            or w_ih.shape[0] != w_hh.shape[0]:
        raise ValueError(f"state_dict: expected {cell} layer weights, weight_ih_{s} ({G}H, D) "
                         f"and weight_hh_{s} ({G}H, H), got {w_ih.shape} and {w_hh.shape}")
    H = w_hh.shape[1]
    has = [f"bias_ih_{s}" in sd, f"bias_hh_{s}" in sd]
    if has[0] != has[1]:
        raise ValueError(f"state_dict: expected both bias_ih_{s} and bias_hh_{s} or neither")
    b_ih = b_hh = None
    if has[0]:
        b_ih, b_hh = np.asarray(sd[f"bias_ih_{s}"]), np.asarray(sd[f"bias_hh_{s}"])
        for n, v in ((f"bias_ih_{s}", b_ih), (f"bias_hh_{s}", b_hh)):
            if v.shape != (G * H,):
                raise ValueError(f"state_dict: expected {n} of shape ({G * H},), got {v.shape}")
    return w_ih, w_hh, b_ih, b_hh, H


def _lstm_layer(sd: Mapping, s: str):
    """(W_ih (4H, D), W_hh (4H, H), b = b_ih + b_hh (4H,) or None, H) of layer suffix ``s``."""
    w_ih, w_hh, b_ih, b_hh, H = _rec_layer(sd, s, 4, "LSTM")
    return w_ih, w_hh, None if b_ih is None else b_ih + b_hh, H


def _get(weights: Mapping, key: str, shape: tuple, what: str) -> np.ndarray:
    if key not in weights:
        raise ValueError(f"{what}: missing {key!r} (keys: {list(weights)[:8]})")
    v = np.asarray(weights[key])
    if v.dtype.kind != "f":
        raise TypeError(f"{what}[{key!r}]: expected a floating-point array, got dtype {v.dtype}")
    if v.shape != shape:
        want = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{what}[{key!r}]: expected shape {want}, got {v.shape}")
    return v


def _torch_layer(out: dict, s: str, w_ih, w_hh, b, bias: bool, what: str,
                 b_hh=None) -> None:
    """Store one layer in PyTorch names; ``b`` (G*H,) or None goes into bias_ih, ``b_hh`` (None:
    zeros) into bias_hh."""
    out[f"weight_ih_{s}"] = np.ascontiguousarray(w_ih)
    out[f"weight_hh_{s}"] = np.ascontiguousarray(w_hh)
    zeros = np.zeros(w_ih.shape[0], w_ih.dtype)
    if bias:
        out[f"bias_ih_{s}"] = zeros.copy() if b is None else np.array(b)
        out[f"bias_hh_{s}"] = zeros if b_hh is None else np.array(b_hh)
    elif any(v is not None and np.any(v != 0) for v in (b, b_hh)):
        raise ValueError(f"{what}: layer {s} has a non-zero bias but bias=False was asked")


def _source_layers(weights: Mapping, what: str) -> list[str]:
    if not isinstance(weights, Mapping):
        raise TypeError(f"{what}: expected a mapping of names to arrays, got "
                        f"{type(weights).__name__}")
    found = set()
    for k in weights:
        m = re.match(r"^l(\d+)(_reverse)?/", str(k))
        if not m:
            raise ValueError(f"{what}: unexpected key {k!r} (expected 'l<k>/...' or "
                             "'l<k>_reverse/...')")
        found.add((int(m.group(1)), bool(m.group(2))))
    if not found:
        raise ValueError(f"{what}: no layers found")
    return [f"l{k}{'_reverse' if r else ''}" for k, r in sorted(found)]


def lstm_to_keras(sd: Mapping) -> dict:
    """PyTorch LSTM state dict -> Keras 3 ``LSTM`` weights, one group per layer.

    Parameters
    ----------
    sd : Mapping
        ``weight_ih_l{k}`` (4H, D), ``weight_hh_l{k}`` (4H, H), optional ``bias_ih_l{k}``,
        ``bias_hh_l{k}`` (4H,), and ``..._reverse`` for a bidirectional layer.

    Returns
    -------
    dict
        ``"l{k}/kernel"`` (D, 4H) = W_ih^T, ``"l{k}/recurrent_kernel"`` (H, 4H) = W_hh^T,
        ``"l{k}/bias"`` (4H,) = b_ih + b_hh (absent without bias: ``LSTM(use_bias=False)``);
        same dtype. Keras's gate order (i, f, c, o) is PyTorch's. Load into layer k with
        ``layer.set_weights([w["l0/kernel"], w["l0/recurrent_kernel"], w["l0/bias"]])``; a
        ``_reverse`` group is the ``backward_layer`` of ``keras.layers.Bidirectional``.

    Raises
    ------
    ValueError
        Not an LSTM state dict (e.g. GRU shapes), or ``weight_hr`` (proj_size) present.

    Notes
    -----
    Keras's defaults (``activation="tanh"``, ``recurrent_activation="sigmoid"``) are this
    LSTM's equations. Keras 3 maps float64 to float32 in its type promotion outside TensorFlow,
    so a "float64" Keras LSTM on the JAX backend evaluates its tanh in float32 (outputs within
    ~5e-8 of ours; with ``activation=jax.numpy.tanh`` within 2e-16).
    """
    return _to_keras_one_bias(sd, 4, "LSTM")


def _to_keras_one_bias(sd: Mapping, G: int, cell: str) -> dict:
    """Keras layout of a cell with G gate blocks in PyTorch's order and one summed bias."""
    out = {}
    for s in _layers(sd):
        w_ih, w_hh, b_ih, b_hh, _ = _rec_layer(sd, s, G, cell)
        out[f"{s}/kernel"] = np.ascontiguousarray(w_ih.T)  # (D, G*H)
        out[f"{s}/recurrent_kernel"] = np.ascontiguousarray(w_hh.T)  # (H, G*H)
        if b_ih is not None:
            out[f"{s}/bias"] = b_ih + b_hh  # (G*H,)
    return out


def lstm_from_keras(weights: Mapping, bias: bool = True) -> dict:
    """Keras 3 ``LSTM`` weights -> PyTorch LSTM state dict (inverse of :func:`lstm_to_keras`).

    Parameters
    ----------
    weights : Mapping
        ``"l{k}/kernel"`` (D, 4H), ``"l{k}/recurrent_kernel"`` (H, 4H) and optionally
        ``"l{k}/bias"`` (4H,) per layer (``layer.get_weights()`` of ``LSTM`` k in that order),
        ``l{k}_reverse/...`` for the backward half of a ``Bidirectional``.
    bias : bool
        True: ``bias_ih`` = Keras's bias (zeros if the layer has none), ``bias_hh`` = 0.
        False: no bias entries (refused if Keras's bias is non-zero).

    Returns
    -------
    dict with ``weight_ih_l{k}`` (4H, D), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (4H,).

    Raises
    ------
    ValueError
        A missing or misshapen array, an unknown key, a non-zero bias with ``bias=False``.
    """
    return _from_keras_one_bias(weights, bias, 4, "keras weights")


def _from_keras_one_bias(weights: Mapping, bias: bool, G: int, what: str) -> dict:
    """Inverse of :func:`_to_keras_one_bias`: the bias goes into bias_ih, bias_hh = 0."""
    out = {}
    for s in _source_layers(weights, what):
        rk = np.asarray(weights.get(f"{s}/recurrent_kernel", np.empty((0, 0))))
        if rk.ndim != 2 or rk.shape[1] != G * rk.shape[0] or rk.shape[0] == 0:
            gh = "H" if G == 1 else f"{G}H"
            raise ValueError(f"{what}[{s + '/recurrent_kernel'!r}]: expected shape (H, {gh}), "
                             f"got {rk.shape}")
        H = rk.shape[0]
        kernel = np.asarray(weights.get(f"{s}/kernel", np.empty((0,))))
        if kernel.ndim != 2:
            raise ValueError(f"{what}[{s + '/kernel'!r}]: expected shape (D, {G * H}), got "
                             f"{kernel.shape}")
        kernel = _get(weights, f"{s}/kernel", (kernel.shape[0], G * H), what)
        rk = _get(weights, f"{s}/recurrent_kernel", (H, G * H), what)
        b = _get(weights, f"{s}/bias", (G * H,), what) if f"{s}/bias" in weights else None
        extra = set(k for k in weights if k.startswith(s + "/")) - {
            f"{s}/kernel", f"{s}/recurrent_kernel", f"{s}/bias"}
        if extra:
            raise ValueError(f"{what}: unexpected key(s) {sorted(extra)}")
        _torch_layer(out, s, kernel.T, rk.T, b, bias, what)
    return out


def lstm_to_flax(sd: Mapping) -> dict:
    """PyTorch LSTM state dict -> Flax linen ``LSTMCell`` params, one group per layer.

    Parameters
    ----------
    sd : Mapping
        As for :func:`lstm_to_keras`.

    Returns
    -------
    dict
        Per layer ``"l{k}/i{g}/kernel"`` (D, H) = (block g of W_ih)^T and
        ``"l{k}/h{g}/kernel"`` (H, H) = (block g of W_hh)^T, ``"l{k}/h{g}/bias"`` (H,) = block
        g of b_ih + b_hh (zeros without bias: Flax's hidden dense layers always have one), for
        g in i, f, g, o. ``flax.traverse_util.unflatten_dict(w, sep="/")["l0"]`` is the
        ``params`` collection of ``nn.LSTMCell(features=H)``; its carry is ``(c, h)``.

    Raises
    ------
    ValueError
        As :func:`lstm_to_keras`.
    """
    out = {}
    for s in _layers(sd):
        w_ih, w_hh, b, H = _lstm_layer(sd, s)
        if b is None:
            b = np.zeros(4 * H, w_ih.dtype)
        for j, g in enumerate(_GATES):
            rows = slice(j * H, (j + 1) * H)
            out[f"{s}/i{g}/kernel"] = np.ascontiguousarray(w_ih[rows].T)  # (D, H)
            out[f"{s}/h{g}/kernel"] = np.ascontiguousarray(w_hh[rows].T)  # (H, H)
            out[f"{s}/h{g}/bias"] = b[rows].copy()  # (H,)
    return out


def lstm_from_flax(weights: Mapping, bias: bool = True) -> dict:
    """Flax linen ``LSTMCell`` params -> PyTorch LSTM state dict (inverse of
    :func:`lstm_to_flax`).

    Parameters
    ----------
    weights : Mapping
        Per layer the twelve arrays ``"l{k}/i{g}/kernel"`` (D, H), ``"l{k}/h{g}/kernel"`` (H, H),
        ``"l{k}/h{g}/bias"`` (H,) for g in i, f, g, o, e.g.
        ``{"l0/" + k: v for k, v in flax.traverse_util.flatten_dict(params, sep="/").items()}``.
    bias : bool
        True: ``bias_ih`` = the hidden dense biases, ``bias_hh`` = 0. False: no bias entries
        (refused if Flax's biases are non-zero).

    Returns
    -------
    dict with ``weight_ih_l{k}`` (4H, D), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (4H,), gates stacked i, f, g, o.

    Raises
    ------
    ValueError
        A missing, misshapen or unknown array; a non-zero bias with ``bias=False``.
    """
    what = "flax weights"
    out = {}
    for s in _source_layers(weights, what):
        hk = np.asarray(weights.get(f"{s}/hi/kernel", np.empty((0, 1))))
        if hk.ndim != 2 or hk.shape[0] != hk.shape[1] or hk.shape[0] == 0:
            raise ValueError(f"{what}[{s + '/hi/kernel'!r}]: expected shape (H, H), got "
                             f"{hk.shape}")
        H = hk.shape[0]
        ik = np.asarray(weights.get(f"{s}/ii/kernel", np.empty((0,))))
        D = ik.shape[0] if ik.ndim == 2 else -1
        keys = set()
        w_ih, w_hh, b = [], [], []
        for g in _GATES:
            w_ih.append(_get(weights, f"{s}/i{g}/kernel", (D, H), what).T)
            w_hh.append(_get(weights, f"{s}/h{g}/kernel", (H, H), what).T)
            b.append(_get(weights, f"{s}/h{g}/bias", (H,), what))
            keys |= {f"{s}/i{g}/kernel", f"{s}/h{g}/kernel", f"{s}/h{g}/bias"}
        extra = set(k for k in weights if k.startswith(s + "/")) - keys
        if extra:
            raise ValueError(f"{what}: unexpected key(s) {sorted(extra)} (input dense layers "
                             "ii, if, ig, io have no bias in Flax's LSTMCell)")
        _torch_layer(out, s, np.concatenate(w_ih), np.concatenate(w_hh), np.concatenate(b),
                     bias, what)
    return out


def _cs231n_blocks(a: np.ndarray, H: int) -> np.ndarray:
    """Swap the g and o blocks of a (4H, ...) array: PyTorch's (i, f, g, o) <-> (i, f, o, g)."""
    return a.reshape(4, H, *a.shape[1:])[_CS231N_ORDER].reshape(a.shape)


def lstm_to_cs231n(sd: Mapping) -> dict:
    """PyTorch LSTM state dict -> the CS231n / Karpathy layout, one group per layer.

    Parameters
    ----------
    sd : Mapping
        As for :func:`lstm_to_keras`.

    Returns
    -------
    dict
        ``"l{k}/Wx"`` (D, 4H), ``"l{k}/Wh"`` (H, 4H), ``"l{k}/b"`` (4H,) (zeros without bias),
        columns in the gate order i, f, o, g, for ``a = x @ Wx + prev_h @ Wh + b`` of CS231n's
        ``lstm_step_forward``. Karpathy's ``lstm.py`` keeps the same three in one matrix:
        ``WLSTM = np.vstack([b, Wx, Wh])`` (1 + D + H, 4H), order IFOG.

    Raises
    ------
    ValueError
        As :func:`lstm_to_keras`.
    """
    out = {}
    for s in _layers(sd):
        w_ih, w_hh, b, H = _lstm_layer(sd, s)
        if b is None:
            b = np.zeros(4 * H, w_ih.dtype)
        out[f"{s}/Wx"] = np.ascontiguousarray(_cs231n_blocks(w_ih, H).T)  # (D, 4H)
        out[f"{s}/Wh"] = np.ascontiguousarray(_cs231n_blocks(w_hh, H).T)  # (H, 4H)
        out[f"{s}/b"] = _cs231n_blocks(b, H)  # (4H,)
    return out


def lstm_from_cs231n(weights: Mapping, bias: bool = True) -> dict:
    """CS231n layout -> PyTorch LSTM state dict (inverse of :func:`lstm_to_cs231n`).

    Parameters
    ----------
    weights : Mapping
        ``"l{k}/Wx"`` (D, 4H), ``"l{k}/Wh"`` (H, 4H), ``"l{k}/b"`` (4H,), gates i, f, o, g.
    bias : bool
        True: ``bias_ih`` = b, ``bias_hh`` = 0. False: no bias entries (b must be zero).

    Returns
    -------
    dict with ``weight_ih_l{k}`` (4H, D), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (4H,), gates stacked i, f, g, o.

    Raises
    ------
    ValueError
        A missing, misshapen or unknown array; a non-zero b with ``bias=False``.
    """
    what = "cs231n weights"
    out = {}
    for s in _source_layers(weights, what):
        wh = np.asarray(weights.get(f"{s}/Wh", np.empty((0, 0))))
        if wh.ndim != 2 or wh.shape[1] != 4 * wh.shape[0] or wh.shape[0] == 0:
            raise ValueError(f"{what}[{s + '/Wh'!r}]: expected shape (H, 4H), got {wh.shape}")
        H = wh.shape[0]
        wx = np.asarray(weights.get(f"{s}/Wx", np.empty((0,))))
        D = wx.shape[0] if wx.ndim == 2 else -1
        wx = _get(weights, f"{s}/Wx", (D, 4 * H), what)
        wh = _get(weights, f"{s}/Wh", (H, 4 * H), what)
        b = _get(weights, f"{s}/b", (4 * H,), what)
        extra = set(k for k in weights if k.startswith(s + "/")) - {
            f"{s}/Wx", f"{s}/Wh", f"{s}/b"}
        if extra:
            raise ValueError(f"{what}: unexpected key(s) {sorted(extra)}")
        _torch_layer(out, s, _cs231n_blocks(wx.T, H), _cs231n_blocks(wh.T, H),
                     _cs231n_blocks(b, H), bias, what)
    return out


# --------------------------------------------------------------------------- GRU converters
_GRU_KERAS = [1, 0, 2]  # Keras's (z, r, h) blocks as PyTorch's (r, z, n) indices; self-inverse


def _gru_keras_blocks(a: np.ndarray, H: int) -> np.ndarray:
    return a.reshape(3, H, *a.shape[1:])[_GRU_KERAS].reshape(a.shape)


def gru_to_keras(sd: Mapping) -> dict:
    """PyTorch GRU state dict -> Keras 3 ``GRU(reset_after=True)`` weights (exact both ways).

    Parameters
    ----------
    sd : Mapping
        ``weight_ih_l{k}`` (3H, D), ``weight_hh_l{k}`` (3H, H), optional ``bias_ih_l{k}``,
        ``bias_hh_l{k}`` (3H,), gates r, z, n; ``..._reverse`` for a bidirectional layer.

    Returns
    -------
    dict
        ``"l{k}/kernel"`` (D, 3H), ``"l{k}/recurrent_kernel"`` (H, 3H), column blocks in Keras's
        order z, r, h; ``"l{k}/bias"`` (2, 3H) = (input bias, recurrent bias) (absent without
        bias: ``GRU(use_bias=False)``). Keras 3's default ``reset_after=True`` applies the reset
        gate after the recurrent matmul and keeps both biases, exactly PyTorch's
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h.

    Raises
    ------
    ValueError
        Not a GRU state dict.
    """
    out = {}
    for s in _layers(sd):
        w_ih, w_hh, b_ih, b_hh, H = _rec_layer(sd, s, 3, "GRU")
        out[f"{s}/kernel"] = np.ascontiguousarray(_gru_keras_blocks(w_ih, H).T)  # (D, 3H)
        out[f"{s}/recurrent_kernel"] = np.ascontiguousarray(_gru_keras_blocks(w_hh, H).T)
        if b_ih is not None:
            out[f"{s}/bias"] = np.stack([_gru_keras_blocks(b_ih, H),
                                         _gru_keras_blocks(b_hh, H)])  # (2, 3H)
    return out


def gru_from_keras(weights: Mapping, bias: bool = True) -> dict:
    """Keras 3 ``GRU(reset_after=True)`` weights -> PyTorch GRU state dict (inverse of
    :func:`gru_to_keras`; both biases kept, so exact in both directions).

    Parameters
    ----------
    weights : Mapping
        ``"l{k}/kernel"`` (D, 3H), ``"l{k}/recurrent_kernel"`` (H, 3H), optional
        ``"l{k}/bias"`` (2, 3H) per layer.
    bias : bool
        True: bias entries (zeros if Keras has none). False: none (Keras's must be zero).

    Returns
    -------
    dict with ``weight_ih_l{k}`` (3H, D), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (3H,), gates r, z, n.

    Raises
    ------
    ValueError
        A missing, misshapen or unknown array (a (3H,) bias means ``reset_after=False``, which
        PyTorch's GRU cannot express); a non-zero bias with ``bias=False``.
    """
    what = "keras GRU weights"
    out = {}
    for s in _source_layers(weights, what):
        rk = np.asarray(weights.get(f"{s}/recurrent_kernel", np.empty((0, 0))))
        if rk.ndim != 2 or rk.shape[1] != 3 * rk.shape[0] or rk.shape[0] == 0:
            raise ValueError(f"{what}[{s + '/recurrent_kernel'!r}]: expected shape (H, 3H), "
                             f"got {rk.shape}")
        H = rk.shape[0]
        kernel = np.asarray(weights.get(f"{s}/kernel", np.empty((0,))))
        kernel = _get(weights, f"{s}/kernel", (kernel.shape[0] if kernel.ndim == 2 else -1,
                                               3 * H), what)
        b = None
        if f"{s}/bias" in weights:
            if np.shape(weights[f"{s}/bias"]) == (3 * H,):
                raise ValueError(f"{what}[{s + '/bias'!r}]: a (3H,) bias is Keras's "
                                 "reset_after=False GRU, which PyTorch's GRU cannot express; "
                                 "expected (2, 3H)")
            b = _get(weights, f"{s}/bias", (2, 3 * H), what)
        extra = set(k for k in weights if k.startswith(s + "/")) - {
            f"{s}/kernel", f"{s}/recurrent_kernel", f"{s}/bias"}
        if extra:
            raise ValueError(f"{what}: unexpected key(s) {sorted(extra)}")
        _torch_layer(out, s, _gru_keras_blocks(kernel.T, H),
                     _gru_keras_blocks(np.asarray(weights[f"{s}/recurrent_kernel"]).T, H),
                     None if b is None else _gru_keras_blocks(b[0], H), bias, what,
                     b_hh=None if b is None else _gru_keras_blocks(b[1], H))
    return out


def gru_to_flax(sd: Mapping) -> dict:
    """PyTorch GRU state dict -> Flax linen ``GRUCell`` params, one group per layer.

    Returns
    -------
    dict
        ``"l{k}/i{g}/kernel"`` (D, H) and ``"l{k}/i{g}/bias"`` (H,) for g in r, z, n;
        ``"l{k}/h{g}/kernel"`` (H, H); ``"l{k}/hn/bias"`` (H,). Flax's r and z have one bias
        each, so ``ir/bias`` = b_ir + b_hr and ``iz/bias`` = b_iz + b_hz (only the sums enter
        the equations); ``in/bias`` = b_in and ``hn/bias`` = b_hn stay apart, as the reset gate
        multiplies W_hn h + b_hn. Zeros without bias. Carry: h.

    Raises
    ------
    ValueError
        Not a GRU state dict.
    """
    out = {}
    for s in _layers(sd):
        w_ih, w_hh, b_ih, b_hh, H = _rec_layer(sd, s, 3, "GRU")
        if b_ih is None:
            b_ih = b_hh = np.zeros(3 * H, w_ih.dtype)
        for j, g in enumerate("rzn"):
            rows = slice(j * H, (j + 1) * H)
            out[f"{s}/i{g}/kernel"] = np.ascontiguousarray(w_ih[rows].T)  # (D, H)
            out[f"{s}/i{g}/bias"] = b_ih[rows] + (b_hh[rows] if g != "n" else 0)  # (H,)
            out[f"{s}/h{g}/kernel"] = np.ascontiguousarray(w_hh[rows].T)  # (H, H)
        out[f"{s}/hn/bias"] = b_hh[2 * H:].copy()
    return out


def gru_from_flax(weights: Mapping, bias: bool = True) -> dict:
    """Flax linen ``GRUCell`` params -> PyTorch GRU state dict (inverse of :func:`gru_to_flax`:
    ``bias_ih`` = (ir, iz, in biases), ``bias_hh`` = (0, 0, hn bias), so ``to(from(w)) == w``).

    Parameters
    ----------
    weights : Mapping
        Per layer ``"l{k}/i{g}/kernel"`` (D, H), ``"l{k}/i{g}/bias"`` (H,),
        ``"l{k}/h{g}/kernel"`` (H, H) for g in r, z, n, and ``"l{k}/hn/bias"`` (H,).
    bias : bool
        False: no bias entries (Flax's biases must then be zero).

    Returns
    -------
    dict with ``weight_ih_l{k}`` (3H, D), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (3H,), gates r, z, n.

    Raises
    ------
    ValueError
        A missing, misshapen or unknown array; a non-zero bias with ``bias=False``.
    """
    what = "flax GRU weights"
    out = {}
    for s in _source_layers(weights, what):
        hk = np.asarray(weights.get(f"{s}/hr/kernel", np.empty((0, 1))))
        if hk.ndim != 2 or hk.shape[0] != hk.shape[1] or hk.shape[0] == 0:
            raise ValueError(f"{what}[{s + '/hr/kernel'!r}]: expected shape (H, H), got "
                             f"{hk.shape}")
        H = hk.shape[0]
        ik = np.asarray(weights.get(f"{s}/ir/kernel", np.empty((0,))))
        D = ik.shape[0] if ik.ndim == 2 else -1
        w_ih, w_hh, b_ih, keys = [], [], [], {f"{s}/hn/bias"}
        for g in "rzn":
            w_ih.append(_get(weights, f"{s}/i{g}/kernel", (D, H), what).T)
            b_ih.append(_get(weights, f"{s}/i{g}/bias", (H,), what))
            w_hh.append(_get(weights, f"{s}/h{g}/kernel", (H, H), what).T)
            keys |= {f"{s}/i{g}/kernel", f"{s}/i{g}/bias", f"{s}/h{g}/kernel"}
        b_hn = _get(weights, f"{s}/hn/bias", (H,), what)
        extra = set(k for k in weights if k.startswith(s + "/")) - keys
        if extra:
            raise ValueError(f"{what}: unexpected key(s) {sorted(extra)}")
        b_hh = np.concatenate([np.zeros(2 * H, b_hn.dtype), b_hn])
        _torch_layer(out, s, np.concatenate(w_ih), np.concatenate(w_hh), np.concatenate(b_ih),
                     bias, what, b_hh=b_hh)
    return out


# --------------------------------------------------------------------------- RNN converters


def rnn_to_keras(sd: Mapping) -> dict:
    """PyTorch RNN (Elman) state dict -> Keras 3 ``SimpleRNN`` weights.

    Parameters
    ----------
    sd : Mapping
        ``weight_ih_l{k}`` (H, D), ``weight_hh_l{k}`` (H, H), optional ``bias_ih_l{k}``,
        ``bias_hh_l{k}`` (H,); ``..._reverse`` for a bidirectional layer.

    Returns
    -------
    dict
        ``"l{k}/kernel"`` (D, H) = W_ih^T, ``"l{k}/recurrent_kernel"`` (H, H) = W_hh^T,
        ``"l{k}/bias"`` (H,) = b_ih + b_hh (absent without bias). ``SimpleRNN(H,
        activation=...)`` with PyTorch's ``nonlinearity`` ("tanh" or "relu").
    """
    return _to_keras_one_bias(sd, 1, "RNN")


def rnn_from_keras(weights: Mapping, bias: bool = True) -> dict:
    """Keras 3 ``SimpleRNN`` weights -> PyTorch RNN state dict (inverse of
    :func:`rnn_to_keras`; the bias goes into ``bias_ih``, ``bias_hh`` = 0)."""
    return _from_keras_one_bias(weights, bias, 1, "keras SimpleRNN weights")


def rnn_to_flax(sd: Mapping) -> dict:
    """PyTorch RNN state dict -> Flax linen ``SimpleCell`` params.

    Returns
    -------
    dict
        ``"l{k}/i/kernel"`` (D, H) = W_ih^T, ``"l{k}/i/bias"`` (H,) = b_ih + b_hh (zeros
        without bias), ``"l{k}/h/kernel"`` (H, H) = W_hh^T; ``SimpleCell(features=H,
        activation_fn=...)`` with PyTorch's ``nonlinearity`` (``residual=False``).
    """
    out = {}
    for s, w in _to_keras_one_bias(sd, 1, "RNN").items():
        layer, name = s.rsplit("/", 1)
        key = {"kernel": "i/kernel", "recurrent_kernel": "h/kernel", "bias": "i/bias"}[name]
        out[f"{layer}/{key}"] = w
    for s in _layers(sd):
        if f"{s}/i/bias" not in out:
            out[f"{s}/i/bias"] = np.zeros(out[f"{s}/h/kernel"].shape[0],
                                          out[f"{s}/h/kernel"].dtype)
    return out


def rnn_from_flax(weights: Mapping, bias: bool = True) -> dict:
    """Flax linen ``SimpleCell`` params -> PyTorch RNN state dict (inverse of
    :func:`rnn_to_flax`; ``bias_ih`` = ``i/bias``, ``bias_hh`` = 0)."""
    what = "flax SimpleCell weights"
    if not isinstance(weights, Mapping):
        raise TypeError(f"{what}: expected a mapping of names to arrays, got "
                        f"{type(weights).__name__}")
    renamed = {}
    for k, v in weights.items():
        layer, _, name = str(k).partition("/")
        new = {"i/kernel": "kernel", "h/kernel": "recurrent_kernel", "i/bias": "bias"}.get(name)
        if new is None:
            raise ValueError(f"{what}: unexpected key {k!r} (expected l<k>/i/kernel, "
                             "l<k>/i/bias, l<k>/h/kernel)")
        renamed[f"{layer}/{new}"] = v
    return _from_keras_one_bias(renamed, bias, 1, what)


_TO = {"lstm": {"keras": lstm_to_keras, "flax": lstm_to_flax, "cs231n": lstm_to_cs231n},
       "gru": {"keras": gru_to_keras, "flax": gru_to_flax},
       "rnn": {"keras": rnn_to_keras, "flax": rnn_to_flax}}
_FROM = {"lstm": {"keras": lstm_from_keras, "flax": lstm_from_flax, "cs231n": lstm_from_cs231n},
         "gru": {"keras": gru_from_keras, "flax": gru_from_flax},
         "rnn": {"keras": rnn_from_keras, "flax": rnn_from_flax}}
# Linear (weight (out, in), bias) and Embedding (weight (V, E)) in each format
_DENSE = {"keras": ("kernel", "bias"), "flax": ("kernel", "bias"), "cs231n": ("w", "b")}
_EMBED = {"keras": "embeddings", "flax": "embedding", "cs231n": "W_embed"}


def _check_format(fmt) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {list(FORMATS)}, got {fmt!r}")
    return fmt


def _converter(table: dict, module, fmt: str):
    """The converter of ``table`` for the recurrent ``module``'s cell, or a clear error."""
    cell = getattr(getattr(module, "cell", None), "name", None)
    if cell is None:  # a layer without a cell object: tell LSTM and GRU apart by the shapes
        w = module.params["weight_hh_l0"]
        cell = {4: "lstm", 3: "gru", 1: "rnn"}.get(w.shape[0] // max(w.shape[1], 1), "?")
    if cell not in table or fmt not in table[cell]:
        raise ValueError(f"format {fmt!r}: no converter for {cell!r} layers (LSTM: keras, flax, "
                         "cs231n; GRU, RNN: keras, flax)")
    return table[cell][fmt]


def _kind(module) -> str:
    params = getattr(module, "params", None)
    if not isinstance(params, dict):
        raise TypeError(f"expected a module or model with a params dict, got "
                        f"{type(module).__name__}")
    if "weight_ih_l0" in params:
        return "recurrent"
    if hasattr(module, "num_embeddings"):
        return "embedding"
    if hasattr(module, "in_features"):
        return "linear"
    raise TypeError(f"{type(module).__name__}: no converter for this module")


def _parts(obj) -> dict:
    """``{prefix: module}``: a model's named modules, or ``{"": obj}`` for a single module."""
    modules = getattr(obj, "modules", None)
    if isinstance(modules, dict) and modules:
        return dict(modules)
    return {"": obj}


def export_weights(obj, fmt: str) -> dict:
    """A module's or model's weights in another library's layout, as a flat dict.

    Parameters
    ----------
    obj : LSTM layer, Linear, Embedding, or a model (CharLM, SequenceClassifier,
        SequenceRegressor)
    fmt : {"keras", "flax", "cs231n"}

    Returns
    -------
    dict str -> ndarray (copies)
        For a model, keys ``"<module>/<...>"``: the LSTM as :func:`lstm_to_keras` /
        :func:`lstm_to_flax` / :func:`lstm_to_cs231n` (``"lstm/l0/kernel"``, ...), a Linear
        as a dense layer (``"head/kernel"`` (H, out) = weight^T and ``"head/bias"`` for Keras
        ``Dense`` and Flax ``nn.Dense``; ``"head/w"``, ``"head/b"`` for CS231n's
        ``affine_forward``), an Embedding as ``"embedding/embeddings"`` (Keras),
        ``"embedding/embedding"`` (Flax ``nn.Embed``) or ``"embedding/W_embed"`` (CS231n),
        all (V, E). A single module has no ``"<module>/"`` prefix. With ``sep="/"``,
        ``flax.traverse_util.unflatten_dict`` turns the dict into a nested params tree.

    Raises
    ------
    ValueError
        Unknown format; a layer with no equivalent (GRU/RNN cells, proj_size).
    """
    fmt = _check_format(fmt)
    out = {}
    for name, module in _parts(obj).items():
        pre = f"{name}/" if name else ""
        kind, p = _kind(module), module.params
        if kind == "recurrent":
            converted = _converter(_TO, module, fmt)(p)
        elif kind == "linear":
            wname, bname = _DENSE[fmt]
            converted = {wname: np.ascontiguousarray(p["weight"].T)}  # (in, out)
            if "bias" in p:
                converted[bname] = p["bias"].copy()
        else:
            converted = {_EMBED[fmt]: p["weight"].copy()}  # (V, E)
        out.update({pre + k: v for k, v in converted.items()})
    return out


def import_weights(obj, weights: Mapping, fmt: str) -> None:
    """Load weights in another library's layout into a module or model, in place.

    The inverse of :func:`export_weights` (same keys). Recurrent layers take the single bias
    as ``bias_ih`` (``bias_hh`` = 0); a source without bias loads into a model with bias as
    zeros, and a non-zero bias into a model without bias is refused. Everything is converted
    and checked (keys, shapes, as :meth:`StateDictMixin.load_state_dict` with ``strict=True``)
    before anything is written.

    Raises
    ------
    TypeError, ValueError
        Unknown format, missing / unexpected / misshapen arrays.
    """
    fmt = _check_format(fmt)
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights: expected a mapping of names to arrays, got "
                        f"{type(weights).__name__}")
    parts = _parts(obj)
    sd, used = {}, set()
    for name, module in parts.items():
        pre = f"{name}/" if name else ""
        mine = {k[len(pre):]: v for k, v in weights.items() if k.startswith(pre)}
        used |= {pre + k for k in mine}
        kind, p = _kind(module), module.params
        if kind == "recurrent":
            converted = _converter(_FROM, module, fmt)(
                mine, bias=any(k.startswith("bias_") for k in p))
        elif kind == "linear":
            wname, bname = _DENSE[fmt]
            converted = {"weight": _get(mine, wname, p["weight"].shape[::-1], "weights").T}
            if bname in mine:
                converted["bias"] = mine[bname]
        else:
            converted = {"weight": mine.get(_EMBED[fmt], None)}
            if converted["weight"] is None:
                raise ValueError(f"weights: missing {pre + _EMBED[fmt]!r}")
        sd.update({(f"{name}." if name else "") + k: v for k, v in converted.items()})
    unused = [k for k in weights if k not in used]
    if unused:
        raise ValueError(f"weights: unexpected key(s) {unused}")
    load_state_dict_into(obj.params, sd, True, type(obj).__name__)
