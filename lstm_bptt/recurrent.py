"""The recurrent layer, written once for every cell type: ``Recurrent`` and ``LSTM``.

:class:`Recurrent` stacks ``num_layers`` layers of one cell (:mod:`lstm_bptt.cells`), with
PyTorch's conventions: parameters ``weight_ih_l{k}`` etc., time-major (T, B, D) data unless
``batch_first``, states (num_layers, B, H) either way, dropout between layers only, and ``hx``
in the cell's form (``(h_0, c_0)`` for an LSTM, one array ``h_0`` for a one-state cell),
``bidirectional`` layers and ``lengths`` (variable-length sequences in a padded batch). All of
this lives here and nowhere in the cells, so a new cell gets it for free.

How ``lengths`` and ``bidirectional`` are done (once, for every cell), with
``pack_padded_sequence`` semantics:

* every row runs left-aligned from step 0 up to max(lengths) (steps beyond it are not run at
  all); the layer's input is zeroed at padded steps (t >= l_b), the outputs there are set to 0
  and their gradients dropped, so padding changes nothing and receives no gradient;
* each row's final state is its state after its last valid step l_b - 1: the cell is told
  each row's final step (``last``, see :meth:`lstm_bptt.cells.base.Cell.forward`), returns the
  state there and injects dh_n, dc_n there in its backward; a cell whose only state is its
  output h needs none of this (h_n is read off the output, dh_n added to the output gradient);
* the reverse direction is the same cell run on each row's valid prefix reversed
  (x[l_b - 1], ..., x[0], then the padding), made by one gather; its outputs are put back in
  time order by the same gather (it is its own inverse), and the two directions' outputs are
  concatenated at every step. So the reverse direction starts at each row's last valid step.

Exact (the padded steps contribute exact zeros to every gradient) and cheap: the extra work is
one gather of the input and output per reverse direction, and a mask multiply. A padded batch
still costs max(lengths) * B steps of arithmetic where a packed sequence costs sum(lengths):
sort sequences into buckets of similar length if that matters (benchmarks/bench_sequences.py).

Internally a state is always a tuple of arrays (one per ``cell.state_names``); only the public
``hx``/``h_n`` of :meth:`Recurrent.forward` and :meth:`Recurrent.backward` take PyTorch's form.
What a model needs from a forward pass it asks the layer for (:meth:`Recurrent.state_at`,
:meth:`Recurrent.per_step`) instead of reading the cache's fields.
"""

from __future__ import annotations

import numbers
import warnings
from typing import NamedTuple

import numpy as np

from ._checks import (
    as_input_array,
    as_rng,
    check_bool,
    check_dtype_arg,
    check_positive_int,
    check_shape,
)
from .cells import get_cell
from .export import StateDictMixin
from .layers import check_dropout, dropout_forward

