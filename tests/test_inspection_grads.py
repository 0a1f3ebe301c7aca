"""Gradient flow through time and saliency, against central differences, the product of the
per-step Jacobians written out from the LSTM equations, and the sigmoid(b_f)^lag decay."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lstm_bptt
from lstm_bptt.inspection import (
    StateGradients,
    gradient_norms,
    lm_gradients,
    lm_inspect,
    state_gradients,
    vanishing_gradient_demo,
)

CELLS = [name for name in ("LSTM", "GRU", "RNN") if hasattr(lstm_bptt, name)]


def _layer(name, D=3, H=4, L=2, **kw):
    return getattr(lstm_bptt, name)(D, H, num_layers=L, rng=0, **kw)


def _random_hx(layer, B, rng):
    names = layer.cell.state_names
    states = tuple(rng.normal(size=(layer.num_layers, B, layer.hidden_size)) for _ in names)
    return states[0] if len(names) == 1 else states


def _as_tuple(layer, hx):
    return (hx,) if len(layer.cell.state_names) == 1 else tuple(hx)


def _pack(layer, states):
    return states[0] if len(states) == 1 else tuple(states)


@pytest.mark.parametrize("cell", CELLS)
def test_state_gradients_match_central_differences(cell):
    rng = np.random.default_rng(1)
    layer = _layer(cell)
    T, B = 5, 2
    x = rng.normal(size=(T, B, 3))
    hx = _random_hx(layer, B, rng)
    dout = np.zeros((T, B, 4))
    dout[-1] = rng.normal(size=(B, 4))  # a loss on the last output only
    g = state_gradients(layer, x, dout, hx)
    eps, worst = 1e-6, 0.0
    for k in range(T - 1):  # perturb the state after step k, rerun steps k+1..T-1
        _, state_k, _ = layer.forward(x[: k + 1], hx)
        state_k = _as_tuple(layer, state_k)
        for s, name in enumerate(layer.cell.state_names):
            num = np.zeros_like(state_k[s])
            for idx in np.ndindex(num.shape):
                for sign in (1, -1):
                    pert = [a.copy() for a in state_k]
                    pert[s][idx] += sign * eps
                    out, _, _ = layer.forward(x[k + 1 :], _pack(layer, pert))
                    num[idx] += sign * np.sum(out * dout[k + 1 :]) / (2 * eps)
            err = np.abs(num - g.states[name][k]).max() / np.abs(num).max()
            worst = max(worst, err)
    assert worst < 1e-7
    # the gradient of hx and of every input equal one ordinary sequence backward
    _, _, cache = layer.forward(x, hx)
    dx, dhx, _ = layer.backward(dout, cache)
    np.testing.assert_allclose(g.dx, dx, rtol=1e-12, atol=1e-15)
    for name, d in zip(layer.cell.state_names, _as_tuple(layer, dhx), strict=True):
        np.testing.assert_allclose(g.initial[name], d, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cell", CELLS)
def test_state_gradients_with_a_loss_at_every_step(cell):
    """With doutput at every step, the top layer's h also gets its direct term."""
    rng = np.random.default_rng(2)
    layer = _layer(cell, L=1)
    T, B = 4, 1
    x = rng.normal(size=(T, B, 3))
    dout = rng.normal(size=(T, B, 4))
    g = state_gradients(layer, x, dout)
    k, eps = 1, 1e-6
    _, state_k, _ = layer.forward(x[: k + 1])
    state_k = _as_tuple(layer, state_k)
    num = np.zeros_like(state_k[0])
    for idx in np.ndindex(num.shape):
        for sign in (1, -1):
            pert = [a.copy() for a in state_k]
            pert[0][idx] += sign * eps
            out, _, _ = layer.forward(x[k + 1 :], _pack(layer, pert))
            num[idx] += sign * np.sum(out * dout[k + 1 :]) / (2 * eps)
    num += dout[k]  # h_k is output[k] itself
    np.testing.assert_allclose(g.states["h"][k], num, rtol=1e-7)


def _sigmoid(a):
    return 0.5 * (1 + np.tanh(a / 2))


