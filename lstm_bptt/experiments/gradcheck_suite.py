"""The gradient check of every trainable component, as run by ``lstm-bptt gradcheck``.

Each component is built at a small size with H != D, random non-zero parameters (both biases),
non-zero initial states, and a loss that reaches every output (``sum(output * R)`` for random R,
or the component's own loss). Its hand-written backward is compared with central differences in
float64 by :func:`lstm_bptt.gradcheck.gradcheck`.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..cells import GRUCell, LSTMVariantCell, RNNCell
from ..cells.lstm import lstm_backward, lstm_cell_backward, lstm_cell_forward, lstm_forward
from ..gradcheck import gradcheck
from ..layers import Embedding, Linear
from ..losses import mse_loss, softmax_cross_entropy
from ..models import CharLM, SequenceClassifier, SequenceRegressor, SequenceTagger
from ..recurrent import GRU, LSTM, RNN

T, B, D, H, V = 4, 3, 5, 6, 7


def _lstm_params(rng, d=D, h=H):
    return {
        "weight_ih": rng.normal(0, 0.5, (4 * h, d)),
        "weight_hh": rng.normal(0, 0.5, (4 * h, h)),
        "bias_ih": rng.normal(0, 0.5, 4 * h),
        "bias_hh": rng.normal(0, 0.5, 4 * h),
    }


def _cell(rng):
    p = _lstm_params(rng)
    t = {"x": rng.normal(size=(B, D)), "h_prev": rng.normal(size=(B, H)),
         "c_prev": rng.normal(size=(B, H)), **p}
    Rh, Rc = rng.normal(size=(B, H)), rng.normal(size=(B, H))

    def loss():
        h, c, _ = lstm_cell_forward(t["x"], t["h_prev"], t["c_prev"], **p)
        return float(np.sum(h * Rh) + np.sum(c * Rc))

    _, _, cache = lstm_cell_forward(t["x"], t["h_prev"], t["c_prev"], **p)
    dx, dh, dc, g = lstm_cell_backward(Rh, Rc, cache)
    return loss, t, {"x": dx, "h_prev": dh, "c_prev": dc, **g}


def _sequence(rng):
    p = _lstm_params(rng)
    t = {"x": rng.normal(size=(T, B, D)), "h_0": rng.normal(size=(B, H)),
         "c_0": rng.normal(size=(B, H)), **p}
    R, Rh, Rc = rng.normal(size=(T, B, H)), rng.normal(size=(B, H)), rng.normal(size=(B, H))

    def loss():
        out, (h_n, c_n), _ = lstm_forward(t["x"], t["h_0"], t["c_0"], **p)
        return float(np.sum(out * R) + np.sum(h_n * Rh) + np.sum(c_n * Rc))

    _, _, cache = lstm_forward(t["x"], t["h_0"], t["c_0"], **p)
    dx, dh0, dc0, g = lstm_backward(R, cache, Rh, Rc)
    return loss, t, {"x": dx, "h_0": dh0, "c_0": dc0, **g}


def _stack(rng, batch_first):
    m = LSTM(D, H, num_layers=2, batch_first=batch_first, rng=rng)
    for v in m.params.values():
        v[...] = rng.normal(0, 0.5, v.shape)
    shape = (B, T, D) if batch_first else (T, B, D)
    x = rng.normal(size=shape)
    h0, c0 = rng.normal(size=(2, B, H)), rng.normal(size=(2, B, H))
    R = rng.normal(size=shape[:2] + (H,))
    Rh, Rc = rng.normal(size=(2, B, H)), rng.normal(size=(2, B, H))

    def loss():
        out, (h_n, c_n), _ = m.forward(x, (h0, c0))
        return float(np.sum(out * R) + np.sum(h_n * Rh) + np.sum(c_n * Rc))

    _, _, cache = m.forward(x, (h0, c0))
    dx, (dh0, dc0), g = m.backward(R, cache, (Rh, Rc))
    return loss, {"x": x, "h_0": h0, "c_0": c0, **m.params}, {"x": dx, "h_0": dh0, "c_0": dc0,
                                                              **g}


def _recurrent(rng, make, batch_first=False, use_hx=True):
    """Any Recurrent layer, 2 layers: hx and dhx in the layer's own form (array or tuple);
    ``use_hx=False`` starts from the layer's default (zeros or its learned initial state)."""
    m = make(num_layers=2, batch_first=batch_first, rng=rng)
    for v in m.params.values():
        v[...] = rng.normal(0, 0.5, v.shape)
    shape = (B, T, D) if batch_first else (T, B, D)
    x = rng.normal(size=shape)
    n = m.num_layers * m.num_directions
    s0 = tuple(rng.normal(size=(n, B, H)) for _ in m.state_names) if use_hx else None
    Rs = tuple(rng.normal(size=(n, B, H)) for _ in m.state_names)
    R = rng.normal(size=shape[:2] + (m.output_size,))

    def loss():
        out, s_n, _ = m.forward(x, m.pack_state(s0))
        return float(np.sum(out * R) + sum(np.sum(a * r) for a, r in
                                           zip(m.unpack_state(s_n), Rs, strict=True)))

    _, _, cache = m.forward(x, m.pack_state(s0))
    dx, ds0, g = m.backward(R, cache, m.pack_state(Rs))
    tensors, analytic = {"x": x, **m.params}, {"x": dx, **g}
    if use_hx:
        for name, s, d in zip(m.state_names, s0, m.unpack_state(ds0), strict=True):
            tensors[f"{name}_0"], analytic[f"{name}_0"] = s, d
    return loss, tensors, analytic