__all__ = ["Recurrent", "LSTM", "GRU", "RNN", "RecurrentCache", "LSTMStackCache"]


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
        (cell, input_size, hidden_size, num_layers, bias, dtype, bidirectional) of the layer
        that made it, so that :meth:`Recurrent.backward` refuses a cache from another layer.
    lengths : (B,) intp or None
        The sequence lengths of the forward (None: all T).
    steps : int
        T of the forward's input (the cells ran max(lengths) steps of it).
    learned_state0 : bool
        Whether the forward started from the learned initial state (``learn_initial_state``
        and no ``hx``), so that the backward returns its gradient.

    With ``bidirectional`` the cell caches are ordered layer by layer, forward direction
    first: ``layers[2 * l + d]``.
    """

    layers: list
    dropout_masks: list
    batch_first: bool
    signature: tuple = ()
    lengths: np.ndarray | None = None
    steps: int = 0
    learned_state0: bool = False


#: The name of the LSTM layer's cache before the layer became generic.
LSTMStackCache = RecurrentCache


class Recurrent(StateDictMixin):
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
    bidirectional : bool
        Each layer also runs a second copy of the cell (parameters ``*_reverse``) over each
        sequence backwards; the output concatenates both directions at every step (2H
        features), layer l > 0 reads those 2H features, and the states are
        (L * 2, B, H), ordered layer by layer with the forward direction first (PyTorch's
        layout).
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
    learn_initial_state : bool
        Learn the initial state: parameters ``initial_{s}_l{k}`` (S_k,) for every state s of
        the cell (``initial_h_l0``, ``initial_c_l0`` for an LSTM; ``..._reverse`` for the
        reverse direction), initialised to 0 (so the layer starts as one without them). A
        forward without ``hx`` starts every row from them (:meth:`initial_state`) and the
        backward returns their gradients (the sum over rows of dL/d state_0); with ``hx``
        given they are not used and their gradients are 0.
    **options
        Options of the cell constructor (when ``cell`` is a name) and init options of the
        cell (its ``init_option_names``, e.g. ``forget_bias`` for the LSTM).

    Attributes
    ----------
    cell : Cell
    params : dict
        ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (shapes from
        ``cell.param_shapes``), then the same with ``_reverse`` if bidirectional, layer by
        layer: PyTorch's names and order; then the ``initial_*`` states if
        ``learn_initial_state``.
    num_directions : int
        2 if bidirectional, else 1.
    output_size : int
        Features of the output: num_directions * (the size of the cell's h).

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
                 dropout: float = 0.0, checkpoint_every: int | None = None,
                 bidirectional: bool = False, learn_initial_state: bool = False, **options):
        init = {k: options.pop(k) for k in list(options)
                if not isinstance(cell, str) or k in _init_names(cell)}
        self.cell = get_cell(cell, **options)
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.bias = check_bool("bias", bias)
        self.batch_first = check_bool("batch_first", batch_first)
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
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        self.output_size = self.num_directions * self.cell.state_sizes(self.hidden_size)[0]
        self.params: dict[str, np.ndarray] = {}
        self._param_names: dict[tuple[int, int], list[str]] = {}
        for layer in range(self.num_layers):
            d_in = self.input_size if layer == 0 else self.output_size
            for d in range(self.num_directions):
                p = self.cell.init_params(d_in, self.hidden_size, self.bias, self.dtype,
                                          self.rng, **init)
                self._param_names[layer, d] = list(p)
                self.params.update({f"{name}{_suffix(layer, d)}": v for name, v in p.items()})
        self.learn_initial_state = check_bool("learn_initial_state", learn_initial_state)
        if self.learn_initial_state:  # after all cell parameters: their draws are unchanged
            sizes = self.cell.state_sizes(self.hidden_size)
            for layer in range(self.num_layers):
                for d in range(self.num_directions):
                    for name, size in zip(self.state_names, sizes, strict=True):
                        self.params[f"initial_{name}{_suffix(layer, d)}"] = np.zeros(
                            size, self.dtype)

    def __repr__(self) -> str:
        bidir = ", bidirectional=True" if self.bidirectional else ""
        return (
            f"{type(self).__name__}({self._cell_repr()}{self.input_size}, {self.hidden_size}, "
            f"num_layers={self.num_layers}, bias={self.bias}, batch_first={self.batch_first}"
            f"{bidir}, dtype={self.dtype.name})"
        )

    def _cell_repr(self) -> str:
        return f"{self.cell!r}, "

    # ------------------------------------------------------------------------------ helpers

    @property
    def state_names(self) -> tuple[str, ...]:
        """The cell's state names, e.g. ``("h", "c")``."""
        return self.cell.state_names

    def layer_params(self, layer: int, direction: int = 0) -> dict[str, np.ndarray]:
        """Layer ``layer``'s parameters keyed without the suffix (``weight_ih`` etc.); those of
        the reverse direction (``*_reverse``) with ``direction=1``."""
        return {name: self.params[f"{name}{_suffix(layer, direction)}"]
                for name in self._param_names[layer, direction]}

    def _signature(self) -> tuple:
        return (self.cell, self.input_size, self.hidden_size, self.num_layers, self.bias,
                self.dtype, self.bidirectional)

    def _check_state(self, name: str, s, B: int, size: int, T: int | None = None) -> np.ndarray:
        # warnings point at the call of forward/backward: under this method, the generator
        # and _unpack_hx
        s = as_input_array(name, s, self.dtype, stacklevel=6)
        L = self.num_layers * self.num_directions
        hint = ""
        if s.ndim == 3 and s.shape[0] == B and s.shape[1] == L and L != B:
            hint = "states are (num_layers, B, H) even when batch_first=True, as in PyTorch"
        elif s.ndim == 3 and s.shape[0] == L and s.shape[2] == size and s.shape[1] != B:
            # batch-first data in a time-major layer: the state's batch is then x's axis 0 (T)
            swapped = not self.batch_first and s.shape[1] == T
            hint = (
                f"the batch size of the input is {B}"
                + ("; did you mean batch_first=True?" if swapped else "")
            )
        what = "(num_layers * 2, B, H)" if self.bidirectional else "(num_layers, B, H)"
        if size != self.hidden_size:
            what = what.replace("H)", "P)")
        check_shape(name, s, (L, B, size), what, hint)
        return s

    def _unpack_hx(self, hx, B: int, prefix: str, suffix: str, T: int | None = None):
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
        return tuple(self._check_state(n, s, B, size, T)
                     for n, s, size in zip(names, hx, sizes, strict=True))

    def _pack(self, states: tuple):
        """Internal state tuple -> PyTorch form: the tuple, or its single array."""
        return states[0] if len(states) == 1 else tuple(states)

    def pack_state(self, state):
        """A state tuple (one array per ``state_names``) -> this layer's ``hx`` form.

        ``(h, c)`` stays a tuple for an LSTM; ``(h,)`` becomes the array ``h`` for a one-state
        cell. None stays None. (Models and the trainer carry states as tuples of any length.)
        """
        if state is None:
            return None
        state = tuple(state)
        if len(state) != len(self.state_names):
            raise TypeError(f"state: expected a tuple ({', '.join(self.state_names)}), got "
                            f"{len(state)} array(s)")
        return self._pack(state)

    def unpack_state(self, hx) -> tuple:
        """This layer's ``hx``/``h_n`` form -> a state tuple (inverse of :meth:`pack_state`)."""
        if hx is None:
            return None
        return (hx,) if len(self.state_names) == 1 else tuple(hx)

    # ------------------------------------------------------------------------ forward, backward

    def __call__(self, x, hx=None, *, lengths=None, train: bool = False):
        """``layer(x, hx)`` is :meth:`forward` (as ``lstm(x)`` in PyTorch)."""
        return self.forward(x, hx, lengths=lengths, train=train)

    def forward(self, x, hx=None, *, lengths=None, train: bool = False, _input_weights=None):
        """Run all layers over the sequence.

        Parameters
        ----------
        x : ndarray (T, B, D), or (B, T, D) if ``batch_first``; dtype = ``self.dtype``
        hx : None (zeros), or the initial states as in PyTorch: a tuple ``(h_0, c_0)`` of
            (L * dirs, B, H) arrays for an LSTM (h_0 (L * dirs, B, P) with a projection), one
            (L * dirs, B, H) array ``h_0`` for a one-state cell (dirs = 2 if bidirectional)
        lengths : integer array_like (B,), or None
            Valid length l_b of each sequence, 1 <= l_b <= T, in any order (PyTorch's
            ``pack_padded_sequence(..., enforce_sorted=False)``): steps t >= l_b of row b are
            padding. They do not change the state, their output is 0 and they get no gradient;
            the final states are each row's states after its step l_b - 1, and the reverse
            direction of a bidirectional layer starts at step l_b - 1. None: all T.
        train : bool
            Apply inter-layer dropout (if ``dropout > 0``) and the cell's own (the LSTM's
            ``recurrent_dropout``/``input_dropout``), drawing masks from ``self.rng``.
        _input_weights : list of ndarray (G, D'), one per direction, or None
            Internal (the models' folded embedding, :class:`lstm_bptt.models.CharLM`): the
            first layer's ``weight_ih`` replaced by these, x then has D' features, and the
            gradients :meth:`backward` returns under ``weight_ih_l0*`` are (G, D') as well.

        Returns
        -------
        output : ndarray (T, B, F), or (B, T, F) if ``batch_first``; F = ``output_size``
            Hidden states of the last layer at every step (both directions concatenated,
            forward first, if bidirectional); 0 at padded steps.
        h_n : the final states of every layer and direction, in the form of ``hx``
        cache : RecurrentCache
            For :meth:`backward`, :meth:`state_at` and :meth:`per_step`.

        Raises
        ------
        TypeError
            Wrong dtype (e.g. float32 input to a float64 model, or integer token ids: use an
            Embedding first); ``hx`` not of the cell's form; ``lengths`` not integers.
        ValueError
            Wrong rank or sizes, with a hint when the batch_first layout looks swapped;
            ``lengths`` of the wrong shape or outside [1, T].
        """
        D = self.input_size if _input_weights is None else _input_weights[0].shape[1]
        train = check_bool("train", train)
        x = as_input_array("x", x, self.dtype)
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
        L, dirs = self.num_layers, self.num_directions
        state0 = self._unpack_hx(hx, B, "", "_0", T)
        learned = state0 is None and self.learn_initial_state
        if learned:  # every row starts from the learned initial state of its layer
            state0 = self.initial_state(B)
        lengths = check_lengths(lengths, T, B)
        steps = _Steps(lengths, T, dirs)
        if lengths is not None:
            if not self.cell.supports_last and len(self.state_names) > 1:
                raise ValueError(f"lengths: the {self.cell!r} cell does not support lengths "
                                 "(it has several states and no `last` in its forward)")
            x = steps.zero_padding(x[: steps.n])  # padding never enters a cell
        caches, masks, finals = [], [], []
        inp = x
        for layer in range(L):
            outs = []
            for d in range(dirs):
                i = layer * dirs + d
                params = self.layer_params(layer, d)
                if layer == 0 and _input_weights is not None:
                    params["weight_ih"] = _input_weights[d]
                out, state_n, cache = self._run_cell(
                    steps.order(inp, d),
                    None if state0 is None else tuple(s[i] for s in state0),
                    params, steps, train)
                outs.append(steps.order(out, d))
                caches.append(cache)
                finals.append(state_n)
            out = outs[0] if dirs == 1 else np.concatenate(outs, axis=2)  # (n, B, F)
            if lengths is not None:
                out = steps.zero_padding(out, owned=dirs == 2)  # 0 at padded steps
            mask = None
            if layer < L - 1:
                # between layers only, as PyTorch (Zaremba, Sutskever & Vinyals 2014)
                out, mask = dropout_forward(out, self.dropout, self.rng, train)
            masks.append(mask)
            inp = out
        inp = steps.pad(inp)
        output = inp.transpose(1, 0, 2) if self.batch_first else inp
        h_n = tuple(np.stack(s) for s in zip(*finals, strict=True))
        return output, self._pack(h_n), RecurrentCache(caches, masks, self.batch_first,
                                                       self._signature(), lengths, T, learned)

    def initial_state(self, batch: int) -> tuple:
        """The learned initial state (``learn_initial_state``) broadcast to ``batch`` rows: a
        tuple of (L * dirs, B, S_k) arrays, one per ``state_names``.

        Raises
        ------
        ValueError
            The layer was built without ``learn_initial_state``.
        """
        if not self.learn_initial_state:
            raise ValueError("initial_state: this layer has no learned initial state (build it "
                             "with learn_initial_state=True)")
        batch = check_positive_int("batch", batch)
        names = [_suffix(layer, d) for layer in range(self.num_layers)
                 for d in range(self.num_directions)]
        return tuple(
            np.stack([np.broadcast_to(self.params[f"initial_{s}{sfx}"], (batch, size))
                      for sfx in names])
            for s, size in zip(self.state_names, self.cell.state_sizes(self.hidden_size),
                               strict=True))

    def _run_cell(self, x, state0, params, steps, train=False):
        """One direction of one layer: the cell's forward, told each row's final step (and
        given the layer's rng and ``train`` if it draws random numbers)."""
        extra = {"rng": self.rng, "train": train} if self.cell.stochastic else {}
        if steps.last is None or self.cell.supports_last:
            kw = {} if steps.last is None else {"last": steps.last}
            return self.cell.forward(x, state0, params, checkpoint_every=self.checkpoint_every,
                                     **kw, **extra)
        # a one-state cell: h_n is the output at each row's final step
        out, _, cache = self.cell.forward(x, state0, params,
                                          checkpoint_every=self.checkpoint_every, **extra)
        return out, (out[steps.last, np.arange(x.shape[1])],), cache

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
        names = ("cell", "input_size", "hidden_size", "num_layers", "bias", "dtype",
                 "bidirectional")
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
        """Backpropagation through time through all layers (and both directions).

        Parameters
        ----------
        doutput : ndarray (T, B, F), or (B, T, F) if ``batch_first``; or None for zero
            dL/d output (F = ``output_size``). Entries at padded steps are ignored (the
            output there is the constant 0). An array of the other float precision is
            converted to ``self.dtype`` with a ``UserWarning``, as ``x`` in :meth:`forward`
            (so are the arrays of ``dhx``).
        cache : RecurrentCache
            From :meth:`forward`; not modified.
        dhx : gradient at the final states in the form of ``hx`` (``(dh_n, dc_n)`` for an
            LSTM), each (L * dirs, B, H), or None
            From a later chunk or a head on h_n. With ``lengths`` it is the gradient of each
            row's state after its last valid step, and enters there.
        need_dx : bool
            Compute the gradient of the input (False: ``dx`` is None and the first layer's
            input GEMM may be skipped, e.g. for one-hot inputs).

        Returns
        -------
        dx : ndarray shaped like the input x (0 at padded steps), or None if not ``need_dx``
        dh_0 : gradient at the initial states, in the form of ``hx``
        grads : dict keyed exactly like ``params``

        Raises
        ------
        TypeError
            ``cache`` is not a :class:`RecurrentCache`; gradients that are not float arrays
            (e.g. integer).
        ValueError
            ``cache`` comes from a layer with another configuration; gradients of the wrong
            shape, or holding NaN or inf.

        Warns
        -----
        UserWarning
            ``doutput`` or ``dhx`` of the other float precision, converted.
        """
        self._check_cache(cache)
        layers = cache.layers
        L, dirs = self.num_layers, self.num_directions
        _, B = self.cell.cache_dims(layers[0])
        T = cache.steps
        F = self.output_size
        steps = _Steps(cache.lengths, T, dirs)
        if doutput is not None:
            doutput = as_input_array("doutput", doutput, self.dtype)
            want = (B, T, F) if cache.batch_first else (T, B, F)
            check_shape("doutput", doutput, want,
                        "(B, T, H)" if cache.batch_first else "(T, B, H)")
            if cache.batch_first:
                doutput = doutput.transpose(1, 0, 2)
            if cache.lengths is not None:
                # the padded outputs are constants
                doutput = steps.zero_padding(doutput[: steps.n])
        dstate_n = self._unpack_hx(dhx, B, "d", "_n")
        sizes = self.cell.state_sizes(self.hidden_size)
        P = sizes[0]
        grads: dict[str, np.ndarray] = {}
        dstate_0 = tuple(np.empty((L * dirs, B, s), self.dtype) for s in sizes)
        dout = doutput
        for layer in reversed(range(L)):
            if cache.dropout_masks[layer] is not None and dout is not None:
                dout = dout * cache.dropout_masks[layer]
            dx = None
            for d in range(dirs):
                i = layer * dirs + d
                dd = None if dout is None else steps.order(dout[:, :, d * P : (d + 1) * P], d)
                dsn = None if dstate_n is None else tuple(s[i] for s in dstate_n)
                if steps.last is not None and not self.cell.supports_last and dsn is not None:
                    # a one-state cell: dh_n joins the output gradient at the final step
                    dd = np.zeros((steps.n, B, P), self.dtype) if dd is None else dd.copy()
                    dd[steps.last, np.arange(B)] += dsn[0]
                    dsn = None
                dxd, ds0, g = self.cell.backward(dd, layers[i], dsn,
                                                 need_dx=need_dx or layer > 0)
                for buf, v in zip(dstate_0, ds0, strict=True):
                    buf[i] = v
                for k, v in g.items():
                    grads[f"{k}{_suffix(layer, d)}"] = v
                if dxd is not None:
                    dxd = steps.order(dxd, d)
                    dx = dxd if dx is None else dx + dxd
            dout = dx
        if dout is not None:
            if cache.lengths is not None:
                # dx is exactly 0 at padded steps already: no gradient reaches them
                dout = steps.pad(dout)
            if cache.batch_first:
                dout = dout.transpose(1, 0, 2)
        if self.learn_initial_state:  # the learned state was broadcast over the rows
            for j, name in enumerate(self.state_names):
                for layer in range(L):
                    for d in range(dirs):
                        i, key = layer * dirs + d, f"initial_{name}{_suffix(layer, d)}"
                        grads[key] = (dstate_0[j][i].sum(axis=0) if cache.learned_state0
                                      else np.zeros_like(self.params[key]))
        return dout, self._pack(dstate_0), {k: grads[k] for k in self.params}

    # ------------------------------------------------------------------- reading a forward pass

    def state_at(self, cache: RecurrentCache, t: int) -> tuple[np.ndarray, ...]:
        """The state of every layer after step ``t`` of the forward that made ``cache``.

        Parameters
        ----------
        cache : RecurrentCache
        t : int
            0 <= t <= T: 0 is the initial state, T the final one (what truncated BPTT carries
            into the next window when the windows overlap). With ``lengths``, row b's state
            after step min(t, l_b) (padding does not change the state).

        Returns
        -------
        tuple of ndarray (L, B, S_k), one per ``state_names`` (always a tuple, also for a
        one-state cell), fresh arrays.

        Raises
        ------
        TypeError, ValueError
            A cache of another layer; ``t`` not an int in [0, T]; a bidirectional layer and
            t < T (its reverse direction has no state "after step t": it reads the future).
        """
        self._check_cache(cache)
        T = cache.steps
        if isinstance(t, bool) or not isinstance(t, int | np.integer):
            raise TypeError(f"t: expected an int, got {type(t).__name__}")
        if not 0 <= t <= T:
            raise ValueError(f"t: expected 0 <= t <= T = {T}, got {t}")
        t = int(t)
        if self.bidirectional and t < T:
            raise ValueError(f"t: a bidirectional layer has a state only at t = T = {T} (the "
                             f"reverse direction reads the steps after t), got {t}")
        if self.bidirectional or (cache.lengths is not None and t >= int(cache.lengths.max())):
            # the final states, one per row's last valid step (and the reverse directions')
            per_layer = [self._final_state(lc, cache.lengths) for lc in cache.layers]
        elif cache.lengths is None:
            per_layer = [self.cell.state_at(lc, t) for lc in cache.layers]
        else:  # row b: after step min(t, l_b)
            upto = np.minimum(t, cache.lengths)
            per_layer = []
            for lc in cache.layers:
                out = [np.empty((len(upto), s), self.dtype)
                       for s in self.cell.state_sizes(self.hidden_size)]
                for u in np.unique(upto):
                    rows = upto == u
                    for buf, v in zip(out, self.cell.state_at(lc, int(u)), strict=True):
                        buf[rows] = v[rows]
                per_layer.append(tuple(out))
        return tuple(np.stack(s) for s in zip(*per_layer, strict=True))

    def _final_state(self, layer_cache, lengths):
        """The state tuple after each row's last valid step (length l_b, or all of them)."""
        n, B = self.cell.cache_dims(layer_cache)
        if lengths is None:
            return tuple(np.array(v) for v in self.cell.state_at(layer_cache, n))
        out = [np.empty((B, s), self.dtype) for s in self.cell.state_sizes(self.hidden_size)]
        for u in np.unique(lengths):
            rows = lengths == u
            for buf, v in zip(out, self.cell.state_at(layer_cache, int(u)), strict=True):
                buf[rows] = v[rows]
        return tuple(out)

    def per_step(self, cache: RecurrentCache, layer: int = -1,
                 direction: int = 0) -> dict[str, np.ndarray]:
        """Per-step values of one layer: the cell's :meth:`~lstm_bptt.cells.base.Cell.per_step`.

        Keys: ``"h"`` and the other states after each step, and the gates in PyTorch's public
        order (LSTM: ``h, c, i, f, g, o``), each (T, B, .), or (B, T, .) if the forward was
        ``batch_first``. Read-only views where the cache holds them. For the reverse direction
        (``direction=1``) the values are put back in time order (the reverse direction's value
        at step t is the one it computed on reading x_t); with ``lengths`` they are 0 at the
        padded steps.

        Parameters
        ----------
        cache : RecurrentCache
        layer : int
            Which layer (negative counts from the last, default the last).
        direction : int
            0 (forward) or 1 (reverse, for a bidirectional layer).
        """
        self._check_cache(cache)
        if isinstance(layer, bool) or not isinstance(layer, int | np.integer):
            raise TypeError(f"layer: expected an int, got {type(layer).__name__}")
        L = self.num_layers
        if not -L <= layer < L:
            raise ValueError(f"layer: expected -{L} <= layer < {L}, got {layer}")
        if direction not in range(self.num_directions):
            raise ValueError(f"direction: expected 0 or {self.num_directions - 1}, got "
                             f"{direction!r}")
        values = self.cell.per_step(cache.layers[(layer % L) * self.num_directions + direction])
        if self.bidirectional or cache.lengths is not None:
            steps = _Steps(cache.lengths, cache.steps, self.num_directions)
            values = {k: steps.order(v, direction) for k, v in values.items()}
            if cache.lengths is not None:
                values = {k: steps.pad(steps.zero_padding(v)) for k, v in values.items()}
        if cache.batch_first:
            values = {k: v.transpose(1, 0, 2) for k, v in values.items()}
        return values


