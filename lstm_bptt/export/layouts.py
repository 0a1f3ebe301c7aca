"""LSTM converters between PyTorch's layout and Keras 3, Flax linen and CS231n, and the helpers
the GRU and RNN converters share (:mod:`lstm_bptt.export.layouts_gru_rnn`).

The layouts are tabulated in :mod:`lstm_bptt.export`. Every function takes or returns flat
dicts: PyTorch names (``weight_ih_l0``, ..., ``_reverse`` for the backward direction) on one
side, ``"l{k}/<name>"`` (``"l{k}_reverse/<name>"``) on the other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

FORMATS = ("keras", "flax", "cs231n")
_GATES = "ifgo"  # PyTorch's order of the four H-blocks
_CS231N_ORDER = [0, 1, 3, 2]  # CS231n's (i, f, o, g) as PyTorch block indices (self-inverse)
_LAYER_KEY = re.compile(r"^weight_ih_l(\d+)(_reverse)?$")
_KNOWN_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l\d+(_reverse)?$")


def _layers(sd: Mapping) -> list[str]:
    """Layer suffixes ``l0``, ``l0_reverse``, ``l1``, ... of a recurrent state dict, in order.

    Any other key is refused, so that a parameter these layouts cannot hold (a peephole or
    layer-norm weight, say) is never dropped silently.
    """
    found = []
    for k in sd:
        if not _KNOWN_KEY.match(str(k)):
            raise ValueError(f"state_dict: key {k!r} has no equivalent in the Keras, Flax or "
                             "CS231n layouts (expected weight_ih_l<k>, weight_hh_l<k>, "
                             "bias_ih_l<k>, bias_hh_l<k>, optionally with _reverse)")
        m = _LAYER_KEY.match(k)
        if m:
            found.append((int(m.group(1)), bool(m.group(2)), k[len("weight_ih_"):]))
    if not found:
        raise ValueError(f"state_dict: expected recurrent weights named weight_ih_l0, ..., got "
                         f"keys {list(sd)[:6]}")
    return [s for _, _, s in sorted(found)]


def _rec_layer(sd: Mapping, s: str, G: int, cell: str):
    """(W_ih (G*H, D), W_hh (G*H, H), b_ih, b_hh (G*H,) or None, H) of layer suffix ``s``."""
    if f"weight_hr_{s}" in sd:
        raise ValueError(f"state_dict: weight_hr_{s} present: an LSTM with proj_size has no "
                         "equivalent in Keras, Flax or CS231n")
    try:
        w_ih, w_hh = np.asarray(sd[f"weight_ih_{s}"]), np.asarray(sd[f"weight_hh_{s}"])
    except KeyError as exc:
        raise ValueError(f"state_dict: missing {exc.args[0]}") from None
    if w_hh.ndim != 2 or w_ih.ndim != 2 or w_hh.shape[0] != G * w_hh.shape[1] \
            or w_ih.shape[0] != w_hh.shape[0]:
        raise ValueError(f"state_dict: expected {cell} layer weights, weight_ih_{s} ({G}H, D) "
                         f"and weight_hh_{s} ({G}H, H), got {w_ih.shape} and {w_hh.shape}")
    H = w_hh.shape[1]
    has = [f"bias_ih_{s}" in sd, f"bias_hh_{s}" in sd]
    if has[0] != has[1]:
        raise ValueError(f"state_dict: expected both bias_ih_{s} and bias_hh_{s} or neither")
    b_ih = b_hh = None
    if has[0]:
        b_ih, b_hh = np.asarray(sd[f"bias_ih_{s}"]), np.asarray(sd[f"bias_hh_{s}"])
        for n, v in ((f"bias_ih_{s}", b_ih), (f"bias_hh_{s}", b_hh)):
            if v.shape != (G * H,):
                raise ValueError(f"state_dict: expected {n} of shape ({G * H},), got {v.shape}")
    return w_ih, w_hh, b_ih, b_hh, H


def _lstm_layer(sd: Mapping, s: str):
    """(W_ih (4H, D), W_hh (4H, H), b = b_ih + b_hh (4H,) or None, H) of layer suffix ``s``."""
    w_ih, w_hh, b_ih, b_hh, H = _rec_layer(sd, s, 4, "LSTM")
    return w_ih, w_hh, None if b_ih is None else b_ih + b_hh, H


def _get(weights: Mapping, key: str, shape: tuple, what: str) -> np.ndarray:
    if key not in weights:
        raise ValueError(f"{what}: missing {key!r} (keys: {list(weights)[:8]})")
    v = np.asarray(weights[key])
    if v.dtype.kind != "f":
        raise TypeError(f"{what}[{key!r}]: expected a floating-point array, got dtype {v.dtype}")
    if v.shape != shape:
        want = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{what}[{key!r}]: expected shape {want}, got {v.shape}")
    return v


def _torch_layer(out: dict, s: str, w_ih, w_hh, b, bias: bool, what: str,
                 b_hh=None) -> None:
    """Store one layer in PyTorch names; ``b`` (G*H,) or None goes into bias_ih, ``b_hh`` (None:
    zeros) into bias_hh."""
    out[f"weight_ih_{s}"] = np.ascontiguousarray(w_ih)
    out[f"weight_hh_{s}"] = np.ascontiguousarray(w_hh)
    zeros = np.zeros(w_ih.shape[0], w_ih.dtype)
    if bias:
        out[f"bias_ih_{s}"] = zeros.copy() if b is None else np.array(b)
        out[f"bias_hh_{s}"] = zeros if b_hh is None else np.array(b_hh)
    elif any(v is not None and np.any(v != 0) for v in (b, b_hh)):
        raise ValueError(f"{what}: layer {s} has a non-zero bias but bias=False was asked")


def _source_layers(weights: Mapping, what: str) -> list[str]:
    if not isinstance(weights, Mapping):
        raise TypeError(f"{what}: expected a mapping of names to arrays, got "
                        f"{type(weights).__name__}")
    found = set()
    for k in weights:
        m = re.match(r"^l(\d+)(_reverse)?/", str(k))
        if not m:
            raise ValueError(f"{what}: unexpected key {k!r} (expected 'l<k>/...' or "
                             "'l<k>_reverse/...')")
        found.add((int(m.group(1)), bool(m.group(2))))
    if not found:
        raise ValueError(f"{what}: no layers found")
    return [f"l{k}{'_reverse' if r else ''}" for k, r in sorted(found)]


def lstm_to_keras(sd: Mapping) -> dict:
    """PyTorch LSTM state dict -> Keras 3 ``LSTM`` weights, one group per layer.

    Parameters
    ----------
    sd : Mapping
        ``weight_ih_l{k}`` (4H, D), ``weight_hh_l{k}`` (4H, H), optional ``bias_ih_l{k}``,
        ``bias_hh_l{k}`` (4H,), and ``..._reverse`` for a bidirectional layer.

    Returns
    -------
    dict
        ``"l{k}/kernel"`` (D, 4H) = W_ih^T, ``"l{k}/recurrent_kernel"`` (H, 4H) = W_hh^T,
        ``"l{k}/bias"`` (4H,) = b_ih + b_hh (absent without bias: ``LSTM(use_bias=False)``);
        same dtype. Keras's gate order (i, f, c, o) is PyTorch's. Load into layer k with
        ``layer.set_weights([w["l0/kernel"], w["l0/recurrent_kernel"], w["l0/bias"]])``; a
        ``_reverse`` group is the ``backward_layer`` of ``keras.layers.Bidirectional``.

    Raises
    ------
    ValueError
        Not an LSTM state dict (e.g. GRU shapes), or ``weight_hr`` (proj_size) present.

    Notes
    -----
    Keras's defaults (``activation="tanh"``, ``recurrent_activation="sigmoid"``) are this
    LSTM's equations. Keras 3 maps float64 to float32 in its type promotion outside TensorFlow,
    so a "float64" Keras LSTM on the JAX backend evaluates its tanh in float32 (outputs within
    ~5e-8 of ours; with ``activation=jax.numpy.tanh`` within 2e-16).
    """
    return _to_keras_one_bias(sd, 4, "LSTM")


def _to_keras_one_bias(sd: Mapping, G: int, cell: str) -> dict:
    """Keras layout of a cell with G gate blocks in PyTorch's order and one summed bias."""
    out = {}
    for s in _layers(sd):
        w_ih, w_hh, b_ih, b_hh, _ = _rec_layer(sd, s, G, cell)
        out[f"{s}/kernel"] = np.ascontiguousarray(w_ih.T)  # (D, G*H)
        out[f"{s}/recurrent_kernel"] = np.ascontiguousarray(w_hh.T)  # (H, G*H)
        if b_ih is not None:
            out[f"{s}/bias"] = b_ih + b_hh  # (G*H,)
    return out