def _padded(rng, make):
    """A 2-layer bidirectional layer on a padded batch (lengths in any order, one of them 1),
    every state of every direction given and its final value in the loss."""
    m = make(num_layers=2, bidirectional=True, rng=rng)
    for v in m.params.values():
        v[...] = rng.normal(0, 0.5, v.shape)
    x = rng.normal(size=(T, B, D))
    lengths = np.array([2, T, 1])[:B]
    n = m.num_layers * m.num_directions
    sizes = m.cell.state_sizes(m.hidden_size)
    s0 = tuple(rng.normal(size=(n, B, k)) for k in sizes)
    Rs = tuple(rng.normal(size=(n, B, k)) for k in sizes)
    R = rng.normal(size=(T, B, m.output_size))

    def loss():
        out, s_n, _ = m.forward(x, m.pack_state(s0), lengths=lengths)
        return float(np.sum(out * R) + sum(np.sum(a * r) for a, r in
                                           zip(m.unpack_state(s_n), Rs, strict=True)))

    _, _, cache = m.forward(x, m.pack_state(s0), lengths=lengths)
    dx, ds0, g = m.backward(R, cache, m.pack_state(Rs))
    tensors, analytic = {"x": x, **m.params}, {"x": dx, **g}
    for name, s, d in zip(m.state_names, s0, m.unpack_state(ds0), strict=True):
        tensors[f"{name}_0"], analytic[f"{name}_0"] = s, d
    return loss, tensors, analytic


def _step(rng, cell):
    """One step of a cell's readable reference (Cell.step_forward / step_backward)."""
    p = {k: rng.normal(0, 0.5, shape) for k, shape in cell.param_shapes(D, H, True).items()}
    x = rng.normal(size=(B, D))
    s = tuple(rng.normal(size=(B, n)) for n in cell.state_sizes(H))
    Rs = tuple(rng.normal(size=(B, n)) for n in cell.state_sizes(H))

    def loss():
        s1, _ = cell.step_forward(x, s, p)
        return float(sum(np.sum(a * r) for a, r in zip(s1, Rs, strict=True)))

    _, step_cache = cell.step_forward(x, s, p)
    dx, ds, g = cell.step_backward(Rs, step_cache)
    names = [f"{n}_prev" for n in cell.state_names]
    return (loss, {"x": x, **dict(zip(names, s, strict=True)), **p},
            {"x": dx, **dict(zip(names, ds, strict=True)), **g})


