"""Truncated BPTT (Williams & Peng 1990): windows of k1 steps, backpropagation through k2.

Checked against full BPTT and against states recomputed by hand with one forward pass over the
whole stream.
"""

from __future__ import annotations

import numpy as np
import pytest

from lstm_bptt.models import CharLM
from lstm_bptt.optim import SGD
from lstm_bptt.train import TBPTTStream, Trainer, tbptt_gradients

V, H, L, B = 5, 4, 2, 2


def _model(seed=0, **kw):
    model = CharLM(V, H, num_layers=L, dtype=np.float64, rng=seed, **kw)
    rng = np.random.default_rng(seed + 100)
    for p in model.params.values():
        p[...] = 0.5 * rng.standard_normal(p.shape)
    return model


def _streams(n=11, seed=0):
    return np.random.default_rng(seed).integers(0, V, (n, B))  # (N, B): T = N - 1 steps


def _states_by_stepping(model, x):
    """(h_t, c_t) for t = 0..T from a zero start, one forward call per step: (T + 1, L, B, H)."""
    hs, cs = [np.zeros((L, x.shape[1], H))], [np.zeros((L, x.shape[1], H))]
    state = None
    for t in range(len(x)):
        _, state, _ = model.forward(x[t : t + 1], state)
        hs.append(state[0])
        cs.append(state[1])
    return np.stack(hs), np.stack(cs)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_chunked_forward_equals_full_forward():
    model = _model()
    x = _streams(13)[:-1]  # (12, B)
    full, (h_full, c_full), _ = model.forward(x)
    state, parts = None, []
    for s, e in [(0, 3), (3, 4), (4, 9), (9, 12)]:  # uneven chunks, one of length 1
        logits, state, _ = model.forward(x[s:e], state)
        parts.append(logits)
    np.testing.assert_allclose(np.concatenate(parts), full, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state[0], h_full, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state[1], c_full, rtol=1e-12, atol=1e-14)
    # the carried state is what makes them equal: restarting from zeros differs
    restart = model.forward(x[3:4])[0]
    assert not np.allclose(restart, full[3:4])


def test_loss_state_is_carried_copy():
    model = _model()
    x = _streams(7)
    _, _, (h, c) = model.loss(x[:-1], x[1:], train=False)
    _, (h2, c2), _ = model.forward(x[:-1])
    np.testing.assert_array_equal(h, h2)
    np.testing.assert_array_equal(c, c2)
    assert h.flags.writeable and c.flags.writeable  # plain arrays, not views into a cache


@pytest.mark.parametrize("k1, k2", [(3, 10), (3, 12), (4, 10), (1, 10), (10, 10)])
def test_k2_covering_the_stream_equals_full_bptt(k1, k2):
    """With k2 >= T every window backpropagates to t = 0, so the count-weighted sum of window
    gradients is the gradient of the summed loss: dividing by the count gives full BPTT."""
    model = _model()
    streams = _streams(11)  # T = 10
    source = TBPTTStream(streams, k1, k2)
    total, grads, count = tbptt_gradients(model, source)
    assert count == 10 * B
    loss_full, grads_full, _ = model.loss(streams[:-1], streams[1:], train=False)
    assert total / count == pytest.approx(loss_full, rel=1e-12)
    for k in grads_full:
        np.testing.assert_allclose(grads[k] / count, grads_full[k], rtol=1e-10, atol=1e-13,
                                   err_msg=k)


def test_truncation_is_real_when_k2_equals_k1():
    model = _model()
    streams = _streams(11)
    total, grads, count = tbptt_gradients(model, TBPTTStream(streams, 3))
    loss_full, grads_full, _ = model.loss(streams[:-1], streams[1:], train=False)
    # the forward (and so the loss) is the same: the state is carried across windows ...
    assert total / count == pytest.approx(loss_full, rel=1e-12)
    # ... but the recurrent weights' gradients lose the paths across window edges
    assert _rel(grads["lstm.weight_hh_l0"] / count, grads_full["lstm.weight_hh_l0"]) > 1e-3
    # k2 between k1 and T: closer to full BPTT than k2 = k1, still not equal
    _, g5, _ = tbptt_gradients(model, TBPTTStream(streams, 3, 6))
    e3 = _rel(grads["lstm.weight_hh_l0"] / count, grads_full["lstm.weight_hh_l0"])
    e6 = _rel(g5["lstm.weight_hh_l0"] / count, grads_full["lstm.weight_hh_l0"])
    assert 1e-6 < e6 < e3