@pytest.mark.skipif("LSTM" not in CELLS, reason="no LSTM layer")
def test_lstm_state_gradients_equal_the_product_of_step_jacobians():
    """dL/ds_k = J_{k+1}^T ... J_{T-1}^T dL/ds_{T-1} (Pascanu et al. 2013, eq. 5), with the
    step Jacobian of s = (h, c) written out from the LSTM equations (PyTorch's form)."""
    rng = np.random.default_rng(3)
    D, H, T = 3, 4, 6
    layer = lstm_bptt.LSTM(D, H, rng=0)
    p = layer.params
    for v in p.values():
        v[...] = rng.normal(scale=0.6, size=v.shape)
    W, U, b = p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"] + p["bias_hh_l0"]
    x0 = rng.normal(size=(T, 1, D))
    R = rng.normal(size=H)
    dout = np.zeros((T, 1, H))
    dout[-1, 0] = R
    h0, c0 = rng.normal(size=H), rng.normal(size=H)
    hx = (h0[None, None], c0[None, None])
    h, c = h0, c0
    jac = []
    for t in range(T):
        a = W @ x0[t, 0] + U @ h + b
        i, f, gc, o = _sigmoid(a[:H]), _sigmoid(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), \
            _sigmoid(a[3 * H:])
        c_new = f * c + i * gc
        tc = np.tanh(c_new)
        di = (i * (1 - i))[:, None] * U[:H]
        df = (f * (1 - f))[:, None] * U[H:2 * H]
        dg = (1 - gc ** 2)[:, None] * U[2 * H:3 * H]
        do = (o * (1 - o))[:, None] * U[3 * H:]
        dc_dh = c[:, None] * df + gc[:, None] * di + i[:, None] * dg
        dc_dc = np.diag(f)
        dh_dh = tc[:, None] * do + (o * (1 - tc ** 2))[:, None] * dc_dh
        dh_dc = (o * (1 - tc ** 2))[:, None] * dc_dc
        jac.append(np.block([[dh_dh, dh_dc], [dc_dh, dc_dc]]))
        h, c = o * tc, c_new
    g = state_gradients(layer, x0, dout, hx)
    v = np.concatenate([R, np.zeros(H)])  # dL/d(h_{T-1}, c_{T-1})
    for k in range(T - 1, -1, -1):
        np.testing.assert_allclose(g.states["h"][k, 0, 0], v[:H], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g.states["c"][k, 0, 0], v[H:], rtol=1e-12, atol=1e-14)
        v = jac[k].T @ v  # back to the state before step k
    np.testing.assert_allclose(g.initial["h"][0, 0], v[:H], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g.initial["c"][0, 0], v[H:], rtol=1e-12, atol=1e-14)


@pytest.mark.skipif("LSTM" not in CELLS, reason="no LSTM layer")
@pytest.mark.parametrize("b_f, about", [(1.0, 2.5e-14), (5.0, 0.51)])
def test_cell_gradient_decays_as_sigmoid_forget_bias_to_the_lag(b_f, about):
    """A model built for it: no recurrent weights and no input to the forget gate, so f is
    exactly sigmoid(b_f) and dL/dc_k = f^(t-1-k) dL/dc_{t-1} along the cell path (at the loss
    step t itself dL/dc_t = 0: the loss reads h_t)."""
    H, D, T = 4, 3, 102
    layer = lstm_bptt.LSTM(D, H, rng=0, forget_bias=b_f)
    layer.params["weight_hh_l0"][...] = 0.0
    layer.params["weight_ih_l0"][H : 2 * H] = 0.0  # forget-gate rows
    rng = np.random.default_rng(0)
    x = rng.normal(size=(T, 1, D))
    dout = np.zeros((T, 1, H))
    dout[-1] = rng.normal(size=(1, H))
    g = state_gradients(layer, x, dout)
    n = gradient_norms(g, T - 1)["c"][:, 0, 0]  # by lag
    assert n[0] == 0.0
    measured = n[101] / n[1]  # over 100 steps
    assert measured == pytest.approx(1 / (1 + math.exp(-b_f)) ** 100, rel=1e-10)
    assert measured == pytest.approx(about, rel=0.01)  # the values the issue quotes


