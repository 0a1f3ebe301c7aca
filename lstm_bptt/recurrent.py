"""The recurrent layer, written once for every cell type: ``Recurrent`` and ``LSTM``.

:class:`Recurrent` stacks ``num_layers`` layers of one cell (:mod:`lstm_bptt.cells`), with
PyTorch's conventions: parameters ``weight_ih_l{k}`` etc., time-major (T, B, D) data unless
``batch_first``, states (num_layers, B, H) either way, dropout between layers only, and ``hx``
in the cell's form (``(h_0, c_0)`` for an LSTM, one array ``h_0`` for a one-state cell). All of
this lives here and nowhere in the cells, so a new cell gets it for free.

Internally a state is always a tuple of arrays (one per ``cell.state_names``); only the public
``hx``/``h_n`` of :meth:`Recurrent.forward` and :meth:`Recurrent.backward` take PyTorch's form.
What a model needs from a forward pass it asks the layer for (:meth:`Recurrent.state_at`,
:meth:`Recurrent.per_step`) instead of reading the cache's fields.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from ._checks import as_float_array, as_rng, check_dtype_arg, check_positive_int, check_shape
from .cells import get_cell
from .layers import check_dropout, dropout_forward

__all__ = ["Recurrent", "LSTM", "RecurrentCache", "LSTMStackCache"]


class RecurrentCache(NamedTuple):
    """Cache of :meth:`Recurrent.forward`.

    layers : list
        One cell cache per layer (the cell's own NamedTuple; read it through the layer's
        :meth:`~Recurrent.state_at` / :meth:`~Recurrent.per_step`, not field by field).
    dropout_masks : list
        The dropout mask applied to each layer's output (None where no dropout).
    batch_first : bool
        The input layout of the forward.
    signature : tuple
        (cell, input_size, hidden_size, num_layers, bias, dtype) of the layer that made it,
        so that :meth:`Recurrent.backward` refuses a cache from another layer.
    """

    layers: list
    dropout_masks: list
    batch_first: bool
    signature: tuple = ()


#: The name of the LSTM layer's cache before the layer became generic.
LSTMStackCache = RecurrentCache


class Recurrent:
    """A stack of recurrent layers of one cell type (PyTorch ``nn.LSTM``/``nn.GRU``/``nn.RNN``).

    Parameters
    ----------
    cell : str or Cell
        A registered cell name (``"lstm"``) or a cell object (:mod:`lstm_bptt.cells`).
    input_size : int
        D, features of the input.
    hidden_size : int
        H, hidden units per layer.
    num_layers : int
        L, stacked layers; layer l > 0 reads the output of layer l - 1.
    bias : bool
        Use ``bias_ih_l*`` and ``bias_hh_l*``.
    batch_first : bool
        Input and output are (B, T, .) instead of (T, B, .). States are (L, B, H) either
        way, as in PyTorch.
    dtype : float32 or float64
        Parameter dtype; inputs must have the same dtype and outputs keep it.
    rng : numpy Generator, int seed or None
        Source of all randomness (initialisation and dropout).
    dropout : float
        Dropout probability on the outputs of every layer except the last (as PyTorch);
        active only when ``forward(..., train=True)``. With ``num_layers == 1`` it has no
        effect, and a UserWarning says so (as PyTorch does).
    checkpoint_every : int or None
        Recomputation for long sequences (Chen et al. 2016), if the cell supports it: keep
        part of the cache and recompute the rest in the backward (bitwise the same gradients).
    **options
        Options of the cell constructor (when ``cell`` is a name) and init options of the
        cell (its ``init_option_names``, e.g. ``forget_bias`` for the LSTM).

    Attributes
    ----------
    cell : Cell
    params : dict
        ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (shapes from
        ``cell.param_shapes``), in PyTorch's order.

    Raises
    ------
    TypeError
        Non-integer sizes, non-float dtype, ``dropout`` not a real number, an unknown option.
    ValueError
        Non-positive sizes, dropout outside [0, 1), an unknown cell name, a bad init option.

    Warns
    -----
    UserWarning
        ``dropout > 0`` with ``num_layers == 1``.
    """

    def __init__(self, cell, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dtype=np.float64, rng=None,
                 dropout: float = 0.0, checkpoint_every: int | None = None, **options):
        init = {k: options.pop(k) for k in list(options)
                if not isinstance(cell, str) or k in _init_names(cell)}
        self.cell = get_cell(cell, **options)
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dtype = check_dtype_arg(dtype)
        self.dropout = check_dropout(dropout)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={self.dropout} and "
                "num_layers=1",
                UserWarning,
                stacklevel=_stacklevel(self),
            )
        self.init_options = self.cell.check_init_options(self.bias, **init)
        self.rng = as_rng(rng)
        self.checkpoint_every = checkpoint_every
        self.params: dict[str, np.ndarray] = {}
        for layer in range(self.num_layers):
            d_in = self.input_size if layer == 0 else self.hidden_size
            p = self.cell.init_params(d_in, self.hidden_size, self.bias, self.dtype, self.rng,
                                      **init)
            self.params.update({f"{name}_l{layer}": v for name, v in p.items()})

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._cell_repr()}{self.input_size}, {self.hidden_size}, "
            f"num_layers={self.num_layers}, bias={self.bias}, batch_first={self.batch_first}, "
            f"dtype={self.dtype.name})"
        )

    def _cell_repr(self) -> str:
        return f"{self.cell!r}, "

    # ------------------------------------------------------------------------------ helpers

    @property
    def state_names(self) -> tuple[str, ...]:
        """The cell's state names, e.g. ``("h", "c")``."""
        return self.cell.state_names

    def layer_params(self, layer: int) -> dict[str, np.ndarray]:
        """Layer ``layer``'s parameters keyed without the suffix (``weight_ih`` etc.)."""
        suffix = f"_l{layer}"
        return {k[: -len(suffix)]: v for k, v in self.params.items() if k.endswith(suffix)}

    def _signature(self) -> tuple:
        return (self.cell, self.input_size, self.hidden_size, self.num_layers, self.bias,
                self.dtype)

    def _check_state(self, name: str, s, B: int, size: int) -> np.ndarray:
        s = as_float_array(name, s, self.dtype)
        L = self.num_layers
        hint = ""
        if s.ndim == 3 and s.shape[0] == B and s.shape[1] == L and L != B:
            hint = "states are (num_layers, B, H) even when batch_first=True, as in PyTorch"
        elif s.ndim == 3 and s.shape[0] == L and s.shape[2] == size and s.shape[1] != B:
            hint = (
                f"the batch size of the input is {B}"
                + ("; did you mean batch_first=True?" if not self.batch_first else "")
            )
        check_shape(name, s, (L, B, size), "(num_layers, B, H)", hint)
        return s

    def _unpack_hx(self, hx, B: int, prefix: str, suffix: str):
        """PyTorch-form ``hx`` -> tuple of checked (L, B, S_k) arrays, or None."""
        if hx is None:
            return None
        names = [f"{prefix}{n}{suffix}" for n in self.state_names]
        if len(names) == 1:
            if isinstance(hx, tuple | list):
                raise TypeError(f"{prefix}hx: expected an array {names[0]} or None, got a "
                                f"{type(hx).__name__}")
            hx = (hx,)
        elif not (isinstance(hx, tuple | list) and len(hx) == len(names)):
            raise TypeError(f"{prefix}hx: expected a tuple ({', '.join(names)}) or None")
        sizes = self.cell.state_sizes(self.hidden_size)
        return tuple(self._check_state(n, s, B, size)
                     for n, s, size in zip(names, hx, sizes, strict=True))

    def _pack(self, states: tuple):
        """Internal state tuple -> PyTorch form: the tuple, or its single array."""
        return states[0] if len(states) == 1 else tuple(states)

    # ------------------------------------------------------------------------ forward, backward

    def forward(self, x, hx=None, *, train: bool = False):
        """Run all layers over the sequence.

        Parameters
        ----------
        x : ndarray (T, B, D), or (B, T, D) if ``batch_first``; dtype = ``self.dtype``
        hx : None (zeros), or the initial states as in PyTorch: a tuple ``(h_0, c_0)`` of
            (L, B, H) arrays for an LSTM, one (L, B, H) array ``h_0`` for a one-state cell
        train : bool
            Apply inter-layer dropout (if ``dropout > 0``), drawing masks from ``self.rng``.

        Returns
        -------
        output : ndarray (T, B, H), or (B, T, H) if ``batch_first``
            Hidden states of the last layer at every step.
        h_n : the final states of every layer, in the form of ``hx``
        cache : RecurrentCache
            For :meth:`backward`, :meth:`state_at` and :meth:`per_step`.

        Raises
        ------
        TypeError
            Wrong dtype (e.g. float32 input to a float64 model, or integer token ids: use an
            Embedding first); ``hx`` not of the cell's form.
        ValueError
            Wrong rank or sizes, with a hint when the batch_first layout looks swapped.
        """
        D = self.input_size
        x = as_float_array("x", x, self.dtype)
        layout = "(B, T, D)" if self.batch_first else "(T, B, D)"
        if x.ndim != 3:
            raise ValueError(
                f"x: expected a 3-D array {layout} with D = input_size = {D}, got shape {x.shape}"
            )
        if x.shape[2] != D:
            raise ValueError(
                f"x: expected shape {layout} with D = input_size = {D}, got {x.shape}"
            )
        if self.batch_first:
            x = x.transpose(1, 0, 2)  # (T, B, D)
        T, B, _ = x.shape
        L = self.num_layers
        state0 = self._unpack_hx(hx, B, "", "_0")
        caches, masks, finals = [], [], []
        inp = x
        for layer in range(L):
            out, state_n, cache = self.cell.forward(
                inp,
                None if state0 is None else tuple(s[layer] for s in state0),
                self.layer_params(layer),
                checkpoint_every=self.checkpoint_every,
            )
            caches.append(cache)
            finals.append(state_n)
            mask = None
            if layer < L - 1:
                # between layers only, as PyTorch (Zaremba, Sutskever & Vinyals 2014)
                out, mask = dropout_forward(out, self.dropout, self.rng, train)
            masks.append(mask)
            inp = out
        output = inp.transpose(1, 0, 2) if self.batch_first else inp
        h_n = tuple(np.stack(s) for s in zip(*finals, strict=True))
        return output, self._pack(h_n), RecurrentCache(caches, masks, self.batch_first,
                                                       self._signature())

    def _check_cache(self, cache) -> None:
        """Refuse a cache that :meth:`forward` of this layer cannot have produced."""
        if not isinstance(cache, RecurrentCache):
            raise TypeError(
                f"cache: expected the RecurrentCache returned by {type(self).__name__}.forward, "
                f"got {type(cache).__name__}"
            )
        mine = self._signature()
        if cache.signature == mine:
            return
        names = ("cell", "input_size", "hidden_size", "num_layers", "bias", "dtype")
        for name, theirs, ours in zip(names, cache.signature, mine, strict=False):
            if theirs != ours:
                def fmt(v):
                    return v.name if isinstance(v, np.dtype) else str(v)

                raise ValueError(
                    f"cache: comes from a layer with {name} = {fmt(theirs)}, this layer has "
                    f"{name} = {fmt(ours)}"
                )
        raise ValueError("cache: comes from another layer (no signature)")

    def backward(self, doutput, cache: RecurrentCache, dhx=None, *, need_dx: bool = True):
        """Backpropagation through time through all layers.

        Parameters
        ----------
        doutput : ndarray (T, B, H), or (B, T, H) if ``batch_first``; or None for zero
            dL/d output.
        cache : RecurrentCache
            From :meth:`forward`; not modified.
        dhx : gradient at the final states in the form of ``hx`` (``(dh_n, dc_n)`` for an
            LSTM), each (L, B, H), or None
            From a later chunk or a head on h_n.
        need_dx : bool
            Compute the gradient of the input (False: ``dx`` is None and the first layer's
            input GEMM may be skipped, e.g. for one-hot inputs).

        Returns
        -------
        dx : ndarray shaped like the input x, or None if not ``need_dx``
        dh_0 : gradient at the initial states, in the form of ``hx``
        grads : dict keyed exactly like ``params``

        Raises
        ------
        TypeError
            ``cache`` is not a :class:`RecurrentCache`; gradients of the wrong dtype.
        ValueError
            ``cache`` comes from a layer with another configuration; gradients of the wrong
            shape.
        """
        self._check_cache(cache)
        layers = cache.layers
        L = len(layers)
        T, B = self.cell.cache_dims(layers[0])
        H = self.hidden_size
        if doutput is not None:
            doutput = as_float_array("doutput", doutput, self.dtype)
            want = (B, T, H) if cache.batch_first else (T, B, H)
            check_shape("doutput", doutput, want,
                        "(B, T, H)" if cache.batch_first else "(T, B, H)")
            if cache.batch_first:
                doutput = doutput.transpose(1, 0, 2)
        dstate_n = self._unpack_hx(dhx, B, "d", "_n")
        sizes = self.cell.state_sizes(H)
        grads: dict[str, np.ndarray] = {}
        dstate_0 = tuple(np.empty((L, B, s), self.dtype) for s in sizes)
        dout = doutput
        for layer in reversed(range(L)):
            if cache.dropout_masks[layer] is not None and dout is not None:
                dout = dout * cache.dropout_masks[layer]
            dx, ds0, g = self.cell.backward(
                dout, layers[layer],
                None if dstate_n is None else tuple(s[layer] for s in dstate_n),
                need_dx=need_dx or layer > 0,
            )
            for buf, d in zip(dstate_0, ds0, strict=True):
                buf[layer] = d
            for k, v in g.items():
                grads[f"{k}_l{layer}"] = v
            dout = dx
        if cache.batch_first and dout is not None:
            dout = dout.transpose(1, 0, 2)
        return dout, self._pack(dstate_0), {k: grads[k] for k in self.params}

    # ------------------------------------------------------------------- reading a forward pass

    def state_at(self, cache: RecurrentCache, t: int) -> tuple[np.ndarray, ...]:
        """The state of every layer after step ``t`` of the forward that made ``cache``.

        Parameters
        ----------
        cache : RecurrentCache
        t : int
            0 <= t <= T: 0 is the initial state, T the final one (what truncated BPTT carries
            into the next window when the windows overlap).

        Returns
        -------
        tuple of ndarray (L, B, S_k), one per ``state_names`` (always a tuple, also for a
        one-state cell), fresh arrays.

        Raises
        ------
        TypeError, ValueError
            A cache of another layer; ``t`` not an int in [0, T].
        """
        self._check_cache(cache)
        T, _ = self.cell.cache_dims(cache.layers[0])
        if isinstance(t, bool) or not isinstance(t, int | np.integer):
            raise TypeError(f"t: expected an int, got {type(t).__name__}")
        if not 0 <= t <= T:
            raise ValueError(f"t: expected 0 <= t <= T = {T}, got {t}")
        per_layer = [self.cell.state_at(lc, int(t)) for lc in cache.layers]
        return tuple(np.stack(s) for s in zip(*per_layer, strict=True))

    def per_step(self, cache: RecurrentCache, layer: int = -1) -> dict[str, np.ndarray]:
        """Per-step values of one layer: the cell's :meth:`~lstm_bptt.cells.base.Cell.per_step`.

        Keys: ``"h"`` and the other states after each step, and the gates in PyTorch's public
        order (LSTM: ``h, c, i, f, g, o``), each (T, B, H), or (B, T, H) if the forward was
        ``batch_first``. Read-only views where the cache holds them.

        Parameters
        ----------
        cache : RecurrentCache
        layer : int
            Which layer (negative counts from the last, default the last).
        """
        self._check_cache(cache)
        if isinstance(layer, bool) or not isinstance(layer, int | np.integer):
            raise TypeError(f"layer: expected an int, got {type(layer).__name__}")
        L = self.num_layers
        if not -L <= layer < L:
            raise ValueError(f"layer: expected -{L} <= layer < {L}, got {layer}")
        values = self.cell.per_step(cache.layers[layer])
        if cache.batch_first:
            values = {k: v.transpose(1, 0, 2) for k, v in values.items()}
        return values


