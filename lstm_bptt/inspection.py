"""Look inside a recurrent network: gradient flow through time, gate saturation, activations
over text, saliency, and an export for LSTMVis.

Everything here goes through the public layer API (``forward``, ``backward``,
``per_step(cache, layer=l)``, ``cell.state_names``), so it works for every cell type the
library has (LSTM, GRU, vanilla RNN) and for any number of layers. NumPy only.

Dimension letters: T time, B batch, D input features, H hidden units, L layers, S size of one
state (H, or P with a projection), V vocabulary, N characters of a text.

Time indexing: step k (0-based) reads ``x[k]`` and produces ``output[k]`` and the "state after
step k"; the state before step 0 is ``hx``. The *lag* of step k for a loss on ``output[t]`` is
t - k.

References
----------
Bengio, Simard & Frasconi (1994), "Learning long-term dependencies with gradient descent is
difficult"; Hochreiter & Schmidhuber (1997), "Long short-term memory", section 3 (the constant
error carousel); Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent
neural networks" (the gradient dE_t/dh_k as a product of Jacobians); Karpathy, Johnson &
Fei-Fei (2015), "Visualizing and understanding recurrent networks", arXiv:1506.02078 (gate
saturation, interpretable cells); Madsen (2019), "Visualizing memorization in RNNs", Distill
(saliency of earlier inputs); Strobelt et al. (2018), "LSTMVis" (export layout).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._checks import as_float_array, check_int_array, check_positive_int
from .losses import softmax_probs

#: Per-step quantities that are sigmoid gates, in [0, 1]: the ones whose saturation is counted.
SIGMOID_GATES = ("i", "f", "o", "r", "z")

__all__ = [
    "SIGMOID_GATES",
    "StateGradients",
    "state_gradients",
    "gradient_norms",
    "per_step_values",
    "gate_saturation",
    "text_properties",
    "rank_units",
    "lm_inspect",
    "lm_gradients",
    "vanishing_gradient_demo",
    "export_lstmvis",
]


# ----------------------------------------------------------------------------- layer plumbing
def _state_names(layer) -> tuple[str, ...]:
    return tuple(layer.cell.state_names)


def _to_hx(layer, states):
    """The layer's ``hx`` format from a tuple of (L, B, S) arrays: an array for one state
    (GRU, RNN), a tuple for several (LSTM's (h, c)), as PyTorch."""
    if states is None:
        return None
    return states[0] if len(_state_names(layer)) == 1 else tuple(states)


def _from_hx(layer, hx) -> tuple:
    """Inverse of :func:`_to_hx`: always a tuple of (L, B, S) arrays."""
    return (hx,) if len(_state_names(layer)) == 1 else tuple(hx)


def _check_layer(layer) -> None:
    for attr in ("forward", "backward", "per_step", "cell", "num_layers"):
        if not hasattr(layer, attr):
            raise TypeError(f"layer: expected a recurrent layer (LSTM, GRU, RNN), got "
                            f"{type(layer).__name__} without .{attr}")
    if getattr(layer, "bidirectional", False):
        raise ValueError("layer: a bidirectional layer has no single direction of time; "
                         "inspect each direction as its own unidirectional layer")


def _time_major(layer, a):
    return a.transpose(1, 0, 2) if getattr(layer, "batch_first", False) else a


def _per_step(layer, cache, layer_idx) -> dict:
    """``layer.per_step`` of one layer, time-major whatever the layer's layout."""
    return {k: _time_major(layer, np.asarray(v))
            for k, v in layer.per_step(cache, layer=layer_idx).items()}


# ----------------------------------------------------------------------------- gradient flow
class StateGradients(NamedTuple):
    """Gradients of a loss with respect to every state and every input of a sequence.

    The state of the whole stack after step k is the vector s_k of every layer's states
    (h, and c for an LSTM), with s_k = F(s_{k-1}, x_k); the losses read the top layer's h.
    The gradients are with respect to s_k as that state vector: dL/ds_k = dl_k/ds_k +
    (ds_{k+1}/ds_k)^T dL/ds_{k+1} (Pascanu, Mikolov & Bengio 2013, eqs. 3-5). h_k and c_k are
    separate coordinates of s_k, so for a loss on h_t alone dL/dc_t = 0 at the loss step and
    the cell path shows from lag 1 on; a lower layer's h_k enters s_{k+1} through its own
    recurrence (the layer above reads the new h_{k+1} at step k + 1).

    Attributes
    ----------
    states : dict name -> ndarray (T, L, B, S)
        ``states[name][k]``: dL/d(state ``name`` after step k) for each layer (L axis), as
        above.
    initial : dict name -> ndarray (L, B, S)
        dL/d hx (the state before step 0).
    dx : ndarray (T, B, D)
        dL/d x[k], time-major whatever the layer's layout.
    """

    states: dict
    initial: dict
    dx: np.ndarray


def state_gradients(layer, x, doutput, hx=None) -> StateGradients:
    """Backpropagation through time that keeps the gradient of every intermediate state.

    The layer is run one step at a time through its public ``forward`` (each step from the
    state the previous one returned) and then backpropagated one step at a time through its
    public ``backward``, carrying ``dhx`` from step k + 1 into step k. The carried gradient
    after step k is exactly dL/d(state after step k); every step's ``dx`` is dL/dx_k. Cost:
    the arithmetic of one forward and one backward of the whole sequence, for any ``doutput``
    (e.g. a loss at one step per batch row), plus two Python calls per step: measured 3x a
    plain forward and backward at B = 32, H = 128, T = 100, but 50x at B = 1, where the calls
    dominate; put the positions you study in the batch (as :func:`lm_gradients` does).

    Parameters
    ----------
    layer : LSTM, GRU or RNN layer (any ``num_layers``, unidirectional)
    x : ndarray (T, B, D), or (B, T, D) if ``layer.batch_first``; the layer's dtype
    doutput : ndarray shaped like the layer's output (T, B, H_out) (or batch-first)
        dL/d output at every step; e.g. nonzero only at the step whose loss is studied.
    hx : the layer's initial state (``(h_0, c_0)`` for LSTM, ``h_0`` otherwise), or None

    Returns
    -------
    StateGradients

    Raises
    ------
    TypeError
        ``layer`` is not a recurrent layer; arrays of the wrong dtype.
    ValueError
        A bidirectional layer; shapes that do not fit the layer (from ``layer.forward``).

    Notes
    -----
    BPTT (Werbos 1990) computes dL/ds_k = (ds_{k+1}/ds_k)^T dL/ds_{k+1} + (direct terms) but
    keeps only the running value; cutting the sequence after every step makes each running
    value a return value (``dstate_0`` of the next step's backward), at the price of one
    Python call per step. The result equals the product of the per-step Jacobians of
    Pascanu et al. (2013), eq. (5) (tested against it and against central differences).
    """
    _check_layer(layer)
    x = as_float_array("x", x)
    doutput = as_float_array("doutput", doutput, x.dtype)
    xs = _time_major(layer, x)
    ds = _time_major(layer, doutput)
    if xs.ndim != 3:
        raise ValueError(f"x: expected a 3-D array (T, B, D), got shape {x.shape}")
    T, B, _ = xs.shape
    if ds.ndim != 3 or ds.shape[:2] != (T, B):
        raise ValueError(f"doutput: expected the output's shape ({T}, {B}, H_out) "
                         f"(time-major), got {doutput.shape}")
    names = _state_names(layer)
    caches, state = [], hx
    for k in range(T):
        _, state, cache = layer.forward(_time_major(layer, xs[k : k + 1]), state)
        caches.append(cache)
    first = _from_hx(layer, state)  # shapes of the states: (L, B, S) each
    out = {n: np.zeros((T,) + s.shape, x.dtype) for n, s in zip(names, first, strict=True)}
    dx = np.empty(xs.shape, x.dtype)
    carried = None  # dL/d(state after step k) as a tuple, None = 0
    for k in reversed(range(T)):
        if carried is not None:
            for n, g in zip(names, carried, strict=True):
                out[n][k] = g
        out["h"][k, -1] += ds[k]  # the top layer's h is output[k]: add its direct gradient
        dxk, dstate0, _ = layer.backward(_time_major(layer, ds[k : k + 1]), caches[k],
                                         _to_hx(layer, carried))
        dx[k] = _time_major(layer, dxk)[0]
        carried = _from_hx(layer, dstate0)
    initial = dict(zip(names, carried, strict=True))
    return StateGradients(out, initial, dx)


def gradient_norms(grads: StateGradients, loss_steps) -> dict:
    """L2 norms of the gradients by lag, for a loss at step ``loss_steps[b]`` in row b.

    Parameters
    ----------
    grads : StateGradients
    loss_steps : int or integer array (B,)
        The step t_b whose loss row b studies (0 <= t_b < T).

    Returns
    -------
    dict
        ``"<name>"`` (state names, e.g. "h", "c"): ndarray (T, L, B) with entry [lag, l, b]
        = ||dL/d(state of layer l after step t_b - lag)|| over units (NaN where
        t_b - lag < 0); ``"x"``: ndarray (T, B), ||dL/dx_{t_b - lag}||.
    """
    T, B = grads.dx.shape[:2]
    t = np.broadcast_to(np.asarray(loss_steps), (B,))
    if t.dtype.kind not in "iu" or t.min() < 0 or t.max() >= T:
        raise ValueError(f"loss_steps: expected integers in [0, {T}), got {loss_steps!r}")
    lag = np.arange(T)[:, None]
    k = t[None, :] - lag  # (T, B) step of each lag
    valid = k >= 0
    kk = np.where(valid, k, 0)
    rows = np.arange(B)[None, :]
    res = {}
    for name, g in grads.states.items():
        n = np.linalg.norm(g, axis=-1)  # (T, L, B)
        per = n[kk, :, rows].transpose(0, 2, 1)  # (T lags, L, B)
        res[name] = np.where(valid[:, None, :], per, np.nan)
    nx = np.linalg.norm(grads.dx, axis=-1)  # (T, B)
    res["x"] = np.where(valid, nx[kk, rows], np.nan)
    return res


# ----------------------------------------------------------------------------- per-step values
def per_step_values(layer, cache) -> list[dict]:
    """Every per-step quantity of every layer, time-major: states, gates and tanh(c).

    Parameters
    ----------
    layer : LSTM, GRU or RNN layer
    cache : the cache of ``layer.forward``

    Returns
    -------
    list of dict (one per layer) name -> ndarray (T, B, S), time-major
        The cell's ``per_step`` values (public gate order: LSTM h, c, i, f, g, o; GRU h, r, z,
        n; RNN h) plus ``"tanh_c"`` = tanh(c) when the cell has a cell state (the quantity
        Karpathy et al. 2015 colour text with).
    """
    _check_layer(layer)
    res = []
    for layer_idx in range(layer.num_layers):
        vals = _per_step(layer, cache, layer_idx)
        if "c" in vals:
            vals["tanh_c"] = np.tanh(vals["c"])
        res.append(vals)
    return res


def gate_saturation(values: dict, low: float = 0.1, high: float = 0.9) -> dict:
    """Fraction of steps each unit's gates are left- (< low) or right-saturated (> high).

    Parameters
    ----------
    values : dict name -> ndarray (..., H)
        Per-step values of one layer (e.g. one entry of :func:`per_step_values`); every axis but
        the last counts as a step. Only the sigmoid gates (:data:`SIGMOID_GATES`) are used.
    low, high : float, 0 <= low < high <= 1

    Returns
    -------
    dict gate -> (left, right), each ndarray (H,) float64 in [0, 1]

    Raises
    ------
    ValueError
        ``low``/``high`` out of order or range, no sigmoid gate in ``values``, or gate values
        outside [0, 1] (not a sigmoid gate).

    References
    ----------
    Karpathy, Johnson & Fei-Fei (2015), section 4.3 and figure 3 (thresholds 0.1 and 0.9).
    """
    if not (0.0 <= low < high <= 1.0):
        raise ValueError(f"low, high: expected 0 <= low < high <= 1, got {low}, {high}")
    gates = [g for g in SIGMOID_GATES if g in values]
    if not gates:
        raise ValueError(f"values: expected some of the sigmoid gates {SIGMOID_GATES}, got "
                         f"{sorted(values)}")
    res = {}
    for g in gates:
        a = np.asarray(values[g])
        a = a.reshape(-1, a.shape[-1])
        if a.size and (a.min() < 0 or a.max() > 1):
            raise ValueError(f"values[{g!r}]: a sigmoid gate must lie in [0, 1], got "
                             f"[{a.min():.3g}, {a.max():.3g}]")
        res[g] = (np.mean(a < low, axis=0), np.mean(a > high, axis=0))
    return res


# ----------------------------------------------------------------------------- text properties
def text_properties(text: str) -> dict:
    """Simple properties of every character of a text, for finding units that track them.

    Each value describes the situation *after reading* character n (what a causal model can
    know at that step).

    Returns
    -------
    dict name -> ndarray (N,) float64
        ``"inside quotes"``: 1 from an opening double quote ``"`` up to the character before
        the closing one, reset at every newline so that an unmatched quote cannot flip the
        rest of the text; ``"inside brackets"``: 1 while the
        nesting depth of ``([{`` is positive (unmatched closers are ignored);
        ``"bracket depth"``: that depth; ``"position in line"``: characters since the last
        newline (0 at the newline itself); ``"indentation"``: leading spaces of the current
        line read so far (constant after its first non-space character).
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    N = len(text)
    quote = np.zeros(N)
    depth = np.zeros(N)
    col = np.zeros(N)
    indent = np.zeros(N)
    q, d, c, ind, leading = 0, 0, 0, 0, True
    for n, ch in enumerate(text):
        if ch == "\n":
            q, c, ind, leading = 0, 0, 0, True
        else:
            c += 1
            if ch == '"':
                q = 1 - q
            elif ch in "([{":
                d += 1
            elif ch in ")]}":
                d = max(0, d - 1)
            if leading and ch == " ":
                ind += 1
            else:
                leading = False
        quote[n], depth[n], col[n], indent[n] = q, d, c, ind
    return {"inside quotes": quote, "inside brackets": (depth > 0).astype(float),
            "bracket depth": depth, "position in line": col, "indentation": indent}


def rank_units(activations: dict, properties: dict, top: int = 5) -> list[dict]:
    """Units ranked by how well they track each property: |Pearson correlation| over steps.

    Parameters
    ----------
    activations : dict key -> ndarray (N, H)
        E.g. ``{(layer, "tanh_c"): (N, H) array, ...}``; keys are returned as given.
    properties : dict name -> ndarray (N,)
        E.g. from :func:`text_properties`. A constant property (zero variance) is skipped.
    top : int
        Units kept per property.

    Returns
    -------
    list of dict, best first within each property
        ``{"property", "key", "unit", "r"}`` with r the signed correlation; sorted by property
        (in the given order), then by |r| descending.

    Notes
    -----
    For a 0/1 property this is the point-biserial correlation. A constant unit has r = 0.
    """
    res = []
    for pname, p in properties.items():
        p = np.asarray(p, np.float64)
        ps = p - p.mean()
        pn = np.sqrt(np.sum(ps * ps))
        if pn == 0:
            continue
        cands = []
        for key, a in activations.items():
            a = np.asarray(a, np.float64)
            if a.ndim != 2 or a.shape[0] != p.shape[0]:
                raise ValueError(f"activations[{key!r}]: expected ({p.shape[0]}, H), got "
                                 f"{a.shape}")
            az = a - a.mean(axis=0)
            an = np.sqrt(np.sum(az * az, axis=0))
            r = np.divide(ps @ az, an * pn, out=np.zeros(a.shape[1]), where=an > 0)
            for u in np.argsort(-np.abs(r))[:top]:
                cands.append({"property": pname, "key": key, "unit": int(u), "r": float(r[u])})
        cands.sort(key=lambda d: -abs(d["r"]))
        res.extend(cands[:top])
    return res


# ----------------------------------------------------------------------------- char models
def _lm_parts(model):
    """The embedding function, recurrent layer and head of a CharLM-like model."""
    layer = None
    for m in getattr(model, "modules", {}).values():
        if hasattr(m, "per_step"):
            layer = m
    if layer is None or not hasattr(model, "head") or not hasattr(model, "vocab_size"):
        raise TypeError(f"model: expected a character language model (CharLM) with a recurrent "
                        f"layer and a head, got {type(model).__name__}")
    emb = getattr(model, "modules", {}).get("embedding")
    dtype = model.dtype

    def embed(ids):  # (T, B) -> (T, B, D)
        if emb is not None:
            return emb.forward(ids)[0]
        x = np.zeros(ids.shape + (model.vocab_size,), dtype)
        np.put_along_axis(x, ids[..., None], 1, axis=-1)
        return x

    return embed, layer, model.head


def lm_inspect(model, ids, top_k: int = 5) -> dict:
    """Run a character model over one text and collect what a report shows.

    Parameters
    ----------
    model : CharLM
    ids : integer ndarray (N,)
    top_k : int

    Returns
    -------
    dict
        ``"values"``: list (per layer) of dict name -> (N, S) (:func:`per_step_values`, batch
        row 0); ``"probs"``: (N, V) float64 next-character probabilities after each
        character; ``"top_ids"``, ``"top_probs"``: (N, top_k) the most probable next
        characters; ``"loss"``: (N - 1,) cross-entropy (nats) of each actual next character.
    """
    embed, layer, head = _lm_parts(model)
    top_k = check_positive_int("top_k", top_k)
    ids = check_int_array("ids", ids, 0, model.vocab_size)
    if ids.ndim != 1 or len(ids) < 2:
        raise ValueError(f"ids: expected a 1-D array of at least 2 ids, got shape {ids.shape}")
    x = embed(ids[:, None])
    out, _, cache = layer.forward(_time_major(layer, x))
    logits, _ = head.forward(_time_major(layer, out))
    probs = softmax_probs(logits[:, 0].astype(np.float64))
    top = np.argsort(-probs, axis=1)[:, :top_k]
    vals = [{k: np.asarray(v)[:, 0] for k, v in d.items()}
            for d in per_step_values(layer, cache)]
    loss = -np.log(np.maximum(probs[np.arange(len(ids) - 1), ids[1:]], 1e-300))
    return {"values": vals, "probs": probs, "top_ids": top,
            "top_probs": np.take_along_axis(probs, top, axis=1), "loss": loss}


def lm_gradients(model, ids, positions, window: int = 50) -> dict:
    """Gradient flow and saliency of a character model for the losses at ``positions``.

    For each position t the loss is L_t = -log p(ids[t + 1] | ids[..t]) (cross-entropy of the
    actual next character, nats); its gradient is followed back ``window`` steps: to every
    earlier state (gradient flow) and to every earlier input character (saliency, Madsen
    2019; for one-hot inputs the gradient with respect to the one-hot vector). The states at
    the start of each window come from one forward over the whole text, so every window sees
    the same context as that run. All positions go through one batched
    :func:`state_gradients` (windows starting at 0 are padded at the end; the padding gets no
    gradient).

    Parameters
    ----------
    model : CharLM
    ids : integer ndarray (N,)
    positions : integer array (P,), each in [0, N - 2]
    window : int >= 1
        Steps followed back (lags 0 .. window - 1).

    Returns
    -------
    dict
        ``"<state name>"``: (window, L, P) norms by lag (NaN before the text start);
        ``"x"``: (window, P) saliency ||dL_t/dx_{t - lag}||; ``"loss"``: (P,) L_t.
    """
    embed, layer, head = _lm_parts(model)
    ids = check_int_array("ids", ids, 0, model.vocab_size)
    positions = np.asarray(positions)
    if ids.ndim != 1 or positions.ndim != 1 or positions.dtype.kind not in "iu" or (
            len(positions) and (positions.min() < 0 or positions.max() > len(ids) - 2)):
        raise ValueError(f"positions: expected integers in [0, {len(ids) - 2}] for {len(ids)} "
                         f"ids, got {positions!r}")
    window = check_positive_int("window", window)
    N = len(ids)
    x_all = embed(ids[:, None])  # (N, 1, D)
    _, _, cache = layer.forward(_time_major(layer, x_all))
    per = [_per_step(layer, cache, lyr) for lyr in range(layer.num_layers)]
    names = _state_names(layer)
    W = min(window, N - 1)
    P = len(positions)
    starts = np.maximum(positions - W + 1, 0)
    steps = positions - starts  # loss step inside each window
    idx = starts[:, None] + np.arange(W)[None, :]  # (P, W), may run past the text for starts=0
    idx = np.minimum(idx, N - 1)
    x = embed(ids[idx].T)  # (W, P, D)
    hx = []
    for n in names:
        s = np.zeros((layer.num_layers, P, per[0][n].shape[-1]), x.dtype)
        for lyr in range(layer.num_layers):
            v = per[lyr][n][:, 0]  # (N, S): state after each step
            later = starts > 0
            s[lyr, later] = v[starts[later] - 1]
        hx.append(s)
    out, _, _ = layer.forward(_time_major(layer, x), _to_hx(layer, tuple(hx)))
    logits, head_cache = head.forward(out)
    out_tm = _time_major(layer, np.asarray(logits))  # (W, P, V)
    z = out_tm[steps, np.arange(P)].astype(np.float64)  # (P, V)
    p = softmax_probs(z)
    target = ids[positions + 1]
    loss = -np.log(np.maximum(p[np.arange(P), target], 1e-300))
    dz = p.copy()
    dz[np.arange(P), target] -= 1.0  # d CE / d logits
    dlogits = np.zeros(out_tm.shape, out_tm.dtype)
    dlogits[steps, np.arange(P)] = dz
    dout, _ = head.backward(_time_major(layer, dlogits), head_cache)
    g = state_gradients(layer, _time_major(layer, x), dout, _to_hx(layer, tuple(hx)))
    res = gradient_norms(g, steps)
    res["loss"] = loss
    return res


# ----------------------------------------------------------------------------- demonstration
def vanishing_gradient_demo(T: int = 100, hidden_size: int = 32, input_size: int = 8,
                            forget_biases=(1.0, 5.0), rng=0) -> dict:
    """The classic picture: dL/dh_k by lag for a vanilla tanh RNN and for LSTMs.

    One random input sequence (N(0, 1), batch 1), the loss sum(output[T-1] * R) with a fixed
    random R; PyTorch's default initialisation for every model, except the forget-gate bias
    of the LSTMs (``forget_bias``). The RNN is included when the library has one
    (``lstm_bptt.RNN``).

    Returns
    -------
    dict label -> dict with ``"h"``: ndarray (T,), ||dL/dh_{T-1-lag}|| by lag, and for the
    LSTMs ``"c"`` (T,) and ``"forget_bias"``. Raw norms (not normalised): the lag-0 value of h
    is ||R|| for every model.

    Notes
    -----
    Along the cell path of an LSTM each step back multiplies the gradient by the forget gate,
    about sigmoid(b_f) at initialisation: sigmoid(1)^100 = 2.5e-14, sigmoid(5)^100 = 0.51.
    A tanh RNN multiplies by diag(1 - h^2) W_hh per step, whose norm is below 1 here.
    """
    from . import recurrent as _layers  # core -> core

    rng = np.random.default_rng(rng)
    x = rng.normal(size=(T, 1, input_size))
    R = rng.normal(size=(1, hidden_size))
    dout = np.zeros((T, 1, hidden_size))
    dout[-1] = R
    models = {}
    if hasattr(_layers, "RNN"):
        models["tanh RNN"] = _layers.RNN(input_size, hidden_size, rng=1)
    for b in forget_biases:
        models[f"LSTM, forget bias {b:g}"] = _layers.LSTM(input_size, hidden_size, rng=1,
                                                          forget_bias=float(b))
    res = {}
    for label, m in models.items():
        g = state_gradients(m, x, dout)
        norms = gradient_norms(g, T - 1)
        res[label] = {k: v[:, 0, 0] for k, v in norms.items() if k != "x"}
        if "c" in g.states:
            res[label]["forget_bias"] = float(label.rsplit(" ", 1)[-1])
    return res


# ----------------------------------------------------------------------------- LSTMVis
def _token_name(ch: str) -> str:
    """A whitespace-free name for a token (LSTMVis splits ``words.dict`` lines on spaces)."""
    special = {" ": "<space>", "\n": "<nl>", "\t": "<tab>", "\r": "<cr>"}
    if ch in special:
        return special[ch]
    if not ch or any(c.isspace() for c in ch):
        return "<U+" + "+".join(f"{ord(c):04X}" for c in ch) + ">"
    return ch


def export_lstmvis(directory, ids, tokens, values: list[dict], name: str = "lstm-bptt") -> Path:
    """Write per-step states and token ids in the layout LSTMVis reads.

    Files written into ``directory``: ``states.hdf5`` (datasets ``states<l>`` = the cell
    state c of layer l (1-based; h for cells without c) and ``output<l>`` = h, each (N, S)
    float32), ``train.hdf5`` (dataset ``words``, (N,) int64 token ids), ``words.dict`` (one
    ``token id`` line per vocabulary entry; whitespace tokens written as ``<space>``,
    ``<nl>``, ``<tab>``...) and ``lstm.yml`` (the configuration naming them).

    Parameters
    ----------
    directory : path (created if missing)
    ids : integer ndarray (N,)
    tokens : sequence of str, the vocabulary (``tokens[id]``)
    values : list (per layer) of dict name -> (N, S), e.g. ``lm_inspect(...)["values"]``
    name : str, the project name shown by LSTMVis

    Returns
    -------
    Path of ``lstm.yml``

    Raises
    ------
    ImportError
        h5py is not installed (``pip install "lstm-bptt[lstmvis]"``).
    ValueError
        Value arrays whose length differs from ``ids``.

    References
    ----------
    Strobelt, Gehrmann, Pfister & Rush (2018), "LSTMVis: a tool for visual analysis of hidden
    state dynamics in recurrent neural networks"; the LSTMVis README ("Adding your own data").
    """
    try:
        import h5py
    except ImportError:
        raise ImportError('the LSTMVis export needs h5py: pip install "lstm-bptt[lstmvis]"'
                          ) from None
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"ids: expected a 1-D integer array, got {ids.dtype} {ids.shape}")
    names = [_token_name(t) for t in tokens]
    if len(set(names)) != len(names):
        raise ValueError("tokens: two tokens map to the same whitespace-free name")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    types = []
    with h5py.File(d / "states.hdf5", "w") as f:
        for lyr, vals in enumerate(values, start=1):
            for key, ds, typ in (("c" if "c" in vals else "h", f"states{lyr}", "state"),
                                 ("h", f"output{lyr}", "output")):
                a = np.asarray(vals[key], np.float32)
                if a.shape[0] != len(ids):
                    raise ValueError(f"values[{lyr - 1}][{key!r}]: expected {len(ids)} steps, "
                                     f"got {a.shape[0]}")
                f.create_dataset(ds, data=a)
                extra = ", transform: none" if typ == "output" else ""
                types.append(f"    {{type: {typ}, layer: {lyr}, path: {ds}{extra}}}")
    with h5py.File(d / "train.hdf5", "w") as f:
        f.create_dataset("words", data=ids.astype(np.int64))
    (d / "words.dict").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)),
                                  encoding="utf-8")
    yml = d / "lstm.yml"
    yml.write_text(
        f"name: {name}\n"
        "description: per-step states exported by lstm-bptt\n\n"
        "files:\n  states: states.hdf5\n  train: train.hdf5\n  words: words.dict\n\n"
        "word_sequence:\n  file: train\n  path: words\n  dict_file: words\n\n"
        "states:\n  file: states\n  types: [\n" + ",\n".join(types) + "\n  ]\n",
        encoding="utf-8")
    return yml
