"""Text corpora, a character vocabulary, and batching of token streams for truncated BPTT.

Axes: N = number of tokens (time steps) in a stream, B = batch size (number of parallel
streams), V = vocabulary size, k1 = window length (time steps per truncated-BPTT chunk).

Typical use::

    text = load_pydoc_text()
    vocab = CharVocab.from_text(text)
    train, val = split_train_val(vocab.encode(text), val_fraction=0.1)
    streams = batchify(train, batch_size=32)                  # (N, B)
    for inputs, targets in iterate_bptt_windows(streams, 64):  # (<=64, B) each
        ...
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from os import PathLike

import numpy as np

from ._checks import check_int, check_real

__all__ = [
    "CharVocab",
    "batchify",
    "iterate_bptt_windows",
    "load_pydoc_text",
    "load_text",
    "num_bptt_windows",
    "bptt_window",
    "split_train_val",
]


def load_pydoc_text() -> str:
    """Return the Python documentation topics that ship with every CPython, as one string.

    Returns
    -------
    str
        The values of ``pydoc_data.topics.topics`` joined with ``"\\n"`` in sorted key order
        (deterministic for a given Python). About 465,000 characters and ~103 distinct symbols on
        CPython 3.11.7; the exact size varies a little between Python builds, so do not hard-code
        it.

    Notes
    -----
    Useful as an always-available, licence-clean (PSF) character-level corpus for tests and
    examples when no dataset file is at hand.
    """
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


def load_text(path: str | PathLike[str]) -> str:
    """Read a UTF-8 text file.

    Parameters
    ----------
    path : str or os.PathLike
        File to read.

    Returns
    -------
    str
        The decoded contents (no newline translation: ``"\\r\\n"`` is kept as is).

    Raises
    ------
    FileNotFoundError
        If the file does not exist (message names the path).
    ValueError
        If the file is not valid UTF-8 (message gives the byte offset of the first bad byte) or
        is empty.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"text file not found: {path!s}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path!s} is not valid UTF-8: byte 0x{raw[err.start]:02x} at byte offset "
            f"{err.start} ({err.reason})"
        ) from None
    if not text:
        raise ValueError(f"text file is empty: {path!s}")
    return text