def _init_names(cell_name: str) -> tuple[str, ...]:
    from .cells import CELLS

    cls = CELLS.get(cell_name)
    return () if cls is None else cls.init_option_names


def _stacklevel(layer) -> int:
    """Warnings point at the user's call: one frame deeper for each subclass __init__."""
    return 3 if type(layer) is not Recurrent else 2


class LSTM(Recurrent):
    """Multi-layer LSTM with PyTorch ``nn.LSTM`` parameter names, shapes and gate order.

    ``Recurrent("lstm", ...)`` with the LSTM's init options as named arguments; the math is in
    :mod:`lstm_bptt.cells.lstm`. ``hx`` is a tuple ``(h_0, c_0)`` of (L, B, H) arrays.

    Parameters
    ----------
    input_size, hidden_size, num_layers, bias, batch_first, dtype, rng, dropout,
    checkpoint_every :
        As for :class:`Recurrent`.
    forget_bias : float or None
        Forget-gate bias (``bias_ih`` block set to it, ``bias_hh`` block to 0; Gers et al.
        2000; 1.0 recommended by Jozefowicz et al. 2015, 3 to 5 for long lags).
    input_bias : float or None
        The same for the input gate (negative values keep the cells closed at first).
    recurrent_init : {"uniform", "orthogonal"}
        Orthogonal (H, H) gate blocks of ``weight_hh`` (Saxe et al. 2014), or PyTorch's uniform.

    Attributes
    ----------
    params : dict
        ``weight_ih_l{k}`` (4H, D or H), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}`` and
        ``bias_hh_l{k}`` (4H,), gates stacked i, f, g, o.

    Raises
    ------
    TypeError, ValueError
        As :class:`Recurrent`; ``forget_bias``/``input_bias`` not a finite real number or given
        with ``bias=False``; an unknown ``recurrent_init``.

    References
    ----------
    PyTorch ``torch.nn.LSTM`` (parameter layout and default initialisation).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dtype=np.float64, rng=None, dropout: float = 0.0,
                 forget_bias: float | None = None, recurrent_init: str = "uniform",
                 checkpoint_every: int | None = None, input_bias: float | None = None):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias=bias,
                         batch_first=batch_first, dtype=dtype, rng=rng, dropout=dropout,
                         checkpoint_every=checkpoint_every, forget_bias=forget_bias,
                         input_bias=input_bias, recurrent_init=recurrent_init)

    def _cell_repr(self) -> str:
        return ""
