"""The cell contract: what a recurrent cell type provides, and helpers shared by all cells.

A *cell* object describes one recurrent cell type with its options (``LSTMCell()``,
``GRUCell()``, ``RNNCell(nonlinearity="relu")``). It holds no parameters and no state: the
parameters live in the layer (:class:`lstm_bptt.recurrent.Recurrent`) and are passed in as a
dict; every forward returns a cache and stores nothing on the cell. The layer code (stacking,
``batch_first``, dropout between layers, ``hx`` handling, truncated-BPTT state carry) is written
once in :mod:`lstm_bptt.recurrent` against this contract, so a new cell is one new module here
plus one line in the registry (:mod:`lstm_bptt.cells`), and nothing else changes (not the layer,
not the models, not the trainer).

Dimension letters: T time, B batch, D input features, H hidden units, S_k the size of the k-th
state array (H for every state of an LSTM, GRU or RNN).

What a cell subclass defines (see :class:`lstm_bptt.cells.lstm.LSTMCell` for a complete one):

Class attributes
    ``name`` (registry key, e.g. ``"lstm"``), ``state_names`` (``("h", "c")`` for an LSTM,
    ``("h",)`` for GRU/RNN; ``h`` is always first and is the cell's output), ``num_gates``
    (number of H-row blocks in ``weight_ih``: LSTM 4, GRU 3, RNN 1), ``gate_names`` (the
    blocks in PyTorch's public order: ``("i", "f", "g", "o")`` for an LSTM, ``("r", "z", "n")``
    for a GRU, ``()`` for an RNN), ``init_option_names`` (keyword arguments of
    :meth:`Cell.init_params` beyond the PyTorch default, e.g. ``forget_bias``).

Parameters and initialisation
    :meth:`Cell.param_shapes` (PyTorch names without the layer suffix: ``weight_ih``,
    ``weight_hh``, ``bias_ih``, ``bias_hh``) and :meth:`Cell.init_params` (by default PyTorch's
    U(-1/sqrt(H), 1/sqrt(H)) for every parameter, drawn in :meth:`param_shapes` order; a cell
    adds its init options by overriding it and calling :meth:`Cell.uniform_params` first).

The readable step reference (the math as a newcomer reads it)
    :meth:`Cell.step_forward` and :meth:`Cell.step_backward`: one time step, one equation per
    line, forward and backward written side by side in the cell's module with the equations
    cited. :meth:`Cell.reference_forward` and :meth:`Cell.reference_backward` (written once,
    here) step them over a whole sequence: that is backpropagation through time in its plain
    form, and the tests check the fast path against it.

The fast sequence path (what the layer calls)
    :meth:`Cell.forward` (whole sequence of one layer, returns a cache: a NamedTuple of
    read-only arrays) and :meth:`Cell.backward` (BPTT over the cache), plus
    :meth:`Cell.state_at` (the state after step t, for truncated-BPTT carry),
    :meth:`Cell.per_step` (per-step states and gates in the public gate order, for inspection)
    and :meth:`Cell.cache_dims` ((T, B) of a cache). These four read the cell's own cache;
    nothing outside the cell's module reads its fields. ``supports_last`` and the ``last``
    argument of :meth:`Cell.forward` serve the layer's ``lengths`` (needed only by a cell with a
    state other than h).

State convention: a state is ALWAYS a tuple of arrays, one per ``state_names`` entry (the layer
converts to PyTorch's ``hx`` form: ``(h_0, c_0)`` for an LSTM, a single array for the others).
Gradients of a state are tuples of the same arity. ``None`` stands for zeros everywhere.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from .. import _fast, _memory
from .._checks import as_float_array, check_shape

__all__ = [
    "Cell",
    "orthogonal",
    "check_sequence_input",
    "check_initial_state",
    "check_checkpoint_every",
    "segments",
    "read_only",
    "check_last",
    "final_steps",
    "backward_pieces",
    "add_final_grads",
]


class Cell:
    """Base class of recurrent cell types (the contract; see the module docstring).

    Subclasses set the class attributes and implement the methods marked "subclass"; the
    methods defined here (:meth:`uniform_params`, :meth:`init_params`, :meth:`state_sizes`,
    :meth:`hidden_size_of`, :meth:`zero_state`, :meth:`reference_forward`,
    :meth:`reference_backward`) work for every cell that follows the contract.
    """

    #: Registry key, e.g. ``"lstm"``.
    name: ClassVar[str] = ""
    #: Names of the state arrays, output first: ``("h", "c")`` (LSTM), ``("h",)`` (GRU, RNN).
    state_names: ClassVar[tuple[str, ...]] = ("h",)
    #: Number of H-row blocks stacked in ``weight_ih``/``weight_hh``/biases (LSTM 4, GRU 3).
    num_gates: ClassVar[int] = 1
    #: The gate blocks in PyTorch's public order (``per_step`` returns them under these keys).
    gate_names: ClassVar[tuple[str, ...]] = ()
    #: Keyword arguments of :meth:`init_params` beyond PyTorch's default initialisation.
    init_option_names: ClassVar[tuple[str, ...]] = ()
    #: Whether :meth:`forward` accepts ``last`` (each row's final step; see there). A cell
    #: whose only state is h (its output) does not need it: the layer then reads h_n off the
    #: output and adds dh_n to the output's gradient itself. A cell with another state (the
    #: LSTM's c) must implement ``last`` for the layer's ``lengths`` to work.
    supports_last: ClassVar[bool] = False
    #: Whether :meth:`forward` draws random numbers (e.g. variational dropout masks): the
    #: layer then passes it ``rng`` (its generator) and ``train`` as keyword arguments.
    stochastic: ClassVar[bool] = False

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({args})"

    def options(self) -> dict:
        """The constructor options of this cell object (``CELLS[name](**options)`` rebuilds
        it); by default its instance attributes, so a cell stores exactly its options there."""
        return dict(vars(self))

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))

    # ------------------------------------------------------------ parameters and initialisation

    def param_shapes(self, input_size: int, hidden_size: int, bias: bool) -> dict[str, tuple]:
        """Shapes of one layer's parameters, PyTorch names without the ``_l{k}`` suffix.

        The default is PyTorch's layout for LSTM/GRU/RNN: ``weight_ih`` (G*H, D), ``weight_hh``
        (G*H, H) and, if ``bias``, ``bias_ih`` and ``bias_hh`` (G*H,), with G = ``num_gates``.
        The dict order is the order in which :meth:`init_params` draws them.
        """
        G, H = self.num_gates, hidden_size
        shapes = {"weight_ih": (G * H, input_size), "weight_hh": (G * H, H)}
        if bias:
            shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
        return shapes

    def uniform_params(self, input_size, hidden_size, bias, dtype, rng) -> dict[str, np.ndarray]:
        """PyTorch's default initialisation: every parameter U(-1/sqrt(H), 1/sqrt(H)).

        Drawn in float64 from ``rng`` in :meth:`param_shapes` order, then cast to ``dtype``
        (so float32 and float64 models built from the same seed hold the same numbers).
        """
        k = 1.0 / math.sqrt(hidden_size)
        return {
            name: rng.uniform(-k, k, shape).astype(dtype)
            for name, shape in self.param_shapes(input_size, hidden_size, bias).items()
        }

    def check_init_options(self, bias: bool, **init) -> dict:
        """Validate the init options (before anything is drawn); return them normalised.

        Subclass: override when the cell has init options. Raises TypeError for an unknown
        option name.
        """
        unknown = set(init) - set(self.init_option_names)
        if unknown:
            raise TypeError(
                f"{self.name} cell: unexpected init option(s) {sorted(unknown)}; expected "
                f"{list(self.init_option_names) or 'none'}"
            )
        return init

    def init_params(self, input_size, hidden_size, bias, dtype, rng, **init):
        """One layer's parameters: :meth:`uniform_params`, then the cell's init options.

        Parameters
        ----------
        input_size, hidden_size : int
            D and H of this layer.
        bias : bool
        dtype : float32 or float64
        rng : numpy.random.Generator
        **init
            The options named in ``init_option_names`` (validated by
            :meth:`check_init_options`).

        Returns
        -------
        dict of ndarray
            Keyed like :meth:`param_shapes`.
        """
        self.check_init_options(bias, **init)
        return self.uniform_params(input_size, hidden_size, bias, dtype, rng)

    def state_sizes(self, hidden_size: int) -> tuple[int, ...]:
        """Size of each state array (same order as ``state_names``): H for each by default."""
        return (hidden_size,) * len(self.state_names)

    def hidden_size_of(self, params: dict) -> int:
        """H read off one layer's parameters (``weight_hh`` has ``num_gates * H`` rows)."""
        return params["weight_hh"].shape[0] // self.num_gates

    def zero_state(self, batch: int, hidden_size: int, dtype) -> tuple[np.ndarray, ...]:
        """The all-zeros state tuple, each array (B, S_k)."""
        return tuple(np.zeros((batch, s), dtype) for s in self.state_sizes(hidden_size))

    # ------------------------------------------------------------- the readable step reference

    def step_forward(self, x, state: tuple, params: dict):
        """Subclass: one time step. ``x`` (B, D), ``state`` a tuple of (B, S_k) arrays.

        Returns ``(new_state, step_cache)``; the step's output is ``new_state[0]`` (h).
        """
        raise NotImplementedError

    def step_backward(self, dstate: tuple, step_cache):
        """Subclass: backward of :meth:`step_forward`.

        ``dstate`` holds dL/d(new_state) (for h: from the output AND from the next step).
        Returns ``(dx (B, D), dstate_prev tuple, grads dict keyed like params)``.
        """
        raise NotImplementedError

    def reference_forward(self, x, state0, params: dict, last=None):
        """The plain sequence forward: :meth:`step_forward` called for t = 0 .. T-1.

        Parameters
        ----------
        x : ndarray (T, B, D)
        state0 : tuple of (B, S_k) arrays, or None for zeros
        params : dict keyed like :meth:`param_shapes`
        last : (B,) integers in [0, T), or None (T - 1 for every row)
            Row b's final step: its returned state is the one after step last[b].

        Returns
        -------
        output : ndarray (T, B, H), the h of every step
        state_n : tuple, the state after the last step (of each row's final step)
        step_caches : list of the T step caches, for :meth:`reference_backward`
        """
        T, B = x.shape[:2]
        state = self.zero_state(B, self.hidden_size_of(params), x.dtype) if state0 is None \
            else tuple(state0)
        outputs, step_caches, states = [], [], []
        for t in range(T):
            state, step_cache = self.step_forward(x[t], state, params)  # state_t from state_t-1
            outputs.append(state[0])  # the output at step t is h_t
            step_caches.append(step_cache)
            states.append(state)
        if last is not None:  # row b's state after its own final step
            state = tuple(np.stack([s[k] for s in states])[last, np.arange(B)]
                          for k in range(len(state)))
        return np.stack(outputs), state, step_caches

    def reference_backward(self, doutput, step_caches: list, dstate_n=None, last=None):
        """Backpropagation through time in its plain form (Werbos 1990): the steps in reverse.

        Parameters
        ----------
        doutput : ndarray (T, B, H) or None
            dL/d h_t for every step from the layer's output (None: zero).
        step_caches : list
            From :meth:`reference_forward`.
        dstate_n : tuple or None
            dL/d state_T arriving from later (None: zero); with ``last``, row b's entry is
            dL/d(its state after step last[b]) and joins the walk there.
        last : (B,) integers in [0, T), or None
            As for :meth:`reference_forward`.

        Returns
        -------
        dx : ndarray (T, B, D)
        dstate_0 : tuple, dL/d state_0
        grads : dict, dL/d params summed over the steps
        """
        T = len(step_caches)
        dstate, dxs, grads = dstate_n, [None] * T, {}
        if last is not None and dstate_n is not None:
            dstate = None
        for t in reversed(range(T)):
            if last is not None and dstate_n is not None:  # rows whose final step is t
                ends = np.asarray(last) == t
                if ends.any():
                    if dstate is None:
                        dstate = (None,) * len(self.state_names)
                    dstate = tuple(
                        d if g is None else
                        (np.where(ends[:, None], g, 0) if d is None
                         else d + np.where(ends[:, None], g, 0))
                        for d, g in zip(dstate, dstate_n, strict=True))
            if dstate is None:  # nothing arrives from after the last step
                dstate = (None,) * len(self.state_names)
            dh = dstate[0]
            if doutput is not None:  # h_t feeds both the output at t and step t + 1
                dh = doutput[t] if dh is None else doutput[t] + dh
            dxs[t], dstate, g = self.step_backward((dh, *dstate[1:]), step_caches[t])
            for k, v in g.items():  # the same weights act at every step: gradients add up
                grads[k] = v if k not in grads else grads[k] + v
        return np.stack(dxs), dstate, grads

    # ---------------------------------------------------------------------- the fast sequence path

    def forward(self, x, state0, params: dict, *, checkpoint_every=None, last=None):
        """Subclass: one layer over a whole sequence, keeping a cache for :meth:`backward`.

        Parameters
        ----------
        x : ndarray (T, B, D)
        state0 : tuple of (B, S_k) arrays, or None for zeros
        params : dict keyed like :meth:`param_shapes`
        checkpoint_every : int or None
            Keep only part of the cache and recompute the rest in the backward (optional:
            a cell without recomputation may raise ValueError for a non-None value).
        last : (B,) integer array or None (only if ``supports_last``)
            Row b's final step, 0 <= last[b] < T (None: T - 1 for every row). The returned
            ``state_n`` holds, for row b, its state after step last[b], and :meth:`backward`
            adds ``dstate_n`` for row b to the carried gradient at that step (the walk then
            continues to step 0 as usual). Steps after last[b] are computed as any other: the
            layer feeds zeros there, discards their outputs and zeroes their output
            gradient, so the gradient flowing through them is exactly 0. This is how the
            layer implements ``lengths`` once for every cell. Helpers: :func:`check_last`,
            :func:`final_steps`, :func:`backward_pieces`, :func:`add_final_grads` (the
            backward splits its time loop where rows end; see the LSTM for an example).

        Returns
        -------
        output : ndarray (T, B, H) (read-only)
        state_n : tuple of (B, S_k) arrays
        cache : NamedTuple of read-only arrays; nothing is stored on the cell (it records
            ``last`` when given, for the backward)
        """
        raise NotImplementedError

    def backward(self, doutput, cache, dstate_n=None, *, need_dx: bool = True):
        """Subclass: BPTT through one layer.

        Parameters
        ----------
        doutput : ndarray (T, B, H) or None
        cache : from :meth:`forward`
        dstate_n : tuple of (B, S_k) arrays (entries may be None), or None
            Gradient of the returned ``state_n``: enters after step T - 1, or after step
            last[b] for row b if the forward was given ``last``.
        need_dx : bool
            False may skip the input-gradient GEMM; ``dx`` is then None.

        Returns
        -------
        dx : ndarray (T, B, D) or None
        dstate_0 : tuple of (B, S_k) arrays
        grads : dict keyed like ``params`` (bias keys only when the forward used biases)
        """
        raise NotImplementedError

    def state_at(self, cache, t: int) -> tuple:
        """The state tuple after step ``t`` (0 = the initial state, T = the last).

        Default: row t of the cache's (T + 1, B, .) array of each name in ``state_names``
        (read-only views); a cell whose cache keeps its states otherwise overrides this.
        """
        return tuple(getattr(cache, name)[t] for name in self.state_names)

    def per_step(self, cache) -> dict[str, np.ndarray]:
        """Subclass: per-step values, each (T, B, .): ``"h"``, the other states, and every gate
        of ``gate_names`` (post-activation, PyTorch's public order)."""
        raise NotImplementedError

    def cache_dims(self, cache) -> tuple[int, int]:
        """(T, B) of a cache from :meth:`forward`. Default: the first two axes of the cache's
        input ``x`` (T, B, D); a cell whose cache does not keep ``x`` overrides this."""
        return cache.x.shape[0], cache.x.shape[1]