def test_gradient_norms_by_lag_on_hand_built_gradients():
    T, L, B = 3, 1, 2
    h = np.zeros((T, L, B, 2))
    h[:, 0, 0] = [[3, 4], [0, 1], [0, 2]]  # norms 5, 1, 2 at steps 0, 1, 2
    h[:, 0, 1] = [[0, 0], [6, 8], [1, 0]]  # norms 0, 10, 1
    dx = np.arange(T * B * 1, dtype=float).reshape(T, B, 1)  # norms = values
    g = StateGradients({"h": h}, {"h": np.zeros((L, B, 2))}, dx)
    n = gradient_norms(g, [2, 1])  # row 0: loss at step 2; row 1: at step 1
    np.testing.assert_array_equal(n["h"][:, 0, 0], [2, 1, 5])
    np.testing.assert_array_equal(n["h"][:2, 0, 1], [10, 0])
    assert np.isnan(n["h"][2, 0, 1])
    np.testing.assert_array_equal(n["x"][:, 0], [4, 2, 0])
    np.testing.assert_array_equal(n["x"][:2, 1], [3, 1])
    with pytest.raises(ValueError, match="loss_steps"):
        gradient_norms(g, 3)


@pytest.mark.skipif(not hasattr(lstm_bptt, "RNN"), reason="needs the RNN layer")
def test_vanishing_gradient_demo_tanh_rnn_vs_lstm():
    d = vanishing_gradient_demo(T=100, hidden_size=32)
    rnn = d["tanh RNN"]["h"]
    lstm1 = d["LSTM, forget bias 1"]["c"]
    lstm5 = d["LSTM, forget bias 5"]["c"]
    assert rnn[50] / rnn[0] < 1e-6  # the tanh RNN forgets within a few dozen steps
    assert lstm5[99] / lstm5[1] > 0.3  # the cell path with b_f = 5 barely decays
    assert lstm1[99] / lstm1[1] < 1e-6


def _char_model(V=6, H=5, L=1, **kw):
    return lstm_bptt.CharLM(V, H, num_layers=L, dtype=np.float64, rng=0, **kw)


def _full_loss(model, ids, t, x_pert=None):
    """-log p(ids[t+1] | ids[..t]) from the start of the text; x_pert replaces one-hot x."""
    V = model.vocab_size
    x = np.eye(V)[ids][:, None] if x_pert is None else x_pert
    out, _, _ = model.lstm.forward(x)
    logits, _ = model.head.forward(out)
    z = logits[t, 0]
    return float(np.log(np.exp(z - z.max()).sum()) + z.max() - z[ids[t + 1]])


@pytest.mark.parametrize("L", [1, 2])
def test_lm_saliency_matches_central_differences_on_the_one_hot_input(L):
    model = _char_model(L=L)
    rng = np.random.default_rng(4)
    for v in model.params.values():
        v[...] = rng.normal(scale=0.5, size=v.shape)
    ids = rng.integers(0, 6, size=14)
    positions = np.array([3, 9, 12])
    res = lm_gradients(model, ids, positions, window=5)  # window shorter than most prefixes
    x = np.eye(6)[ids][:, None]
    for j, t in enumerate(positions):
        assert res["loss"][j] == pytest.approx(_full_loss(model, ids, t), rel=1e-12)
        for lag in range(5):
            k = t - lag
            if k < 0:
                assert np.isnan(res["x"][lag, j])
                continue
            num = np.zeros(6)
            for d in range(6):
                for sign in (1, -1):
                    xp = x.copy()
                    xp[k, 0, d] += sign * 1e-6
                    num[d] += sign * _full_loss(model, ids, t, xp) / 2e-6
            assert res["x"][lag, j] == pytest.approx(np.linalg.norm(num), rel=1e-7)


