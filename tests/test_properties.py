"""Property-based tests (hypothesis): invariants that must hold for every shape and value."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lstm_bptt import LSTM, CharVocab, clip_grad_norm, lstm_cell_forward, softmax_cross_entropy
from lstm_bptt.checkpoint import load_checkpoint, save_checkpoint

FAST = settings(max_examples=25, deadline=None)
dims = st.integers(1, 5)


@FAST
@given(T=dims, B=dims, D=dims, H=dims, L=st.integers(1, 3), batch_first=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_lstm_equals_stepping_the_cell_layer_by_layer(T, B, D, H, L, batch_first, seed):
    rng = np.random.default_rng(seed)
    lstm = LSTM(D, H, num_layers=L, batch_first=batch_first, rng=rng)
    x = rng.normal(size=(B, T, D) if batch_first else (T, B, D))
    h0, c0 = rng.normal(size=(L, B, H)), rng.normal(size=(L, B, H))
    out, (h_n, c_n), _ = lstm.forward(x, (h0, c0))
    inp = x.transpose(1, 0, 2) if batch_first else x  # (T, B, D)
    for layer in range(L):
        p = [lstm.params[f"{n}_l{layer}"] for n in ("weight_ih", "weight_hh", "bias_ih",
                                                     "bias_hh")]
        h, c, steps = h0[layer], c0[layer], []
        for t in range(T):
            h, c, _ = lstm_cell_forward(inp[t], h, c, *p)
            steps.append(h)
        np.testing.assert_allclose(h_n[layer], h, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(c_n[layer], c, rtol=1e-12, atol=1e-14)
        inp = np.stack(steps)
    expected = inp.transpose(1, 0, 2) if batch_first else inp
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)


finite = st.floats(-1e3, 1e3, allow_nan=False, width=64)


@FAST
@given(grads=st.lists(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=4),
                                 elements=finite), min_size=1, max_size=4),
       max_norm=st.floats(1e-3, 1e3))
def test_clip_grad_norm_bounds_the_global_norm_and_keeps_directions(grads, max_norm):
    d = {f"g{i}": g.copy() for i, g in enumerate(grads)}
    total = clip_grad_norm(d, max_norm)
    expected = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
    assert np.isclose(total, expected, rtol=1e-12)
    after = np.sqrt(sum(float(np.sum(g * g)) for g in d.values()))
    assert after <= max_norm * (1 + 1e-9) or after <= expected * (1 + 1e-12)
    scale = min(1.0, max_norm / (expected + 1e-6))
    for g, c in zip(grads, d.values(), strict=True):
        np.testing.assert_allclose(c, g * scale, rtol=1e-12, atol=1e-300)


@FAST
@given(logits=hnp.arrays(np.float64, st.tuples(dims, dims, st.integers(2, 6)),
                         elements=st.floats(-50, 50, width=64)),
       shift=st.floats(-100, 100), seed=st.integers(0, 1000))
def test_cross_entropy_is_shift_invariant_and_its_gradient_rows_sum_to_zero(logits, shift,
                                                                            seed):
    V = logits.shape[-1]
    targets = np.random.default_rng(seed).integers(0, V, logits.shape[:-1])
    loss, d = softmax_cross_entropy(logits, targets)
    loss2, d2 = softmax_cross_entropy(logits + shift, targets)
    assert loss >= 0
    assert np.isclose(loss, loss2, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(d.sum(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(d, d2, atol=1e-9)


@FAST
@given(text=st.text(min_size=1, max_size=50))
def test_vocab_round_trips_any_text(text):
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.min() >= 0 and ids.max() < len(vocab)
    assert vocab.decode(ids) == text
    assert CharVocab.from_array(vocab.to_array()).decode(ids) == text


leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**62, 2**62), finite,
                 st.text(max_size=5),
                 hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64]),
                            hnp.array_shapes(min_dims=0, max_dims=3, max_side=3)))
trees = st.recursive(leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=3),
    st.dictionaries(st.text("abcxyz_.", min_size=1, max_size=4), kids, max_size=3)),
    max_leaves=8)


def _same(a, b):
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=40, deadline=None)
@given(tree=st.dictionaries(st.text("abc", min_size=1, max_size=3), trees, max_size=4))
def test_checkpoint_round_trips_any_tree(tree, tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "c.npz"
    save_checkpoint(path, tree)
    assert _same(tree, load_checkpoint(path))