# ------------------------------------------------------------------------------ shared helpers


def orthogonal(rng: np.random.Generator, n: int, dtype) -> np.ndarray:
    """A random (n, n) orthogonal matrix: QR of a Gaussian matrix with the signs of R's diagonal
    folded into Q, so the distribution is Haar (Mezzadri 2007; used for recurrent weights by
    Saxe, McClelland & Ganguli 2014)."""
    a = rng.standard_normal((n, n))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q.astype(dtype)


def check_sequence_input(x, input_size: int, dtype) -> np.ndarray:
    """Return ``x`` as a (T, B, D) array of ``dtype`` with D = ``input_size``, T, B >= 1."""
    x = as_float_array("x", x, dtype)
    if x.ndim != 3:
        raise ValueError(
            f"x: expected a 3-D array (T, B, D) with D = {input_size}, got shape {x.shape}"
        )
    check_shape("x", x, (None, None, input_size), "(T, B, D)",
                "the last axis must equal input_size")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x: expected T >= 1 and B >= 1, got shape {x.shape}")
    return x


def check_initial_state(cell: Cell, state0, batch: int, hidden_size: int, dtype, prefix=""):
    """Return ``state0`` as a tuple of (B, S_k) arrays (zeros where None), or raise.

    Names in messages are ``{prefix}{state}_0`` (``h_0``, ``c_0``).
    """
    sizes = cell.state_sizes(hidden_size)
    if state0 is None:
        state0 = (None,) * len(sizes)
    out = []
    for name, s0, size in zip(cell.state_names, state0, sizes, strict=True):
        if s0 is None:
            out.append(np.zeros((batch, size), dtype))
        else:
            s0 = as_float_array(f"{prefix}{name}_0", s0, dtype)
            check_shape(f"{prefix}{name}_0", s0, (batch, size), f"(B, {name.upper()})")
            out.append(s0)
    return tuple(out)


