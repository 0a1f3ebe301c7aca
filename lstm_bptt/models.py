"""Small sequence models built from the core blocks, each with a hand-written end-to-end backward.

Every model exposes

* ``params``: one flat dict ``"<module>.<name>" -> ndarray`` (e.g. ``"lstm.weight_ih_l0"``,
  ``"head.weight"``) holding the *same* arrays as its modules, so an optimizer updating
  ``params`` in place updates the model;
* ``loss(inputs, targets, state=None, ...) -> (loss, grads, state)``: forward, loss and BPTT
  backward in one call, ``grads`` keyed like ``params``, ``state`` the recurrent state to carry
  into the next chunk: a tuple of (L, B, H) arrays, one per state of the cell (``(h, c)`` for
  an LSTM, ``(h,)`` for a GRU or RNN; plain arrays: the gradient is cut there, as truncated
  BPTT requires);
* ``config()``: the constructor arguments, so a checkpoint can rebuild the model.

The recurrent part is a :class:`~lstm_bptt.recurrent.Recurrent` layer of any registered cell:
pass ``cell="lstm"`` (the default), another name, a cell object, or a ready ``Recurrent``
layer. The models read what they need from it through its methods (``state_at``,
``pack_state``), never through the fields of its cache. The layer's parameters are named
``"<cell name>.<param>"`` (``"lstm.weight_ih_l0"``).

Dimension letters: T time, B batch, D input features, H hidden units, L layers, V vocabulary
size, C classes, K regression outputs.
"""

from __future__ import annotations

import numpy as np

from . import _memory
from ._checks import (
    as_input_array,
    as_rng,
    check_bool,
    check_dtype_arg,
    check_int_array,
    check_positive_int,
    check_shape,
)
from .cells.lstm import LSTMCell
from .export import StateDictMixin
from .layers import Embedding, Linear, check_dropout
from .losses import mse_loss, softmax_cross_entropy, softmax_probs
from .recurrent import Recurrent

MAX_SAMPLE_LENGTH = 10_000_000  # ids per sample() call: 80 MB of output, hours of steps