def lstm_from_keras(weights: Mapping, bias: bool = True) -> dict:
    """Keras 3 ``LSTM`` weights -> PyTorch LSTM state dict (inverse of :func:`lstm_to_keras`).

    Parameters
    ----------
    weights : Mapping
        ``"l{k}/kernel"`` (D, 4H), ``"l{k}/recurrent_kernel"`` (H, 4H) and optionally
        ``"l{k}/bias"`` (4H,) per layer (``layer.get_weights()`` of ``LSTM`` k in that order),
        ``l{k}_reverse/...`` for the backward half of a ``Bidirectional``.
    bias : bool
        True: ``bias_ih`` = Keras's bias (zeros if the layer has none), ``bias_hh`` = 0.
        False: no bias entries (refused if Keras's bias is non-zero).

    Returns
    -------
    dict with ``weight_ih_l{k}`` (4H, D), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (4H,).

    Raises
    ------
    ValueError
        A missing or misshapen array, an unknown key, a non-zero bias with ``bias=False``.
    """
    return _from_keras_one_bias(weights, bias, 4, "keras weights")


def _from_keras_one_bias(weights: Mapping, bias: bool, G: int, what: str) -> dict:
    """Inverse of :func:`_to_keras_one_bias`: the bias goes into bias_ih, bias_hh = 0."""
    out = {}
    for s in _source_layers(weights, what):
        rk = np.asarray(weights.get(f"{s}/recurrent_kernel", np.empty((0, 0))))
        if rk.ndim != 2 or rk.shape[1] != G * rk.shape[0] or rk.shape[0] == 0:
            gh = "H" if G == 1 else f"{G}H"
            raise ValueError(f"{what}[{s + '/recurrent_kernel'!r}]: expected shape (H, {gh}), "
                             f"got {rk.shape}")
        H = rk.shape[0]
        kernel = np.asarray(weights.get(f"{s}/kernel", np.empty((0,))))
        if kernel.ndim != 2:
            raise ValueError(f"{what}[{s + '/kernel'!r}]: expected shape (D, {G * H}), got "
                             f"{kernel.shape}")
        kernel = _get(weights, f"{s}/kernel", (kernel.shape[0], G * H), what)
        rk = _get(weights, f"{s}/recurrent_kernel", (H, G * H), what)
        b = _get(weights, f"{s}/bias", (G * H,), what) if f"{s}/bias" in weights else None
        extra = set(k for k in weights if k.startswith(s + "/")) - {
            f"{s}/kernel", f"{s}/recurrent_kernel", f"{s}/bias"}
        if extra:
            raise ValueError(f"{what}: unexpected key(s) {sorted(extra)}")
        _torch_layer(out, s, kernel.T, rk.T, b, bias, what)
    return out