def check_checkpoint_every(k) -> int | None:
    """``checkpoint_every``: None or an int >= 1 (TypeError / ValueError otherwise)."""
    if k is None:
        return None
    import numbers

    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"checkpoint_every: expected an int or None, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"checkpoint_every: expected >= 1, got {k}")
    return int(k)


def segments(T: int, k: int | None) -> list[tuple[int, int]]:
    """Start/stop pairs of the recomputation segments: [(0, k), (k, 2k), ..., (., T)]."""
    if k is None or k >= T:
        return [(0, T)]
    return [(t0, min(t0 + k, T)) for t0 in range(0, T, k)]


def read_only(*arrays) -> None:
    """Mark arrays of a cache read-only (None entries are skipped): an output handed to the
    user is a view into the cache, and writing into it would silently corrupt the gradients."""
    for a in arrays:
        if a is not None:
            a.setflags(write=False)  # (cheaper than a.flags.writeable = False)


# ------------------------------------------------------- each row's final step (lengths)


def check_last(last, T: int, B: int):
    """``last`` for :meth:`Cell.forward`: None, or (B,) integers in [0, T) as an intp array.

    Returns None when every row ends at T - 1 (the plain case, so cells take their plain path).
    """
    if last is None:
        return None
    arr = np.asarray(last)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"last: expected an integer array of shape ({B},), got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"last: expected shape ({B},), got {arr.shape}")
    if arr.min() < 0 or arr.max() >= T:
        raise ValueError(f"last: expected values in [0, T) = [0, {T}), got "
                         f"{arr.min()}..{arr.max()}")
    return None if np.all(arr == T - 1) else arr.astype(np.intp)