class _Model(StateDictMixin):
    """Shared plumbing: merged params, loading, state copies."""

    modules: dict

    def _collect_params(self) -> None:
        self.params = {
            f"{mname}.{pname}": arr
            for mname, module in self.modules.items()
            for pname, arr in module.params.items()
        }

    def _split_grads(self, per_module: dict) -> dict:
        return {
            f"{mname}.{pname}": g for mname, gs in per_module.items() for pname, g in gs.items()
        }

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return int(sum(p.size for p in self.params.values()))

    def load_params(self, params) -> None:
        """Copy values into ``self.params`` in place (so optimizers keep their references).

        Everything is checked before anything is copied. The dtype must be the model's own:
        integer, bool or float16 values are refused, not cast (they mean a wrong or damaged
        file), and so is float64 into a float32 model (cast it yourself if you mean it).

        Raises
        ------
        TypeError
            ``params`` is not a dict, or a value is not an array of the model's dtype.
        ValueError
            Missing or unexpected names, a shape mismatch, or NaN/inf values (naming the
            parameter).
        """
        if not isinstance(params, dict):
            raise TypeError(f"params: expected a dict name -> array, got {type(params).__name__}")
        missing = set(self.params) - set(params)
        extra = set(params) - set(self.params)
        if missing or extra:
            raise ValueError(
                f"parameter names differ: missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        for k, p in self.params.items():
            v = params[k]
            if not isinstance(v, np.ndarray) or v.dtype != p.dtype:
                got = f"dtype {v.dtype}" if isinstance(v, np.ndarray) else type(v).__name__
                raise TypeError(f"{k}: expected an array of dtype {p.dtype}, got {got}")
            if v.shape != p.shape:
                raise ValueError(f"{k}: expected shape {p.shape}, got {v.shape}")
            if not np.isfinite(v).all():
                raise ValueError(f"{k}: expected finite values, got "
                                 f"{int((~np.isfinite(v)).sum())} NaN/inf")
        for k, p in self.params.items():
            np.copyto(p, params[k])

    def _build_recurrent(self, cell, input_size, dropout, forget_bias, cell_options,
                         bidirectional=False):
        """The recurrent layer: ``cell`` a name, a Cell object or a ready Recurrent layer."""
        bidirectional = check_bool("bidirectional", bidirectional)
        if isinstance(cell, Recurrent):
            layer = cell
            if cell_options or forget_bias is not None:
                raise TypeError("cell: forget_bias/cell_options given with a ready Recurrent "
                                "layer; set them when building the layer")
            if bidirectional and not layer.bidirectional:
                raise ValueError("cell: bidirectional=True given with a unidirectional layer; "
                                 "build the layer with bidirectional=True")
            for name, want in (("input_size", input_size), ("hidden_size", self.hidden_size),
                               ("num_layers", self.num_layers)):
                if getattr(layer, name) != want:
                    raise ValueError(f"cell: expected a layer with {name} = {want}, got "
                                     f"{getattr(layer, name)}")
            if layer.dtype != self.dtype:
                raise TypeError(f"cell: expected a layer of dtype {self.dtype}, got "
                                f"{layer.dtype}")
            if layer.batch_first:
                raise ValueError("cell: expected a time-major layer (batch_first=False)")
        else:
            options = dict(cell_options or {})
            if forget_bias is not None:
                options["forget_bias"] = forget_bias
            layer = Recurrent(cell, input_size, self.hidden_size, self.num_layers,
                              dtype=self.dtype, rng=self.rng, dropout=dropout,
                              bidirectional=bidirectional, **options)
        if isinstance(cell, Recurrent):
            self.forget_bias = layer.init_options.get("forget_bias")
        self.recurrent = layer
        return layer

    def _cell_config(self) -> dict:
        """``cell`` and ``cell_options`` for :meth:`config` (JSON-serialisable): the cell's
        constructor options and the init options that differ from the defaults."""
        layer = self.recurrent
        defaults = layer.cell.check_init_options(layer.bias)
        options = dict(layer.cell.options())
        options.update({k: v for k, v in layer.init_options.items()
                        if k != "forget_bias" and v != defaults.get(k)})
        if layer.learn_initial_state:
            options["learn_initial_state"] = True
        return {"cell": layer.cell.name, "cell_options": options}

    @property
    def lstm(self):
        """The recurrent layer (its name before the models took any cell)."""
        return self.recurrent

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the carried state arrays: ``("h", "c")`` for an LSTM, ``("h",)`` else."""
        return self.recurrent.cell.state_names

    def _check_state(self, state, B):
        if state is None:
            return None
        names = self.state_names
        if not (isinstance(state, tuple | list) and len(state) == len(names)):
            raise TypeError(f"state: expected a tuple ({', '.join(names)}) of "
                            f"(num_layers, B, H) arrays, or None, got {_describe_state(state)}")
        return self.recurrent.pack_state(tuple(state))

    def _run_recurrent(self, x, state, train, lengths=None, input_weights=None):
        """(output, state tuple, cache) of the recurrent layer."""
        out, h_n, cache = self.recurrent.forward(x, self._check_state(state, x.shape[1]),
                                                 lengths=lengths, train=train,
                                                 _input_weights=input_weights)
        return out, self.recurrent.unpack_state(h_n), cache

    @staticmethod
    def _copy_state(state):
        return tuple(np.array(s) for s in state)


def _describe_state(state):
    if isinstance(state, tuple | list):
        return f"a {type(state).__name__} of length {len(state)}"
    return type(state).__name__


class CharLM(_Model):
    """Character (or token) language model: one-hot or Embedding -> LSTM (or another recurrent
    cell) -> Linear -> softmax.

    Parameters
    ----------
    vocab_size : int
        V.
    hidden_size : int
        H.
    num_layers : int
        L.
    embedding_dim : int or None
        None feeds one-hot vectors (D = V) to the LSTM, as in char-rnn (Karpathy 2015); an int
        adds a learned ``embedding.weight`` (V, embedding_dim).
    dropout : float in [0, 1)
        Dropout between LSTM layers and before the head during training (Zaremba et al. 2014).
        With one layer only the dropout before the head applies.
    dtype : float32 or float64
    rng : Generator, seed or None
        Initialisation, dropout and (by default) sampling.
    forget_bias : float or None
        See :class:`~lstm_bptt.recurrent.LSTM` (LSTM cells only).
    cell : str, Cell or Recurrent
        The recurrent cell: a registered name (``"lstm"``, ...), a cell object, or a ready
        :class:`~lstm_bptt.recurrent.Recurrent` layer (its sizes and dtype must match).
    cell_options : dict, optional
        More options of the cell and its initialisation (e.g. ``{"input_bias": -1.0,
        "recurrent_init": "orthogonal"}`` for an LSTM).

    Notes
    -----
    ``loss`` is the mean next-token cross-entropy in nats over unmasked positions
    (:func:`~lstm_bptt.losses.softmax_cross_entropy`); exp(loss) is the perplexity and
    loss / ln 2 the bits per character.
    """

    def __init__(self, vocab_size, hidden_size=128, num_layers=1, embedding_dim=None,
                 dropout=0.0, dtype=np.float32, rng=None, forget_bias=None, cell="lstm",
                 cell_options=None, batch_first=False):
        # checked here, under their own names, before the modules see them as e.g. input_size
        self.batch_first = check_bool("batch_first", batch_first)
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.embedding_dim = (None if embedding_dim is None
                              else check_positive_int("embedding_dim", embedding_dim))
        self.dropout = check_dropout(dropout)
        self.forget_bias = forget_bias
        self.dtype = check_dtype_arg(dtype)
        self.rng = as_rng(rng)
        self.modules = {}
        if self.embedding_dim is not None:
            self.modules["embedding"] = Embedding(vocab_size, self.embedding_dim, self.dtype,
                                                  self.rng)
        d_in = self.embedding_dim if self.embedding_dim is not None else self.vocab_size
        # the layer's dropout acts between layers only; the head dropout is applied in forward,
        # so a one-layer model passes 0 (nn.LSTM-style warning otherwise)
        rec = self._build_recurrent(cell, d_in, self.dropout if self.num_layers > 1 else 0.0,
                                    forget_bias, cell_options)
        # the head reads the layer's output: H, or P with an LSTM projection (proj_size)
        self.head = Linear(rec.output_size, self.vocab_size, dtype=self.dtype, rng=self.rng)
        self.modules[rec.cell.name] = rec
        self.modules["head"] = self.head
        self._collect_params()

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable) for rebuilding the model."""
        return {"vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "embedding_dim": self.embedding_dim,
                "dropout": self.dropout, "dtype": self.dtype.name,
                "forget_bias": self.forget_bias, "batch_first": self.batch_first,
                **self._cell_config()}

    @classmethod
    def from_checkpoint(cls, path, *, rng=None):
        """Load a model and its vocabulary from a checkpoint of ``lstm-bptt train``.

        The checkpoint (or any written with the same layout: ``model/class`` = ``"CharLM"``,
        ``model/config``, ``params`` and ``extra/vocab``, the vocabulary's code points as
        :meth:`~lstm_bptt.data.CharVocab.to_array` gives them) is checked from its headers
        first; each parameter's shape and dtype are checked before its data is read.

        Parameters
        ----------
        path : str or Path
            The ``checkpoint.npz`` file, e.g. ``"runs/charlm/checkpoint.npz"``.
        rng : Generator, seed or None
            The model's ``rng`` (dropout and the default of :meth:`sample`).

        Returns
        -------
        model : CharLM
            With the trained parameters, in the dtype it was trained in.
        vocab : :class:`~lstm_bptt.data.CharVocab`
            Its vocabulary: ``vocab.encode(text)`` gives the model's input ids,
            ``vocab.decode(ids)`` turns :meth:`sample` output back into text.

        Raises
        ------
        FileNotFoundError
            No such file.
        ValueError
            The file is not a checkpoint (a :class:`~lstm_bptt.checkpoint.CheckpointError`),
            not one of a CharLM with a vocabulary (e.g. a ``lstm-bptt task`` checkpoint of a
            classifier), or its config, vocabulary or parameters do not fit together (the
            message names the member).

        Examples
        --------
        >>> model, vocab = CharLM.from_checkpoint("runs/charlm/checkpoint.npz")  # doctest: +SKIP
        >>> vocab.decode(model.sample(100, vocab.encode("def "), temperature=0.7))  # doctest: +SKIP
        """
        tree, lm, vocab = read_charlm_checkpoint(path, rng=rng)
        try:
            lm.load_params(tree.get("params"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: params: {exc}") from None
        return lm, vocab

    def __repr__(self) -> str:
        return (f"CharLM(cell={self.recurrent.cell.name!r}, V={self.vocab_size}, "
                f"H={self.hidden_size}, L={self.num_layers}, embedding_dim={self.embedding_dim}, "
                f"{self.num_parameters():,} params)")

    def _one_hot(self, ids):
        """(T, B, V) one-hot rows of the ids (T, B)."""
        x = _memory.empty(ids.shape + (self.vocab_size,), self.dtype)
        x[...] = 0
        np.put_along_axis(x, ids[..., None], 1, axis=-1)
        return x

    def _folds_embedding(self, ids) -> bool:
        """Whether :meth:`_forward` folds the embedding into the LSTM's input weights.

        The first LSTM layer computes E[ids] W_ih^T. Folded, that is a row gather of the
        (V, 4H) table E W_ih^T, i.e. one-hot rows times W_eff = W_ih E^T (4H, V), which the
        cell does as a gather (:func:`lstm_bptt.cells.base.input_projection`); the backward
        returns dL/dW_eff (4H, V) (a scatter-add of da, or the one-hot GEMM without numba),
        and dL/dW_ih = dL/dW_eff E, dL/dE = dL/dW_eff^T W_ih. That replaces three GEMMs of
        T*B rows and D columns (the projection, dx, dW_ih) by GEMMs of V rows, so it is used
        when the vocabulary is small against the embedding (V <= 2 D) and there are enough
        rows to pay for W_eff (T*B >= 6 D); for the plain LSTM cell (the variants and the other
        cells compute their input projection themselves). Same numbers up to rounding.
        """
        return (self.embedding_dim is not None and type(self.recurrent.cell) is LSTMCell
                and self.vocab_size <= 2 * self.embedding_dim
                and ids.size >= 6 * self.embedding_dim)

    def _embed(self, ids):
        """The first layer's input: (x, embedding cache, folded input weights or None)."""
        if self.embedding_dim is None:
            return self._one_hot(ids), None, None
        if not self._folds_embedding(ids):
            return (*self.modules["embedding"].forward(ids), None)
        table = self.modules["embedding"].params["weight"]  # (V, D)
        weights = [self.recurrent.params[f"weight_ih_l0{sfx}"] @ table.T  # (4H, V)
                   for sfx in ("", "_reverse")[: self.recurrent.num_directions]]
        return self._one_hot(ids), None, weights

    def _unfold_grads(self, rec_grads):
        """dL/dW_eff (4H, V) of the folded first layer -> dL/dW_ih and dL/dE (see
        :meth:`_folds_embedding`); returns the embedding's gradients."""
        table = self.modules["embedding"].params["weight"]  # (V, D)
        d_table = np.zeros_like(table)
        for sfx in ("", "_reverse")[: self.recurrent.num_directions]:
            key = f"weight_ih_l0{sfx}"
            d_eff = rec_grads[key]  # (4H, V)
            rec_grads[key] = d_eff @ table  # (4H, D)
            d_table += d_eff.T @ self.recurrent.params[key]  # (V, D)
        return {"weight": d_table}

    def __call__(self, inputs, state=None, *, train: bool = False):
        """``model(inputs, state)`` is :meth:`forward`: returns ``(logits, state, cache)``."""
        return self.forward(inputs, state, train=train)

    def forward(self, inputs, state=None, *, train: bool = False):
        """Logits for the next token at every position.

        Parameters
        ----------
        inputs : integer ndarray (T, B), or (B, T) if ``batch_first``; ids in [0, V)
        state : tuple of (L, B, H) arrays (``(h, c)`` for an LSTM, ``(h,)`` for a one-state
            cell), or None for zeros
        train : bool
            Apply dropout.

        Returns
        -------
        logits : ndarray (T, B, V), or (B, T, V) if ``batch_first``
        state : tuple of (L, B, H) arrays, the final state
        cache : tuple, for the backward inside :meth:`loss`

        Raises
        ------
        TypeError
            Non-integer inputs.
        ValueError
            Not 2-D, or ids outside the vocabulary.
        """
        train = check_bool("train", train)
        ids = check_int_array("inputs", inputs, 0, self.vocab_size)
        if ids.ndim != 2:
            raise ValueError(f"inputs: expected integer ids of shape "
                             f"{'(B, T)' if self.batch_first else '(T, B)'}, got {ids.shape}")
        logits, state_n, cache = self._forward(ids.T if self.batch_first else ids, state, train)
        return (logits.transpose(1, 0, 2) if self.batch_first else logits), state_n, cache

    def _forward(self, ids, state, train):
        """:meth:`forward` on time-major ids (T, B): logits (T, B, V), state, cache."""
        x, emb_cache, input_weights = self._embed(ids)
        out, state_n, rec_cache = self._run_recurrent(x, state, train,
                                                      input_weights=input_weights)
        mask = None
        if train and self.dropout > 0:
            keep = 1.0 - self.dropout
            mask = (self.rng.random(out.shape) < keep).astype(self.dtype) / self.dtype.type(keep)
            out = out * mask
        logits, head_cache = self.head.forward(out)  # (T, B, V)
        return logits, state_n, (emb_cache, rec_cache, mask, head_cache)

    def loss(self, inputs, targets, state=None, mask=None, *, train: bool = True,
             state_at: int | None = None):
        """Mean next-token cross-entropy (nats), its gradients, and the state to carry.

        Parameters
        ----------
        inputs, targets : integer ndarrays (T, B), or (B, T) if ``batch_first``; ids in [0, V)
        state : tuple of (L, B, H) arrays (``(h, c)`` for an LSTM), or None for zeros
        mask : bool ndarray shaped like ``targets``, optional
            Positions whose loss counts (used by truncated BPTT with k2 > k1 to backpropagate
            through steps whose loss was already counted).
        train : bool
            Apply dropout.
        state_at : int, optional
            Return the state after this many steps instead of after all T (0 <= state_at <= T).

        Returns
        -------
        loss : float, nats per token
        grads : dict keyed like ``params``
        state : tuple of (L, B, H) arrays (copies; no gradient flows through them)
        """
        ids = check_int_array("inputs", inputs, 0, self.vocab_size)
        targets = check_int_array("targets", targets, 0, self.vocab_size)
        if ids.ndim != 2 or targets.shape != ids.shape:
            layout = "(B, T)" if self.batch_first else "(T, B)"
            raise ValueError(f"inputs, targets: expected two integer arrays of one shape "
                             f"{layout}, got {ids.shape} and {targets.shape}")
        if self.batch_first:  # the computation is time-major
            ids, targets = ids.T, targets.T
            mask = None if mask is None else np.asarray(mask).T
        logits, state_n, (emb_cache, rec_cache, drop_mask, head_cache) = self._forward(
            ids, state, train
        )
        T = logits.shape[0]  # time-major here
        if state_at is not None:
            if isinstance(state_at, bool) or not isinstance(state_at, int | np.integer):
                raise TypeError(f"state_at: expected an int in 0..T = {T}, got {state_at!r}")
            if not 0 <= state_at <= T:
                raise ValueError(f"state_at: expected an int in 0..T = {T}, got {state_at}")
        loss, dlogits = softmax_cross_entropy(logits, targets, mask)
        dout, head_grads = self.head.backward(dlogits, head_cache)
        if drop_mask is not None:
            dout = dout * drop_mask
        # one-hot inputs (also those of the folded embedding) need no gradient: skip the
        # input GEMM of the first layer
        dx, _, rec_grads = self.recurrent.backward(dout, rec_cache,
                                                   need_dx=emb_cache is not None)
        per_module = {self.recurrent.cell.name: rec_grads, "head": head_grads}
        if self.embedding_dim is not None:
            per_module["embedding"] = (self._unfold_grads(rec_grads) if emb_cache is None else
                                       self.modules["embedding"].backward(dx, emb_cache))
        grads = self._split_grads(per_module)
        grads = {k: grads[k] for k in self.params}
        if state_at is None:
            new_state = self._copy_state(state_n)
        else:
            new_state = self.recurrent.state_at(rec_cache, state_at)
        return loss, grads, new_state

    def evaluate(self, ids, batch_size: int = 32, k1: int = 256) -> float:
        """Mean cross-entropy (nats/token) of predicting ids[1:] from ids[:-1].

        The stream is cut into ``batch_size`` contiguous streams read in windows of ``k1``
        steps with the state carried across windows (no gradients), the standard way to
        evaluate a truncated-BPTT language model. Tokens beyond the B equal streams are dropped.

        Parameters
        ----------
        ids : integer ndarray (N,)

        Returns
        -------
        float : nats per token (divide by ln 2 for bits; exp for perplexity)
        """
        ids = check_int_array("ids", ids, 0, self.vocab_size)
        batch_size = check_positive_int("batch_size", batch_size)
        k1 = check_positive_int("k1", k1)
        if ids.ndim != 1:
            raise ValueError(f"ids: expected a 1-D token stream (N,), got shape {ids.shape}")
        n = (len(ids) - 1) // batch_size
        if n < 1:
            raise ValueError(f"ids: need at least {batch_size + 1} tokens, got {len(ids)}")
        x = ids[: n * batch_size].reshape(batch_size, n).T  # (n, B)
        y = ids[1 : n * batch_size + 1].reshape(batch_size, n).T
        state, total = None, 0.0
        for s in range(0, n, k1):
            logits, state, _ = self._forward(x[s : s + k1], state, False)
            loss, _ = softmax_cross_entropy(logits, y[s : s + k1])
            total += loss * logits.shape[0] * batch_size
        return total / (n * batch_size)

    def sample(self, length: int, prime=None, *, temperature: float = 1.0,
               top_k: int | None = None, greedy: bool = False, rng=None):
        """Generate ids one at a time, feeding each back in.

        Parameters
        ----------
        length : int
            Number of ids to generate (after the prime).
        prime : sequence of int, optional
            Ids run through the model first to set the state; if None, generation starts from
            a zero state and a uniform distribution over the first id (greedy then takes id 0).
        temperature : float > 0
            Logits are divided by it: < 1 sharper, > 1 flatter.
        top_k : int, optional
            Sample only among the k most probable ids.
        greedy : bool
            Take the argmax instead of sampling (temperature and top_k are then ignored).
        rng : Generator or seed, optional
            Defaults to the model's own rng.

        Returns
        -------
        ndarray of int64 (length,)

        Raises
        ------
        TypeError
            ``length`` or ``top_k`` not an int.
        ValueError
            Negative ``length`` or more than MAX_SAMPLE_LENGTH, ``temperature`` <= 0, NaN or
            inf, ``top_k`` outside 1..V, prime
            ids outside the vocabulary.
        """
        rng = self.rng if rng is None else as_rng(rng)
        length = check_positive_int("length", length) if length != 0 else 0
        if length > MAX_SAMPLE_LENGTH:
            raise ValueError(f"length: expected at most {MAX_SAMPLE_LENGTH:,} ids (one forward "
                             f"step each), got {length:,}")
        if isinstance(temperature, bool) or not isinstance(temperature,
                                                           int | float | np.floating):
            raise TypeError(f"temperature: expected a number > 0, got {temperature!r}")
        if not (temperature > 0 and np.isfinite(temperature)):  # also refuses NaN and inf
            raise ValueError(f"temperature: expected a finite number > 0, got {temperature}")
        greedy = check_bool("greedy", greedy)
        if top_k is not None:
            top_k = check_positive_int("top_k", top_k)
            if top_k > self.vocab_size:
                raise ValueError(f"top_k: expected 1..{self.vocab_size}, got {top_k}")
        state = None
        if isinstance(prime, str):
            raise TypeError("prime: expected token ids, got a str; encode it first, e.g. "
                            "CharVocab.encode(text)")
        if prime is not None and len(prime) > 0:
            # no dtype= here: a float prime must be refused, not truncated to ids
            prime = check_int_array("prime", np.asarray(prime), 0, self.vocab_size)
            logits, state, _ = self._forward(prime[:, None], None, False)
            last = logits[-1, 0]
        else:
            last = np.zeros(self.vocab_size, self.dtype)
        out = np.empty(length, np.int64)
        for t in range(length):
            if greedy:
                nxt = int(np.argmax(last))
            else:
                p = softmax_probs(last.astype(np.float64), temperature)
                if top_k is not None and top_k < self.vocab_size:
                    cut = np.partition(p, -top_k)[-top_k]
                    p = np.where(p >= cut, p, 0.0)
                    p /= p.sum()
                nxt = int(rng.choice(self.vocab_size, p=p))
            out[t] = nxt
            logits, state, _ = self._forward(np.array([[nxt]]), state, False)
            last = logits[0, 0]
        return out


class _RecurrentWithHead(_Model):
    """Recurrent layer -> Linear on float inputs (T, B, D): the shared body of the classifier,
    the regressor and the tagger. ``lengths`` go to the layer (padded steps do not change the
    state and output 0); the head reads every step's output, or the final state of the top
    layer (many-to-one)."""

    def _build(self, input_size, hidden_size, out_size, num_layers, dtype, rng, forget_bias,
               dropout, cell, cell_options, bidirectional=False):
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.forget_bias, self.dropout = forget_bias, check_dropout(dropout)
        self.dtype = check_dtype_arg(dtype)
        self.rng = as_rng(rng)
        rec = self._build_recurrent(cell, self.input_size, self.dropout, forget_bias,
                                    cell_options, bidirectional)
        self.bidirectional = rec.bidirectional
        # features the head reads: num_directions * (H, or P with an LSTM projection)
        self.head = Linear(rec.output_size, out_size, dtype=self.dtype, rng=self.rng)
        self.modules = {rec.cell.name: rec, "head": self.head}
        self._collect_params()

    def __call__(self, inputs, state=None, lengths=None, *, train: bool = False):
        """``model(inputs, state, lengths)`` is :meth:`forward`: returns ``(output, state,
        cache)``."""
        return self.forward(inputs, state, lengths, train=train)

    def _common_config(self) -> dict:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "dtype": self.dtype.name,
                "forget_bias": self.forget_bias, "dropout": self.dropout,
                "batch_first": self.batch_first, "bidirectional": self.bidirectional,
                **self._cell_config()}

    @property
    def _layout(self) -> str:
        return "(B, T, D)" if self.batch_first else "(T, B, D)"

    def _check_batch(self, name: str, given: tuple, B: int, x_shape: tuple) -> None:
        """``given`` (a shape whose first axis is the batch) must have B rows; if it matches the
        other axis of the inputs instead, say that their layout looks swapped."""
        if given[:1] == (B,):
            return
        hint = ""
        other = x_shape[1] if self.batch_first else x_shape[0]
        if given[:1] == (other,):
            hint = ("; the inputs look " + ("time-major (T, B, D): pass batch_first=False"
                                            if self.batch_first else
                                            "batch-first (B, T, D): pass batch_first=True")
                    + " to the model")
        axis = 0 if self.batch_first else 1
        raise ValueError(f"{name}: expected {B} rows, the batch size B of inputs "
                         f"{self._layout} = {x_shape} (axis {axis}), got shape {given}{hint}")

    def _run(self, inputs, state, train, lengths=None):
        """Validate the inputs and run the recurrent layer: (T, B, out, state, cache), time-major
        whatever ``batch_first``."""
        x = as_input_array("inputs", inputs, self.dtype)
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"inputs: expected {self._layout} with D = {self.input_size}, "
                             f"got {x.shape}")
        x_shape = x.shape
        if self.batch_first:
            x = x.transpose(1, 0, 2)  # (T, B, D)
        T, B, _ = x.shape
        if lengths is not None and np.ndim(lengths) >= 1:
            self._check_batch("lengths", np.shape(lengths), B, x_shape)
        out, state_n, cache = self._run_recurrent(x, state, train, lengths)
        return T, B, out, state_n, cache

    def _time_major(self, a):
        """A per-step array given in the model's layout ((B, T, ...) if ``batch_first``) as
        (T, B, ...), the layout of the computation."""
        if a is None or not self.batch_first:
            return a
        a = np.asarray(a)
        return a.transpose(1, 0, *range(2, a.ndim)) if a.ndim >= 2 else a

    def _final_features(self, state_n):
        """(B, F) read-out of the top layer's final h: ``h_n[-1]``, or ``[h_n[-2], h_n[-1]]``
        when bidirectional (the forward direction after each sequence's last valid step, the
        reverse direction after reading back to step 0), as PyTorch users concatenate them."""
        dirs = self.recurrent.num_directions
        top = state_n[0][-dirs:]  # (dirs, B, P)
        return top[0] if dirs == 1 else np.concatenate(list(top), axis=1)

    def _backward(self, dout, head_grads, rec_cache, final=False):
        """BPTT from dL/d(recurrent output) (T, B, F), or, if ``final``, from dL/d(final
        features) (B, F), which is dL/dh_n of the top layer (each direction's half)."""
        dhx = None
        if final:
            rec = self.recurrent
            dirs = rec.num_directions
            B = dout.shape[0]
            sizes = rec.cell.state_sizes(self.hidden_size)
            dstate = [np.zeros((self.num_layers * dirs, B, S), self.dtype) for S in sizes]
            dstate[0][-dirs:] = dout.reshape(B, dirs, sizes[0]).transpose(1, 0, 2)
            dhx, dout = rec.pack_state(tuple(dstate)), None
        _, _, rec_grads = self.recurrent.backward(dout, rec_cache, dhx)
        grads = self._split_grads({self.recurrent.cell.name: rec_grads, "head": head_grads})
        return {k: grads[k] for k in self.params}

    def _carry(self, state_n, rec_cache, state_at):
        """The state to carry: the final one, or the one after ``state_at`` steps."""
        if state_at is None:
            return self._copy_state(state_n)
        return self._copy_state(self.recurrent.state_at(rec_cache, state_at))


def _valid_mask(lengths, mask, T, B):
    """Combine ``lengths`` (steps t < l_b count) with a time-major ``mask`` (T, B) or
    (T, B, K); either may be None."""
    if lengths is None:
        return mask
    valid = np.arange(T)[:, None] < np.asarray(lengths)[None, :]  # (T, B); checked by the layer
    if mask is None:
        return valid
    mask = np.asarray(mask, bool)
    if mask.ndim == 3:
        valid = valid[..., None]
    return np.logical_and(mask, valid)


class _ClassifierBody(_RecurrentWithHead):
    """Constructor and config shared by the two classifiers (one label per sequence or per
    step): a recurrent layer and a Linear head onto ``num_classes`` logits."""

    def __init__(self, input_size, hidden_size, num_classes, num_layers=1, dtype=np.float64,
                 rng=None, forget_bias=None, dropout=0.0, cell="lstm", cell_options=None,
                 batch_first=False, bidirectional=False):
        self.batch_first = check_bool("batch_first", batch_first)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self._build(input_size, hidden_size, num_classes, num_layers, dtype, rng, forget_bias,
                    dropout, cell, cell_options, bidirectional)

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable)."""
        return {**self._common_config(), "num_classes": self.num_classes}


class SequenceClassifier(_ClassifierBody):
    """Many-to-one classifier: LSTM over (T, B, D), Linear head on the final hidden state.

    Parameters
    ----------
    input_size, hidden_size, num_classes : int
        D, H, C.
    num_layers : int
    dtype, rng, forget_bias, dropout : see :class:`~lstm_bptt.recurrent.LSTM`.
    cell, cell_options : see :class:`CharLM` (e.g. ``cell_options={"proj_size": P}`` for an
        LSTM with a projection: the head then reads P features per direction).
    batch_first : bool
        Inputs (B, T, D) instead of (T, B, D).
    bidirectional : bool
        The head reads [h_fwd, h_rev] (2H features): the forward direction at each sequence's
        last valid step and the reverse direction at step 0 (after reading the sequence
        backwards), i.e. the concatenation of ``h_n[-2]`` and ``h_n[-1]``.

    Notes
    -----
    With lengths l_b the prediction for sequence b reads the top layer's state after step
    l_b - 1 (the padding after it changes nothing and receives no gradient). ``loss`` is the
    mean cross-entropy over the batch, nats.
    """

    def forward(self, inputs, state=None, lengths=None, *, train: bool = False):
        """Class logits (B, C) from the final state; returns (logits, state, cache).

        Parameters
        ----------
        inputs : float ndarray (T, B, D), or (B, T, D) if ``batch_first``
        state : tuple of (L * dirs, B, H) arrays (``(h, c)`` for an LSTM), or None
        lengths : integer ndarray (B,) in [1, T], optional (default: all T)
        """
        T, B, out, state_n, rec_cache = self._run(inputs, state, train, lengths)
        logits, head_cache = self.head.forward(self._final_features(state_n))  # (B, C)
        return logits, state_n, (rec_cache, head_cache)

    def predict(self, inputs, lengths=None):
        """Predicted class ids (B,) (argmax of the logits)."""
        return np.argmax(self.forward(inputs, lengths=lengths)[0], axis=-1)

    def loss(self, inputs, targets, state=None, lengths=None, *, train: bool = True):
        """Mean cross-entropy over the batch (nats), grads keyed like params, final state.

        Parameters
        ----------
        inputs : float ndarray (T, B, D), or (B, T, D) if ``batch_first``
        targets : integer ndarray (B,), class ids in [0, C)
        lengths : integer ndarray (B,), optional
        """
        logits, state_n, (rec_cache, head_cache) = self.forward(inputs, state, lengths,
                                                                train=train)
        self._check_batch("targets", np.shape(targets), logits.shape[0], np.shape(inputs))
        loss, dlogits = softmax_cross_entropy(logits, targets)
        dfeat, head_grads = self.head.backward(dlogits, head_cache)
        grads = self._backward(dfeat, head_grads, rec_cache, final=True)
        return loss, grads, self._copy_state(state_n)


class SequenceRegressor(_RecurrentWithHead):
    """LSTM regressor with MSE loss: per-step outputs (T, B, K), or one output per sequence.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
        D, H, K.
    num_layers : int
    many_to_one : bool
        If True, predict (B, K) from the final state (e.g. the adding problem; with
        ``bidirectional``, from [h_fwd, h_rev] as :class:`SequenceClassifier`); else (T, B, K)
        at every step (e.g. one-step-ahead forecasting of a time series, trained with
        truncated BPTT on a :class:`~lstm_bptt.train.TBPTTStream` of float vectors).
    dtype, rng, forget_bias, dropout : see :class:`~lstm_bptt.recurrent.LSTM`.
    cell, cell_options, batch_first, bidirectional : see :class:`SequenceClassifier`.

    Notes
    -----
    ``loss`` is :func:`~lstm_bptt.losses.mse_loss`: mean of squared errors over all (unmasked)
    entries. In per-step mode ``lengths`` masks the steps t >= l_b.
    """

    def __init__(self, input_size, hidden_size, output_size=1, num_layers=1, many_to_one=False,
                 dtype=np.float64, rng=None, forget_bias=None, dropout=0.0, cell="lstm",
                 cell_options=None, batch_first=False, bidirectional=False):
        self.batch_first = check_bool("batch_first", batch_first)
        self.output_size = check_positive_int("output_size", output_size)
        self.many_to_one = check_bool("many_to_one", many_to_one)
        self._build(input_size, hidden_size, output_size, num_layers, dtype, rng, forget_bias,
                    dropout, cell, cell_options, bidirectional)

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable)."""
        return {**self._common_config(), "output_size": self.output_size,
                "many_to_one": self.many_to_one}

    def forward(self, inputs, state=None, lengths=None, *, train: bool = False):
        """Predictions (T, B, K) ((B, T, K) if ``batch_first``), or (B, K) if ``many_to_one``;
        returns (pred, state, cache).

        In per-step mode the predictions at padded steps (t >= l_b) are the head's bias (the
        recurrent layer outputs 0 there); the loss ignores them.
        """
        pred, state_n, cache = self._forward(inputs, state, lengths, train)
        if self.batch_first and not self.many_to_one:
            pred = pred.transpose(1, 0, 2)
        return pred, state_n, cache

    def _forward(self, inputs, state, lengths, train):
        """:meth:`forward` with time-major per-step predictions (T, B, K)."""
        T, B, out, state_n, rec_cache = self._run(inputs, state, train, lengths)
        if self.many_to_one:
            out = self._final_features(state_n)  # (B, F)
        pred, head_cache = self.head.forward(out)
        return pred, state_n, (rec_cache, head_cache)

    def predict(self, inputs, lengths=None):
        """Predictions only."""
        return self.forward(inputs, lengths=lengths)[0]

    def loss(self, inputs, targets, state=None, lengths=None, mask=None, *, train: bool = True,
             state_at: int | None = None):
        """MSE, grads keyed like params, and the state to carry.

        Parameters
        ----------
        inputs : float ndarray (T, B, D), or (B, T, D) if ``batch_first``
        targets : float ndarray (T, B, K) ((B, T, K) if ``batch_first``), or (B, K) if
            ``many_to_one``
        lengths : integer ndarray (B,), optional
            Valid lengths: the read-out step (many-to-one) or a mask of t < l_b (per step).
        mask : bool ndarray (T, B) or (T, B, K) ((B, T) or (B, T, K) if ``batch_first``),
            optional (per-step mode)
        state_at : int, optional
            Return the state after this many steps instead of the final one (truncated BPTT
            with k2 > k1; see :class:`~lstm_bptt.train.TBPTTStream`).
        """
        pred, state_n, (rec_cache, head_cache) = self._forward(inputs, state, lengths, train)
        targets = as_input_array("targets", targets, self.dtype)
        if self.many_to_one:
            self._check_batch("targets", targets.shape, pred.shape[0], np.shape(inputs))
        else:  # the computation is time-major
            targets = self._time_major(targets)
            mask = _valid_mask(lengths, self._time_major(mask), *pred.shape[:2])
        loss, dpred = mse_loss(pred, targets, mask)
        dout, head_grads = self.head.backward(dpred, head_cache)
        grads = self._backward(dout, head_grads, rec_cache, final=self.many_to_one)
        return loss, grads, self._carry(state_n, rec_cache, state_at)