def lstm_to_flax(sd: Mapping) -> dict:
    """PyTorch LSTM state dict -> Flax linen ``LSTMCell`` params, one group per layer.

    Parameters
    ----------
    sd : Mapping
        As for :func:`lstm_to_keras`.

    Returns
    -------
    dict
        Per layer ``"l{k}/i{g}/kernel"`` (D, H) = (block g of W_ih)^T and
        ``"l{k}/h{g}/kernel"`` (H, H) = (block g of W_hh)^T, ``"l{k}/h{g}/bias"`` (H,) = block
        g of b_ih + b_hh (zeros without bias: Flax's hidden dense layers always have one), for
        g in i, f, g, o. ``flax.traverse_util.unflatten_dict(w, sep="/")["l0"]`` is the
        ``params`` collection of ``nn.LSTMCell(features=H)``; its carry is ``(c, h)``.

    Raises
    ------
    ValueError
        As :func:`lstm_to_keras`.
    """
    out = {}
    for s in _layers(sd):
        w_ih, w_hh, b, H = _lstm_layer(sd, s)
        if b is None:
            b = np.zeros(4 * H, w_ih.dtype)
        for j, g in enumerate(_GATES):
            rows = slice(j * H, (j + 1) * H)
            out[f"{s}/i{g}/kernel"] = np.ascontiguousarray(w_ih[rows].T)  # (D, H)
            out[f"{s}/h{g}/kernel"] = np.ascontiguousarray(w_hh[rows].T)  # (H, H)
            out[f"{s}/h{g}/bias"] = b[rows].copy()  # (H,)
    return out