def final_steps(last, T: int) -> dict:
    """{t: rows} for every step t that is some row's final step (rows: an index array, or
    ``slice(None)`` for all rows when ``last`` is None, i.e. every row ends at T - 1)."""
    if last is None:
        return {T - 1: slice(None)}
    order = np.argsort(last, kind="stable")
    steps, starts = np.unique(last[order], return_index=True)
    ends = [*starts[1:], len(last)]
    return {int(t): order[a:b] for t, a, b in zip(steps, starts, ends, strict=True)}


def backward_pieces(t0: int, t1: int, stops: dict) -> list:
    """How a backward walk over steps t1 - 1 down to t0 meets the rows' final steps.

    Returns ``[(a, b, rows), ...]`` in the order of the walk: for each piece, first add the
    final-state gradient of ``rows`` (None: of no row) to the carried gradient, which at that
    point is dL/d(state after step b - 1), then backpropagate through steps b - 1 down to a.
    ``stops`` is :func:`final_steps`.
    """
    if len(stops) == 1 and t1 - 1 in stops:  # the plain case: every row ends at the last step
        return [(t0, t1, stops[t1 - 1])]
    bounds = sorted({t + 1 for t in stops if t0 <= t < t1} | {t1}, reverse=True)
    return [(bounds[i + 1] if i + 1 < len(bounds) else t0, b, stops.get(b - 1))
            for i, b in enumerate(bounds)]