class SequenceTagger(_ClassifierBody):
    """Per-step classifier (sequence labelling, e.g. part-of-speech or named-entity tags):
    LSTM over (T, B, D), Linear head at every step, cross-entropy over the valid steps.

    Parameters
    ----------
    input_size, hidden_size, num_classes : int
        D, H, C.
    num_layers : int
    dtype, rng, forget_bias, dropout : see :class:`~lstm_bptt.recurrent.LSTM`.
    cell, cell_options, batch_first : see :class:`SequenceClassifier`.
    bidirectional : bool
        Each step's features are [h_fwd_t, h_rev_t] (2H): the tag at t sees the whole
        sequence (the usual BiLSTM tagger; Graves & Schmidhuber 2005).

    Notes
    -----
    ``loss`` is the mean cross-entropy in nats over the counted positions: steps t < l_b
    (all steps without ``lengths``), and among them those where ``mask`` is True. Targets at
    padded steps are ignored, whatever their value (e.g. PyTorch's -100).
    """

    def forward(self, inputs, state=None, lengths=None, *, train: bool = False):
        """Tag logits (T, B, C) ((B, T, C) if ``batch_first``); returns (logits, state, cache).

        Parameters
        ----------
        inputs : float ndarray (T, B, D), or (B, T, D) if ``batch_first``
        state : tuple of (L * dirs, B, H) arrays (``(h, c)`` for an LSTM), or None
        lengths : integer ndarray (B,) in [1, T], optional
        """
        logits, state_n, cache = self._forward(inputs, state, lengths, train)
        return self._time_major(logits), state_n, cache  # the transpose is its own inverse

    def _forward(self, inputs, state, lengths, train):
        T, B, out, state_n, rec_cache = self._run(inputs, state, train, lengths)
        logits, head_cache = self.head.forward(out)  # (T, B, C)
        return logits, state_n, (rec_cache, head_cache)

    def predict(self, inputs, lengths=None):
        """Predicted tags (T, B) ((B, T) if ``batch_first``): the argmax of the logits, and -1
        at padded steps (t >= l_b)."""
        logits = self._forward(inputs, None, lengths, False)[0]
        tags = np.argmax(logits, axis=-1)  # (T, B)
        valid = _valid_mask(lengths, None, *tags.shape)
        return self._time_major(tags if valid is None else np.where(valid, tags, -1))

    def loss(self, inputs, targets, state=None, lengths=None, mask=None, *, train: bool = True,
             state_at: int | None = None):
        """Mean per-step cross-entropy (nats), grads keyed like params, and the state to carry.

        Parameters
        ----------
        inputs : float ndarray (T, B, D), or (B, T, D) if ``batch_first``
        targets : integer ndarray (T, B) ((B, T) if ``batch_first``), tag ids in [0, C) at
            the counted steps
        lengths : integer ndarray (B,), optional
        mask : bool ndarray (T, B) ((B, T) if ``batch_first``), optional
            Positions whose loss counts (with ``lengths``: also t < l_b).
        state_at : int, optional
            Return the state after this many steps instead of the final one.
        """
        logits, state_n, (rec_cache, head_cache) = self._forward(inputs, state, lengths, train)
        T, B = logits.shape[:2]
        targets = check_int_array("targets", targets)
        check_shape("targets", targets, (B, T) if self.batch_first else (T, B),
                    "(B, T)" if self.batch_first else "(T, B)")
        targets = self._time_major(targets)
        mask = _valid_mask(lengths, self._time_major(mask), T, B)
        if lengths is not None:  # padded targets may hold anything (e.g. -100)
            targets = np.where(_valid_mask(lengths, None, T, B), targets, 0)
        loss, dlogits = softmax_cross_entropy(logits, targets, mask)
        dout, head_grads = self.head.backward(dlogits, head_cache)
        grads = self._backward(dout, head_grads, rec_cache)
        return loss, grads, self._carry(state_n, rec_cache, state_at)


