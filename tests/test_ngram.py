"""Tests for lstm_bptt.experiments.ngram: hand-computed probabilities, normalisation, a dict
reference."""

import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from lstm_bptt.experiments.ngram import (
    NGramModel,
    fit_add_one,
    fit_kneser_ney,
    fit_witten_bell,
    format_baselines,
    kneser_ney_discounts,
    ngram_baselines,
)

A, B, C = 0, 1, 2
# Train "ababaa", V = 3 (c never seen). Counts used by the hand calculations below:
#   unigrams  a:4  b:2  c:0                (N = 6, 2 types)
#   bigrams   ab:2 ba:2 aa:1               (contexts: a -> {b:2, a:1}, c(a)=3; b -> {a:2}, c(b)=2)
TRAIN = np.array([A, B, A, B, A, A])
VAL = np.array([B, C, A])  # "bca", scored after the train text, so the first context is "a"
V = 3


# ----------------------------------------------------------------------------- hand values
def test_add_one_unigram_known_count_table():
    # P(w) = (c(w) + 1) / (N + V): a (4+1)/(6+3), b (2+1)/9, c (0+1)/9
    model = fit_add_one(TRAIN, V, order=1)
    np.testing.assert_allclose(model.conditional_distribution([]), [5 / 9, 3 / 9, 1 / 9])
    # the unigram ignores context
    np.testing.assert_allclose(model.conditional_distribution([B, B]), [5 / 9, 3 / 9, 1 / 9])


def test_add_one_unigram_larger_count_table():
    # counts 0:3, 1:0, 2:1, 3:6 -> N = 10, V = 4: (4/14, 1/14, 2/14, 7/14)
    ids = np.array([0, 0, 0, 2, 3, 3, 3, 3, 3, 3])
    p = fit_add_one(ids, 4, order=1).sequence_probs([3, 1, 0, 2])
    np.testing.assert_allclose(p, [7 / 14, 1 / 14, 4 / 14, 2 / 14])


def test_add_one_bigram_by_hand():
    # P(w|h) = (c(hw) + 1) / (c(h) + V)
    #   P(b|a) = (2+1)/(3+3) = 1/2,  P(c|b) = (0+1)/(2+3) = 1/5,  P(a|c) = (0+1)/(0+3) = 1/3
    model = fit_add_one(TRAIN, V, order=2)
    p = model.sequence_probs(VAL, history=TRAIN)
    np.testing.assert_allclose(p, [1 / 2, 1 / 5, 1 / 3])
    np.testing.assert_allclose(model.cross_entropy(VAL, TRAIN), math.log(30) / 3)
    np.testing.assert_allclose(model.conditional_distribution([A]), [2 / 6, 3 / 6, 1 / 6])
    np.testing.assert_allclose(model.conditional_distribution([B]), [3 / 5, 1 / 5, 1 / 5])


# Witten-Bell, n = 2:
#   P1(w)   = (c(w) + T * 1/V) / (N + T),  T = 2, N = 6:
#             a (4 + 2/3)/8 = 7/12,  b (2 + 2/3)/8 = 1/3,  c (2/3)/8 = 1/12
#   P2(w|a) = (c(aw) + 2 * P1(w)) / (3 + 2):
#             b (2 + 2/3)/5 = 8/15,  a (1 + 7/6)/5 = 13/30,  c (1/6)/5 = 1/30
#   P2(w|b) = (c(bw) + 1 * P1(w)) / (2 + 1):
#             a (2 + 7/12)/3 = 31/36,  b (1/3)/3 = 4/36,  c (1/12)/3 = 1/36
#   context c unseen -> P1
WB_P1 = [7 / 12, 1 / 3, 1 / 12]
WB_A = [13 / 30, 8 / 15, 1 / 30]
WB_B = [31 / 36, 4 / 36, 1 / 36]