def add_final_grads(dstate: tuple, dstate_n, rows) -> tuple:
    """dstate + dstate_n on ``rows`` (new arrays; entries of ``dstate_n`` may be None)."""
    if rows is None or dstate_n is None or all(g is None for g in dstate_n):
        return dstate
    out = []
    for carried, given in zip(dstate, dstate_n, strict=True):
        if given is not None:
            carried = carried.copy()
            carried[rows] += given[rows]
        out.append(carried)
    return tuple(out)


# --- The input projection, shared by the cells -----------------------------------------------
# A character model feeds one-hot rows: x W^T is then a row gather of W^T (measured at
# (T*B, V, 4H) = (2048, 65, 512) float32: 0.1 ms against 1.5 ms for the GEMM; bitwise the same
# numbers, as 1 * w + 0 * ... = w exactly), and x^T da a scatter-add of the rows of da. The
# scatter-add is a compiled loop on the fast path; in NumPy, np.add.at (9 ms) and a sort +
# np.add.reduceat (4.4 ms) were both slower than the GEMM (1.8 ms), which is kept there.


NOT_GIVEN = object()  # an optional argument the caller did not pass (work it out here)


def one_hot_ids(x2: np.ndarray):
    """ids (N,) if every row of x2 (N, D) is one-hot (a single 1, zeros elsewhere), else None.

    The first row is looked at first, so a dense input costs nothing; a one-hot input costs
    an argmax and a count (~0.1 ms for (2048, 65)).
    """
    n = x2.shape[0]
    if n == 0 or np.count_nonzero(x2[0]) != 1 or x2[0].max() != 1:
        return None
    ids = x2.argmax(axis=1)
    if np.count_nonzero(x2) != n or not np.all(x2[np.arange(n), ids] == 1):
        return None
    return ids