class CharVocab:
    """A character vocabulary: sorted unique characters of a text, mapped to ids 0..V-1.

    Parameters
    ----------
    chars : sequence of str
        Distinct single characters in strictly increasing code-point order (as produced by
        :meth:`from_text`).

    Attributes
    ----------
    chars : list of str
        ``chars[i]`` is the character with id ``i``.

    Raises
    ------
    ValueError
        If ``chars`` is empty, has an entry that is not exactly one character, or is not strictly
        increasing.

    Notes
    -----
    Ids are assigned in code-point order, so the same text always yields the same vocabulary.
    Save with ``np.savez(f, vocab=vocab.to_array())`` and restore with
    ``CharVocab.from_array(npz["vocab"])``; no pickle involved.
    """

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        if not chars:
            raise ValueError("CharVocab needs at least one character, got none")
        for c in chars:
            if isinstance(c, int | np.integer) and not isinstance(c, bool):
                raise ValueError(f"chars: expected single characters, got the code point "
                                 f"{c!r}; rebuild a saved vocabulary (e.g. a checkpoint's "
                                 "extra/vocab) with CharVocab.from_array(codes)")
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"chars: expected single characters, got {c!r}")
        codes = np.array([ord(c) for c in chars], dtype=np.int64)
        if np.any(np.diff(codes) <= 0):
            raise ValueError("chars: expected distinct characters sorted by code point, got "
                             f"{''.join(chars)[:40]!r}")
        self.chars = chars
        self._codes = codes  # (V,) sorted code points, for searchsorted lookup

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """Build the vocabulary of all distinct characters in ``text``.

        Raises
        ------
        TypeError
            If ``text`` is not a str.
        ValueError
            If ``text`` is empty.
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        if not text:
            raise ValueError("cannot build a vocabulary from an empty text")
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"CharVocab(size={len(self)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and self.chars == other.chars

    def encode(self, text: str) -> np.ndarray:
        """Map a string to ids.

        Parameters
        ----------
        text : str
            String of N characters, all in the vocabulary.

        Returns
        -------
        np.ndarray, shape (N,), int64
            ``ids[n]`` is the id of ``text[n]``.

        Raises
        ------
        TypeError
            If ``text`` is not a str.
        ValueError
            If some characters are not in the vocabulary (all of them are named).
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)
        ids = np.searchsorted(self._codes, codes)
        ids_clipped = np.minimum(ids, len(self._codes) - 1)
        bad = self._codes[ids_clipped] != codes
        if np.any(bad):
            unknown = sorted({chr(c) for c in codes[bad]})
            shown = ", ".join(repr(c) for c in unknown[:20])
            more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
            raise ValueError(
                f"character(s) {shown}{more} not in the vocabulary of size {len(self)}"
            )
        return ids

    def decode(self, ids) -> str:
        """Map ids back to a string.

        Parameters
        ----------
        ids : array_like of int, shape (N,)

        Returns
        -------
        str
            String of N characters.

        Raises
        ------
        TypeError
            If ``ids`` is not integer.
        ValueError
            If ``ids`` is not 1-D or has an id outside ``0 .. V-1``.
        """
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"ids: expected a 1-D array (N,), got shape {arr.shape}")
        if arr.size == 0:
            return ""
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"ids: expected integers, got dtype {arr.dtype}")
        if arr.min() < 0 or arr.max() >= len(self):
            raise ValueError(
                f"ids: expected values in 0..{len(self) - 1} (a vocabulary of size {len(self)}), "
                f"got values in {arr.min()}..{arr.max()}"
            )
        return self._codes[arr].astype("<u4").tobytes().decode("utf-32-le")

    def to_array(self) -> np.ndarray:
        """Return the vocabulary as code points, shape (V,), uint32 (safe for ``np.savez``)."""
        return self._codes.astype(np.uint32)

    @classmethod
    def from_array(cls, codes) -> CharVocab:
        """Rebuild a vocabulary from :meth:`to_array` output.

        Parameters
        ----------
        codes : array_like of int, shape (V,)
            Strictly increasing Unicode code points.

        Raises
        ------
        ValueError
            If ``codes`` is not a non-empty 1-D integer array of valid, increasing code points.
        """
        arr = np.asarray(codes)
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"expected a non-empty 1-D integer array of code points, got shape {arr.shape} "
                f"dtype {arr.dtype}"
            )
        if arr.min() < 0 or arr.max() > 0x10FFFF:
            raise ValueError("code points: expected values in 0..0x10FFFF, got "
                             f"{arr.min()}..{arr.max()}")
        return cls([chr(int(c)) for c in arr])


def split_train_val(ids, val_fraction: float = 0.1):
    """Split a token stream into a leading training part and a trailing validation part.

    Parameters
    ----------
    ids : np.ndarray, shape (N,), or str
        The stream; anything 1-D that supports slicing.
    val_fraction : float, default 0.1
        Fraction in (0, 1) of the stream used for validation.

    Returns
    -------
    train : shape (N - n_val,)
        ``ids[:N - n_val]`` (a view for arrays).
    val : shape (n_val,)
        ``ids[N - n_val:]``, with ``n_val = floor(N * val_fraction)``.

    Raises
    ------
    ValueError
        If ``val_fraction`` is not in (0, 1), ``ids`` is not 1-D, or either part would be empty.
    """
    val_fraction = check_real("val_fraction", val_fraction, low=0.0, high=1.0, low_open=True,
                              high_open=True)
    if isinstance(ids, np.ndarray) and ids.ndim != 1:
        raise ValueError(f"ids: expected a 1-D array (N,), got shape {ids.shape}")
    n = len(ids)
    n_val = int(n * float(val_fraction))
    if n_val < 1 or n_val >= n:
        raise ValueError(
            f"stream of length {n} is too short to split with val_fraction={val_fraction} "
            f"(validation part would have {n_val} tokens)"
        )
    return ids[: n - n_val], ids[n - n_val :]