def check_lengths(lengths, T: int, B: int):
    """``lengths`` of :meth:`Recurrent.forward`: None, or (B,) integers in [1, T] (as intp).

    Raises
    ------
    TypeError
        Not an integer array (floats are refused even when whole, as are booleans).
    ValueError
        Not of shape (B,), or a value outside [1, T] (the message names the first one).
    """
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected an integer array of shape ({B},), got "
                        f"{'dtype ' + str(arr.dtype) if arr.size else 'an empty array'}")
    if arr.shape != (B,):
        raise ValueError(f"lengths: expected shape ({B},) (one length per sequence), got "
                         f"{arr.shape}")
    bad = (arr < 1) | (arr > T)
    if bad.any():
        b = int(np.flatnonzero(bad)[0])
        raise ValueError(f"lengths: expected values in [1, T] = [1, {T}], got {arr[b]} at "
                         f"index {b}")
    return arr.astype(np.intp)


class _Steps:
    """Time bookkeeping of one forward with ``lengths`` and/or a reverse direction.

    ``n`` = max(lengths) (the steps the cells run), ``last`` = lengths - 1 (each row's final
    step; None without lengths), ``padded`` (n, B) bool (None when no step is padded),
    ``rev`` (n, B) the time index that reverses each row's valid prefix and leaves its
    padding in place (an involution).
    """

    def __init__(self, lengths, T: int, dirs: int):
        self.T = T
        if lengths is None:
            self.n, self.last, self.padded, self.rev = T, None, None, None
            return
        self.n = int(lengths.max())
        self.last = lengths - 1
        t = np.arange(self.n)[:, None]
        valid = t < lengths[None, :]  # (n, B)
        self.padded = None if valid.all() else ~valid
        self.rev = np.where(valid, self.last[None, :] - t, t) if dirs == 2 else None
        self.cols = np.arange(len(lengths))[None, :]

    def order(self, a, direction: int):
        """a (n, B, .) in the time order of ``direction``: as is for the forward direction,
        each row's valid prefix reversed for the reverse one (a view without lengths)."""
        if direction == 0:
            return a
        if self.rev is None:
            return a[::-1]
        return a[self.rev, self.cols]

    def zero_padding(self, a, owned: bool = False):
        """a (n, B, .) with the padded steps set to 0: in place if ``owned`` (a fresh array of
        the layer's), else in a copy; ``a`` itself when no step is padded."""
        if self.padded is None:
            return a
        if not owned:
            a = a.copy()
        a[self.padded] = 0
        return a

    def pad(self, a):
        """a (n, B, .) extended with zeros to T steps (a itself if n = T)."""
        if self.n == self.T:
            return a
        out = np.zeros((self.T, *a.shape[1:]), a.dtype)
        out[: self.n] = a
        return out