def test_witten_bell_bigram_by_hand():
    model = fit_witten_bell(TRAIN, V, order=2)
    np.testing.assert_allclose(model.conditional_distribution([A]), WB_A)
    np.testing.assert_allclose(model.conditional_distribution([B]), WB_B)
    np.testing.assert_allclose(model.conditional_distribution([C]), WB_P1)
    p = model.sequence_probs(VAL, history=TRAIN)
    np.testing.assert_allclose(p, [8 / 15, 1 / 36, 7 / 12])
    # without history the first symbol has no context and gets P1(b)
    np.testing.assert_allclose(model.sequence_probs(VAL), [1 / 3, 1 / 36, 7 / 12])


def test_witten_bell_unigram_by_hand():
    np.testing.assert_allclose(fit_witten_bell(TRAIN, V, 1).conditional_distribution([]), WB_P1)


# Kneser-Ney, n = 2 (both variants agree here: n3 = n4 = 0 forces the single discount).
#   order 2, raw counts ab:2 ba:2 aa:1 -> n1 = 1, n2 = 2, D = 1/(1 + 2*2) = 1/5
#   order 1, continuation counts N1+(.w) over bigram types {ab, ba, aa}:
#             a <- {b, a} = 2,  b <- {a} = 1,  c = 0 -> n1 = 1, n2 = 1, D = 1/3, total 3
#   P1(a) = (2 - 1/3)/3 + gamma/3,  gamma = 2 * (1/3) / 3 = 2/9  -> 5/9 + 2/27 = 17/27
#   P1(b) = (1 - 1/3)/3 + 2/27 = 8/27,  P1(c) = 2/27
#   P2(.|a): c(a) = 3, gamma = 2 * (1/5) / 3 = 2/15
#             b (2 - 1/5)/3 + (2/15)(8/27) = 243/405 + 16/405 = 259/405
#             a (1 - 1/5)/3 + (2/15)(17/27) = 108/405 + 34/405 = 142/405
#             c (2/15)(2/27) = 4/405
#   P2(.|b): c(b) = 2, gamma = (1/5)/2 = 1/10
#             a (2 - 1/5)/2 + (1/10)(17/27) = 243/270 + 17/270 = 260/270
#             b (1/10)(8/27) = 8/270,  c (1/10)(2/27) = 2/270
KN_P1 = [17 / 27, 8 / 27, 2 / 27]
KN_A = [142 / 405, 259 / 405, 4 / 405]
KN_B = [260 / 270, 8 / 270, 2 / 270]


@pytest.mark.parametrize("modified", [True, False])
def test_kneser_ney_bigram_by_hand(modified):
    model = fit_kneser_ney(TRAIN, V, order=2, modified=modified)
    np.testing.assert_allclose(model.conditional_distribution([]), KN_P1)
    np.testing.assert_allclose(model.conditional_distribution([A]), KN_A)
    np.testing.assert_allclose(model.conditional_distribution([B]), KN_B)
    np.testing.assert_allclose(model.conditional_distribution([C]), KN_P1)
    p = model.sequence_probs(VAL, history=TRAIN)
    np.testing.assert_allclose(p, [259 / 405, 2 / 270, 17 / 27])


