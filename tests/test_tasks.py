"""Tests for lstm_bptt.experiments.tasks: shapes, dtypes, determinism, and each task's defining
invariants.

Expected values come from the task definitions (an independent regex for the Reber grammar, the
marked values read back from the inputs, closed forms such as 10 ln 8 / (T + 20)).
"""

import math
import re

import numpy as np
import pytest

from lstm_bptt.experiments.tasks import (
    ADDING_LE_BASELINE_MSE,
    REBER_SYMBOLS,
    adding_problem_hochreiter,
    adding_problem_le,
    adding_solved,
    copy_memory,
    copy_memory_baseline,
    copy_memory_recall_accuracy,
    multiplication_problem,
    multiplication_solved,
    one_hot,
    reber_accepts,
    reber_batch,
    reber_next_symbols,
    reber_prediction_correct,
    reber_solved,
    reber_strings,
    temporal_order,
    temporal_order_solved,
)

# Regular expression for the Reber grammar, derived by hand from the automaton (Fig. 3 of
# Hochreiter & Schmidhuber 1997): from node 3 the continuations are (T*VPX)* T*V (V | PS).
_L3 = r"(?:T*VPX)*T*V(?:V|PS)"
_REBER = rf"B(?:TS*X(?:S|X{_L3})|P{_L3})E"
REBER_RE = re.compile(rf"^{_REBER}$")
EMBEDDED_RE = re.compile(rf"^B(?:T{_REBER}T|P{_REBER}P)E$")


# ---------------------------------------------------------------- Reber


def test_regex_itself_matches_textbook_examples():
    for good in ["BTSSXXTVVE", "BPVVE", "BTXXVPSE", "BPVPXVPXVPXVVE", "BTSXXVPSE"]:
        assert REBER_RE.match(good), good
    for bad in ["BTSSPXSE", "BPTVVB", "BTXXVVSE", "BPVSPSE", "BTSSSE"]:
        assert not REBER_RE.match(bad), bad
        assert not reber_accepts(bad, embedded=False)


def test_every_generated_string_is_grammatical():
    embedded = reber_strings(400, rng=0)
    assert all(EMBEDDED_RE.match(s) for s in embedded)
    assert all(reber_accepts(s) for s in embedded)
    # both outer branches occur and the penultimate symbol repeats the second
    assert {s[1] for s in embedded} == {"T", "P"}
    assert all(s[-2] == s[1] for s in embedded)
    plain = reber_strings(400, rng=1, embedded=False)
    assert all(REBER_RE.match(s) for s in plain)


def test_reber_determinism_per_seed():
    assert reber_strings(20, rng=5) == reber_strings(20, rng=5)
    assert reber_strings(20, rng=5) != reber_strings(20, rng=6)
    gen = np.random.default_rng(3)
    assert reber_strings(3, gen) != reber_strings(3, gen)  # the generator advances


def test_reber_legal_next_symbols_by_hand():
    sets = reber_next_symbols("BTBTXSETE")
    expected = ["TP", "B", "TP", "SX", "XS", "E", "T", "E"]
    assert sets == [frozenset(e) for e in expected]
    assert reber_next_symbols("BPTVPSE", embedded=False) == [
        frozenset(e) for e in ["TP", "TV", "TV", "PV", "XS", "E"]
    ]
    with pytest.raises(ValueError, match="position 7"):
        reber_next_symbols("BTBTXSEPE")  # wrong penultimate symbol
    assert not reber_accepts("BTBTXSETEE")


def test_reber_batch_encoding():
    strings = ["BTBTXSETE", "BPBPTVPSEPE"]
    inputs, targets, mask = reber_batch(strings, dtype=np.float32)
    assert inputs.shape == targets.shape == (10, 2, 7)
    assert inputs.dtype == targets.dtype == np.float32
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask.sum(axis=0), [8, 10])
    # inputs: one-hot of the current symbol where masked, zero padding elsewhere
    decoded = "".join(REBER_SYMBOLS[i] for i in inputs[:10, 1].argmax(-1))
    assert decoded == "BPBPTVPSEP"
    assert inputs[8:, 0].sum() == 0 and targets[8:, 0].sum() == 0
    # penultimate-symbol target is the single remembered branch
    idx = {s: i for i, s in enumerate(REBER_SYMBOLS)}
    np.testing.assert_array_equal(np.flatnonzero(targets[8, 1]), [idx["P"]])
    np.testing.assert_array_equal(np.flatnonzero(targets[0, 0]), sorted([idx["T"], idx["P"]]))


