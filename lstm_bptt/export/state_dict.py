"""``state_dict`` / ``load_state_dict`` with PyTorch's names, written once for every module.

:class:`StateDictMixin` gives the methods to any class with a ``params`` dict (the recurrent
layers, Linear, Embedding and the models); :func:`load_state_dict_into` is the logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np


class IncompatibleKeys(NamedTuple):
    """What :meth:`StateDictMixin.load_state_dict` skipped with ``strict=False`` (as PyTorch's
    ``_IncompatibleKeys``): parameters left unchanged, and keys of the state dict not used."""

    missing_keys: list
    unexpected_keys: list


def _prefix_hint(missing, unexpected) -> str:
    """A hint when the state dict is a model's (``lstm.weight_ih_l0``) but a module's was
    expected (``weight_ih_l0``), or the other way round."""
    for m in missing:
        for u in unexpected:
            if u.endswith("." + m):
                p = u[: -len(m)]
                return (f"; the state dict's keys carry the prefix {p!r}: pass "
                        f"{{k[{len(p)}:]: v for k, v in sd.items() if k.startswith({p!r})}}")
            if m.endswith("." + u):
                p = m[: -len(u)]
                return (f"; this model's keys carry the prefix {p!r}: pass "
                        f"{{{p!r} + k: v for k, v in sd.items()}}")
    return ""


def load_state_dict_into(params: dict, sd, strict: bool = True,
                         owner: str = "module") -> IncompatibleKeys:
    """Copy the values of ``sd`` into the arrays of ``params`` in place.

    The logic behind every ``load_state_dict`` method.

    Parameters
    ----------
    params : dict str -> ndarray
        The parameters to fill (a module's or model's ``params``); their arrays are written in
        place with :func:`numpy.copyto`, never replaced.
    sd : Mapping str -> array_like
        Values under the same names and shapes (NumPy arrays, or anything ``np.asarray``
        accepts, e.g. CPU torch tensors). Dtypes: the parameter's own, or a floating dtype
        that converts to it exactly (float16 or float32 into float64, float16 into float32).
        float64 into a float32 module is refused, unlike ``torch.Tensor.copy_``, because it
        would round silently: cast it yourself (``{k: v.astype(np.float32) ...}``).
    strict : bool
        True: every parameter must be present and no other key allowed. False: missing
        parameters keep their values and unexpected keys are ignored; both are returned.
    owner : str
        Name used in error messages.

    Returns
    -------
    IncompatibleKeys (missing_keys, unexpected_keys), both empty when ``strict``.

    Raises
    ------
    TypeError
        ``sd`` is not a mapping, a key is not a str, or a value is not real floating point
        (integer, bool, complex or object arrays are refused rather than cast), or would lose
        precision (float64 into float32).
    ValueError
        (``strict``) a missing or unexpected key; (always) a value whose shape differs from the
        parameter's, or NaN / inf values (a damaged model). All checks run before any copy,
        so on error ``params`` is unchanged.
    """
    if not isinstance(sd, Mapping):
        raise TypeError(f"state_dict: expected a mapping of names to arrays, got "
                        f"{type(sd).__name__}")
    bad = [k for k in sd if not isinstance(k, str)]
    if bad:
        raise TypeError(f"state_dict: expected str keys, got {bad[0]!r}")
    missing = [k for k in params if k not in sd]
    unexpected = [k for k in sd if k not in params]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing key(s) {missing}")
        if unexpected:
            parts.append(f"unexpected key(s) {unexpected}")
        raise ValueError(f"state_dict for {owner}: expected exactly the keys {list(params)}, "
                         f"got {' and '.join(parts)}{_prefix_hint(missing, unexpected)}")
    values = {}
    for k, p in params.items():
        if k not in sd:
            continue
        v = np.asarray(sd[k])
        if v.dtype.kind != "f":
            raise TypeError(f"state_dict[{k!r}]: expected a floating-point array, got dtype "
                            f"{v.dtype}")
        if not np.can_cast(v.dtype, p.dtype, casting="safe"):
            raise TypeError(f"state_dict[{k!r}]: expected dtype {p.dtype} (or one that "
                            f"converts exactly), got {v.dtype}; cast it yourself if you mean "
                            "to round")
        if v.shape != p.shape:
            raise ValueError(f"state_dict[{k!r}]: expected shape {p.shape} (as {owner}'s "
                             f"parameter), got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"state_dict[{k!r}]: expected finite values, got "
                             f"{int((~np.isfinite(v)).sum())} NaN/inf")
        values[k] = v
    for k, v in values.items():
        np.copyto(params[k], v, casting="safe")
    return IncompatibleKeys(missing if not strict else [], unexpected if not strict else [])


class StateDictMixin:
    """``state_dict`` / ``load_state_dict`` with PyTorch's names, for any class with ``params``.

    The key names are those of the equivalent PyTorch module: ``weight_ih_l0``, ...,
    ``bias_hh_l1_reverse`` for ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` (plus ``weight_hr_l{k}``
    with ``proj_size``), ``weight``/``bias`` for ``nn.Linear`` and ``nn.Embedding``, and
    ``<attribute>.<name>`` for a model (``"lstm.weight_ih_l0"``, ``"head.weight"``,
    ``"embedding.weight"``), i.e. what ``state_dict()`` gives for a ``torch.nn.Module`` with
    attributes ``embedding = nn.Embedding(V, E)`` (CharLM with ``embedding_dim``), ``lstm =
    nn.LSTM(D, H, L)`` (named after the cell: ``gru = nn.GRU(...)``, ``rnn = nn.RNN(...)``)
    and ``head = nn.Linear(H, out)`` (``2H`` inputs after a bidirectional layer).
    """

    params: dict

    def state_dict(self) -> dict:
        """Copies of the parameters: ``{name: ndarray}`` in PyTorch's order, names and shapes
        (e.g. ``weight_ih_l0`` (4H, D)); changing them does not change the module."""
        return {k: np.array(v, copy=True) for k, v in self.params.items()}

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy ``state_dict``'s values into the parameters, in place.

        Parameters
        ----------
        state_dict : Mapping str -> array_like
            As returned by :meth:`state_dict` (here or by PyTorch, converted with ``.numpy()``
            or read from safetensors); shapes must match exactly; the dtype must be the
            module's or convert to it exactly (float32 into float64: yes; float64 into
            float32: refused).
        strict : bool
            Refuse missing and unexpected keys (default), or skip them and report them.

        Returns
        -------
        IncompatibleKeys (missing_keys, unexpected_keys)

        Raises
        ------
        TypeError, ValueError
            See :func:`load_state_dict_into`; the module is unchanged when it raises.
        """
        return load_state_dict_into(self.params, state_dict, strict, type(self).__name__)