def batchify(ids, batch_size: int) -> np.ndarray:
    """Cut one long stream into ``batch_size`` contiguous streams, time-major.

    Parameters
    ----------
    ids : array_like, shape (N_total,) or (N_total, D)
        Token ids (any dtype; kept), or a stream of D-dimensional feature vectors (e.g. a
        multivariate time series, one row per time step).
    batch_size : int
        Number of parallel streams B.

    Returns
    -------
    np.ndarray, shape (N, B), or (N, B, D) for feature vectors
        ``N = N_total // B``; column ``b`` is ``ids[b*N:(b+1)*N]``. The last ``N_total - N*B``
        steps are dropped. A new array (not a view of ``ids``).

    Raises
    ------
    ValueError
        If ``ids`` is not 1-D or 2-D, ``batch_size < 1``, or each stream would have fewer than
        2 steps (one input and one target).

    Notes
    -----
    This is the batching of char-rnn and PyTorch's word_language_model: the hidden state of row
    ``b`` can be carried across consecutive windows because stream ``b`` continues where the
    previous window stopped. Feature vectors are laid out the same way, so a time series is
    trained with truncated BPTT exactly like a text (:class:`~lstm_bptt.train.TBPTTStream`).
    """
    arr = np.asarray(ids)
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"ids: expected 1-D (N,) token ids or 2-D (N, D) feature vectors, got shape {arr.shape}"
        )
    batch_size = check_int("batch_size", batch_size, low=1)
    n = arr.shape[0] // batch_size
    if n < 2:
        raise ValueError(
            f"stream of {arr.shape[0]} steps is too short for batch_size={batch_size}: "
            f"need at least {2 * batch_size} tokens (2 per stream)"
        )
    # (B, N, ...) rows are contiguous chunks; swap to time-major (N, B, ...).
    chunks = arr[: n * batch_size].reshape(batch_size, n, *arr.shape[1:])
    return np.ascontiguousarray(chunks.swapaxes(0, 1))


def num_bptt_windows(n_steps: int, k1: int) -> int:
    """Number of truncated-BPTT windows over N = ``n_steps`` positions with ``k1`` steps each.

    Equals ``ceil((n_steps - 1) / k1)``: every position except the last is an input exactly
    once. :func:`iterate_bptt_windows` and :class:`lstm_bptt.train.TBPTTStream` both use it.
    """
    if k1 < 1:
        raise ValueError(f"k1: expected >= 1, got {k1}")
    return max(0, -(-(n_steps - 1) // k1))


def bptt_window(n_steps: int, w: int, k1: int, k2: int | None = None) -> tuple[int, int, int]:
    """Window ``w`` of truncated BPTT over N = ``n_steps`` positions: ``(lo, start, end)``.

    The loss counts the input steps [start, end) (start = w * k1, end = min(start + k1,
    N - 1)); backpropagation runs through [lo, end): with k2 > k1 the last k2 steps (fewer only
    at the start of the stream; Williams & Peng 1990), with k2 = k1 (the default) just the
    window (plain disjoint truncation, lo = start). The one place this arithmetic is written:
    :func:`iterate_bptt_windows` and :class:`lstm_bptt.train.TBPTTStream` both call it.
    """
    k2 = k1 if k2 is None else k2
    start = w * k1
    end = min(start + k1, n_steps - 1)
    if k2 == k1:
        return start, start, end
    # lo from end, not start: a short last window must still look back k2 steps
    return max(0, end - k2), start, end


def iterate_bptt_windows(streams: np.ndarray, k1: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield consecutive (inputs, targets) windows for truncated BPTT over batchified streams.

    Parameters
    ----------
    streams : np.ndarray, shape (N, B)
        Output of :func:`batchify`.
    k1 : int
        Window length in time steps (steps of forward/backward before the state is carried on).

    Yields
    ------
    inputs : np.ndarray, shape (L, B)
        ``streams[s : s + L]``.
    targets : np.ndarray, shape (L, B)
        ``streams[s + 1 : s + 1 + L]``: the next token of each input.

    Window starts are ``s = 0, k1, 2*k1, ...`` with ``L = min(k1, N - 1 - s)``: every position
    except the last is an input exactly once, and the last window may be shorter than ``k1``.
    Both arrays are read-only views of ``streams``.

    Raises
    ------
    ValueError
        If ``streams`` is not 2-D with N >= 2 or ``k1 < 1``.
    """
    streams = np.asarray(streams)
    if streams.ndim != 2:
        raise ValueError(f"streams: expected a 2-D array (N, B), got shape {streams.shape}")
    k1 = check_int("k1", k1, low=1)
    n = streams.shape[0]
    if n < 2:
        raise ValueError(f"streams need at least 2 time steps, got N={n}")
    view = streams.view()
    view.flags.writeable = False
    for w in range(num_bptt_windows(n, k1)):
        _, start, end = bptt_window(n, w, k1)
        yield view[start:end], view[start + 1 : end + 1]