def test_windows_k2_equals_k1():
    streams = _streams(11)
    src = TBPTTStream(streams, 3)
    assert src.num_batches == 4  # ceil(10 / 3)
    spans = [(0, 3), (3, 6), (6, 9), (9, 10)]
    for w, (s, e) in enumerate(spans):
        b = src.get(w)
        np.testing.assert_array_equal(b.inputs, streams[s:e])
        np.testing.assert_array_equal(b.targets, streams[s + 1 : e + 1])
        assert b.kwargs == {}
        assert b.reset_state == (w == 0)


@pytest.mark.parametrize("k1, k2, n", [(3, 5, 11), (3, 7, 11), (2, 3, 10), (4, 6, 14), (3, 10, 11)])
def test_windows_k2_greater_than_k1(k1, k2, n):
    """Masks count exactly the new k1 steps, and ``state_at`` points at the first input of the
    next window: checked against states from one forward pass over the whole stream."""
    model = _model()
    streams = _streams(n)
    T = n - 1
    src = TBPTTStream(streams, k1, k2)
    # states after t steps from a zero start, t = 0..T, all layers: by hand from one pass
    h_ref, c_ref = _states_by_stepping(model, streams[:-1])  # (T + 1, L, B, H)
    counted = np.zeros(T, int)
    state = None
    for w in range(src.num_batches):
        b = src.get(w)
        start, end = w * k1, min((w + 1) * k1, T)
        lo = max(0, end - k2)  # backpropagate through the last k2 steps (fewer at the start)
        assert len(b.inputs) == min(k2, end)
        np.testing.assert_array_equal(b.inputs, streams[lo:end])
        np.testing.assert_array_equal(b.targets, streams[lo + 1 : end + 1])
        mask = b.kwargs.get("mask", np.ones(b.targets.shape, bool))
        assert mask.shape == b.targets.shape
        expected_mask = np.zeros(end - lo, bool)
        expected_mask[start - lo :] = True
        np.testing.assert_array_equal(mask, np.broadcast_to(expected_mask[:, None], mask.shape))
        counted[lo:end] += expected_mask
        if b.reset_state:
            state = None
        # the carried state equals the reference state at the window's first input
        if state is not None:
            np.testing.assert_allclose(state[0], h_ref[lo], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(state[1], c_ref[lo], rtol=1e-12, atol=1e-14)
        else:
            assert lo == 0
        _, _, state = model.loss(b.inputs, b.targets, state, train=False, **b.kwargs)
        if w + 1 < src.num_batches:
            next_lo = max(0, min(end + k1, T) - k2)
            assert b.kwargs["state_at"] == next_lo - lo
    np.testing.assert_array_equal(counted, np.ones(T, int))  # every step counted exactly once


def test_state_at_returns_intermediate_state():
    model = _model()
    x = _streams(8)
    h_ref, c_ref = _states_by_stepping(model, x[:-1])
    for t in (0, 3, 7):
        _, _, (h, c) = model.loss(x[:-1], x[1:], train=False, state_at=t)
        np.testing.assert_allclose(h, h_ref[t], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(c, c_ref[t], rtol=1e-12, atol=1e-14)
    assert not np.any(model.loss(x[:-1], x[1:], train=False, state_at=0)[2][0])


def test_state_reset_at_each_epoch():
    streams = _streams(11)
    src = TBPTTStream(streams, 3, 5)
    nb = src.num_batches
    for step in range(3 * nb):
        b = src.get(step)
        assert b.reset_state == (step % nb == 0)
        np.testing.assert_array_equal(b.inputs, src.get(step % nb).inputs)


def test_trainer_resets_carried_state_at_epoch_start():
    model = _model()
    real_loss = model.loss
    seen = []

    def spy(inputs, targets, state=None, **kw):
        seen.append(None if state is None else (state[0].copy(), state[1].copy()))
        out = real_loss(inputs, targets, state, **kw)
        seen_out.append(out[2])
        return out

    seen_out = []
    model.loss = spy
    src = TBPTTStream(_streams(11), 3)
    trainer = Trainer(model, SGD(model.params, lr=0.1), src, epochs=3, progress=False)
    trainer.fit()
    nb = src.num_batches
    assert len(seen) == 3 * nb
    for step, st in enumerate(seen):
        if step % nb == 0:
            assert st is None, step
        else:
            # the state handed in is the one returned by the previous window
            assert st is not None, step
            np.testing.assert_array_equal(st[0], seen_out[step - 1][0])
            np.testing.assert_array_equal(st[1], seen_out[step - 1][1])


def test_tbptt_stream_validation():
    with pytest.raises(ValueError, match="k2"):
        TBPTTStream(_streams(), 4, 3)
    with pytest.raises(ValueError, match="N >= 2"):
        TBPTTStream(np.zeros((1, 2), int), 1)
    with pytest.raises(TypeError, match="streams"):
        TBPTTStream(np.zeros((5, 2)), 1)
    with pytest.raises(ValueError, match="k1"):
        TBPTTStream(_streams(), 0)