def test_lm_inspect_values_and_guesses():
    model = _char_model(L=2)
    ids = np.array([0, 3, 1, 5, 2, 2, 4])
    r = lm_inspect(model, ids, top_k=3)
    logits, _, _ = model.forward(ids[:, None])
    p = np.exp(logits[:, 0] - logits[:, 0].max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_array_equal(r["top_ids"], np.argsort(-p, axis=1)[:, :3])
    np.testing.assert_allclose(r["probs"], p, rtol=1e-12)
    np.testing.assert_allclose(r["loss"], -np.log(p[np.arange(6), ids[1:]]), rtol=1e-12)
    out, (h_n, _), _ = model.lstm.forward(np.eye(6)[ids][:, None])
    np.testing.assert_allclose(r["values"][1]["h"], out[:, 0], rtol=1e-12)
    np.testing.assert_allclose(r["values"][0]["h"][-1], h_n[0, 0], rtol=1e-12)
    np.testing.assert_allclose(r["values"][0]["tanh_c"], np.tanh(r["values"][0]["c"]))
    assert set(r["values"][0]) >= {"h", "c", "i", "f", "g", "o", "tanh_c"}


def test_state_gradients_refuses_bad_input():
    if "LSTM" not in CELLS:
        pytest.skip("no LSTM layer")
    layer = _layer("LSTM", L=1)
    with pytest.raises(TypeError, match="layer: expected a recurrent layer"):
        state_gradients(object(), np.zeros((2, 1, 3)), np.zeros((2, 1, 4)))
    with pytest.raises(ValueError, match="doutput: expected"):
        state_gradients(layer, np.zeros((2, 1, 3)), np.zeros((3, 1, 4)))
    with pytest.raises(ValueError, match="positions"):
        lm_gradients(_char_model(), np.array([0, 1, 2]), [2])
    with pytest.raises(TypeError, match="model: expected a character language model"):
        lm_inspect(layer, np.array([0, 1]))
    with pytest.raises(TypeError, match="window"):
        lm_gradients(_char_model(), np.array([0, 1, 2]), [1], window=2.5)


@pytest.mark.parametrize("cell", CELLS)
def test_state_gradients_batch_first_equals_time_major(cell):
    rng = np.random.default_rng(5)
    tm = _layer(cell)
    bf = _layer(cell, batch_first=True)
    for k in tm.params:
        bf.params[k][...] = tm.params[k]
    x = rng.normal(size=(4, 2, 3))
    dout = rng.normal(size=(4, 2, 4))
    a = state_gradients(tm, x, dout)
    b = state_gradients(bf, x.transpose(1, 0, 2), dout.transpose(1, 0, 2))
    np.testing.assert_allclose(b.dx, a.dx, rtol=1e-13, atol=1e-15)  # dx is time-major
    for name in a.states:
        np.testing.assert_allclose(b.states[name], a.states[name], rtol=1e-13, atol=1e-15)


def test_lm_saliency_with_an_embedding_is_the_embedding_gradient():
    """With a learned embedding the saliency is ||dL_t/de_k||, e_k the embedded character."""
    model = _char_model(L=1, embedding_dim=3)
    rng = np.random.default_rng(6)
    for v in model.params.values():
        v[...] = rng.normal(scale=0.5, size=v.shape)
    ids = rng.integers(0, 6, size=9)
    t = 7
    res = lm_gradients(model, ids, [t], window=4)
    emb = model.modules["embedding"].forward(ids[:, None])[0]
    for lag in range(4):
        num = np.zeros(3)
        for d in range(3):
            for sign in (1, -1):
                e = emb.copy()
                e[t - lag, 0, d] += sign * 1e-6
                num[d] += sign * _full_loss(model, ids, t, e) / 2e-6
        assert res["x"][lag, 0] == pytest.approx(np.linalg.norm(num), rel=1e-7)


def test_float32_model_gives_float32_gradients_close_to_float64():
    m64 = _char_model(L=2)
    m32 = lstm_bptt.CharLM(6, 5, num_layers=2, dtype=np.float32, rng=0)
    m32.load_params({k: v.astype(np.float32) for k, v in m64.params.items()})
    ids = np.array([0, 3, 1, 5, 2, 2, 4, 1])
    a = lm_gradients(m64, ids, [3, 6], window=5)
    b = lm_gradients(m32, ids, [3, 6], window=5)
    np.testing.assert_allclose(b["x"], a["x"], rtol=1e-4)
    np.testing.assert_allclose(b["h"], a["h"], rtol=1e-4)