def _linear(rng):
    m = Linear(H, V, rng=rng)
    x = rng.normal(size=(T, B, H))
    R = rng.normal(size=(T, B, V))
    _, cache = m.forward(x)
    dx, g = m.backward(R, cache)
    return (lambda: float(np.sum(m.forward(x)[0] * R))), {"x": x, **m.params}, {"x": dx, **g}


def _embedding(rng):
    m = Embedding(V, D, rng=rng)
    ids = rng.integers(0, V, (T, B))
    ids[0, 0] = ids[1, 1]  # a repeated id must accumulate
    R = rng.normal(size=(T, B, D))
    _, cache = m.forward(ids)
    g = m.backward(R, cache)
    return (lambda: float(np.sum(m.forward(ids)[0] * R))), dict(m.params), g


def _cross_entropy(rng):
    logits = rng.normal(size=(T, B, V)) * 3
    y = rng.integers(0, V, (T, B))
    mask = rng.random((T, B)) > 0.3
    mask[0, 0] = True
    _, d = softmax_cross_entropy(logits, y, mask)
    return (lambda: softmax_cross_entropy(logits, y, mask)[0]), {"logits": logits}, {"logits": d}


def _mse(rng):
    pred, target = rng.normal(size=(T, B, 2)), rng.normal(size=(T, B, 2))
    _, d = mse_loss(pred, target)
    return (lambda: mse_loss(pred, target)[0]), {"pred": pred}, {"pred": d}


def _model_check(model, args, kwargs):
    _, grads, _ = model.loss(*args, **kwargs)
    return (lambda: model.loss(*args, **kwargs)[0]), model.params, grads


def _randomise(model, rng):
    for v in model.params.values():
        v[...] = rng.normal(0, 0.5, v.shape)
    return model


def _charlm(rng):
    m = _randomise(CharLM(V, H, num_layers=2, embedding_dim=D, dtype=np.float64, rng=rng), rng)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    state = (rng.normal(size=(2, B, H)), rng.normal(size=(2, B, H)))
    return _model_check(m, (x, y, state), {"train": False})


def _fixed_masks(m, args, kwargs):
    """The model's loss in training mode with its dropout masks held fixed: the rng is put back
    to the same state before every evaluation, so each one draws the same masks (a function of
    the parameters alone, as central differences need)."""
    start = m.rng.bit_generator.state

    def loss_and_grads():
        m.rng.bit_generator.state = start
        return m.loss(*args, train=True, **kwargs)

    _, grads, _ = loss_and_grads()
    return (lambda: loss_and_grads()[0]), m.params, grads


def _charlm_dropout(rng):
    m = _randomise(CharLM(V, H, num_layers=2, embedding_dim=D, dropout=0.3, dtype=np.float64,
                          rng=rng), rng)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    return _fixed_masks(m, (x, y), {})


def _classifier_dropout(rng):
    m = _randomise(SequenceClassifier(D, H, 3, num_layers=2, dropout=0.4, rng=rng), rng)
    x, y = rng.normal(size=(T, B, D)), rng.integers(0, 3, B)
    return _fixed_masks(m, (x, y), {})


def _classifier_variants(rng):
    m = _randomise(SequenceClassifier(
        D, H, 3, num_layers=2, dropout=0.2, rng=rng,
        cell_options={"peephole": True, "layer_norm": True, "recurrent_dropout": 0.3,
                      "input_dropout": 0.2, "learn_initial_state": True}), rng)
    x, y = rng.normal(size=(T, B, D)), rng.integers(0, 3, B)
    return _fixed_masks(m, (x, y), {"lengths": np.array([T, 2, 3])[:B]})


def _classifier(rng):
    m = _randomise(SequenceClassifier(D, H, 3, num_layers=2, rng=rng), rng)
    x, y = rng.normal(size=(T, B, D)), rng.integers(0, 3, B)
    return _model_check(m, (x, y), {"lengths": np.array([T, 2, 3])[:B], "train": False})