def test_modified_kneser_ney_unigram_by_hand():
    # counts a:1 b:1 c:2 d:3 e:4 f:0 (V = 6, N = 11) -> n1 = 2, n2 = n3 = n4 = 1, Y = 2/(2+2) = 1/2
    #   D1 = 1 - 2(1/2)(1/2) = 1/2,  D2 = 2 - 3(1/2)(1/1) = 1/2,  D3+ = 3 - 4(1/2)(1/1) = 1
    #   gamma = (D1*2 + D2*1 + D3+*2)/11 = 3.5/11, so each symbol gets + 3.5/66 from 1/V
    #   a, b: 0.5/11 + 3.5/66 = 6.5/66;  c: 1.5/11 -> 12.5/66;  d: 2/11 -> 15.5/66;
    #   e: 3/11 -> 21.5/66;  f: 3.5/66
    ids = np.array([0, 1, 2, 2, 3, 3, 3, 4, 4, 4, 4])
    p = fit_kneser_ney(ids, 6, order=1).conditional_distribution([])
    np.testing.assert_allclose(p, np.array([6.5, 6.5, 12.5, 15.5, 21.5, 3.5]) / 66)
    # single discount D = 1/2 for every count: gamma = 0.5 * 5/11, + 2.5/66 each
    p1 = fit_kneser_ney(ids, 6, order=1, modified=False).conditional_distribution([])
    np.testing.assert_allclose(p1, np.array([5.5, 5.5, 11.5, 17.5, 23.5, 2.5]) / 66)


def test_kneser_ney_discounts_rule_and_fallback():
    # n1 = 6, n2 = 3, n3 = 2, n4 = 1 -> Y = 6/12 = 1/2
    #   D1 = 1 - 2(1/2)(3/6) = 1/2,  D2 = 2 - 3(1/2)(2/3) = 1,  D3+ = 3 - 4(1/2)(1/2) = 2
    counts = np.array([1] * 6 + [2] * 3 + [3] * 2 + [4] + [9, 17])
    np.testing.assert_allclose(kneser_ney_discounts(counts), (0.5, 1.0, 2.0))
    np.testing.assert_allclose(kneser_ney_discounts(counts, modified=False), (0.5,) * 3)
    # n1 = 4, n2 = 2, n3 = 1, n4 = 2: Y = 1/2, D3+ = 3 - 4(1/2)(2/1) = -1 -> single D = 1/2
    bad = np.array([1, 1, 1, 1, 2, 2, 3, 4, 4])
    np.testing.assert_allclose(kneser_ney_discounts(bad), (0.5,) * 3)
    # n2 = 0: D = 1/2 by the documented fallback
    np.testing.assert_allclose(kneser_ney_discounts(np.array([1, 1, 3])), (0.5,) * 3)


# ----------------------------------------------------------------------------- normalisation
def _text_ids(text, alphabet):
    lookup = {ch: i for i, ch in enumerate(alphabet)}
    return np.array([lookup[ch] for ch in text])


ALPHABET = "abcdefghijklmnopqrstuvwxyz .,XYZ"  # X, Y, Z never occur in the text
TEXT = (
    "the quick brown fox jumps over the lazy dog. the dog sleeps, the fox runs. "
    "a cat sat on the mat, the mat sat on a cat. quick quick brown brown fox fox. "
) * 3
FITTERS = [
    lambda ids, v: fit_add_one(ids, v, 1),
    lambda ids, v: fit_add_one(ids, v, 2),
    lambda ids, v: fit_add_one(ids, v, 3),
    lambda ids, v: fit_witten_bell(ids, v, 1),
    lambda ids, v: fit_witten_bell(ids, v, 4),
    lambda ids, v: fit_kneser_ney(ids, v, 1),
    lambda ids, v: fit_kneser_ney(ids, v, 4),
    lambda ids, v: fit_kneser_ney(ids, v, 5, modified=False),
]
CONTEXTS = ["", "t", "the", "the ", "he q", "zzzz", "XYZ", "quick ", "a c", "Xth", " fox", "."]


@pytest.mark.parametrize("fit", FITTERS)
def test_conditional_distribution_sums_to_one(fit):
    ids = _text_ids(TEXT, ALPHABET)
    model = fit(ids, len(ALPHABET))
    for context in CONTEXTS:  # seen, partly seen and unseen contexts, and unseen symbols
        p = model.conditional_distribution(_text_ids(context, ALPHABET))
        assert p.shape == (len(ALPHABET),)
        assert np.all(p > 0)
        np.testing.assert_allclose(p.sum(), 1.0, rtol=0, atol=1e-12)