def input_projection(x2: np.ndarray, w_t: np.ndarray, out: np.ndarray, bias=None,
                     ids=NOT_GIVEN) -> None:
    """out (N, G) = x2 (N, D) @ w_t (D, G) + bias (G,), as a row gather of w_t + bias when
    x2 is one-hot (bitwise the same sums, w_t[id, k] + bias[k], without a pass over out).

    ``ids``: the caller's :func:`one_hot_ids` of x2 when it has it (None: not one-hot).
    """
    if ids is NOT_GIVEN:
        ids = one_hot_ids(x2)
    if ids is None:
        np.matmul(x2, w_t, out=out)
        if bias is not None:
            out += bias
    else:
        (w_t if bias is None else w_t + bias).take(ids, axis=0, out=out)


FUSED_GRAD_MACS = 1 << 22  # layer_weight_grads: one GEMM from this size on


def layer_weight_grads(x2: np.ndarray, h2: np.ndarray, da2: np.ndarray,
                       ids=NOT_GIVEN) -> tuple[np.ndarray, np.ndarray]:
    """(x2^T da2 (D, G), h2^T da2 (P, G)): both weight gradients of a layer whose two
    products share da2 (N, G), from x2 (N, D) and h2 (N, P) (h_{t-1} for every row).

    For a dense x2, one GEMM [x2 | h2]^T da2 ((D + P, N) @ (N, G)) after copying both into
    one (N, D + P) array: each element is still one dot product over the N rows, and the
    larger GEMM runs faster than two. Measured (float32, one thread, AMD EPYC Zen 5), two
    GEMMs -> copy + one: (N, D, P, G) = (2048, 65, 128, 512) 2.31 -> 2.19 ms,
    (6400, 128, 256, 1024) 29.4 -> 27.3 ms. Below ``FUSED_GRAD_MACS`` multiply-adds the copy
    costs more than it saves ((100, 8, 32, 128): 6.8 -> 8.4 us), and two GEMMs are used.
    A one-hot x2 (``ids`` not None, or found by :func:`one_hot_ids`) takes
    :func:`input_weight_grad` and a GEMM for h2, on either path (so h2^T da2 is the same
    GEMM, and the same numbers, with the compiled path on or off).
    """
    if ids is NOT_GIVEN:
        ids = one_hot_ids(x2)
    N, D = x2.shape
    P = h2.shape[1]
    if ids is not None or N * (D + P) * da2.shape[1] < FUSED_GRAD_MACS:
        return input_weight_grad(x2, da2, ids), h2.T @ da2
    xh = _memory.empty((N, D + P), x2.dtype)
    xh[:, :D] = x2
    xh[:, D:] = h2
    both = xh.T @ da2  # (D + P, G)
    return both[:D], both[D:]


def input_weight_grad(x2: np.ndarray, da2: np.ndarray, ids=NOT_GIVEN) -> np.ndarray:
    """x2^T da2, (D, G) from x2 (N, D) and da2 (N, G); a scatter-add of da2's rows when x2
    is one-hot and the compiled path is on (else the GEMM, faster than NumPy's scatters).
    ``ids``: the caller's :func:`one_hot_ids` of x2 when it has it (None: not one-hot)."""
    if ids is None:  # dense, as the caller knows (before the switch: it costs ~1 us)
        return x2.T @ da2
    kernels = _fast.kernels()
    if kernels is None:
        ids = None
    elif ids is NOT_GIVEN:
        ids = one_hot_ids(x2)
    if ids is None:
        return x2.T @ da2
    out = np.zeros((x2.shape[1], da2.shape[1]), da2.dtype)
    kernels.scatter_add_rows(out, ids, da2)
    return out