def _tagger(rng):
    m = _randomise(SequenceTagger(D, H, 3, num_layers=2, bidirectional=True, rng=rng), rng)
    x, y = rng.normal(size=(T, B, D)), rng.integers(0, 3, (T, B))
    return _model_check(m, (x, y), {"lengths": np.array([T, 2, 1])[:B], "train": False})


def _regressor(rng):
    m = _randomise(SequenceRegressor(D, H, 2, num_layers=1, rng=rng), rng)
    x, y = rng.normal(size=(T, B, D)), rng.normal(size=(T, B, 2))
    return _model_check(m, (x, y), {"train": False})


COMPONENTS = {
    "lstm_cell": _cell,
    "lstm_forward (1 layer, T steps)": _sequence,
    "LSTM (2 layers)": lambda rng: _stack(rng, False),
    "LSTM (2 layers, batch_first)": lambda rng: _stack(rng, True),
    "gru_step": lambda rng: _step(rng, GRUCell()),
    "rnn_step (relu)": lambda rng: _step(rng, RNNCell("relu")),
    "GRU (2 layers, batch_first)": lambda rng: _recurrent(rng, partial(GRU, D, H), True),
    "RNN tanh (2 layers)": lambda rng: _recurrent(rng, partial(RNN, D, H)),
    "RNN relu (2 layers, batch_first)": lambda rng: _recurrent(
        rng, partial(RNN, D, H, nonlinearity="relu"), True),
    "lstm variant step (peephole, layer norm)": lambda rng: _step(
        rng, LSTMVariantCell(peephole=True, layer_norm=True)),
    "LSTM peephole + layer norm (bidirectional, batch_first)": lambda rng: _recurrent(
        rng, partial(LSTM, D, H, peephole=True, layer_norm=True, bidirectional=True), True),
    "LSTM (bidirectional, proj_size 2, lengths, 2 layers)": lambda rng: _padded(
        rng, partial(LSTM, D, H, proj_size=2)),
    "GRU (bidirectional, lengths, 2 layers)": lambda rng: _padded(rng, partial(GRU, D, H)),
    "RNN tanh (bidirectional, lengths, 2 layers)": lambda rng: _padded(rng, partial(RNN, D, H)),
    "GRU (learned initial state)": lambda rng: _recurrent(
        rng, partial(GRU, D, H, learn_initial_state=True), use_hx=False),
    "Linear": _linear,
    "Embedding": _embedding,
    "softmax_cross_entropy (masked)": _cross_entropy,
    "mse_loss": _mse,
    "CharLM (embedding, 2 layers)": _charlm,
    "SequenceClassifier (lengths)": _classifier,
    "SequenceRegressor": _regressor,
    "SequenceTagger (bidirectional, lengths)": _tagger,
    "CharLM (dropout 0.3, masks fixed)": _charlm_dropout,
    "SequenceClassifier (dropout 0.4, masks fixed)": _classifier_dropout,
    "SequenceClassifier (LSTM peephole, layer norm, variational dropout, learned h_0/c_0, "
    "lengths)": _classifier_variants,
}


def run_suite(seed: int = 0, tol: float = 1e-7, eps: float = 1e-5) -> list[dict]:
    """Gradient-check every component in :data:`COMPONENTS`.

    Returns
    -------
    list of dict
        One row per (component, tensor): ``component``, ``tensor``, ``shape``,
        ``max_rel_error`` (see :func:`lstm_bptt.gradcheck.scaled_rel_errors`), ``worst_index``,
        ``passed``.
    """
    rows = []
    for name, build in COMPONENTS.items():
        rng = np.random.default_rng(seed)
        loss, tensors, grads = build(rng)
        report = gradcheck(loss, tensors, grads, eps=eps, tol=tol, raise_on_fail=False)
        for r in report.rows:
            rows.append({"component": name, "tensor": r.name, "shape": list(r.shape),
                         "max_rel_error": r.max_rel_error, "worst_index": list(r.worst_index),
                         "passed": r.passed})
    return rows