def test_higher_order_has_lower_cross_entropy_on_repetitive_text():
    # "aab" repeated: a bigram cannot tell whether "a" is followed by "a" or "b", a trigram can.
    train = np.array([A, A, B] * 40)
    val = np.array([A, A, B] * 5)
    for fit in (fit_witten_bell, fit_kneser_ney):
        ce = [fit(train, V, n).cross_entropy(val, train) for n in (1, 2, 3)]
        assert ce[0] > ce[1] > ce[2]
        assert ce[2] < 0.1  # a trigram is nearly deterministic here
    assert fit_add_one(train, V, 1).cross_entropy(val) > fit_add_one(train, V, 2).cross_entropy(val)


# ----------------------------------------------------------------------------- dict reference
def _reference_probs(train, val, vocab_size, n, kind):
    """Witten-Bell / Kneser-Ney written directly from the formulas with dicts.

    Returns the per-position probabilities and the discounts used at each order (KN only).
    """
    train, val = list(train), list(val)
    raw = {
        k: Counter(tuple(train[i : i + k]) for i in range(len(train) - k + 1))
        for k in range(1, n + 1)
    }
    if kind == "wb":
        used = raw
    else:  # raw counts at the top order, continuation counts N1+(. g) below
        used = {n: raw[n]}
        for k in range(1, n):
            used[k] = Counter(g[1:] for g in raw[k + 1])
    followers, discounts = {}, {}
    for k in range(1, n + 1):
        table = defaultdict(dict)
        for g, c in used[k].items():
            table[g[:-1]][g[-1]] = c
        followers[k] = table
        n1, n2, n3, n4 = (sum(1 for c in used[k].values() if c == r) for r in (1, 2, 3, 4))
        y = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
        d = (y, y, y)
        if n1 and n2 and n3 and n4:
            mod = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
            if 0 < mod[0] <= 1 and 0 < mod[1] <= 2 and 0 < mod[2] <= 3:
                d = mod
        discounts[k] = d

    def prob(w, h):
        k = len(h) + 1
        lower = 1 / vocab_size if k == 1 else prob(w, h[1:])
        foll = followers[k].get(h)
        if not foll:
            return lower
        total = sum(foll.values())
        c = foll.get(w, 0)
        if kind == "wb":
            return (c + len(foll) * lower) / (total + len(foll))
        d = discounts[k]
        gamma = sum(d[min(x, 3) - 1] for x in foll.values()) / total
        return (max(c - d[min(c, 3) - 1], 0) if c else 0) / total + gamma * lower

    hist = train[-(n - 1) :] + val if n > 1 else val
    probs = np.array([prob(val[t], tuple(hist[t : t + n - 1])) for t in range(len(val))])
    return probs, discounts


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", ["wb", "kn"])
def test_matches_dict_reference(n, kind):
    # skewed random text over 10 of 12 symbols: many singletons, doubles, ... at every order
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, 11) ** 1.2
    ids = rng.choice(10, size=2000, p=weights / weights.sum())
    ids[1::7] = ids[0:-1:7]  # some repetition so that higher orders carry information
    train, val = ids[:1600], ids[1600:]
    v = 12
    model = fit_witten_bell(train, v, n) if kind == "wb" else fit_kneser_ney(train, v, n)
    expected, discounts = _reference_probs(train, val, v, n, kind)
    if kind == "kn" and n >= 2:  # three discounts really used at the top order ...
        assert len(set(discounts[n])) == 3
    if kind == "kn" and n == 1:  # ... and the single-discount fallback (no unigram singletons)
        assert discounts[1] == (0.5, 0.5, 0.5)
    np.testing.assert_allclose(model.sequence_probs(val, history=train), expected, rtol=1e-12)


