"""GRU and RNN converters: PyTorch <-> Keras 3 (``GRU(reset_after=True)``, ``SimpleRNN``) and
Flax linen (``GRUCell``, ``SimpleCell``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .layouts import (
    _from_keras_one_bias,
    _get,
    _layers,
    _rec_layer,
    _source_layers,
    _to_keras_one_bias,
    _torch_layer,
)

_GRU_KERAS = [1, 0, 2]  # Keras's (z, r, h) blocks as PyTorch's (r, z, n) indices; self-inverse


def _gru_keras_blocks(a: np.ndarray, H: int) -> np.ndarray:
    return a.reshape(3, H, *a.shape[1:])[_GRU_KERAS].reshape(a.shape)


def gru_to_keras(sd: Mapping) -> dict:
    """PyTorch GRU state dict -> Keras 3 ``GRU(reset_after=True)`` weights (exact both ways).

    Parameters
    ----------
    sd : Mapping
        ``weight_ih_l{k}`` (3H, D), ``weight_hh_l{k}`` (3H, H), optional ``bias_ih_l{k}``,
        ``bias_hh_l{k}`` (3H,), gates r, z, n; ``..._reverse`` for a bidirectional layer.

    Returns
    -------
    dict
        ``"l{k}/kernel"`` (D, 3H), ``"l{k}/recurrent_kernel"`` (H, 3H), column blocks in Keras's
        order z, r, h; ``"l{k}/bias"`` (2, 3H) = (input bias, recurrent bias) (absent without
        bias: ``GRU(use_bias=False)``). Keras 3's default ``reset_after=True`` applies the reset
        gate after the recurrent matmul and keeps both biases, exactly PyTorch's
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h.

    Raises
    ------
    ValueError
        Not a GRU state dict.
    """
    out = {}
    for s in _layers(sd):
        w_ih, w_hh, b_ih, b_hh, H = _rec_layer(sd, s, 3, "GRU")
        out[f"{s}/kernel"] = np.ascontiguousarray(_gru_keras_blocks(w_ih, H).T)  # (D, 3H)
        out[f"{s}/recurrent_kernel"] = np.ascontiguousarray(_gru_keras_blocks(w_hh, H).T)
        if b_ih is not None:
            out[f"{s}/bias"] = np.stack([_gru_keras_blocks(b_ih, H),
                                         _gru_keras_blocks(b_hh, H)])  # (2, 3H)
    return out


def gru_from_keras(weights: Mapping, bias: bool = True) -> dict:
    """Keras 3 ``GRU(reset_after=True)`` weights -> PyTorch GRU state dict (inverse of
    :func:`gru_to_keras`; both biases kept, so exact in both directions).

    Parameters
    ----------
    weights : Mapping
        ``"l{k}/kernel"`` (D, 3H), ``"l{k}/recurrent_kernel"`` (H, 3H), optional
        ``"l{k}/bias"`` (2, 3H) per layer.
    bias : bool
        True: bias entries (zeros if Keras has none). False: none (Keras's must be zero).

    Returns
    -------
    dict with ``weight_ih_l{k}`` (3H, D), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (3H,), gates r, z, n.

    Raises
    ------
    ValueError
        A missing, misshapen or unknown array (a (3H,) bias means ``reset_after=False``, which
        PyTorch's GRU cannot express); a non-zero bias with ``bias=False``.
    """
    what = "keras GRU weights"
    out = {}
    for s in _source_layers(weights, what):
        rk = np.asarray(weights.get(f"{s}/recurrent_kernel", np.empty((0, 0))))
        if rk.ndim != 2 or rk.shape[1] != 3 * rk.shape[0] or rk.shape[0] == 0:
            raise ValueError(f"{what}[{s + '/recurrent_kernel'!r}]: expected shape (H, 3H), "
                             f"got {rk.shape}")
        H = rk.shape[0]
        kernel = np.asarray(weights.get(f"{s}/kernel", np.empty((0,))))
        kernel = _get(weights, f"{s}/kernel", (kernel.shape[0] if kernel.ndim == 2 else -1,
                                               3 * H), what)
        b = None
        if f"{s}/bias" in weights:
            if np.shape(weights[f"{s}/bias"]) == (3 * H,):
                raise ValueError(f"{what}[{s + '/bias'!r}]: a (3H,) bias is Keras's "
                                 "reset_after=False GRU, which PyTorch's GRU cannot express; "
                                 "expected (2, 3H)")
            b = _get(weights, f"{s}/bias", (2, 3 * H), what)
        extra = set(k for k in weights if k.startswith(s + "/")) - {
            f"{s}/kernel", f"{s}/recurrent_kernel", f"{s}/bias"}
        if extra:
            raise ValueError(f"{what}: unexpected key(s) {sorted(extra)}")
        _torch_layer(out, s, _gru_keras_blocks(kernel.T, H),
                     _gru_keras_blocks(np.asarray(weights[f"{s}/recurrent_kernel"]).T, H),
                     None if b is None else _gru_keras_blocks(b[0], H), bias, what,
                     b_hh=None if b is None else _gru_keras_blocks(b[1], H))
    return out


def gru_to_flax(sd: Mapping) -> dict:
    """PyTorch GRU state dict -> Flax linen ``GRUCell`` params, one group per layer.

    Returns
    -------
    dict
        ``"l{k}/i{g}/kernel"`` (D, H) and ``"l{k}/i{g}/bias"`` (H,) for g in r, z, n;
        ``"l{k}/h{g}/kernel"`` (H, H); ``"l{k}/hn/bias"`` (H,). Flax's r and z have one bias
        each, so ``ir/bias`` = b_ir + b_hr and ``iz/bias`` = b_iz + b_hz (only the sums enter
        the equations); ``in/bias`` = b_in and ``hn/bias`` = b_hn stay apart, as the reset gate
        multiplies W_hn h + b_hn. Zeros without bias. Carry: h.

    Raises
    ------
    ValueError
        Not a GRU state dict.
    """
    out = {}
    for s in _layers(sd):
        w_ih, w_hh, b_ih, b_hh, H = _rec_layer(sd, s, 3, "GRU")
        if b_ih is None:
            b_ih = b_hh = np.zeros(3 * H, w_ih.dtype)
        for j, g in enumerate("rzn"):
            rows = slice(j * H, (j + 1) * H)
            out[f"{s}/i{g}/kernel"] = np.ascontiguousarray(w_ih[rows].T)  # (D, H)
            out[f"{s}/i{g}/bias"] = b_ih[rows] + (b_hh[rows] if g != "n" else 0)  # (H,)
            out[f"{s}/h{g}/kernel"] = np.ascontiguousarray(w_hh[rows].T)  # (H, H)
        out[f"{s}/hn/bias"] = b_hh[2 * H:].copy()
    return out


def gru_from_flax(weights: Mapping, bias: bool = True) -> dict:
    """Flax linen ``GRUCell`` params -> PyTorch GRU state dict (inverse of :func:`gru_to_flax`:
    ``bias_ih`` = (ir, iz, in biases), ``bias_hh`` = (0, 0, hn bias), so ``to(from(w)) == w``).

    Parameters
    ----------
    weights : Mapping
        Per layer ``"l{k}/i{g}/kernel"`` (D, H), ``"l{k}/i{g}/bias"`` (H,),
        ``"l{k}/h{g}/kernel"`` (H, H) for g in r, z, n, and ``"l{k}/hn/bias"`` (H,).
    bias : bool
        False: no bias entries (Flax's biases must then be zero).

    Returns
    -------
    dict with ``weight_ih_l{k}`` (3H, D), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (3H,), gates r, z, n.

    Raises
    ------
    ValueError
        A missing, misshapen or unknown array; a non-zero bias with ``bias=False``.
    """
    what = "flax GRU weights"
    out = {}
    for s in _source_layers(weights, what):
        hk = np.asarray(weights.get(f"{s}/hr/kernel", np.empty((0, 1))))
        if hk.ndim != 2 or hk.shape[0] != hk.shape[1] or hk.shape[0] == 0:
            raise ValueError(f"{what}[{s + '/hr/kernel'!r}]: expected shape (H, H), got "
                             f"{hk.shape}")
        H = hk.shape[0]
        ik = np.asarray(weights.get(f"{s}/ir/kernel", np.empty((0,))))
        D = ik.shape[0] if ik.ndim == 2 else -1
        w_ih, w_hh, b_ih, keys = [], [], [], {f"{s}/hn/bias"}
        for g in "rzn":
            w_ih.append(_get(weights, f"{s}/i{g}/kernel", (D, H), what).T)
            b_ih.append(_get(weights, f"{s}/i{g}/bias", (H,), what))
            w_hh.append(_get(weights, f"{s}/h{g}/kernel", (H, H), what).T)
            keys |= {f"{s}/i{g}/kernel", f"{s}/i{g}/bias", f"{s}/h{g}/kernel"}
        b_hn = _get(weights, f"{s}/hn/bias", (H,), what)
        extra = set(k for k in weights if k.startswith(s + "/")) - keys
        if extra:
            raise ValueError(f"{what}: unexpected key(s) {sorted(extra)}")
        b_hh = np.concatenate([np.zeros(2 * H, b_hn.dtype), b_hn])
        _torch_layer(out, s, np.concatenate(w_ih), np.concatenate(w_hh), np.concatenate(b_ih),
                     bias, what, b_hh=b_hh)
    return out


# --------------------------------------------------------------------------- RNN converters


def rnn_to_keras(sd: Mapping) -> dict:
    """PyTorch RNN (Elman) state dict -> Keras 3 ``SimpleRNN`` weights.

    Parameters
    ----------
    sd : Mapping
        ``weight_ih_l{k}`` (H, D), ``weight_hh_l{k}`` (H, H), optional ``bias_ih_l{k}``,
        ``bias_hh_l{k}`` (H,); ``..._reverse`` for a bidirectional layer.

    Returns
    -------
    dict
        ``"l{k}/kernel"`` (D, H) = W_ih^T, ``"l{k}/recurrent_kernel"`` (H, H) = W_hh^T,
        ``"l{k}/bias"`` (H,) = b_ih + b_hh (absent without bias). ``SimpleRNN(H,
        activation=...)`` with PyTorch's ``nonlinearity`` ("tanh" or "relu").
    """
    return _to_keras_one_bias(sd, 1, "RNN")


def rnn_from_keras(weights: Mapping, bias: bool = True) -> dict:
    """Keras 3 ``SimpleRNN`` weights -> PyTorch RNN state dict (inverse of
    :func:`rnn_to_keras`; the bias goes into ``bias_ih``, ``bias_hh`` = 0)."""
    return _from_keras_one_bias(weights, bias, 1, "keras SimpleRNN weights")


def rnn_to_flax(sd: Mapping) -> dict:
    """PyTorch RNN state dict -> Flax linen ``SimpleCell`` params.

    Returns
    -------
    dict
        ``"l{k}/i/kernel"`` (D, H) = W_ih^T, ``"l{k}/i/bias"`` (H,) = b_ih + b_hh (zeros
        without bias), ``"l{k}/h/kernel"`` (H, H) = W_hh^T; ``SimpleCell(features=H,
        activation_fn=...)`` with PyTorch's ``nonlinearity`` (``residual=False``).
    """
    out = {}
    for s, w in _to_keras_one_bias(sd, 1, "RNN").items():
        layer, name = s.rsplit("/", 1)
        key = {"kernel": "i/kernel", "recurrent_kernel": "h/kernel", "bias": "i/bias"}[name]
        out[f"{layer}/{key}"] = w
    for s in _layers(sd):
        if f"{s}/i/bias" not in out:
            out[f"{s}/i/bias"] = np.zeros(out[f"{s}/h/kernel"].shape[0],
                                          out[f"{s}/h/kernel"].dtype)
    return out


def rnn_from_flax(weights: Mapping, bias: bool = True) -> dict:
    """Flax linen ``SimpleCell`` params -> PyTorch RNN state dict (inverse of
    :func:`rnn_to_flax`; ``bias_ih`` = ``i/bias``, ``bias_hh`` = 0)."""
    what = "flax SimpleCell weights"
    if not isinstance(weights, Mapping):
        raise TypeError(f"{what}: expected a mapping of names to arrays, got "
                        f"{type(weights).__name__}")
    renamed = {}
    for k, v in weights.items():
        layer, _, name = str(k).partition("/")
        new = {"i/kernel": "kernel", "h/kernel": "recurrent_kernel", "i/bias": "bias"}.get(name)
        if new is None:
            raise ValueError(f"{what}: unexpected key {k!r} (expected l<k>/i/kernel, "
                             "l<k>/i/bias, l<k>/h/kernel)")
        renamed[f"{layer}/{new}"] = v
    return _from_keras_one_bias(renamed, bias, 1, what)
