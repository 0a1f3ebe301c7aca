"""The cell contract, for every registered cell: the readable reference against central
differences, the fast sequence path against the reference, and the generic Recurrent layer
(state_at, per_step, hx arity, init options) on top of it.

Expected values come from central differences (gradcheck) and from stepping the cell's
readable step reference by hand; nothing is compared with the output of the code it tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from lstm_bptt import CELLS, LSTM, Cell, LSTMCell, Recurrent, get_cell, gradcheck

CELL_NAMES = sorted(CELLS)


def _params(cell: Cell, rng, D, H, bias=True, dtype=np.float64):
    shapes = cell.param_shapes(D, H, bias)
    return {k: (0.5 * rng.standard_normal(s)).astype(dtype) for k, s in shapes.items()}


def _state(cell: Cell, rng, B, H, dtype=np.float64):
    return tuple(rng.standard_normal((B, s)).astype(dtype) for s in cell.state_sizes(H))


@pytest.mark.parametrize("name", CELL_NAMES)
@pytest.mark.parametrize("bias", [True, False])
def test_reference_sequence_gradcheck(rng, name, bias):
    """The plain BPTT loop (Cell.reference_backward) against central differences."""
    cell = get_cell(name)
    T, B, D, H = 3, 2, 3, 4
    x = rng.standard_normal((T, B, D))
    params = _params(cell, rng, D, H, bias)
    s0 = _state(cell, rng, B, H)
    R = rng.standard_normal((T, B, H))
    Rs = _state(cell, rng, B, H)

    def loss():
        out, s_n, _ = cell.reference_forward(x, s0, params)
        return np.sum(out * R) + sum(np.sum(a * r) for a, r in zip(s_n, Rs, strict=True))

    _, _, caches = cell.reference_forward(x, s0, params)
    dx, ds0, grads = cell.reference_backward(R, caches, Rs)
    names = [f"{n}_0" for n in cell.state_names]
    tensors = {"x": x, **dict(zip(names, s0, strict=True)), **params}
    analytic = {"x": dx, **dict(zip(names, ds0, strict=True)), **grads}
    report = gradcheck(loss, tensors, analytic, tol=1e-7)
    assert report.passed and report.max_rel_error < 1e-7


@pytest.mark.parametrize("name", CELL_NAMES)
@pytest.mark.parametrize("checkpoint_every", [None, 2])
@pytest.mark.parametrize("with_doutput", [True, False])
def test_fast_path_equals_the_reference(rng, name, checkpoint_every, with_doutput):
    cell = get_cell(name)
    T, B, D, H = 5, 3, 4, 2
    x = rng.standard_normal((T, B, D))
    params = _params(cell, rng, D, H)
    s0 = _state(cell, rng, B, H)
    R = rng.standard_normal((T, B, H)) if with_doutput else None
    Rs = _state(cell, rng, B, H)

    out, s_n, cache = cell.forward(x, s0, params, checkpoint_every=checkpoint_every)
    dx, ds0, grads = cell.backward(R, cache, Rs)
    out_ref, s_ref, caches = cell.reference_forward(x, s0, params)
    dx_ref, ds0_ref, g_ref = cell.reference_backward(R, caches, Rs)

    np.testing.assert_allclose(out, out_ref, rtol=1e-12, atol=1e-13)
    for a, b in zip((*s_n, dx, *ds0), (*s_ref, dx_ref, *ds0_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert set(grads) == set(g_ref) == set(params)
    for k in grads:
        np.testing.assert_allclose(grads[k], g_ref[k], rtol=1e-12, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("name", CELL_NAMES)
@pytest.mark.parametrize("checkpoint_every", [None, 2])
@pytest.mark.parametrize("batch_first", [False, True])
def test_layer_state_at_and_per_step_equal_stepping(rng, name, checkpoint_every, batch_first):
    T, B, D, H, L = 5, 2, 3, 4, 2
    layer = Recurrent(name, D, H, num_layers=L, rng=0, batch_first=batch_first,
                      checkpoint_every=checkpoint_every)
    cell = layer.cell
    x = rng.standard_normal((T, B, D))
    xin = x.transpose(1, 0, 2) if batch_first else x
    out, h_n, cache = layer.forward(xin)
    # reference: the layers stepped by hand with the step reference
    inp, states_per_layer, steps_per_layer = x, [], []
    for k in range(L):
        p = layer.layer_params(k)
        state = cell.zero_state(B, H, x.dtype)
        states, steps, outs = [state], [], []
        for t in range(T):
            state, sc = cell.step_forward(inp[t], state, p)
            states.append(state)
            steps.append(sc)
            outs.append(state[0])
        states_per_layer.append(states)
        steps_per_layer.append(steps)
        inp = np.stack(outs)
    for t in range(T + 1):
        got = layer.state_at(cache, t)
        assert isinstance(got, tuple) and len(got) == len(cell.state_names)
        for j in range(len(got)):
            want = np.stack([states_per_layer[k][t][j] for k in range(L)])
            np.testing.assert_allclose(got[j], want, rtol=1e-12, atol=1e-13)
    for k in range(L):
        values = layer.per_step(cache, layer=k)
        want_keys = {*cell.state_names, *cell.gate_names}
        assert set(values) == want_keys
        for j, sname in enumerate(cell.state_names):
            want = np.stack([states_per_layer[k][t + 1][j] for t in range(T)])
            want = want.transpose(1, 0, 2) if batch_first else want
            np.testing.assert_allclose(values[sname], want, rtol=1e-12, atol=1e-13)
        for gname in cell.gate_names:  # the step caches hold the gates under their names
            want = np.stack([getattr(steps_per_layer[k][t], gname) for t in range(T)])
            want = want.transpose(1, 0, 2) if batch_first else want
            np.testing.assert_allclose(values[gname], want, rtol=1e-12, atol=1e-13,
                                       err_msg=gname)


def test_lstm_per_step_gate_order_is_public(rng):
    """i, f, g, o read off the public weight blocks: i from rows 0:H, o from rows 3H:4H."""
    D, H, B = 2, 3, 1
    layer = LSTM(D, H, rng=0)
    for k in layer.params:
        layer.params[k][...] = 0.0
    layer.params["bias_ih_l0"][:] = np.repeat([1.0, 2.0, 3.0, -4.0], H)  # a_i, a_f, a_g, a_o
    _, _, cache = layer.forward(np.zeros((1, B, D)))
    v = layer.per_step(cache)
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    np.testing.assert_allclose(v["i"], sig(1.0), rtol=1e-15)
    np.testing.assert_allclose(v["f"], sig(2.0), rtol=1e-15)
    np.testing.assert_allclose(v["g"], np.tanh(3.0), rtol=1e-15)
    np.testing.assert_allclose(v["o"], sig(-4.0), rtol=1e-15)


def test_recurrent_lstm_is_the_lstm_layer(rng):
    a = Recurrent("lstm", 3, 4, num_layers=2, rng=7, forget_bias=1.0)
    b = LSTM(3, 4, num_layers=2, rng=7, forget_bias=1.0)
    assert list(a.params) == list(b.params)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    x = rng.standard_normal((4, 2, 3))
    out_a, (h_a, c_a), _ = a.forward(x)
    out_b, (h_b, c_b), _ = b.forward(x)
    np.testing.assert_array_equal(out_a, out_b)
    np.testing.assert_array_equal(c_a, c_b)


def test_lstm_init_options_set_the_gate_biases():
    H = 5
    layer = LSTM(2, H, num_layers=2, rng=0, forget_bias=2.5, input_bias=-1.5)
    for k in range(2):
        b_ih, b_hh = layer.params[f"bias_ih_l{k}"], layer.params[f"bias_hh_l{k}"]
        np.testing.assert_array_equal(b_ih[:H] + b_hh[:H], -1.5)  # i
        np.testing.assert_array_equal(b_ih[H : 2 * H] + b_hh[H : 2 * H], 2.5)  # f
        assert np.all(b_hh[2 * H :] != 0)  # g, o keep PyTorch's uniform init


def test_orthogonal_recurrent_blocks():
    H = 6
    layer = LSTM(3, H, rng=0, recurrent_init="orthogonal")
    w = layer.params["weight_hh_l0"]
    for g in range(4):
        block = w[g * H : (g + 1) * H]
        np.testing.assert_allclose(block @ block.T, np.eye(H), atol=1e-12)


@pytest.mark.parametrize(
    "call, exc, msg",
    [
        (lambda: get_cell("lstmm"), ValueError,
         r"cell: expected one of \['gru', 'lstm', 'rnn'\], got 'lstmm'"),
        (lambda: get_cell(3), TypeError, "cell: expected a cell name or a Cell object, got int"),
        (lambda: get_cell(LSTMCell(), x=1), TypeError, "cell: options"),
        (lambda: Recurrent("lstm", 2, 3, peepholes=True), TypeError, "peepholes"),
        (lambda: LSTM(2, 3, input_bias="1"), TypeError,
         "input_bias: expected a float or None, got '1'"),
        (lambda: LSTM(2, 3, bias=False, input_bias=1.0), ValueError, "input_bias: given"),
    ],
)
def test_bad_cell_arguments(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_state_at_and_per_step_refuse_bad_arguments(rng):
    layer = LSTM(2, 3, num_layers=2, rng=0)
    _, _, cache = layer.forward(rng.standard_normal((4, 1, 2)))
    with pytest.raises(ValueError, match=r"t: expected 0 <= t <= T = 4, got 5"):
        layer.state_at(cache, 5)
    with pytest.raises(TypeError, match="t: expected an int, got float"):
        layer.state_at(cache, 1.0)
    with pytest.raises(ValueError, match=r"layer: expected -2 <= layer < 2, got 2"):
        layer.per_step(cache, layer=2)
    other = LSTM(2, 4, rng=0)
    with pytest.raises(ValueError, match="cache: comes from a layer with hidden_size = 3"):
        other.state_at(cache, 1)