def test_reber_correctness_rules():
    targets = np.zeros((1, 3, 7))
    targets[0, :, [1, 2]] = 1.0  # legal successors T and P
    outputs = np.full((1, 3, 7), 0.1)
    outputs[0, 0, [1, 2]] = [0.5, 0.4]  # legal are the two most active, both above 0.3
    outputs[0, 1, [1, 2, 3]] = [0.5, 0.2, 0.3]  # illegal S beats legal P
    outputs[0, 2, [1, 2]] = [0.25, 0.2]  # most active, but below threshold 0.3
    np.testing.assert_array_equal(reber_prediction_correct(outputs, targets), [[True, False, True]])
    np.testing.assert_array_equal(
        reber_prediction_correct(outputs, targets, threshold=0.3), [[True, False, False]]
    )
    mask = np.array([[True, False, True]])
    assert reber_solved(outputs, targets, mask)
    assert not reber_solved(outputs, targets, mask, threshold=0.3)
    # perfect predictions from the targets themselves solve any batch
    _, t, m = reber_batch(reber_strings(30, rng=2))
    assert reber_solved(t, t, m) and reber_solved(t, t, m, threshold=0.5)


# ---------------------------------------------------------------- adding / multiplication


def _marked(inputs):
    """(B, 2) positions with marker == 1, read back from the inputs."""
    rows, cols = np.nonzero(inputs[..., 1] == 1.0)
    order = np.lexsort((rows, cols))
    return rows[order].reshape(-1, 2), cols[order].reshape(-1, 2)


