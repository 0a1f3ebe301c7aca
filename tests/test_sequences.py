"""The LSTM layer with ``lengths``, ``bidirectional=True`` and ``proj_size``, and combinations.

Expected values come from PyTorch ``nn.LSTM`` (tests/fixtures/lstm9_torch.npz, made by
scripts/make_lstm9_fixtures.py with ``pack_padded_sequence(enforce_sorted=False)``; torch is
not needed here), from central differences (gradcheck), and from running each sequence of a
padded batch alone.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import randomize_params

from lstm_bptt import GRU, LSTM, RNN, Cell, LSTMCell, Recurrent, gradcheck

FIXTURES = Path(__file__).parent / "fixtures" / "lstm9_torch.npz"


def _fixture_names():
    with np.load(FIXTURES) as data:
        return sorted({k.split("/")[0] for k in data.files})


def _torch_case(name):
    with np.load(FIXTURES) as data:
        cfg = json.loads(str(data[f"{name}/config"]))
        case = {k.removeprefix(f"{name}/"): data[k] for k in data.files
                if k.startswith(f"{name}/")}
    return cfg, case


def _model(rng, D, H, *, L=1, scale=0.5, **kw):
    model = LSTM(D, H, num_layers=L, rng=rng, **kw)
    randomize_params(model, rng, scale)
    return model


def _data(rng, model, T, B, dtype=np.float64):
    """x, h_0, c_0 (all non-zero) and the loss weights R, Rh, Rc for ``model``."""
    dirs = 2 if model.bidirectional else 1
    L, H, P = model.num_layers, model.hidden_size, model.proj_size
    Hout = P or H
    xshape = (B, T, model.input_size) if model.batch_first else (T, B, model.input_size)
    x = rng.standard_normal(xshape).astype(dtype)
    h_0 = (0.5 * rng.standard_normal((L * dirs, B, Hout))).astype(dtype)
    c_0 = rng.standard_normal((L * dirs, B, H)).astype(dtype)
    R = rng.standard_normal(xshape[:2] + (dirs * Hout,)).astype(dtype)
    Rh = rng.standard_normal(h_0.shape).astype(dtype)
    Rc = rng.standard_normal(c_0.shape).astype(dtype)
    return x, h_0, c_0, R, Rh, Rc


def _padded(lengths, T, batch_first):
    """Boolean mask of the padded steps, (T, B) or (B, T)."""
    pad = np.arange(T)[:, None] >= np.asarray(lengths)[None, :]
    return pad.T if batch_first else pad


# --------------------------------------------------------------------- PyTorch parity


def _layer_for(cfg):
    dtype = np.dtype(cfg["dtype"])
    kw = dict(num_layers=cfg["L"], bias=cfg["bias"], batch_first=cfg["batch_first"],
              bidirectional=cfg["bidirectional"], dtype=dtype, rng=0)
    if cfg["cell"] == "lstm":
        return LSTM(cfg["D"], cfg["H"], proj_size=cfg["P"], **kw)
    if cfg["cell"] == "gru":
        return GRU(cfg["D"], cfg["H"], **kw)
    return RNN(cfg["D"], cfg["H"], nonlinearity=cfg["cell"].split("_")[1], **kw)


@pytest.mark.parametrize("name", _fixture_names())
def test_matches_pytorch(name):
    """nn.LSTM (and nn.GRU, nn.RNN: the same layer code gives them lengths and bidirectional)
    with pack_padded_sequence(enforce_sorted=False): outputs, final states, every gradient."""
    cfg, case = _torch_case(name)
    dtype = np.dtype(cfg["dtype"])
    tol = 1e-12 if dtype == np.float64 else 2e-5
    model = _layer_for(cfg)
    lstm = cfg["cell"] == "lstm"
    # same names, same order (nn.LSTM's named_parameters), same shapes
    torch_names = [k.removeprefix("param/") for k in case if k.startswith("param/")]
    assert list(model.params) == torch_names
    for k in model.params:
        assert model.params[k].shape == case[f"param/{k}"].shape, k
        model.params[k][...] = case[f"param/{k}"]
    lengths = case.get("lengths")
    hx = (case["h_0"], case["c_0"]) if lstm else case["h_0"]
    out, h_n, cache = model.forward(case["x"], hx, lengths=lengths)
    dx, dh_0, grads = model.backward(case["R"], cache,
                                     (case["Rh"], case["Rc"]) if lstm else case["Rh"])
    if lstm:
        (h_n, c_n), (dh_0, dc_0) = h_n, dh_0

    def close(got, want, what):
        assert got.dtype == dtype and got.shape == want.shape, what
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)

    close(out, case["output"], "output")
    close(h_n, case["h_n"], "h_n")
    close(dx, case["dx"], "dx")
    close(dh_0, case["dh_0"], "dh_0")
    if lstm:
        close(c_n, case["c_n"], "c_n")
        close(dc_0, case["dc_0"], "dc_0")
    assert list(grads) == list(model.params)
    for k in model.params:
        close(grads[k], case[f"grad/{k}"], k)
    if lengths is not None:  # exactly zero, not merely small
        pad = _padded(lengths, cfg["T"], cfg["batch_first"])
        assert np.all(out[pad] == 0) and np.all(dx[pad] == 0)


# ------------------------------------------------------------------ gradient checks


LENGTHS = np.array([2, 4, 1])  # unsorted, includes 1 and T = 4

# each combination: constructor options and whether lengths are given (T = 4, B = 3)
COMBOS = {
    "lengths": (dict(), True),
    "bidir": (dict(bidirectional=True), False),
    "proj": (dict(proj_size=2), False),
    "lengths_bidir": (dict(bidirectional=True), True),
    "lengths_proj": (dict(proj_size=2), True),
    "bidir_proj": (dict(bidirectional=True, proj_size=2), False),
    "all_L2": (dict(L=2, bidirectional=True, proj_size=2), True),
    "all_L2_batch_first": (dict(L=2, bidirectional=True, proj_size=1, batch_first=True), True),
    "all_L2_nobias": (dict(L=2, bidirectional=True, proj_size=2, bias=False), True),
    "all_L2_checkpoint": (dict(L=2, bidirectional=True, proj_size=2, checkpoint_every=3), True),
    "lengths_bidir_L2_checkpoint1": (dict(L=2, bidirectional=True, checkpoint_every=1), True),
}


def _gradcheck(model, x, h_0, c_0, R, Rh, Rc, lengths, *, train=False, reseed=None):
    def fwd():
        if reseed is not None:  # the same dropout masks at every call
            model.rng = np.random.default_rng(reseed)
        return model.forward(x, (h_0, c_0), lengths=lengths, train=train)

    def loss():
        out, (h_n, c_n), _ = fwd()
        return np.sum(out * R) + np.sum(h_n * Rh) + np.sum(c_n * Rc)

    _, _, cache = fwd()
    dx, (dh_0, dc_0), grads = model.backward(R, cache, (Rh, Rc))
    tensors = {"x": x, "h_0": h_0, "c_0": c_0, **model.params}
    return gradcheck(loss, tensors, {"x": dx, "h_0": dh_0, "c_0": dc_0, **grads}, tol=1e-7)


@pytest.mark.parametrize("combo", list(COMBOS))
def test_gradcheck_combinations(rng, combo):
    kw, with_lengths = COMBOS[combo]
    kw = dict(kw)
    L = kw.pop("L", 1)
    model = _model(rng, 3, 3, L=L, **kw)
    x, h_0, c_0, R, Rh, Rc = _data(rng, model, 4, 3)
    report = _gradcheck(model, x, h_0, c_0, R, Rh, Rc, LENGTHS if with_lengths else None)
    assert report.passed and report.max_rel_error < 1e-7
    assert {r.name for r in report.rows} == {"x", "h_0", "c_0", *model.params}


@pytest.mark.parametrize("T, B, lengths", [(1, 1, [1]), (3, 1, [2]), (1, 2, [1, 1])])
def test_gradcheck_tiny(rng, T, B, lengths):
    model = _model(rng, 2, 3, L=2, bidirectional=True, proj_size=1)
    x, h_0, c_0, R, Rh, Rc = _data(rng, model, T, B)
    assert _gradcheck(model, x, h_0, c_0, R, Rh, Rc, np.array(lengths)).passed


def test_gradcheck_dropout_bidirectional_lengths(rng):
    model = _model(rng, 2, 2, L=3, bidirectional=True, proj_size=1, dropout=0.4)
    x, h_0, c_0, R, Rh, Rc = _data(rng, model, 4, 3)
    report = _gradcheck(model, x, h_0, c_0, R, Rh, Rc, LENGTHS, train=True, reseed=7)
    assert report.passed
    model.rng = np.random.default_rng(7)
    _, _, cache = model.forward(x, (h_0, c_0), lengths=LENGTHS, train=True)
    model.rng = np.random.default_rng(7)
    out_eval, _, _ = model.forward(x, (h_0, c_0), lengths=LENGTHS)
    out_train, _, _ = model.forward(x, (h_0, c_0), lengths=LENGTHS, train=True)
    assert not np.allclose(out_train, out_eval)  # the dropout did drop something


# ------------------------------------------------------ semantics without a reference library


@pytest.mark.parametrize("kw", [dict(), dict(bidirectional=True, proj_size=2),
                                dict(L=2, bidirectional=True, batch_first=True),
                                dict(L=2, proj_size=1, checkpoint_every=2)],
                         ids=["plain", "bidir_proj", "L2_bidir_bf", "L2_proj_ckpt"])
def test_padded_batch_equals_each_sequence_alone(rng, kw):
    """Row b of a padded batch gives what running sequence b (length l_b, batch 1) alone gives:
    outputs, final states and every gradient (the batch's weight gradient = sum over rows)."""
    kw = dict(kw)
    L = kw.pop("L", 1)
    model = _model(rng, 3, 3, L=L, **kw)
    bf = model.batch_first
    T, lengths = 5, np.array([3, 5, 1, 4])
    B = len(lengths)
    x, h_0, c_0, R, Rh, Rc = _data(rng, model, T, B)
    x[_padded(lengths, T, bf)] = 7.0  # whatever is in the padding must not matter
    out, (h_n, c_n), cache = model.forward(x, (h_0, c_0), lengths=lengths)
    dx, (dh_0, dc_0), grads = model.backward(R, cache, (Rh, Rc))
    assert np.all(out[_padded(lengths, T, bf)] == 0)
    assert np.all(dx[_padded(lengths, T, bf)] == 0)
    sum_grads = {k: np.zeros_like(v) for k, v in model.params.items()}
    for b, n in enumerate(lengths):
        def row(a, b=b, n=n):  # sequence b alone, (n, 1, .) or (1, n, .)
            return a[b : b + 1, :n] if bf else a[:n, b : b + 1]

        o1, (h1, c1), cache1 = model.forward(row(x), (h_0[:, b : b + 1], c_0[:, b : b + 1]))
        dx1, (dh1, dc1), g1 = model.backward(row(R), cache1, (Rh[:, b : b + 1],
                                                             Rc[:, b : b + 1]))
        np.testing.assert_allclose(row(out), o1, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(h_n[:, b : b + 1], h1, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(c_n[:, b : b + 1], c1, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(row(dx), dx1, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(dh_0[:, b : b + 1], dh1, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(dc_0[:, b : b + 1], dc1, rtol=1e-12, atol=1e-13)
        for k in sum_grads:
            sum_grads[k] += g1[k]
    for k in sum_grads:
        np.testing.assert_allclose(grads[k], sum_grads[k], rtol=1e-12, atol=1e-12, err_msg=k)


def test_gradient_of_padded_outputs_is_ignored(rng):
    """A loss weight at a padded step changes nothing (the output there is a constant 0)."""
    model = _model(rng, 3, 2, L=2, bidirectional=True)
    x, h_0, c_0, R, Rh, Rc = _data(rng, model, 4, 3)
    _, _, cache = model.forward(x, (h_0, c_0), lengths=LENGTHS)
    R0 = R.copy()
    R0[_padded(LENGTHS, 4, False)] = 0
    a = model.backward(R, cache, (Rh, Rc))
    b = model.backward(R0, cache, (Rh, Rc))
    np.testing.assert_array_equal(a[0], b[0])
    for k in model.params:
        np.testing.assert_array_equal(a[2][k], b[2][k])


def test_reverse_direction_reads_each_valid_prefix_backwards(rng):
    """The reverse half of a bidirectional layer is a forward LSTM with the ``_reverse``
    parameters run on x[l_b - 1], ..., x[0] (PyTorch's semantics), output re-reversed."""
    D, H, T = 3, 4, 5
    lengths = np.array([3, 5, 1])
    bi = _model(rng, D, H, bidirectional=True, proj_size=2)
    fwd = LSTM(D, H, proj_size=2, rng=0)
    rev = LSTM(D, H, proj_size=2, rng=0)
    for k in fwd.params:
        fwd.params[k][...] = bi.params[k]
        rev.params[k][...] = bi.params[f"{k}_reverse"]
    x, h_0, c_0, _, _, _ = _data(rng, bi, T, 3)
    out, (h_n, c_n), _ = bi.forward(x, (h_0, c_0), lengths=lengths)
    for b, n in enumerate(lengths):
        of, (hf, cf), _ = fwd.forward(x[:n, b : b + 1], (h_0[:1, b : b + 1], c_0[:1, b : b + 1]))
        orv, (hr, cr), _ = rev.forward(x[:n, b : b + 1][::-1],
                                       (h_0[1:, b : b + 1], c_0[1:, b : b + 1]))
        np.testing.assert_allclose(out[:n, b, :2], of[:, 0], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(out[:n, b, 2:], orv[::-1, 0], rtol=1e-13, atol=1e-14)
        # h_n: forward at step l_b - 1, reverse at step 0 (PyTorch's (L * 2, B, .) order)
        np.testing.assert_allclose(h_n[0, b], hf[0, 0], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(h_n[1, b], hr[0, 0], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(c_n[1, b], cr[0, 0], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(h_n[1, b], out[0, b, 2:], rtol=1e-13, atol=1e-14)


def test_lengths_all_T_equals_no_lengths(rng):
    model = _model(rng, 3, 3, L=2, bidirectional=True, proj_size=2)
    x, h_0, c_0, R, Rh, Rc = _data(rng, model, 4, 3)
    a_out, a_hc, a_cache = model.forward(x, (h_0, c_0))
    b_out, b_hc, b_cache = model.forward(x, (h_0, c_0), lengths=np.full(3, 4))
    np.testing.assert_allclose(a_out, b_out, rtol=1e-14, atol=1e-15)
    ga = model.backward(R, a_cache, (Rh, Rc))
    gb = model.backward(R, b_cache, (Rh, Rc))
    for k in model.params:
        np.testing.assert_allclose(ga[2][k], gb[2][k], rtol=1e-13, atol=1e-14)


def test_checkpoint_every_gives_bitwise_the_same(rng):
    kw = dict(L=2, bidirectional=True, proj_size=2)
    model = _model(rng, 3, 3, **kw)
    x, h_0, c_0, R, Rh, Rc = _data(rng, model, 7, 3)
    lengths = np.array([5, 7, 1])
    ref = model.forward(x, (h_0, c_0), lengths=lengths)
    gref = model.backward(R, ref[2], (Rh, Rc))
    for k in (1, 2, 3, 7, 50):
        model.checkpoint_every = k
        out = model.forward(x, (h_0, c_0), lengths=lengths)
        g = model.backward(R, out[2], (Rh, Rc))
        np.testing.assert_array_equal(out[0], ref[0])
        np.testing.assert_array_equal(out[1][0], ref[1][0])
        np.testing.assert_array_equal(out[1][1], ref[1][1])
        for a, b in zip((g[0], *g[1]), (gref[0], *gref[1]), strict=True):
            np.testing.assert_array_equal(a, b)
        for name in model.params:
            np.testing.assert_array_equal(g[2][name], gref[2][name])


def test_truncated_bptt_with_carried_state_equals_one_call(rng):
    """Two chunks with the state carried (and dh_n/dc_n handed back) = one call, with lengths
    ending in the second chunk and a projection."""
    model = _model(rng, 3, 3, L=2, proj_size=2)
    T1, T2, lengths2 = 3, 4, np.array([2, 4, 1])
    x, h_0, c_0, R, Rh, Rc = _data(rng, model, T1 + T2, 3)
    out, (h_n, c_n), cache = model.forward(x, (h_0, c_0), lengths=T1 + lengths2)
    dx, (dh_0, dc_0), grads = model.backward(R, cache, (Rh, Rc))
    o1, s1, k1 = model.forward(x[:T1], (h_0, c_0))
    o2, (h2, c2), k2 = model.forward(x[T1:], s1, lengths=lengths2)
    np.testing.assert_allclose(np.concatenate([o1, o2]), out, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(h2, h_n, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(c2, c_n, rtol=1e-13, atol=1e-14)
    dx2, ds2, g2 = model.backward(R[T1:], k2, (Rh, Rc))
    dx1, (dh1, dc1), g1 = model.backward(R[:T1], k1, ds2)
    np.testing.assert_allclose(np.concatenate([dx1, dx2]), dx, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dh1, dh_0, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dc1, dc_0, rtol=1e-12, atol=1e-13)
    for k in grads:
        np.testing.assert_allclose(g1[k] + g2[k], grads[k], rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------------- shapes, dtypes, numerics


def test_shapes_and_names(rng):
    model = LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, rng=0)
    assert model.params["weight_ih_l0"].shape == (20, 3)
    assert model.params["weight_hh_l0_reverse"].shape == (20, 2)
    assert model.params["weight_hr_l0"].shape == (2, 5)
    assert model.params["weight_ih_l1"].shape == (20, 4)  # layer 1 reads 2P features
    out, (h_n, c_n), _ = model.forward(np.ones((6, 4, 3)))
    assert out.shape == (6, 4, 4) and h_n.shape == (4, 4, 2) and c_n.shape == (4, 4, 5)
    bf = LSTM(3, 5, bidirectional=True, batch_first=True, rng=0)
    out, (h_n, c_n), _ = bf.forward(np.ones((4, 6, 3)), lengths=[6, 2, 3, 1])
    assert out.shape == (4, 6, 10) and h_n.shape == (2, 4, 5)


@pytest.mark.parametrize("mag", [1e3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_large_inputs(rng, mag, dtype):
    kw = dict(L=2, bidirectional=True, proj_size=2, dropout=0.2)
    m64 = _model(rng, 3, 3, **kw)
    model = LSTM(3, 3, num_layers=2, bidirectional=True, proj_size=2, dropout=0.2,
                 dtype=dtype, rng=0)
    for k in model.params:
        model.params[k][...] = m64.params[k]
    x, h_0, c_0, R, Rh, Rc = _data(rng, m64, 4, 3)
    xs = [x, mag * np.sign(x)]
    for xx in xs:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            args = [a.astype(dtype) for a in (xx, h_0, c_0, R, Rh, Rc)]
            out, (h_n, c_n), cache = model.forward(args[0], (args[1], args[2]),
                                                   lengths=LENGTHS, train=True)
            dx, (dh_0, dc_0), grads = model.backward(args[3], cache, (args[4], args[5]))
        arrays = [out, h_n, c_n, dx, dh_0, dc_0, *grads.values()]
        assert all(a.dtype == dtype and np.isfinite(a).all() for a in arrays)
    # float32 follows float64 to float32 precision
    out, (h_n, c_n), cache = model.forward(x.astype(dtype), (h_0.astype(dtype),
                                                             c_0.astype(dtype)),
                                           lengths=LENGTHS)
    ref, (rh, rc), rcache = m64.forward(x, (h_0, c_0), lengths=LENGTHS)
    tol = 1e-5 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    g = model.backward(R.astype(dtype), cache)[2]
    gref = m64.backward(R, rcache)[2]
    for k in g:
        np.testing.assert_allclose(g[k], gref[k], rtol=20 * tol, atol=20 * tol)


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("lengths, err, match", [
    ([0, 2, 3], ValueError, "lengths"),
    ([2, 5, 3], ValueError, "lengths"),
    ([-1, 2, 3], ValueError, "lengths"),
    ([2, 3], ValueError, r"lengths: expected shape \(3,\)"),
    ([[2, 3, 1]], ValueError, r"lengths: expected shape \(3,\)"),
    ([2.0, 3.0, 1.0], TypeError, "lengths: expected an integer"),
    (np.array([2.5, 3, 1]), TypeError, "lengths: expected an integer"),
    ([True, True, True], TypeError, "lengths: expected an integer"),
    ("abc", TypeError, "lengths"),
    (3, ValueError, r"lengths: expected shape \(3,\)"),
])
@pytest.mark.parametrize("batch_first", [False, True])
def test_bad_lengths(lengths, err, match, batch_first):
    model = LSTM(2, 3, bidirectional=True, batch_first=batch_first, rng=0)
    x = np.ones((3, 4, 2)) if batch_first else np.ones((4, 3, 2))
    with pytest.raises(err, match=match):
        model.forward(x, lengths=lengths)


def test_bad_options_and_states():
    with pytest.raises(ValueError, match="proj_size"):
        LSTM(2, 3, proj_size=3)  # must be < hidden_size, as PyTorch
    with pytest.raises(ValueError, match="proj_size"):
        LSTM(2, 3, proj_size=-1)
    with pytest.raises(TypeError, match="proj_size"):
        LSTM(2, 3, proj_size=1.5)
    model = LSTM(2, 3, num_layers=2, bidirectional=True, proj_size=1, rng=0)
    x = np.ones((4, 3, 2))
    with pytest.raises(ValueError, match=r"h_0: expected shape.*\(4, 3, 1\), got \(2, 3, 1\)"):
        model.forward(x, (np.zeros((2, 3, 1)), np.zeros((4, 3, 3))))
    with pytest.raises(ValueError, match=r"c_0: expected shape.*\(4, 3, 3\), got \(4, 3, 1\)"):
        model.forward(x, (np.zeros((4, 3, 1)), np.zeros((4, 3, 1))))


# ----------------------------------------- any cell gets lengths and bidirectional for free


class _ElmanCell(Cell):
    """A one-state tanh RNN cell that knows nothing about lengths or directions: its fast path
    is the base class's plain step loop (reference_forward / reference_backward)."""

    name = "elman_test"
    state_names = ("h",)
    num_gates = 1

    def step_forward(self, x, state, params):
        a = x @ params["weight_ih"].T + state[0] @ params["weight_hh"].T
        if "bias_ih" in params:
            a = a + params["bias_ih"] + params["bias_hh"]
        h = np.tanh(a)
        return (h,), (x, state[0], h, params)

    def step_backward(self, dstate, step_cache):
        x, h_prev, h, params = step_cache
        da = (np.zeros_like(h) if dstate[0] is None else dstate[0]) * (1 - h**2)
        grads = {"weight_ih": da.T @ x, "weight_hh": da.T @ h_prev}
        if "bias_ih" in params:
            grads["bias_ih"] = da.sum(0)
            grads["bias_hh"] = da.sum(0)
        return da @ params["weight_ih"], (da @ params["weight_hh"],), grads

    def forward(self, x, state0, params, *, checkpoint_every=None):
        out, state_n, steps = self.reference_forward(x, state0, params)
        h0 = steps[0][1]
        return out, state_n, (np.concatenate([h0[None], out]), steps)

    def backward(self, doutput, cache, dstate_n=None, *, need_dx=True):
        return self.reference_backward(doutput, cache[1], dstate_n)

    def cache_dims(self, cache):
        return len(cache[1]), cache[0].shape[1]

    def state_at(self, cache, t):
        return (cache[0][t],)

    def per_step(self, cache):
        return {"h": cache[0][1:]}


@pytest.mark.parametrize("kw", [dict(), dict(bidirectional=True, num_layers=2),
                                dict(bidirectional=True, batch_first=True)],
                         ids=["lengths", "bidir_L2", "bidir_bf"])
def test_a_cell_without_last_gets_lengths_and_bidirectional(rng, kw):
    """The layer reads h_n off the output and adds dh_n to the output gradient for a one-state
    cell: gradients against central differences, rows against each sequence alone."""
    layer = Recurrent(_ElmanCell(), 3, 2, rng=0, **kw)
    randomize_params(layer, rng)
    bf, dirs, L = layer.batch_first, layer.num_directions, layer.num_layers
    T, lengths = 4, np.array([2, 4, 1])
    shape = (3, T) if bf else (T, 3)
    x = rng.standard_normal((*shape, 3))
    h_0 = rng.standard_normal((L * dirs, 3, 2))
    R, Rh = rng.standard_normal((*shape, 2 * dirs)), rng.standard_normal((L * dirs, 3, 2))

    def loss():
        out, h_n, _ = layer.forward(x, h_0, lengths=lengths)
        return np.sum(out * R) + np.sum(h_n * Rh)

    out, h_n, cache = layer.forward(x, h_0, lengths=lengths)
    dx, dh_0, grads = layer.backward(R, cache, Rh)
    report = gradcheck(loss, {"x": x, "h_0": h_0, **layer.params},
                       {"x": dx, "h_0": dh_0, **grads}, tol=1e-7)
    assert report.passed
    for b, n in enumerate(lengths):
        xb = x[b : b + 1, :n] if bf else x[:n, b : b + 1]
        ob, hb, _ = layer.forward(xb, h_0[:, b : b + 1])
        np.testing.assert_allclose(out[b, :n] if bf else out[:n, b], ob[0] if bf else ob[:, 0],
                                   rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(h_n[:, b], hb[:, 0], rtol=1e-13, atol=1e-14)
    # a cell with a second state and no `last` is refused with lengths, not silently wrong
    two = type("TwoState", (_ElmanCell,), {"state_names": ("h", "s")})()
    with pytest.raises(ValueError, match="lengths: .* does not support lengths"):
        Recurrent(two, 3, 2, rng=0).forward(x if not bf else x.transpose(1, 0, 2),
                                            lengths=lengths)


def test_state_at_and_per_step_with_lengths_and_directions(rng):
    """state_at(t) with lengths is each row's state after min(t, l_b) steps (what the row gives
    run alone for that many steps); per_step of the reverse direction is in time order and 0 at
    padded steps; a bidirectional layer has a state only at t = T."""
    model = _model(rng, 3, 3, L=2, proj_size=2)
    x, h_0, c_0, _, _, _ = _data(rng, model, 5, 3)
    lengths = np.array([2, 5, 1])
    _, (h_n, c_n), cache = model.forward(x, (h_0, c_0), lengths=lengths)
    for t in (0, 1, 3, 5):
        h_t, c_t = model.state_at(cache, t)
        for b, n in enumerate(lengths):
            u = min(t, n)
            if u == 0:
                want_h, want_c = h_0[:, b], c_0[:, b]
            else:
                _, (hb, cb), _ = model.forward(x[:u, b : b + 1], (h_0[:, b : b + 1],
                                                                 c_0[:, b : b + 1]))
                want_h, want_c = hb[:, 0], cb[:, 0]
            np.testing.assert_allclose(h_t[:, b], want_h, rtol=1e-13, atol=1e-14)
            np.testing.assert_allclose(c_t[:, b], want_c, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(model.state_at(cache, 5)[0], h_n)

    bi = _model(rng, 3, 3, L=2, bidirectional=True)
    x, h_0, c_0, _, _, _ = _data(rng, bi, 5, 3)
    out, (h_n, c_n), cache = bi.forward(x, (h_0, c_0), lengths=lengths)
    rev = bi.per_step(cache, layer=-1, direction=1)
    fwd = bi.per_step(cache, layer=-1, direction=0)
    np.testing.assert_array_equal(rev["h"], out[:, :, 3:])
    np.testing.assert_array_equal(fwd["h"], out[:, :, :3])
    pad = _padded(lengths, 5, False)
    assert all(np.all(v[pad] == 0) for v in rev.values())
    np.testing.assert_array_equal(bi.state_at(cache, 5)[1], c_n)
    with pytest.raises(ValueError, match="bidirectional"):
        bi.state_at(cache, 3)


@pytest.mark.parametrize("checkpoint_every", [None, 2])
def test_projection_fast_path_equals_step_reference_with_last(rng, checkpoint_every):
    """LSTMCell(proj_size=P): the fast sequence path equals stepping the readable reference
    (lstm_step_forward / lstm_step_backward with weight_hr), also with each row's final step
    (``last``) given; and the reference itself passes central differences."""
    T, B, D, H, P = 5, 3, 3, 4, 2
    cell = LSTMCell(proj_size=P)
    params = {k: 0.5 * rng.standard_normal(s) for k, s in cell.param_shapes(D, H, True).items()}
    assert params["weight_hr"].shape == (P, H) and params["weight_hh"].shape == (4 * H, P)
    x = rng.standard_normal((T, B, D))
    s0 = (rng.standard_normal((B, P)), rng.standard_normal((B, H)))
    R, Rs = rng.standard_normal((T, B, P)), (rng.standard_normal((B, P)),
                                             rng.standard_normal((B, H)))
    last = np.array([2, 4, 0])
    out, s_n, cache = cell.forward(x, s0, params, checkpoint_every=checkpoint_every, last=last)
    dx, ds0, g = cell.backward(R, cache, Rs)
    ref_out, ref_sn, steps = cell.reference_forward(x, s0, params, last=last)
    ref_dx, ref_ds0, ref_g = cell.reference_backward(R, steps, Rs, last=last)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-14)
    for a, b in zip((*s_n, dx, *ds0), (*ref_sn, ref_dx, *ref_ds0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    assert set(g) == set(ref_g) == set(params)
    for k in g:
        np.testing.assert_allclose(g[k], ref_g[k], rtol=1e-12, atol=1e-13, err_msg=k)

    def loss():
        o, sn, _ = cell.reference_forward(x, s0, params, last=last)
        return np.sum(o * R) + sum(np.sum(a * r) for a, r in zip(sn, Rs, strict=True))

    report = gradcheck(loss, {"x": x, "h_0": s0[0], "c_0": s0[1], **params},
                       {"x": ref_dx, "h_0": ref_ds0[0], "c_0": ref_ds0[1], **ref_g}, tol=1e-7)
    assert report.passed