def lstm_from_flax(weights: Mapping, bias: bool = True) -> dict:
    """Flax linen ``LSTMCell`` params -> PyTorch LSTM state dict (inverse of
    :func:`lstm_to_flax`).

    Parameters
    ----------
    weights : Mapping
        Per layer the twelve arrays ``"l{k}/i{g}/kernel"`` (D, H), ``"l{k}/h{g}/kernel"`` (H, H),
        ``"l{k}/h{g}/bias"`` (H,) for g in i, f, g, o, e.g.
        ``{"l0/" + k: v for k, v in flax.traverse_util.flatten_dict(params, sep="/").items()}``.
    bias : bool
        True: ``bias_ih`` = the hidden dense biases, ``bias_hh`` = 0. False: no bias entries
        (refused if Flax's biases are non-zero).

    Returns
    -------
    dict with ``weight_ih_l{k}`` (4H, D), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (4H,), gates stacked i, f, g, o.

    Raises
    ------
    ValueError
        A missing, misshapen or unknown array; a non-zero bias with ``bias=False``.
    """
    what = "flax weights"
    out = {}
    for s in _source_layers(weights, what):
        hk = np.asarray(weights.get(f"{s}/hi/kernel", np.empty((0, 1))))
        if hk.ndim != 2 or hk.shape[0] != hk.shape[1] or hk.shape[0] == 0:
            raise ValueError(f"{what}[{s + '/hi/kernel'!r}]: expected shape (H, H), got "
                             f"{hk.shape}")
        H = hk.shape[0]
        ik = np.asarray(weights.get(f"{s}/ii/kernel", np.empty((0,))))
        D = ik.shape[0] if ik.ndim == 2 else -1
        keys = set()
        w_ih, w_hh, b = [], [], []
        for g in _GATES:
            w_ih.append(_get(weights, f"{s}/i{g}/kernel", (D, H), what).T)
            w_hh.append(_get(weights, f"{s}/h{g}/kernel", (H, H), what).T)
            b.append(_get(weights, f"{s}/h{g}/bias", (H,), what))
            keys |= {f"{s}/i{g}/kernel", f"{s}/h{g}/kernel", f"{s}/h{g}/bias"}
        extra = set(k for k in weights if k.startswith(s + "/")) - keys
        if extra:
            raise ValueError(f"{what}: unexpected key(s) {sorted(extra)} (input dense layers "
                             "ii, if, ig, io have no bias in Flax's LSTMCell)")
        _torch_layer(out, s, np.concatenate(w_ih), np.concatenate(w_hh), np.concatenate(b),
                     bias, what)
    return out