def test_adding_hochreiter_invariants():
    T, B = 100, 300
    inputs, targets = adding_problem_hochreiter(B, T, rng=0)
    L = inputs.shape[0]
    assert T <= L <= T + T // 10
    assert inputs.shape == (L, B, 2) and targets.shape == (B, 1)
    assert inputs.dtype == targets.dtype == np.float64
    values, markers = inputs[..., 0], inputs[..., 1]
    assert np.all((values >= -1) & (values <= 1))
    assert set(np.unique(markers)) <= {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal((markers == 1).sum(axis=0), np.full(B, 2))
    rows, cols = _marked(inputs)
    assert np.all(rows[:, 0] < 10)  # X1 among the first ten pairs
    assert np.all(rows[:, 1] <= T // 2 - 1)  # X2 among the first T/2 - 1 unmarked pairs
    # first and last markers are -1 unless the first pair is marked
    assert np.all(markers[-1] == -1)
    assert np.all((markers[0] == -1) | (markers[0] == 1))
    assert np.all(values[0, markers[0] == 1] == 0)
    # the target is 0.5 + (X1 + X2) / 4 of the marked values
    x_sum = (values * (markers == 1)).sum(axis=0)
    np.testing.assert_allclose(targets[:, 0], 0.5 + x_sum / 4.0, rtol=0, atol=1e-15)
    assert np.all((targets >= 0) & (targets <= 1))


def test_adding_fixed_length_dtype_and_determinism():
    a = adding_problem_hochreiter(8, 20, rng=7, fixed_length=True, dtype=np.float32)
    b = adding_problem_hochreiter(8, 20, rng=7, fixed_length=True, dtype=np.float32)
    c = adding_problem_hochreiter(8, 20, rng=8, fixed_length=True, dtype=np.float32)
    assert a[0].shape == (20, 8, 2) and a[0].dtype == np.float32 and a[1].dtype == np.float32
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    with pytest.raises(ValueError, match="T: expected an int >= 10, got 5"):
        adding_problem_hochreiter(2, 5, rng=0)
    with pytest.raises(TypeError, match="float32 or float64"):
        adding_problem_hochreiter(2, 20, rng=0, dtype=np.int32)


def test_first_pair_marked_rule_over_many_draws():
    # P(first pair marked) is about 1/10 + 1/49 per sequence: 2000 sequences contain some.
    inputs, targets = adding_problem_hochreiter(2000, 100, rng=1, fixed_length=True)
    first_marked = inputs[0, :, 1] == 1
    assert 100 < first_marked.sum() < 400
    assert np.all(inputs[0, first_marked, 0] == 0.0)
    m_inputs, _ = multiplication_problem(2000, 100, rng=1, fixed_length=True)
    m_first = m_inputs[0, :, 1] == 1
    assert m_first.sum() > 100
    assert np.all(m_inputs[0, m_first, 0] == 1.0)


def test_adding_solved_threshold():
    targets = np.array([[0.5], [0.2]])
    assert adding_solved(targets + 0.039, targets)
    assert not adding_solved(targets + np.array([[0.0], [0.041]]), targets)
    with pytest.raises(ValueError,
                       match=r"targets: expected the shape of predictions \(2,\), got \(2, 1\)"):
        adding_solved(np.zeros(2), targets)


def test_multiplication_invariants():
    inputs, targets = multiplication_problem(200, 50, rng=3)
    values, markers = inputs[..., 0], inputs[..., 1]
    assert np.all((values >= 0) & (values <= 1))
    np.testing.assert_array_equal((markers == 1).sum(axis=0), np.full(200, 2))
    rows, cols = _marked(inputs)
    x1 = values[rows[:, 0], cols[:, 0]]
    x2 = values[rows[:, 1], cols[:, 1]]
    np.testing.assert_allclose(targets[:, 0], x1 * x2, rtol=0, atol=1e-15)
    assert multiplication_solved(targets, targets)


def test_adding_le_invariants_and_baseline():
    T, B = 50, 400
    inputs, targets = adding_problem_le(B, T, rng=0)
    assert inputs.shape == (T, B, 2) and targets.shape == (B, 1)
    values, mask = inputs[..., 0], inputs[..., 1]
    assert np.all((values >= 0) & (values <= 1))
    np.testing.assert_array_equal(mask.sum(axis=0), np.full(B, 2.0))
    rows, _ = _marked(inputs)
    assert np.all(rows[:, 0] < T // 2) and np.all(rows[:, 1] >= T // 2)
    np.testing.assert_allclose(targets[:, 0], (values * mask).sum(axis=0), atol=1e-15)
    # baseline: Var(U[0,1]) = 1/12, sum of two independent -> 1/6
    assert ADDING_LE_BASELINE_MSE == pytest.approx(2 * (1 / 12))
    _, big = adding_problem_le(100_000, 4, rng=1)
    # std of (S - 1)^2 is ~0.2, so the mean over 1e5 draws is within ~6e-4 of 1/6
    assert np.mean((big - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.003)


def test_adding_le_uniform_positions_option():
    inputs, targets = adding_problem_le(500, 6, rng=2, markers_in_halves=False)
    mask = inputs[..., 1]
    np.testing.assert_array_equal(mask.sum(axis=0), np.full(500, 2.0))
    rows, _ = _marked(inputs)
    # both markers can land in the same half when placement is unrestricted
    assert np.any(rows[:, 1] < 3) and np.any(rows[:, 0] >= 3)
    np.testing.assert_allclose(targets[:, 0], (inputs[..., 0] * mask).sum(axis=0), atol=1e-15)


# ---------------------------------------------------------------- temporal order


def test_temporal_order_invariants():
    inputs, labels = temporal_order(300, rng=0)
    L = inputs.shape[0]
    assert 100 <= L <= 110 and inputs.shape == (L, 300, 8)
    assert labels.dtype == np.int64 and labels.shape == (300,)
    np.testing.assert_array_equal(inputs.sum(axis=-1), np.ones((L, 300)))
    ids = inputs.argmax(axis=-1)  # symbols E B a b c d X Y = 0..7
    assert np.all(ids[0] == 0) and np.all(ids[-1] == 1)
    relevant = ids >= 6
    np.testing.assert_array_equal(relevant.sum(axis=0), np.full(300, 2))
    rows, cols = np.nonzero(relevant.T)  # per sequence, in time order
    t = cols.reshape(300, 2)
    assert np.all((t[:, 0] >= 9) & (t[:, 0] <= 19))  # 1-based positions 10..20
    assert np.all((t[:, 1] >= 49) & (t[:, 1] <= 59))  # 1-based positions 50..60
    middle = ids[1:-1][~relevant[1:-1]]
    assert set(np.unique(middle)) == {2, 3, 4, 5}
    # class rule: XX -> Q(0), XY -> R(1), YX -> S(2), YY -> U(3)
    first = ids[t[:, 0], np.arange(300)]
    second = ids[t[:, 1], np.arange(300)]
    table = {(6, 6): 0, (6, 7): 1, (7, 6): 2, (7, 7): 3}
    expected = np.array([table[(a, b)] for a, b in zip(first, second, strict=True)])
    np.testing.assert_array_equal(labels, expected)
    assert set(labels.tolist()) == {0, 1, 2, 3}


def test_temporal_order_determinism_and_solved():
    a = temporal_order(5, rng=11, length=70, dtype=np.float32)
    b = temporal_order(5, rng=11, length=70, dtype=np.float32)
    assert a[0].shape == (70, 5, 8) and a[0].dtype == np.float32
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    labels = np.array([0, 3])
    good = np.array([[0.75, 0.1, 0.2, 0.29], [0.0, 0.0, 0.0, 0.71]])
    assert temporal_order_solved(good, labels)
    bad = good.copy()
    bad[1, 0] = 0.31  # one non-target unit too active
    assert not temporal_order_solved(bad, labels)


# ---------------------------------------------------------------- copy memory


def test_copy_memory_structure():
    T, B = 30, 64
    inputs, targets = copy_memory(B, T, rng=0)
    assert inputs.shape == targets.shape == (T + 20, B)
    assert inputs.dtype == targets.dtype == np.int64
    assert np.all((inputs[:10] >= 0) & (inputs[:10] <= 7))
    assert np.all(inputs[10 : T + 9] == 8)  # T - 1 blanks
    assert np.all(inputs[T + 9] == 9)  # delimiter
    assert np.all(inputs[T + 10 :] == 8)  # 10 blanks while recalling
    assert np.all(targets[: T + 10] == 8)
    np.testing.assert_array_equal(targets[T + 10 :], inputs[:10])
    np.testing.assert_array_equal(copy_memory(B, T, rng=0)[0], inputs)


def test_copy_memory_baseline_formula():
    T = 100
    # closed form by hand: 10 * ln 8 / 120 = 10 * 2.0794415 / 120
    assert copy_memory_baseline(T) == pytest.approx(0.1732868, abs=1e-7)
    # the memoryless strategy's cross-entropy on generated targets equals the formula
    _, targets = copy_memory(50, T, rng=1)
    probs = np.zeros((T + 20, 50, 10))
    probs[: T + 10, :, 8] = 1.0
    probs[T + 10 :, :, :8] = 1.0 / 8.0
    picked = np.take_along_axis(probs, targets[..., None], axis=-1)[..., 0]
    ce = -np.mean(np.log(picked))
    assert ce == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-12)
    assert ce == pytest.approx(copy_memory_baseline(T), rel=1e-12)


def test_copy_memory_recall_accuracy():
    inputs, targets = copy_memory(20, 5, rng=4)
    perfect = one_hot(targets, 10)
    assert copy_memory_recall_accuracy(perfect, targets) == 1.0
    wrong = one_hot((targets + 1) % 10, 10)
    assert copy_memory_recall_accuracy(wrong, targets) == 0.0


def test_one_hot_and_rng_type():
    out = one_hot(np.array([[0, 2]]), 3, dtype=np.float32)
    np.testing.assert_array_equal(out, [[[1, 0, 0], [0, 0, 1]]])
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="0..2"):
        one_hot([3], 3)
    with pytest.raises(TypeError, match="Generator"):
        copy_memory(2, 5, rng=np.random.RandomState(0))
