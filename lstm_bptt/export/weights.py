"""Whole modules and models in another library's layout: :func:`export_weights`,
:func:`import_weights` (recurrent layers through the converters, Linear as a dense layer,
Embedding as a table)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .layouts import (
    FORMATS,
    _get,
    lstm_from_cs231n,
    lstm_from_flax,
    lstm_from_keras,
    lstm_to_cs231n,
    lstm_to_flax,
    lstm_to_keras,
)
from .layouts_gru_rnn import (
    gru_from_flax,
    gru_from_keras,
    gru_to_flax,
    gru_to_keras,
    rnn_from_flax,
    rnn_from_keras,
    rnn_to_flax,
    rnn_to_keras,
)
from .state_dict import load_state_dict_into

_TO = {"lstm": {"keras": lstm_to_keras, "flax": lstm_to_flax, "cs231n": lstm_to_cs231n},
       "gru": {"keras": gru_to_keras, "flax": gru_to_flax},
       "rnn": {"keras": rnn_to_keras, "flax": rnn_to_flax}}
_FROM = {"lstm": {"keras": lstm_from_keras, "flax": lstm_from_flax, "cs231n": lstm_from_cs231n},
         "gru": {"keras": gru_from_keras, "flax": gru_from_flax},
         "rnn": {"keras": rnn_from_keras, "flax": rnn_from_flax}}
# Linear (weight (out, in), bias) and Embedding (weight (V, E)) in each format
_DENSE = {"keras": ("kernel", "bias"), "flax": ("kernel", "bias"), "cs231n": ("w", "b")}
_EMBED = {"keras": "embeddings", "flax": "embedding", "cs231n": "W_embed"}


def _check_format(fmt) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {list(FORMATS)}, got {fmt!r}")
    return fmt


def _converter(table: dict, module, fmt: str):
    """The converter of ``table`` for the recurrent ``module``'s cell, or a clear error."""
    cell = getattr(getattr(module, "cell", None), "name", None)
    if cell is None:  # a layer without a cell object: tell LSTM and GRU apart by the shapes
        w = module.params["weight_hh_l0"]
        cell = {4: "lstm", 3: "gru", 1: "rnn"}.get(w.shape[0] // max(w.shape[1], 1), "?")
    if cell not in table or fmt not in table[cell]:
        raise ValueError(f"format {fmt!r}: no converter for {cell!r} layers (LSTM: keras, flax, "
                         "cs231n; GRU, RNN: keras, flax)")
    return table[cell][fmt]


def _kind(module) -> str:
    params = getattr(module, "params", None)
    if not isinstance(params, dict):
        raise TypeError(f"expected a module or model with a params dict, got "
                        f"{type(module).__name__}")
    if "weight_ih_l0" in params:
        return "recurrent"
    if hasattr(module, "num_embeddings"):
        return "embedding"
    if hasattr(module, "in_features"):
        return "linear"
    raise TypeError(f"{type(module).__name__}: no converter for this module")


def _parts(obj) -> dict:
    """``{prefix: module}``: a model's named modules, or ``{"": obj}`` for a single module."""
    modules = getattr(obj, "modules", None)
    if isinstance(modules, dict) and modules:
        return dict(modules)
    return {"": obj}


def export_weights(obj, fmt: str) -> dict:
    """A module's or model's weights in another library's layout, as a flat dict.

    Parameters
    ----------
    obj : a recurrent layer (LSTM, GRU, RNN), Linear, Embedding, or a model (CharLM,
        SequenceClassifier, SequenceRegressor, SequenceTagger)
    fmt : {"keras", "flax", "cs231n"}

    Returns
    -------
    dict str -> ndarray (copies)
        For a model, keys ``"<module>/<...>"``: the LSTM as :func:`lstm_to_keras` /
        :func:`lstm_to_flax` / :func:`lstm_to_cs231n` (``"lstm/l0/kernel"``, ...), a Linear
        as a dense layer (``"head/kernel"`` (H, out) = weight^T and ``"head/bias"`` for Keras
        ``Dense`` and Flax ``nn.Dense``; ``"head/w"``, ``"head/b"`` for CS231n's
        ``affine_forward``), an Embedding as ``"embedding/embeddings"`` (Keras),
        ``"embedding/embedding"`` (Flax ``nn.Embed``) or ``"embedding/W_embed"`` (CS231n),
        all (V, E). A single module has no ``"<module>/"`` prefix. With ``sep="/"``,
        ``flax.traverse_util.unflatten_dict`` turns the dict into a nested params tree.

    Raises
    ------
    ValueError
        Unknown format; a layer with no equivalent (GRU/RNN in CS231n's layout, proj_size,
        parameters of LSTM variants).
    """
    fmt = _check_format(fmt)
    out = {}
    for name, module in _parts(obj).items():
        pre = f"{name}/" if name else ""
        kind, p = _kind(module), module.params
        if kind == "recurrent":
            converted = _converter(_TO, module, fmt)(p)
        elif kind == "linear":
            wname, bname = _DENSE[fmt]
            converted = {wname: np.ascontiguousarray(p["weight"].T)}  # (in, out)
            if "bias" in p:
                converted[bname] = p["bias"].copy()
        else:
            converted = {_EMBED[fmt]: p["weight"].copy()}  # (V, E)
        out.update({pre + k: v for k, v in converted.items()})
    return out


def import_weights(obj, weights: Mapping, fmt: str) -> None:
    """Load weights in another library's layout into a module or model, in place.

    The inverse of :func:`export_weights` (same keys). Recurrent layers take the single bias
    as ``bias_ih`` (``bias_hh`` = 0); a source without bias loads into a model with bias as
    zeros, and a non-zero bias into a model without bias is refused. Everything is converted
    and checked (keys, shapes, as :meth:`StateDictMixin.load_state_dict` with ``strict=True``)
    before anything is written.

    Raises
    ------
    TypeError, ValueError
        Unknown format, missing / unexpected / misshapen arrays.
    """
    fmt = _check_format(fmt)
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights: expected a mapping of names to arrays, got "
                        f"{type(weights).__name__}")
    parts = _parts(obj)
    sd, used = {}, set()
    for name, module in parts.items():
        pre = f"{name}/" if name else ""
        mine = {k[len(pre):]: v for k, v in weights.items() if k.startswith(pre)}
        used |= {pre + k for k in mine}
        kind, p = _kind(module), module.params
        if kind == "recurrent":
            converted = _converter(_FROM, module, fmt)(
                mine, bias=any(k.startswith("bias_") for k in p))
        elif kind == "linear":
            wname, bname = _DENSE[fmt]
            converted = {"weight": _get(mine, wname, p["weight"].shape[::-1], "weights").T}
            if bname in mine:
                converted["bias"] = mine[bname]
        else:
            converted = {"weight": mine.get(_EMBED[fmt], None)}
            if converted["weight"] is None:
                raise ValueError(f"weights: missing {pre + _EMBED[fmt]!r}")
        sd.update({(f"{name}." if name else "") + k: v for k, v in converted.items()})
    unused = [k for k in weights if k not in used]
    if unused:
        raise ValueError(f"weights: unexpected key(s) {unused}")
    load_state_dict_into(obj.params, sd, True, type(obj).__name__)