MODELS = {"CharLM": CharLM, "SequenceClassifier": SequenceClassifier,
          "SequenceRegressor": SequenceRegressor, "SequenceTagger": SequenceTagger}


def read_charlm_checkpoint(path, *, where=None, check_config=None, rng=None):
    """Read a CharLM checkpoint (as ``lstm-bptt train`` writes it) defensively.

    The skeleton first (model/class ``CharLM``, model/config a dict, extra/vocab ``vocab_size``
    integer code points), then only the members of the shapes that config implies: the
    parameters and the per-parameter optimizer state, checked from their headers before any
    data is read (a forged file cannot make us allocate what its config does not imply).

    Parameters
    ----------
    path : str or Path
    where : str, optional
        Prefix of the error messages (default: the path).
    check_config : callable(config, where), optional
        Run on the config before the model is built (the CLI bounds the sizes with it).
    rng : Generator, seed or None
        The built model's ``rng``.

    Returns
    -------
    tree : dict, the whole checkpoint (params, optimizer, step, extra, ...)
    model : CharLM built from the config (its parameters are not loaded)
    vocab : :class:`~lstm_bptt.data.CharVocab`

    Raises
    ------
    ValueError
        One line naming ``where`` and the member at fault (a file that is not a checkpoint
        raises :class:`~lstm_bptt.checkpoint.CheckpointError`, a ValueError).
    """
    from .checkpoint import load_checkpoint, peek_checkpoint
    from .data import CharVocab

    where = str(path) if where is None else where
    head = peek_checkpoint(path)
    model = head.get("model") if isinstance(head, dict) else None
    extra = head.get("extra") if isinstance(head, dict) else None
    if not isinstance(model, dict) or model.get("class") != "CharLM":
        got = model.get("class") if isinstance(model, dict) else None
        raise ValueError(f"{where}: expected a checkpoint of a CharLM (model/class "
                         f"'CharLM', as `lstm-bptt train` writes), got model/class {got!r}")
    if not isinstance(extra, dict) or "vocab" not in extra:
        raise ValueError(f"{where}: expected the CharLM's vocabulary in extra/vocab (as "
                         "`lstm-bptt train` writes), got none")
    config = model.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{where}: model/config: expected a dict, got "
                         f"{type(config).__name__}")
    if check_config is not None:
        check_config(config, where)
    info = extra["vocab"]
    V = config.get("vocab_size")
    if getattr(info, "shape", None) != (V,) or info.dtype.kind not in "iu":
        got = (f"shape {info.shape} dtype {info.dtype}" if hasattr(info, "dtype")
               else type(info).__name__)
        raise ValueError(f"{where}: extra/vocab: expected {V} integer code points (the "
                         f"config's vocab_size), got {got}")
    try:
        lm = CharLM(**config, rng=rng)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: model/config: {exc}") from None
    params = lm.params

    def expect(name):
        parts = name.split("/")
        if parts[0] == "params" and len(parts) == 2 and parts[1] in params:
            return params[parts[1]].shape, params[parts[1]].dtype
        if parts[:2] == ["optimizer", "state"] and len(parts) == 4 and parts[2] in params:
            return params[parts[2]].shape, params[parts[2]].dtype
        return None

    tree = load_checkpoint(path, expect=expect)
    try:
        vocab = CharVocab.from_array(tree["extra"]["vocab"])
    except ValueError as exc:
        raise ValueError(f"{where}: extra/vocab: {exc}") from None
    return tree, lm, vocab


def build_model(name: str, config: dict, rng=None):
    """Rebuild a model from its class name and :meth:`config` (as stored in a checkpoint)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](**config, rng=rng)
