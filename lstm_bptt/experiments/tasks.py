"""Synthetic sequence tasks from the LSTM literature, with their published success criteria.

Every generator takes ``rng`` (a :class:`numpy.random.Generator` or an int seed) and never touches
the global NumPy RNG, so a seed fixes the data. Arrays are time-major: T = time, B = batch.

Tasks
-----
- Embedded Reber grammar (Hochreiter & Schmidhuber 1997, Exp. 1): :func:`reber_strings`,
  :func:`reber_batch`, :func:`reber_next_symbols`, :func:`reber_solved`.
- Adding problem, original form (1997, Exp. 4): :func:`adding_problem_hochreiter`,
  :func:`adding_solved`; and the Le, Jaitly & Hinton (2015) form: :func:`adding_problem_le`,
  :data:`ADDING_LE_BASELINE_MSE`.
- Multiplication problem (1997, Exp. 5): :func:`multiplication_problem`.
- Temporal order, two relevant symbols (1997, Exp. 6a): :func:`temporal_order`,
  :func:`temporal_order_solved`.
- Copy memory (Arjovsky, Shah & Bengio 2016): :func:`copy_memory`,
  :func:`copy_memory_baseline`, :func:`copy_memory_recall_accuracy`.

References
----------
S. Hochreiter and J. Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8):1735-1780,
1997, Section 5.
Q. V. Le, N. Jaitly and G. E. Hinton, "A Simple Way to Initialize Recurrent Networks of Rectified
Linear Units", arXiv:1504.00941, 2015, Section 4.1.
M. Arjovsky, A. Shah and Y. Bengio, "Unitary Evolution Recurrent Neural Networks", ICML 2016,
Section 4.1 (copying memory) and 4.2 (adding).
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import as_rng, check_dtype_arg, check_int

__all__ = [
    "ADDING_LE_BASELINE_MSE",
    "REBER_SYMBOLS",
    "TEMPORAL_ORDER_CLASSES",
    "TEMPORAL_ORDER_SYMBOLS",
    "adding_problem_hochreiter",
    "adding_problem_le",
    "adding_solved",
    "copy_memory",
    "copy_memory_baseline",
    "copy_memory_recall_accuracy",
    "multiplication_problem",
    "multiplication_solved",
    "one_hot",
    "reber_accepts",
    "reber_batch",
    "reber_next_symbols",
    "reber_prediction_correct",
    "reber_solved",
    "reber_strings",
    "temporal_order",
    "temporal_order_solved",
]


def one_hot(ids, num_classes: int, dtype=np.float64) -> np.ndarray:
    """One-hot encode integer ids.

    Parameters
    ----------
    ids : array_like of int, any shape S
    num_classes : int
        V; ids must lie in ``0 .. V-1``.
    dtype : {np.float32, np.float64}, default np.float64

    Returns
    -------
    np.ndarray, shape S + (V,)

    Raises
    ------
    ValueError
        If an id is outside ``0 .. V-1``.
    """
    ids = np.asarray(ids)
    num_classes = check_int("num_classes", num_classes, low=1)
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"ids: expected values in 0..{num_classes - 1}, got "
                         f"{ids.min()}..{ids.max()}")
    return np.eye(num_classes, dtype=check_dtype_arg(dtype))[ids]


# --------------------------------------------------------------------------------------------
# Embedded Reber grammar (Exp. 1)
# --------------------------------------------------------------------------------------------

#: Symbol order of the one-hot code used by :func:`reber_batch`.
REBER_SYMBOLS = ("B", "T", "P", "S", "X", "V", "E")
_REBER_INDEX = {s: i for i, s in enumerate(REBER_SYMBOLS)}

# The (inner) Reber automaton of Cleeremans, Servan-Schreiber & McClelland (1989) / Fig. 3 of the
# 1997 paper. State -> {symbol: next state}; state 1 follows the initial B, state 6 expects E.
_REBER_EDGES = {
    1: {"T": 2, "P": 3},
    2: {"S": 2, "X": 4},
    3: {"T": 3, "V": 5},
    4: {"X": 3, "S": 6},
    5: {"P": 4, "V": 6},
}


def _inner_reber(rng: np.random.Generator) -> str:
    out = ["B"]
    state = 1
    while state != 6:
        options = list(_REBER_EDGES[state].items())
        symbol, state = options[rng.integers(2)]
        out.append(symbol)
    out.append("E")
    return "".join(out)


def reber_strings(n: int, rng, embedded: bool = True) -> list[str]:
    """Generate random (embedded) Reber strings.

    Parameters
    ----------
    n : int
        Number of strings.
    rng : np.random.Generator or int
    embedded : bool, default True
        If True, strings of the embedded grammar ``B T <reber> T E`` or ``B P <reber> P E``;
        otherwise plain Reber strings ``B ... E``.

    Returns
    -------
    list of str
        Each over the alphabet ``BTPSXVE``. At every branch point both continuations have
        probability 0.5, so plain Reber strings have length 5 + a geometric tail.

    Notes
    -----
    Reber automaton (states after the leading B): 1 -T-> 2, 1 -P-> 3; 2 -S-> 2, 2 -X-> 4;
    3 -T-> 3, 3 -V-> 5; 4 -X-> 3, 4 -S-> end; 5 -P-> 4, 5 -V-> end; end -E->.
    The embedded grammar's penultimate symbol repeats the second one, a dependency spanning the
    whole inner string; it is the only deterministic prediction except within fixed transitions.

    References
    ----------
    Hochreiter & Schmidhuber 1997, Section 5.1 (Exp. 1) and Fig. 3; A. Cleeremans,
    D. Servan-Schreiber and J. L. McClelland, "Finite state automata and simple recurrent
    networks", Neural Computation 1(3), 1989.
    """
    n = check_int("n", n, low=1)
    gen = as_rng(rng)
    out = []
    for _ in range(n):
        inner = _inner_reber(gen)
        if embedded:
            branch = "TP"[gen.integers(2)]
            out.append("B" + branch + inner + branch + "E")
        else:
            out.append(inner)
    return out


def reber_next_symbols(string: str, embedded: bool = True) -> list[frozenset[str]]:
    """Return the set of legal next symbols after each prefix of a grammatical string.

    Parameters
    ----------
    string : str
        A complete (embedded) Reber string of length L.
    embedded : bool, default True

    Returns
    -------
    list of frozenset of str, length L - 1
        Entry ``t`` is the set of symbols that may follow ``string[:t + 1]`` (the targets of the
        next-symbol prediction task; the final E has no successor and no entry).

    Raises
    ------
    ValueError
        If ``string`` is not accepted by the grammar (message gives the position).
    """
    if not isinstance(string, str):
        raise TypeError(f"string: expected a str, got {type(string).__name__}")
    sets: list[frozenset[str]] = []
    pos = 0

    def expect(allowed: frozenset[str]) -> str:
        nonlocal pos
        if pos >= len(string):
            raise ValueError(f"{string!r} ends early: expected one of {sorted(allowed)} at {pos}")
        sym = string[pos]
        if sym not in allowed:
            raise ValueError(
                f"{string!r} is not a Reber string: {sym!r} at position {pos}, "
                f"expected one of {sorted(allowed)}"
            )
        pos += 1
        return sym

    def inner() -> None:
        expect(frozenset("B"))
        state = 1
        sets.append(frozenset(_REBER_EDGES[state]))
        while state != 6:
            state = _REBER_EDGES[state][expect(frozenset(_REBER_EDGES[state]))]
            sets.append(frozenset(_REBER_EDGES[state]) if state != 6 else frozenset("E"))
        expect(frozenset("E"))

    if embedded:
        expect(frozenset("B"))
        sets.append(frozenset("TP"))
        branch = expect(frozenset("TP"))
        sets.append(frozenset("B"))
        inner()
        sets.append(frozenset(branch))  # after the inner E only the remembered branch is legal
        expect(frozenset(branch))
        sets.append(frozenset("E"))
        expect(frozenset("E"))
    else:
        inner()
    if pos != len(string):
        raise ValueError(f"{string!r} has trailing symbols after position {pos - 1}")
    return sets[: len(string) - 1]


def reber_accepts(string: str, embedded: bool = True) -> bool:
    """True iff ``string`` is a complete string of the (embedded) Reber grammar."""
    try:
        reber_next_symbols(string, embedded=embedded)
    except ValueError:
        return False
    return True


def reber_batch(strings: list[str], embedded: bool = True, dtype=np.float64):
    """Encode Reber strings for next-symbol prediction, padded to a common length.

    Parameters
    ----------
    strings : list of str
        B grammatical strings; T = max length - 1.
    embedded : bool, default True
        Which grammar defines the legal successors.
    dtype : {np.float32, np.float64}, default np.float64

    Returns
    -------
    inputs : np.ndarray, shape (T, B, 7)
        One-hot symbol ``string[t]`` in :data:`REBER_SYMBOLS` order; zero after the string.
    targets : np.ndarray, shape (T, B, 7)
        Multi-hot set of legal successors of ``string[:t + 1]`` (the grammar is
        nondeterministic, so usually two ones; one at fixed transitions and at the penultimate
        symbol of the embedded grammar).
    mask : np.ndarray, shape (T, B), bool
        True where a target exists (``t < len(string) - 1``).

    Raises
    ------
    ValueError
        If a string is not grammatical.
    """
    dt = check_dtype_arg(dtype)
    if not strings:
        raise ValueError("strings: expected a non-empty list, got an empty one")
    T = max(len(s) for s in strings) - 1
    B = len(strings)
    inputs = np.zeros((T, B, 7), dtype=dt)
    targets = np.zeros((T, B, 7), dtype=dt)
    mask = np.zeros((T, B), dtype=bool)
    for b, s in enumerate(strings):
        for t, legal in enumerate(reber_next_symbols(s, embedded=embedded)):
            inputs[t, b, _REBER_INDEX[s[t]]] = 1.0
            for sym in legal:
                targets[t, b, _REBER_INDEX[sym]] = 1.0
            mask[t, b] = True
    return inputs, targets, mask


def reber_prediction_correct(outputs, targets, threshold: float | None = None) -> np.ndarray:
    """Per-position correctness of next-symbol predictions.

    Parameters
    ----------
    outputs : np.ndarray, shape (T, B, 7)
        Network outputs (probabilities or sigmoid activations; any monotone score for the
        default rule).
    targets : np.ndarray, shape (T, B, 7)
        Multi-hot legal successors from :func:`reber_batch`.
    threshold : float or None, default None
        None selects the paper's rule: correct iff every legal successor's output is larger than
        every illegal symbol's output ("the output units corresponding to the possible next
        symbols are always the most active ones"). A float selects the threshold rule: correct iff
        ``outputs > threshold`` equals the target set exactly.

    Returns
    -------
    np.ndarray, shape (T, B), bool

    Raises
    ------
    ValueError
        If shapes differ or the last axis is not 7.
    """
    outputs = np.asarray(outputs)
    targets = np.asarray(targets)
    if outputs.shape != targets.shape or outputs.ndim != 3 or outputs.shape[-1] != 7:
        raise ValueError(
            f"outputs and targets must both be (T, B, 7), got {outputs.shape} and {targets.shape}"
        )
    legal = targets > 0.5
    if threshold is not None:
        return np.all((outputs > threshold) == legal, axis=-1)
    min_legal = np.where(legal, outputs, np.inf).min(axis=-1)
    max_illegal = np.where(legal, -np.inf, outputs).max(axis=-1)
    return min_legal > max_illegal


def reber_solved(outputs, targets, mask, threshold: float | None = None) -> bool:
    """Success criterion of Exp. 1: every next-symbol prediction on the strings is correct.

    Parameters
    ----------
    outputs, targets : np.ndarray, shape (T, B, 7)
    mask : np.ndarray, shape (T, B), bool
        From :func:`reber_batch`; padded positions are ignored.
    threshold : float or None
        See :func:`reber_prediction_correct` (None = the paper's "most active" rule).

    Returns
    -------
    bool

    Notes
    -----
    The paper calls a trial successful when all symbols of all strings in both the training and
    the test set (256 strings each) are predicted correctly; evaluate on fresh strings from
    :func:`reber_strings` to test generalisation.

    References
    ----------
    Hochreiter & Schmidhuber 1997, Section 5.1.
    """
    mask = np.asarray(mask, dtype=bool)
    correct = reber_prediction_correct(outputs, targets, threshold)
    if mask.shape != correct.shape:
        raise ValueError(f"mask: expected shape (T, B) = {correct.shape}, got {mask.shape}")
    return bool(np.all(correct[mask]))


# --------------------------------------------------------------------------------------------
# Adding and multiplication problems (Exp. 4, Exp. 5) and the 2015 adding problem
# --------------------------------------------------------------------------------------------


def _hochreiter_markers(
    batch_size: int, T: int, gen: np.random.Generator, fixed_length: bool
) -> tuple[int, np.ndarray, np.ndarray]:
    """Sequence length L and the two marked positions (B,) each, per the 1997 recipe."""
    L = T if fixed_length else int(gen.integers(T, T + T // 10 + 1))
    p1 = gen.integers(0, 10, size=batch_size)  # one of the first ten pairs
    # one of the first T/2 - 1 pairs that are still unmarked: index k among them skips p1
    k = gen.integers(0, T // 2 - 1, size=batch_size)
    p2 = np.where(k < p1, k, k + 1)
    return L, p1, p2


def adding_problem_hochreiter(
    batch_size: int, T: int, rng, fixed_length: bool = False, dtype=np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Adding problem in its original form (Hochreiter & Schmidhuber 1997, Exp. 4).

    Parameters
    ----------
    batch_size : int
        B.
    T : int
        Minimal sequence length (the paper uses 100, 500, 1000); at least 10.
    rng : np.random.Generator or int
    fixed_length : bool, default False
        If False the length is drawn uniformly from ``T .. T + T // 10`` (once per call, shared by
        the batch); if True it is exactly T.
    dtype : {np.float32, np.float64}, default np.float64

    Returns
    -------
    inputs : np.ndarray, shape (L, B, 2)
        ``[..., 0]`` values, ``[..., 1]`` markers.
    targets : np.ndarray, shape (B, 1)
        ``0.5 + (X1 + X2) / 4``, in [0, 1].

    Notes
    -----
    Values are U[-1, 1]. One of the first ten pairs is marked (value X1) and one of the first
    ``T/2 - 1`` still-unmarked pairs (value X2), with marker 1.0. All other markers are 0 except the
    first and the last pair, whose marker is -1. If the first pair is marked its value is set to
    0 (the paper: "we set X1 to zero"). Only the final step has a target.

    Success criterion: a sequence is processed correctly when the absolute error at its end is
    below 0.04; the paper stops training when the average training error is below 0.01 and the
    2,560 most recent sequences were processed correctly, then counts wrong predictions on 2,560
    fresh test sequences. See :func:`adding_solved`.

    Deviation: the paper draws each sequence's length independently; here one length per call
    keeps the batch a dense (L, B, 2) array. Use small batches to mix lengths.

    References
    ----------
    Hochreiter & Schmidhuber 1997, Section 5.4.
    """
    B = check_int("batch_size", batch_size, low=1)
    T = check_int("T", T, low=10)
    dt = check_dtype_arg(dtype)
    gen = as_rng(rng)
    L, p1, p2 = _hochreiter_markers(B, T, gen, fixed_length)
    values = gen.uniform(-1.0, 1.0, size=(L, B))
    markers = np.zeros((L, B))
    markers[0] = -1.0
    markers[-1] = -1.0
    cols = np.arange(B)
    markers[p1, cols] = 1.0
    markers[p2, cols] = 1.0
    values[0, markers[0] == 1.0] = 0.0
    x1 = values[p1, cols]
    x2 = values[p2, cols]
    inputs = np.stack([values, markers], axis=-1).astype(dt)
    targets = (0.5 + (x1 + x2) / 4.0)[:, None].astype(dt)
    return inputs, targets


def adding_solved(predictions, targets, tol: float = 0.04) -> bool:
    """True iff every sequence's absolute error at the end is below ``tol`` (Exp. 4/5 rule).

    Parameters
    ----------
    predictions, targets : np.ndarray, shape (B, 1)
        Final-step outputs and targets. The paper's test set has B = 2,560 sequences.
    tol : float, default 0.04
        Absolute error threshold of Hochreiter & Schmidhuber 1997, Section 5.4.

    Returns
    -------
    bool
    """
    predictions = np.asarray(predictions)
    targets = np.asarray(targets)
    if predictions.shape != targets.shape:
        raise ValueError(
            f"targets: expected the shape of predictions {predictions.shape}, got "
            f"{targets.shape}"
        )
    return bool(np.all(np.abs(predictions - targets) < tol))


def multiplication_problem(
    batch_size: int, T: int, rng, fixed_length: bool = False, dtype=np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Multiplication problem (Hochreiter & Schmidhuber 1997, Exp. 5).

    Parameters
    ----------
    batch_size, T, rng, fixed_length, dtype
        As in :func:`adding_problem_hochreiter`.

    Returns
    -------
    inputs : np.ndarray, shape (L, B, 2)
    targets : np.ndarray, shape (B, 1)
        ``X1 * X2``, in [0, 1].

    Notes
    -----
    Identical to the adding problem except that the values are U[0, 1], a marked first pair has
    its value set to 1.0 (instead of 0), and the target is the product of the two marked values.
    Unlike addition, multiplication is not natively supported by the LSTM's cell-state updates.

    Success criterion (as best reconstructed; check Section 5.5 before quoting numbers): a
    sequence counts as correct when the absolute error at its end is below 0.04, as in Exp. 4;
    the paper stops training at an average training error of 0.02 (or 0.013) and reports the
    number of wrong predictions among 2,560 test sequences. Use :func:`multiplication_solved`.

    References
    ----------
    Hochreiter & Schmidhuber 1997, Section 5.5.
    """
    B = check_int("batch_size", batch_size, low=1)
    T = check_int("T", T, low=10)
    dt = check_dtype_arg(dtype)
    gen = as_rng(rng)
    L, p1, p2 = _hochreiter_markers(B, T, gen, fixed_length)
    values = gen.uniform(0.0, 1.0, size=(L, B))
    markers = np.zeros((L, B))
    markers[0] = -1.0
    markers[-1] = -1.0
    cols = np.arange(B)
    markers[p1, cols] = 1.0
    markers[p2, cols] = 1.0
    values[0, markers[0] == 1.0] = 1.0
    inputs = np.stack([values, markers], axis=-1).astype(dt)
    targets = (values[p1, cols] * values[p2, cols])[:, None].astype(dt)
    return inputs, targets


def multiplication_solved(predictions, targets, tol: float = 0.04) -> bool:
    """True iff every final absolute error is below ``tol`` (see :func:`multiplication_problem`)."""
    return adding_solved(predictions, targets, tol)


#: MSE of always predicting 1 on :func:`adding_problem_le`: Var(U1 + U2) = 2/12 = 1/6.
ADDING_LE_BASELINE_MSE = 1.0 / 6.0


def adding_problem_le(
    batch_size: int, T: int, rng, markers_in_halves: bool = True, dtype=np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Adding problem in the form of Le, Jaitly & Hinton (2015).

    Parameters
    ----------
    batch_size : int
        B.
    T : int
        Sequence length (fixed), at least 2.
    rng : np.random.Generator or int
    markers_in_halves : bool, default True
        If True, the first marker is uniform in the first half ``0 .. T//2 - 1`` and the second
        uniform in the second half ``T//2 .. T-1`` (the placement stated by Arjovsky et al.
        2016, Section 4.2, for the same task). If False, two distinct positions uniformly.
    dtype : {np.float32, np.float64}, default np.float64

    Returns
    -------
    inputs : np.ndarray, shape (T, B, 2)
        ``[..., 0]`` values U[0, 1], ``[..., 1]`` mask: 1 at the two marked steps, else 0.
    targets : np.ndarray, shape (B, 1)
        Sum of the two marked values, in [0, 2].

    Notes
    -----
    Predicting 1 for every sequence gives MSE = Var(U1 + U2) = 1/6 ~= 0.167
    (:data:`ADDING_LE_BASELINE_MSE`); a model has learned something when its test MSE is well
    below this baseline.

    References
    ----------
    Le, Jaitly & Hinton 2015, Section 4.1; Arjovsky, Shah & Bengio 2016, Section 4.2.
    """
    B = check_int("batch_size", batch_size, low=1)
    T = check_int("T", T, low=2)
    dt = check_dtype_arg(dtype)
    gen = as_rng(rng)
    values = gen.uniform(0.0, 1.0, size=(T, B))
    if markers_in_halves:
        half = T // 2
        p1 = gen.integers(0, half, size=B)
        p2 = gen.integers(half, T, size=B)
    else:
        p1 = gen.integers(0, T, size=B)
        k = gen.integers(0, T - 1, size=B)
        p2 = np.where(k < p1, k, k + 1)
    cols = np.arange(B)
    mask = np.zeros((T, B))
    mask[p1, cols] = 1.0
    mask[p2, cols] = 1.0
    inputs = np.stack([values, mask], axis=-1).astype(dt)
    targets = (values[p1, cols] + values[p2, cols])[:, None].astype(dt)
    return inputs, targets


# --------------------------------------------------------------------------------------------
# Temporal order (Exp. 6a)
# --------------------------------------------------------------------------------------------

#: Input symbols of :func:`temporal_order`, in one-hot order.
TEMPORAL_ORDER_SYMBOLS = ("E", "B", "a", "b", "c", "d", "X", "Y")
#: Class names: (X, X) -> Q, (X, Y) -> R, (Y, X) -> S, (Y, Y) -> U.
TEMPORAL_ORDER_CLASSES = ("Q", "R", "S", "U")


def temporal_order(
    batch_size: int, rng, length: int | None = None, dtype=np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Temporal order problem with two relevant, widely separated symbols (1997, Exp. 6a).

    Parameters
    ----------
    batch_size : int
        B.
    rng : np.random.Generator or int
    length : int or None, default None
        Sequence length L. None draws it uniformly from 100 .. 110 (once per call, shared by the
        batch; the paper draws it per sequence). Must be at least 61.
    dtype : {np.float32, np.float64}, default np.float64

    Returns
    -------
    inputs : np.ndarray, shape (L, B, 8)
        One-hot symbols in :data:`TEMPORAL_ORDER_SYMBOLS` order.
    labels : np.ndarray, shape (B,), int64
        Class 0..3 = Q, R, S, U.

    Notes
    -----
    A sequence starts with E, ends with the trigger symbol B, and otherwise consists of symbols
    drawn uniformly from {a, b, c, d}, except at two positions t1 and t2 which hold X or Y
    (each with probability 1/2). t1 is uniform in 10 .. 20 and t2 in 50 .. 60, counted 1-based
    from the first symbol E (so array index t1 - 1). The class is given by the temporal order:
    (X, X) -> Q, (X, Y) -> R, (Y, X) -> S, (Y, Y) -> U; the target is presented only at the final
    (trigger) step, as a one-hot vector over 4 output units.

    Success criterion: a test sequence is classified correctly when the final absolute error of
    all four output units is below 0.3 (:func:`temporal_order_solved`); the paper stops training
    when the average training error is below 0.1 and the 2,000 most recent sequences were
    classified correctly.

    References
    ----------
    Hochreiter & Schmidhuber 1997, Section 5.6, Task 6a.
    """
    B = check_int("batch_size", batch_size, low=1)
    dt = check_dtype_arg(dtype)
    gen = as_rng(rng)
    L = int(gen.integers(100, 111)) if length is None else check_int("length", length, low=61)
    ids = gen.integers(2, 6, size=(L, B))  # a, b, c, d
    ids[0] = 0  # E
    ids[-1] = 1  # B (trigger)
    cols = np.arange(B)
    t1 = gen.integers(10, 21, size=B) - 1  # 1-based positions -> indices
    t2 = gen.integers(50, 61, size=B) - 1
    first = gen.integers(0, 2, size=B)  # 0 = X, 1 = Y
    second = gen.integers(0, 2, size=B)
    ids[t1, cols] = 6 + first
    ids[t2, cols] = 6 + second
    labels = (2 * first + second).astype(np.int64)
    return one_hot(ids, 8, dtype=dt), labels


def temporal_order_solved(outputs, labels, tol: float = 0.3) -> bool:
    """True iff, for every sequence, all 4 final outputs are within ``tol`` of the one-hot target.

    Parameters
    ----------
    outputs : np.ndarray, shape (B, 4)
        Final-step outputs (e.g. sigmoid or softmax activations).
    labels : np.ndarray, shape (B,), int
    tol : float, default 0.3
        Hochreiter & Schmidhuber 1997, Section 5.6.

    Returns
    -------
    bool
    """
    outputs = np.asarray(outputs)
    labels = np.asarray(labels)
    if outputs.ndim != 2 or outputs.shape[1] != 4 or labels.shape != (outputs.shape[0],):
        raise ValueError(
            f"expected outputs (B, 4) and labels (B,), got {outputs.shape} and {labels.shape}"
        )
    target = one_hot(labels, 4, dtype=np.float64)
    return bool(np.all(np.abs(outputs - target) < tol))


# --------------------------------------------------------------------------------------------
# Copy memory (Arjovsky, Shah & Bengio 2016)
# --------------------------------------------------------------------------------------------


def copy_memory(batch_size: int, T: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Copying memory task of Arjovsky, Shah & Bengio (2016).

    Parameters
    ----------
    batch_size : int
        B.
    T : int
        Delay (number of blank steps between the end of the sequence and the delimiter, plus
        one); at least 1.
    rng : np.random.Generator or int

    Returns
    -------
    inputs : np.ndarray, shape (T + 20, B), int64
        Categories 0..9; one-hot encode with ``one_hot(inputs, 10)`` for a (T + 20, B, 10) input.
    targets : np.ndarray, shape (T + 20, B), int64

    Notes
    -----
    Categories a_0 .. a_9: a_0 .. a_7 are data, a_8 is the blank and a_9 the delimiter. The input
    is 10 symbols drawn uniformly with replacement from a_0 .. a_7, then T - 1 blanks, the
    delimiter, and 10 more blanks. The target is T + 10 blanks followed by the 10 data symbols in
    the same order. The loss is the cross-entropy averaged over all T + 20 steps.

    Memoryless baseline: predict the blank for the first T + 10 steps and a uniform distribution
    over a_0 .. a_7 for the last 10, giving ``10 ln 8 / (T + 20)`` nats per step
    (:func:`copy_memory_baseline`). Success is a cross-entropy clearly below this baseline.

    References
    ----------
    Arjovsky, Shah & Bengio 2016, Section 4.1.
    """
    B = check_int("batch_size", batch_size, low=1)
    T = check_int("T", T, low=1)
    gen = as_rng(rng)
    data = gen.integers(0, 8, size=(10, B))
    inputs = np.full((T + 20, B), 8, dtype=np.int64)
    inputs[:10] = data
    inputs[T + 9] = 9  # delimiter after 10 data symbols and T - 1 blanks
    targets = np.full((T + 20, B), 8, dtype=np.int64)
    targets[T + 10 :] = data
    return inputs, targets


def copy_memory_baseline(T: int) -> float:
    """Memoryless cross-entropy ``10 ln 8 / (T + 20)`` in nats per time step (Arjovsky 2016)."""
    T = check_int("T", T, low=1)
    return 10.0 * math.log(8.0) / (T + 20)


def copy_memory_recall_accuracy(logits, targets) -> float:
    """Fraction of the last 10 (recall) steps whose argmax equals the target symbol.

    Parameters
    ----------
    logits : np.ndarray, shape (T + 20, B, 10)
        Scores per category (any monotone transform of the probabilities).
    targets : np.ndarray, shape (T + 20, B), int

    Returns
    -------
    float
        In [0, 1]; the memoryless strategy achieves 1/8 in expectation, a solved task 1.
    """
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    if logits.ndim != 3 or logits.shape[:2] != targets.shape or logits.shape[0] < 10:
        raise ValueError(
            f"expected logits (T + 20, B, 10) and targets (T + 20, B), got {logits.shape} and "
            f"{targets.shape}"
        )
    return float(np.mean(logits[-10:].argmax(axis=-1) == targets[-10:]))