def _suffix(layer: int, direction: int) -> str:
    """``_l{layer}``, plus ``_reverse`` for the reverse direction (PyTorch's names)."""
    return f"_l{layer}" + ("_reverse" if direction else "")


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
    :mod:`lstm_bptt.cells.lstm`. ``hx`` is a tuple ``(h_0, c_0)`` of (L * dirs, B, H) arrays
    (h_0 (L * dirs, B, P) with a projection), dirs = 2 if bidirectional, else 1.

    Parameters
    ----------
    input_size, hidden_size, num_layers, bias, batch_first, dtype, rng, dropout,
    checkpoint_every, bidirectional :
        As for :class:`Recurrent`.
    proj_size : int
        P, 0 <= P < H: LSTM with a projection layer (LSTMP; Sak, Senior & Beaufays 2014, as
        PyTorch's ``proj_size``): ``weight_hr_l{k}`` (P, H) maps o * tanh(c) to h of size P,
        which is the output and the recurrent input (``weight_hh_l{k}`` (4H, P)); c stays of
        size H. 0: no projection.
    forget_bias : float or None
        Forget-gate bias (``bias_ih`` block set to it, ``bias_hh`` block to 0; Gers et al.
        2000; 1.0 recommended by Jozefowicz et al. 2015, 3 to 5 for long lags).
    input_bias : float or None
        The same for the input gate (negative values keep the cells closed at first).
    recurrent_init : {"uniform", "orthogonal"}
        Orthogonal (H, H) gate blocks of ``weight_hh`` (Saxe et al. 2014), or PyTorch's uniform.
    peephole : bool
        Peephole connections (Gers, Schraudolph & Schmidhuber 2002): i and f see c_{t-1}, o
        sees c_t, through diagonal weights ``weight_ci_l{k}``, ``weight_cf_l{k}``,
        ``weight_co_l{k}`` (H,).
    layer_norm : bool
        Layer-normalised LSTM (Ba, Kiros & Hinton 2016): LN of W_ih x and of W_hh h (gains
        ``weight_ln_ih_l{k}``, ``weight_ln_hh_l{k}`` (4H,), initialised to 1) and of c before
        its tanh (``weight_ln_c_l{k}``, ``bias_ln_c_l{k}`` (H,), 1 and 0).
    recurrent_dropout, input_dropout : float in [0, 1)
        Variational dropout (Gal & Ghahramani 2016) on h_{t-1} before W_hh and on the layer's
        input before W_ih: one mask per sequence, the same at every step; only with
        ``forward(..., train=True)``.
    learn_initial_state : bool
        Learned (h_0, c_0): ``initial_h_l{k}``, ``initial_c_l{k}`` (see :class:`Recurrent`).

    With any of ``peephole``, ``layer_norm``, ``recurrent_dropout``, ``input_dropout`` the
    layer uses :class:`~lstm_bptt.cells.lstm_variants.LSTMVariantCell` (a readable
    implementation, equations in :mod:`lstm_bptt.cells.lstm_variants`; no ``proj_size`` or
    ``checkpoint_every`` with it); without them, the plain LSTM's fast path.

    Attributes
    ----------
    params : dict
        ``weight_ih_l{k}`` (4H, D or dirs * (P or H)), ``weight_hh_l{k}`` (4H, P or H),
        ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (4H,), gates stacked i, f, g, o,
        ``weight_hr_l{k}`` (P, H) with a projection, then the variants' parameters above;
        the same with ``_reverse`` if bidirectional. PyTorch's names and order.

    Raises
    ------
    TypeError, ValueError
        As :class:`Recurrent`; ``forget_bias``/``input_bias`` not a finite real number or given
        with ``bias=False``; an unknown ``recurrent_init`` ("orthogonal" with a projection);
        ``proj_size`` not an int in [0, hidden_size).

    References
    ----------
    PyTorch ``torch.nn.LSTM`` (parameter layout and default initialisation).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dtype=np.float64, rng=None, dropout: float = 0.0,
                 forget_bias: float | None = None, recurrent_init: str = "uniform",
                 checkpoint_every: int | None = None, input_bias: float | None = None,
                 bidirectional: bool = False, proj_size: int = 0, peephole: bool = False,
                 layer_norm: bool = False, recurrent_dropout: float = 0.0,
                 input_dropout: float = 0.0, learn_initial_state: bool = False):
        if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral):
            raise TypeError(f"proj_size: expected an int, got {proj_size!r}")
        hidden = check_positive_int("hidden_size", hidden_size)
        if not 0 <= proj_size < hidden:
            raise ValueError(f"proj_size: expected 0 <= proj_size < hidden_size = {hidden}, "
                             f"got {proj_size}")
        super().__init__("lstm", input_size, hidden_size, num_layers, bias=bias,
                         batch_first=batch_first, dtype=dtype, rng=rng, dropout=dropout,
                         checkpoint_every=checkpoint_every, bidirectional=bidirectional,
                         forget_bias=forget_bias, input_bias=input_bias,
                         recurrent_init=recurrent_init, proj_size=int(proj_size),
                         peephole=peephole, layer_norm=layer_norm,
                         recurrent_dropout=recurrent_dropout, input_dropout=input_dropout,
                         learn_initial_state=learn_initial_state)
        self.proj_size = int(proj_size)

    def _cell_repr(self) -> str:
        return ""


