"""Character n-gram baselines: add-one, interpolated Witten-Bell and interpolated Kneser-Ney.

The training CLI prints these before training an LSTM language model so the user can see where
the LSTM stands. Every model is counted from a training id sequence and scored on a validation
id sequence as cross-entropy in nats per symbol (mean over validation predictions).

All models share one shape (Chen & Goodman 1998, "interpolated" models)::

    P_k(w | h) = alpha_k(h w) + gamma_k(h) * P_{k-1}(w | h')    if h was seen as a context
    P_k(w | h) = P_{k-1}(w | h')                                 otherwise
    P_0(w)     = 1 / V

where ``h`` is the ``k - 1`` symbols before ``w``, ``h'`` drops the oldest of them, ``alpha_k``
is the (discounted) relative frequency of ``h w`` and ``gamma_k(h)`` the mass handed down. The
model is stored as one table per order (sorted integer codes of k-grams and of contexts, base V,
int64) and queried with ``np.searchsorted``, so both counting and scoring are vectorised.

Conventions
-----------
* Counts of order ``k`` come from every k-gram of the training sequence, and the context count is
  ``c(h) = sum_w c(h w)``, i.e. the occurrences of ``h`` that are followed by a symbol.
* Validation is scored as a continuation of the training text: the first validation symbols are
  conditioned on the last ``n - 1`` training symbols (so the add-one bigram conditions the first
  validation symbol on the last training symbol). Where fewer than ``k - 1`` symbols of history
  exist (only when the history is shorter than ``n - 1``), order ``k`` is treated as an unseen
  context and the model falls through to the lower order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._checks import check_int

__all__ = [
    "NGramModel",
    "fit_add_one",
    "fit_witten_bell",
    "fit_kneser_ney",
    "kneser_ney_discounts",
    "ngram_baselines",
    "format_baselines",
]

_INT64_MAX = np.iinfo(np.int64).max


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _check_vocab_size(vocab_size) -> int:
    return check_int("vocab_size", vocab_size, low=1)


def _check_order(order, vocab_size: int) -> int:
    order = check_int("order", order, low=1)
    if vocab_size ** int(order) > _INT64_MAX:
        raise ValueError(
            f"order: expected vocab_size**order <= 2**63 - 1 (int64 n-gram codes), got order "
            f"{order} with vocab_size {vocab_size}"
        )
    return int(order)


def _check_ids(ids, vocab_size: int, name: str, allow_empty: bool = False) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of ids (T,), got shape {arr.shape}")
    if arr.size == 0:
        if allow_empty:
            return arr.astype(np.int64)
        raise ValueError(f"{name}: expected at least one id, got 0 ids")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected an integer dtype, got {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"{name}: expected ids in [0, {vocab_size}), got values in [{lo}, {hi}]")
    return arr.astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------------
# counting
# --------------------------------------------------------------------------------------------
def _kgram_codes(ids: np.ndarray, k: int, vocab_size: int) -> np.ndarray:
    """Codes ``sum_j ids[i + j] * V**(k - 1 - j)`` of all k-grams of ``ids``, shape (T - k + 1,)."""
    n = ids.shape[0] - k + 1
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    code = np.zeros(n, dtype=np.int64)
    for j in range(k):  # Horner: oldest symbol is the most significant digit
        code = code * vocab_size + ids[j : j + n]
    return code


def _context_stats(gram_codes: np.ndarray, counts: np.ndarray, vocab_size: int):
    """Group sorted k-gram codes by context ``h = code // V``.

    Returns the sorted context codes, ``c(h) = sum_w c(h w)``, ``N1+(h .)`` and the inverse map
    from each k-gram to its context row.
    """
    ctx_codes, inv = np.unique(gram_codes // vocab_size, return_inverse=True)
    total = np.bincount(inv, weights=counts, minlength=ctx_codes.size)
    types = np.bincount(inv, minlength=ctx_codes.size).astype(np.float64)
    return ctx_codes, total, types, inv


@dataclass(frozen=True)
class _Level:
    """One order ``k`` of an interpolated model (see the module docstring)."""

    order: int
    gram_codes: np.ndarray  # (G,) int64, sorted codes of k-grams h w
    alpha: np.ndarray  # (G,) float64, alpha_k(h w)
    context_codes: np.ndarray  # (C,) int64, sorted codes of the (k-1)-gram contexts h
    gamma: np.ndarray  # (C,) float64, gamma_k(h)


def _lookup(sorted_codes: np.ndarray, query: np.ndarray):
    """Index of each query code in ``sorted_codes`` and whether it is present."""
    idx = np.searchsorted(sorted_codes, query)
    idx_clipped = np.minimum(idx, max(sorted_codes.size - 1, 0))
    if sorted_codes.size == 0:
        return idx_clipped, np.zeros(query.shape, dtype=bool)
    return idx_clipped, sorted_codes[idx_clipped] == query


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NGramModel:
    """A fitted interpolated n-gram model over a vocabulary of ``V`` symbols.

    Build it with :func:`fit_add_one`, :func:`fit_witten_bell` or :func:`fit_kneser_ney`.

    Attributes
    ----------
    name : str
        Human-readable name, e.g. ``"Kneser-Ney 5-gram"``.
    order : int
        ``n``: the model conditions on the ``n - 1`` preceding symbols.
    vocab_size : int
        ``V``.
    levels : tuple of _Level
        Per-order tables, increasing order; applied on top of the uniform distribution ``1/V``.

    Notes
    -----
    ``P_k(w|h) = alpha_k(hw) + gamma_k(h) P_{k-1}(w|h')`` for a context ``h`` present in the
    level's table, ``P_{k-1}(w|h')`` otherwise; ``P_0(w) = 1/V``. Each level's ``alpha`` and
    ``gamma`` satisfy ``sum_w alpha_k(hw) + gamma_k(h) = 1`` for every seen ``h``, so every
    conditional distribution sums to one by induction.
    """

    name: str
    order: int
    vocab_size: int
    levels: tuple

    def prob(self, contexts: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        """Conditional probabilities ``P(symbols[m] | contexts[m])``.

        Parameters
        ----------
        contexts : ndarray of int, shape (M, n - 1)
            The ``n - 1`` symbols before each predicted symbol, oldest first. ``-1`` marks a
            missing (before-the-start) position; missing positions must be on the left.
        symbols : ndarray of int, shape (M,)
            Predicted symbols in ``[0, V)``.

        Returns
        -------
        ndarray of float64, shape (M,)
            Probabilities in ``(0, 1]``.
        """
        V = self.vocab_size
        contexts = np.asarray(contexts, dtype=np.int64).reshape(len(symbols), self.order - 1)
        symbols = np.asarray(symbols, dtype=np.int64)
        m = symbols.shape[0]
        # Codes of the last L context symbols for every L, plus "all L present".
        ctx_code = {0: np.zeros(m, dtype=np.int64)}
        ctx_ok = {0: np.ones(m, dtype=bool)}
        place = 1
        for L in range(1, self.order):
            col = contexts[:, -L]
            ctx_ok[L] = ctx_ok[L - 1] & (col >= 0)
            ctx_code[L] = ctx_code[L - 1] + np.where(col >= 0, col, 0) * place
            place *= V
        p = np.full(m, 1.0 / V)
        for lvl in self.levels:  # increasing order: each level wraps the one below
            h = ctx_code[lvl.order - 1]
            ci, cfound = _lookup(lvl.context_codes, h)
            cfound &= ctx_ok[lvl.order - 1]
            gi, gfound = _lookup(lvl.gram_codes, h * V + symbols)
            alpha = np.where(gfound, lvl.alpha[gi] if lvl.alpha.size else 0.0, 0.0)
            gamma = lvl.gamma[ci] if lvl.gamma.size else np.zeros(m)
            p = np.where(cfound, alpha + gamma * p, p)
        return p

    def conditional_distribution(self, context: Sequence[int]) -> np.ndarray:
        """Full distribution ``P(. | context)`` over the vocabulary.

        Parameters
        ----------
        context : sequence of int, length any
            Preceding symbols, oldest first; only the last ``n - 1`` are used and a shorter
            context is treated as the start of the text.

        Returns
        -------
        ndarray of float64, shape (V,)
            Sums to one.

        Raises
        ------
        ValueError
            If ``context`` is not 1-D integer ids in ``[0, V)``.
        """
        ctx = _check_ids(context, self.vocab_size, "context", allow_empty=True)
        width = self.order - 1
        row = np.full(width, -1, dtype=np.int64)
        if width:
            tail = ctx[-width:]
            row[width - tail.size :] = tail
        V = self.vocab_size
        return self.prob(np.broadcast_to(row, (V, width)), np.arange(V, dtype=np.int64))

    def sequence_probs(self, ids, history=None) -> np.ndarray:
        """Probability of each symbol of ``ids`` given the symbols before it.

        Parameters
        ----------
        ids : array_like of int, shape (T,)
            Symbols to score, in ``[0, V)``.
        history : array_like of int, shape (S,), optional
            Symbols preceding ``ids[0]`` (e.g. the training text); only the last ``n - 1``
            are used. Default: none, i.e. ``ids`` starts the text.

        Returns
        -------
        ndarray of float64, shape (T,)
            ``P(ids[t] | history + ids[:t])`` under the ``n``-gram assumption.

        Raises
        ------
        ValueError
            If ``ids`` is empty or either array is not 1-D integer ids in ``[0, V)``.
        """
        ids = _check_ids(ids, self.vocab_size, "ids")
        hist = (
            np.empty(0, dtype=np.int64)
            if history is None
            else _check_ids(history, self.vocab_size, "history", allow_empty=True)
        )
        width = self.order - 1
        if width == 0:
            return self.prob(np.empty((ids.size, 0), dtype=np.int64), ids)
        hist = hist[hist.size - min(width, hist.size) :]
        padded = np.concatenate([np.full(width - hist.size, -1, dtype=np.int64), hist, ids])
        contexts = np.lib.stride_tricks.sliding_window_view(padded, width)[: ids.size]  # (T, n-1)
        return self.prob(contexts, ids)

    def cross_entropy(self, ids, history=None) -> float:
        """Mean negative log-probability of ``ids`` in nats per symbol.

        Parameters and Raises are those of :meth:`sequence_probs`.

        Returns
        -------
        float
            ``-(1/T) sum_t ln P(ids[t] | history + ids[:t])``, nats.
        """
        return float(-np.mean(np.log(self.sequence_probs(ids, history))))


# --------------------------------------------------------------------------------------------
# estimators
# --------------------------------------------------------------------------------------------
def fit_add_one(train_ids, vocab_size: int, order: int = 1) -> NGramModel:
    """Add-one (Laplace) n-gram model; ``order=1`` unigram, ``order=2`` bigram.

    Parameters
    ----------
    train_ids : array_like of int, shape (T,)
        Training symbols in ``[0, V)``.
    vocab_size : int
        ``V``.
    order : int, default 1
        ``n``.

    Returns
    -------
    NGramModel

    Raises
    ------
    ValueError
        Empty or out-of-range ids, non-integer dtype, ``order < 1`` or int64 code overflow.
    TypeError
        Non-integer ``vocab_size`` or ``order``.

    Notes
    -----
    ``P(w | h) = (c(h w) + 1) / (c(h) + V)`` with ``c(h) = sum_w c(h w)``; for the unigram
    ``c(h) = T``. It is written in the interpolated form with ``alpha = c(hw) / (c(h) + V)`` and
    ``gamma = V / (c(h) + V)`` on top of ``1/V``; an unseen context therefore gets ``1/V``,
    which is the add-one value ``(0 + 1) / (0 + V)``.

    References
    ----------
    Chen, S. F. & Goodman, J. (1998). An empirical study of smoothing techniques for language
    modeling. Harvard TR-10-98, section "Additive smoothing" (Laplace's law with delta = 1).
    """
    V = _check_vocab_size(vocab_size)
    n = _check_order(order, V)
    ids = _check_ids(train_ids, V, "train_ids")
    codes, counts = np.unique(_kgram_codes(ids, n, V), return_counts=True)
    counts = counts.astype(np.float64)
    ctx_codes, total, _, inv = _context_stats(codes, counts, V)
    level = _Level(n, codes, counts / (total[inv] + V), ctx_codes, V / (total + V))
    kind = {1: "unigram", 2: "bigram", 3: "trigram"}.get(n, f"{n}-gram")
    return NGramModel(f"{kind} (add-one)", n, V, (level,))


def fit_witten_bell(train_ids, vocab_size: int, order: int) -> NGramModel:
    """Interpolated Witten-Bell n-gram model, recursing down to the uniform distribution.

    Parameters
    ----------
    train_ids : array_like of int, shape (T,)
        Training symbols in ``[0, V)``.
    vocab_size : int
        ``V``.
    order : int
        ``n`` (``n >= 1``); orders ``n, n-1, ..., 1`` are interpolated, then ``1/V``.

    Returns
    -------
    NGramModel

    Raises
    ------
    ValueError
        Empty or out-of-range ids, non-integer dtype, ``order < 1`` or int64 code overflow.
    TypeError
        Non-integer ``vocab_size`` or ``order``.

    Notes
    -----
    For every order ``k = 1..n`` with raw counts ``c`` (Chen & Goodman 1998, Witten-Bell)::

        P_k(w|h) = (c(h w) + N1+(h .) P_{k-1}(w|h')) / (c(h) + N1+(h .))

    where ``N1+(h .) = |{w : c(h w) > 0}|`` and ``c(h) = sum_w c(h w)``; i.e. the escape
    probability ``1 - lambda_h = N1+(h .) / (c(h) + N1+(h .))`` is Witten & Bell's method C
    (number of distinct followers over tokens plus types). A context with ``c(h) = 0`` uses
    ``P_{k-1}`` unchanged, and ``P_0(w) = 1/V``.

    References
    ----------
    Witten, I. H. & Bell, T. C. (1991). The zero-frequency problem: estimating the probabilities
    of novel events in adaptive text compression. IEEE Trans. Inf. Theory 37(4), method C.
    Chen, S. F. & Goodman, J. (1998). An empirical study of smoothing techniques for language
    modeling. Harvard TR-10-98, section "Witten-Bell smoothing".
    """
    V = _check_vocab_size(vocab_size)
    n = _check_order(order, V)
    ids = _check_ids(train_ids, V, "train_ids")
    levels = []
    for k in range(1, n + 1):
        codes, counts = np.unique(_kgram_codes(ids, k, V), return_counts=True)
        counts = counts.astype(np.float64)
        ctx_codes, total, types, inv = _context_stats(codes, counts, V)
        denom = total + types
        levels.append(_Level(k, codes, counts / denom[inv], ctx_codes, types / denom))
    return NGramModel(f"Witten-Bell {n}-gram", n, V, tuple(levels))


def kneser_ney_discounts(counts: np.ndarray, modified: bool = True) -> tuple[float, float, float]:
    """Kneser-Ney discounts ``(D1, D2, D3+)`` from the count-of-counts of one order.

    Parameters
    ----------
    counts : ndarray, shape (G,)
        The positive counts of the k-grams of one order (raw or continuation counts).
    modified : bool, default True
        Three discounts (modified KN) or one discount used for every count (``D1 = D2 = D3+``).

    Returns
    -------
    tuple of float
        ``(D1, D2, D3+)``, the discounts subtracted from counts 1, 2 and >= 3.

    Notes
    -----
    With ``n_r`` the number of k-grams with count exactly ``r`` and ``Y = n1 / (n1 + 2 n2)``
    (Ney, Essen & Kneser 1994), single-discount KN uses ``D = Y``; modified KN uses
    ``D1 = 1 - 2Y n2/n1``, ``D2 = 2 - 3Y n3/n2``, ``D3+ = 3 - 4Y n4/n3``.

    Fallbacks for tiny data (no effect on realistic corpora): if ``n1`` or ``n2`` is zero,
    ``D = 0.5``; if modified discounts are requested but some ``n1..n4`` is zero or a discount
    falls outside ``(0, r]``, the single discount is used for all three. Every discount is
    therefore in ``(0, 1]`` or ``(0, r]``, which keeps each ``gamma(h) > 0`` and ``alpha >= 0``.

    References
    ----------
    Chen, S. F. & Goodman, J. (1998). An empirical study of smoothing techniques for language
    modeling. Harvard TR-10-98, section "Modified Kneser-Ney smoothing".
    """
    counts = np.asarray(counts)
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == r)) for r in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else 0.5
    if modified and min(n1, n2, n3, n4) > 0:
        d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
        if all(0 < dr <= r for r, dr in zip((1, 2, 3), d, strict=True)):
            return d
    return (y, y, y)


def fit_kneser_ney(train_ids, vocab_size: int, order: int, modified: bool = True) -> NGramModel:
    """Interpolated (modified) Kneser-Ney n-gram model, recursing down to uniform.

    Parameters
    ----------
    train_ids : array_like of int, shape (T,)
        Training symbols in ``[0, V)``.
    vocab_size : int
        ``V``.
    order : int
        ``n`` (``n >= 1``); orders ``n, n-1, ..., 1`` are interpolated, then ``1/V``.
    modified : bool, default True
        Modified KN with three discounts per order (Chen & Goodman's recommended variant) or
        interpolated KN with one discount ``D = n1 / (n1 + 2 n2)`` per order.

    Returns
    -------
    NGramModel

    Raises
    ------
    ValueError
        Empty or out-of-range ids, non-integer dtype, ``order < 1`` or int64 code overflow.
    TypeError
        Non-integer ``vocab_size`` or ``order``.

    Notes
    -----
    For each order ``k``, with ``a(h w)`` the raw count ``c(h w)`` at the highest order ``k = n``
    and the continuation count ``N1+(. h w) = |{x : c(x h w) > 0}|`` at lower orders::

        P_k(w|h) = max(a(h w) - D(a(h w)), 0) / a(h) + gamma(h) P_{k-1}(w|h')
        gamma(h) = (D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)) / a(h)

    with ``a(h) = sum_w a(h w)``, ``N_r(h .)`` the number of ``w`` with ``a(h w) = r``
    (``N3+``: ``>= 3``), ``D(a)`` the discount for count ``a`` and ``P_0(w) = 1/V``. Contexts
    with ``a(h) = 0`` use ``P_{k-1}`` unchanged. Discounts are estimated per order from the
    count-of-counts of the counts that order actually uses (raw at ``n``, continuation below),
    as KenLM does; see :func:`kneser_ney_discounts`. There is no start-of-text symbol, so a
    k-gram seen only at the very start of the training text has continuation count 0.

    References
    ----------
    Kneser, R. & Ney, H. (1995). Improved backing-off for m-gram language modeling. ICASSP.
    Chen, S. F. & Goodman, J. (1998). An empirical study of smoothing techniques for language
    modeling. Harvard TR-10-98, sections "Kneser-Ney smoothing" and "Modified Kneser-Ney
    smoothing" (interpolated form).
    """
    V = _check_vocab_size(vocab_size)
    n = _check_order(order, V)
    ids = _check_ids(train_ids, V, "train_ids")
    levels = []
    higher_codes = None  # unique (k+1)-gram codes, used for continuation counts of order k
    for k in range(n, 0, -1):
        raw_codes, raw_counts = np.unique(_kgram_codes(ids, k, V), return_counts=True)
        if k == n:
            codes, counts = raw_codes, raw_counts
        else:
            # N1+(. g): distinct left extensions of g = distinct (k+1)-grams with suffix g.
            codes, counts = np.unique(higher_codes % V**k, return_counts=True)
        higher_codes = raw_codes
        counts = counts.astype(np.float64)
        d1, d2, d3 = kneser_ney_discounts(counts, modified=modified)
        disc = np.where(counts == 1, d1, np.where(counts == 2, d2, d3))
        ctx_codes, total, _, inv = _context_stats(codes, counts, V)
        mass = np.bincount(inv, weights=disc, minlength=ctx_codes.size)
        alpha = np.maximum(counts - disc, 0.0) / total[inv]
        levels.append(_Level(k, codes, alpha, ctx_codes, mass / total))
    kind = "modified Kneser-Ney" if modified else "Kneser-Ney"
    name = f"{kind[0].upper()}{kind[1:]} {n}-gram"
    return NGramModel(name, n, V, tuple(reversed(levels)))


# --------------------------------------------------------------------------------------------
# the baseline table
# --------------------------------------------------------------------------------------------
def ngram_baselines(
    train_ids, val_ids, vocab_size: int, orders: Sequence[int] = (5,), modified_kn: bool = True
) -> dict[str, float]:
    """Validation cross-entropy of the n-gram baselines, in nats per symbol.

    Parameters
    ----------
    train_ids : array_like of int, shape (T_train,)
        Training symbols in ``[0, V)``.
    val_ids : array_like of int, shape (T_val,)
        Validation symbols in ``[0, V)``, scored as the continuation of ``train_ids``.
    vocab_size : int
        ``V``.
    orders : sequence of int, default (5,)
        Orders ``n`` of the Witten-Bell and Kneser-Ney models.
    modified_kn : bool, default True
        Use modified Kneser-Ney (three discounts) rather than a single discount per order.

    Returns
    -------
    dict of str to float
        Insertion-ordered: ``"unigram (add-one)"``, ``"bigram (add-one)"``, then
        ``"Witten-Bell {n}-gram"`` and ``"Kneser-Ney {n}-gram"`` for each order, each the mean
        over validation symbols of ``-ln P`` (nats/symbol).

    Raises
    ------
    ValueError
        Empty or out-of-range ids, non-integer dtype, bad orders.
    TypeError
        Non-integer ``vocab_size`` or order.

    Notes
    -----
    Counting and scoring are vectorised (int64 n-gram codes, ``np.unique``,
    ``np.searchsorted``); on ~420K training and ~47K validation characters with ``V = 103`` the
    four 5-gram baselines take well under a second.
    """
    V = _check_vocab_size(vocab_size)
    train = _check_ids(train_ids, V, "train_ids")
    val = _check_ids(val_ids, V, "val_ids")
    orders = [_check_order(k, V) for k in orders]
    results = {
        "unigram (add-one)": fit_add_one(train, V, 1).cross_entropy(val, train),
        "bigram (add-one)": fit_add_one(train, V, 2).cross_entropy(val, train),
    }
    for k in orders:
        results[f"Witten-Bell {k}-gram"] = fit_witten_bell(train, V, k).cross_entropy(val, train)
    for k in orders:
        kn = fit_kneser_ney(train, V, k, modified=modified_kn)
        results[f"Kneser-Ney {k}-gram"] = kn.cross_entropy(val, train)
    return results


def format_baselines(results: dict[str, float], unit: str = "char") -> str:
    """Format baseline cross-entropies as a small fixed-width table.

    Parameters
    ----------
    results : dict of str to float
        Model name to cross-entropy in nats per symbol, e.g. from :func:`ngram_baselines`.
    unit : str, default "char"
        The symbol name used in the column headers.

    Returns
    -------
    str
        One header line and one line per model: nats/unit, bits/unit (``nats / ln 2``) and
        perplexity (``exp(nats)``), no trailing newline.
    """
    width = max([len("model")] + [len(name) for name in results])
    header = f"{'model':<{width}}  {'nats/' + unit:>10}  {'bits/' + unit:>10}  {'perplexity':>10}"
    lines = [header]
    for name, nats in results.items():
        lines.append(
            f"{name:<{width}}  {nats:>10.4f}  {nats / math.log(2):>10.4f}  {math.exp(nats):>10.3f}"
        )
    return "\n".join(lines)