def _cs231n_blocks(a: np.ndarray, H: int) -> np.ndarray:
    """Swap the g and o blocks of a (4H, ...) array: PyTorch's (i, f, g, o) <-> (i, f, o, g)."""
    return a.reshape(4, H, *a.shape[1:])[_CS231N_ORDER].reshape(a.shape)


def lstm_to_cs231n(sd: Mapping) -> dict:
    """PyTorch LSTM state dict -> the CS231n / Karpathy layout, one group per layer.

    Parameters
    ----------
    sd : Mapping
        As for :func:`lstm_to_keras`.

    Returns
    -------
    dict
        ``"l{k}/Wx"`` (D, 4H), ``"l{k}/Wh"`` (H, 4H), ``"l{k}/b"`` (4H,) (zeros without bias),
        columns in the gate order i, f, o, g, for ``a = x @ Wx + prev_h @ Wh + b`` of CS231n's
        ``lstm_step_forward``. Karpathy's ``lstm.py`` keeps the same three in one matrix:
        ``WLSTM = np.vstack([b, Wx, Wh])`` (1 + D + H, 4H), order IFOG.

    Raises
    ------
    ValueError
        As :func:`lstm_to_keras`.
    """
    out = {}
    for s in _layers(sd):
        w_ih, w_hh, b, H = _lstm_layer(sd, s)
        if b is None:
            b = np.zeros(4 * H, w_ih.dtype)
        out[f"{s}/Wx"] = np.ascontiguousarray(_cs231n_blocks(w_ih, H).T)  # (D, 4H)
        out[f"{s}/Wh"] = np.ascontiguousarray(_cs231n_blocks(w_hh, H).T)  # (H, 4H)
        out[f"{s}/b"] = _cs231n_blocks(b, H)  # (4H,)
    return out


def lstm_from_cs231n(weights: Mapping, bias: bool = True) -> dict:
    """CS231n layout -> PyTorch LSTM state dict (inverse of :func:`lstm_to_cs231n`).

    Parameters
    ----------
    weights : Mapping
        ``"l{k}/Wx"`` (D, 4H), ``"l{k}/Wh"`` (H, 4H), ``"l{k}/b"`` (4H,), gates i, f, o, g.
    bias : bool
        True: ``bias_ih`` = b, ``bias_hh`` = 0. False: no bias entries (b must be zero).

    Returns
    -------
    dict with ``weight_ih_l{k}`` (4H, D), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (4H,), gates stacked i, f, g, o.

    Raises
    ------
    ValueError
        A missing, misshapen or unknown array; a non-zero b with ``bias=False``.
    """
    what = "cs231n weights"
    out = {}
    for s in _source_layers(weights, what):
        wh = np.asarray(weights.get(f"{s}/Wh", np.empty((0, 0))))
        if wh.ndim != 2 or wh.shape[1] != 4 * wh.shape[0] or wh.shape[0] == 0:
            raise ValueError(f"{what}[{s + '/Wh'!r}]: expected shape (H, 4H), got {wh.shape}")
        H = wh.shape[0]
        wx = np.asarray(weights.get(f"{s}/Wx", np.empty((0,))))
        D = wx.shape[0] if wx.ndim == 2 else -1
        wx = _get(weights, f"{s}/Wx", (D, 4 * H), what)
        wh = _get(weights, f"{s}/Wh", (H, 4 * H), what)
        b = _get(weights, f"{s}/b", (4 * H,), what)
        extra = set(k for k in weights if k.startswith(s + "/")) - {
            f"{s}/Wx", f"{s}/Wh", f"{s}/b"}
        if extra:
            raise ValueError(f"{what}: unexpected key(s) {sorted(extra)}")
        _torch_layer(out, s, _cs231n_blocks(wx.T, H), _cs231n_blocks(wh.T, H),
                     _cs231n_blocks(b, H), bias, what)
    return out