class GRU(Recurrent):
    """Multi-layer GRU with PyTorch ``nn.GRU`` parameter names, shapes and gate order (r, z, n).

    ``Recurrent("gru", ...)``; the math is in :mod:`lstm_bptt.cells.gru` (Cho et al. 2014 v3 in
    PyTorch's form: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))). ``hx`` is one (L, B, H)
    array ``h_0``, and ``forward`` returns ``(output, h_n, cache)``.

    Parameters
    ----------
    input_size, hidden_size, num_layers, bias, batch_first, dtype, rng, dropout,
    checkpoint_every, bidirectional, learn_initial_state :
        As for :class:`Recurrent` (``checkpoint_every`` keeps only h, 1/5 of the cache, and
        recomputes the gates in the backward). ``forward`` takes ``lengths`` as for the LSTM.
    recurrent_init : {"uniform", "orthogonal"}
        Orthogonal (H, H) blocks of ``weight_hh`` (Saxe et al. 2014), or PyTorch's uniform.

    Attributes
    ----------
    params : dict
        ``weight_ih_l{k}`` (3H, D, H or 2H), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}`` and
        ``bias_hh_l{k}`` (3H,), gates stacked r, z, n (and ``..._reverse`` when
        bidirectional).

    Raises
    ------
    TypeError, ValueError
        As :class:`Recurrent`; an unknown ``recurrent_init``.

    References
    ----------
    PyTorch ``torch.nn.GRU``; Cho et al. (2014), arXiv:1406.1078v3.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dtype=np.float64, rng=None, dropout: float = 0.0,
                 recurrent_init: str = "uniform", checkpoint_every: int | None = None,
                 bidirectional: bool = False, learn_initial_state: bool = False):
        super().__init__("gru", input_size, hidden_size, num_layers, bias=bias,
                         batch_first=batch_first, dtype=dtype, rng=rng, dropout=dropout,
                         checkpoint_every=checkpoint_every, bidirectional=bidirectional,
                         learn_initial_state=learn_initial_state, recurrent_init=recurrent_init)

    def _cell_repr(self) -> str:
        return ""


class RNN(Recurrent):
    """Multi-layer Elman RNN with PyTorch ``nn.RNN`` parameter names, shapes and arguments.

    ``Recurrent(RNNCell(nonlinearity), ...)``; the math is in :mod:`lstm_bptt.cells.rnn`:
    h' = phi(W_ih x + b_ih + W_hh h + b_hh), phi = tanh or relu. ``hx`` is one (L, B, H) array
    ``h_0``, and ``forward`` returns ``(output, h_n, cache)``.

    Parameters
    ----------
    input_size, hidden_size, num_layers :
        As for :class:`Recurrent`.
    nonlinearity : {"tanh", "relu"}
        phi, in PyTorch's position (the fourth argument).
    bias, batch_first, dtype, rng, dropout, checkpoint_every, bidirectional,
    learn_initial_state :
        As for :class:`Recurrent` (``checkpoint_every`` is accepted and changes nothing: the
        cache holds only x and h already). ``forward`` takes ``lengths`` as for the LSTM.
    recurrent_init : {"uniform", "orthogonal", "identity"}
        PyTorch's uniform, an orthogonal ``weight_hh`` (Saxe et al. 2014), or the identity with
        zero biases (the IRNN of Le, Jaitly & Hinton 2015, for ``nonlinearity="relu"``).

    Attributes
    ----------
    params : dict
        ``weight_ih_l{k}`` (H, D, H or 2H), ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}`` and
        ``bias_hh_l{k}`` (H,) (and ``..._reverse`` when bidirectional).

    Raises
    ------
    TypeError, ValueError
        As :class:`Recurrent`; ``nonlinearity`` not "tanh" or "relu"; an unknown
        ``recurrent_init``.

    References
    ----------
    PyTorch ``torch.nn.RNN``; Elman (1990), "Finding structure in time".
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dtype=np.float64, rng=None, dropout: float = 0.0,
                 recurrent_init: str = "uniform", checkpoint_every: int | None = None,
                 bidirectional: bool = False, learn_initial_state: bool = False):
        super().__init__("rnn", input_size, hidden_size, num_layers, bias=bias,
                         batch_first=batch_first, dtype=dtype, rng=rng, dropout=dropout,
                         checkpoint_every=checkpoint_every, bidirectional=bidirectional,
                         learn_initial_state=learn_initial_state, nonlinearity=nonlinearity,
                         recurrent_init=recurrent_init)

    def _cell_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", nonlinearity={self.cell.nonlinearity!r})"