# ----------------------------------------------------------------------------- public helpers
def test_ngram_baselines_names_and_hand_values():
    res = ngram_baselines(TRAIN, VAL, V, orders=(2,))
    assert list(res) == [
        "unigram (add-one)",
        "bigram (add-one)",
        "Witten-Bell 2-gram",
        "Kneser-Ney 2-gram",
    ]
    # unigram: P(b) = 3/9, P(c) = 1/9, P(a) = 5/9
    np.testing.assert_allclose(res["unigram (add-one)"], -math.log(3 / 9 * 1 / 9 * 5 / 9) / 3)
    np.testing.assert_allclose(res["bigram (add-one)"], math.log(30) / 3)
    np.testing.assert_allclose(res["Witten-Bell 2-gram"], -math.log(8 / 15 * 1 / 36 * 7 / 12) / 3)
    np.testing.assert_allclose(
        res["Kneser-Ney 2-gram"], -math.log(259 / 405 * 2 / 270 * 17 / 27) / 3
    )


def test_format_baselines_columns():
    table = format_baselines({"one bit": math.log(2), "uniform 103": math.log(103)})
    lines = table.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["model", "nats/char", "bits/char", "perplexity"]
    one_bit = lines[1].split()
    assert one_bit[:2] == ["one", "bit"]
    assert [float(x) for x in one_bit[2:]] == pytest.approx([0.6931, 1.0, 2.0], abs=1e-4)
    uniform = [float(x) for x in lines[2].split()[2:]]
    assert uniform == pytest.approx([math.log(103), math.log2(103), 103.0], abs=1e-3)


def test_models_accept_any_integer_dtype():
    for dtype in (np.int8, np.uint16, np.int32, np.int64):
        p = fit_add_one(TRAIN.astype(dtype), V, 2).sequence_probs(VAL.astype(dtype), TRAIN)
        np.testing.assert_allclose(p, [1 / 2, 1 / 5, 1 / 3])
    assert isinstance(fit_witten_bell(TRAIN, V, 2), NGramModel)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("train", "val", "match"),
    [
        (np.array([0, 1, 3]), VAL,
         r"train_ids: expected ids in \[0, 3\), got values in \[0, 3\]"),
        (TRAIN, np.array([0, -1]), r"val_ids: expected ids in \[0, 3\)"),
        (np.array([], dtype=np.int64), VAL, "train_ids: expected at least one id, got 0"),
        (TRAIN, np.array([], dtype=np.int64), "val_ids: expected at least one id, got 0"),
        (TRAIN.reshape(2, 3), VAL, r"1-D array of ids \(T,\), got shape \(2, 3\)"),
    ],
)
def test_bad_ids_raise_value_error(train, val, match):
    with pytest.raises(ValueError, match=match):
        ngram_baselines(train, val, V, orders=(2,))


@pytest.mark.parametrize(
    ("train", "val", "match"),
    [
        (TRAIN.astype(np.float64), VAL, "train_ids: expected an integer dtype, got float64"),
        (TRAIN, VAL.astype(bool), "val_ids: expected an integer dtype, got bool"),
    ],
)
def test_non_integer_ids_raise_type_error(train, val, match):
    with pytest.raises(TypeError, match=match):
        ngram_baselines(train, val, V, orders=(2,))


def test_bad_order_and_vocab_size():
    with pytest.raises(ValueError, match="order: expected an int >= 1, got 0"):
        fit_witten_bell(TRAIN, V, 0)
    with pytest.raises(ValueError, match=r"order: expected vocab_size\*\*order <= 2\*\*63 - 1"):
        fit_kneser_ney(TRAIN, 10_000, 5)
    with pytest.raises(ValueError, match="vocab_size: expected an int >= 1, got 0"):
        fit_add_one(TRAIN, 0)
    with pytest.raises(TypeError, match="vocab_size: expected an int, got float"):
        fit_add_one(TRAIN, 3.0)
    with pytest.raises(ValueError, match=r"context: expected ids in \[0, 3\)"):
        fit_add_one(TRAIN, V, 2).conditional_distribution([5])
