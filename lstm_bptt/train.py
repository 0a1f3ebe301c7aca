"""Training: batch sources (shuffled mini-batches, truncated-BPTT streams) and a ``Trainer``.

The trainer knows nothing about the model beyond the model protocol of :mod:`lstm_bptt.models`
(``params``, ``loss(inputs, targets, state=None, **kwargs) -> (loss, grads, state)``,
``config()``, ``rng``). Batches are a pure function of the step number (``source.get(step)``),
so a run can be resumed from a checkpoint at any step and continue bit for bit.

Truncated BPTT (Williams & Peng 1990, "An efficient gradient-based algorithm for on-line
training of recurrent network trajectories"; Sutskever 2013, thesis section 2.8.6): the stream
is read in windows of k1 steps; the recurrent state (a tuple of arrays: (h, c) for an LSTM,
(h,) for a GRU or RNN) is carried from one window to the next as plain arrays, so the
gradient stops at the window edge. With k2 > k1 each update backpropagates the loss of
the newest k1 steps through the last k2 steps: the window is extended k2 - k1 steps into the
past (recomputed from the state carried at that point) and the loss there is masked out.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ._checks import (
    check_bool,
    check_choice,
    check_int_array,
    check_nonneg_int,
    check_positive_int,
    check_real,
)
from .checkpoint import (
    check_finite_tree,
    load_checkpoint,
    peek_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .data import bptt_window, num_bptt_windows
from .optim import clip_grad_norm


class TrainingDivergedError(RuntimeError):
    """Training diverged (see :class:`Trainer` for the rule) and was not recovered.

    The trainer has already restored the last good state (parameters, optimizer state,
    schedule, rng, carried state); no checkpoint was written from the bad state.

    Attributes
    ----------
    step : int
        The update (1-based) at which the divergence was detected.
    tensor : str
        What failed the check: ``"loss"``, ``"gradient norm"``, ``"params/<name>"``,
        ``"optimizer/<name>/<key>"``, ``"metric <name>"`` or ``"forward/backward"``.
    value : float
        The offending value (NaN, inf, or the spiking loss).
    restored_step : int or None
        The step of the state the trainer is back at.
    detail : str
        What happened, without the advice that names the Trainer's parameters (for a front end
        that names its own settings instead, such as the command line's flags).
    """

    def __init__(self, message, *, step=None, tensor=None, value=None, restored_step=None,
                 detail=None):
        super().__init__(message)
        self.step, self.tensor, self.value = step, tensor, value
        self.restored_step = restored_step
        self.detail = message if detail is None else detail


def _first_nonfinite(arrays):
    """(name, value) of the first array in ``arrays`` (name -> ndarray) holding NaN or inf."""
    with np.errstate(all="ignore"):
        for name, a in arrays:
            # a sum is a cheap first test (NaN/inf propagate); only then look closer
            if a.dtype.kind == "f" and not np.isfinite(np.add.reduce(a, axis=None)):
                bad = a[~np.isfinite(a)]
                if bad.size:
                    return name, float(bad.ravel()[0])
    return None


_ON_DIVERGENCE = ("raise", "rollback")


@dataclass
class Batch:
    """One training batch: ``model.loss(inputs, targets, state, **kwargs)``.

    ``reset_state`` says the carried state must be dropped before this batch (start of a
    stream or of an epoch).
    """

    inputs: np.ndarray
    targets: np.ndarray
    kwargs: dict = field(default_factory=dict)
    reset_state: bool = True


class MinibatchSource:
    """Shuffled mini-batches of whole sequences, a new permutation every epoch.

    Parameters
    ----------
    inputs : ndarray (T, N, ...) time-major sequences (N = number of sequences), or
        (N, T, ...) if ``batch_first``
    targets : ndarray (N, ...) for one target per sequence, or (T, N, ...) ((N, T, ...) if
        ``batch_first``) per step (told apart by rank: same rank as ``inputs`` means per step).
    batch_size : int
    seed : int
        The permutation of epoch e is ``default_rng([seed, e]).permutation(N)``: a function of
        the epoch, so resuming needs no rng state.
    shuffle : bool
    lengths : integer ndarray (N,), optional
        Valid lengths, passed to the model as ``lengths``.
    drop_last : bool
        Drop the last incomplete batch of each epoch.
    batch_first : bool
        The arrays are batch-first and so are the batches (for a model built with
        ``batch_first=True``).

    Raises
    ------
    ValueError
        Mismatched N between inputs, targets and lengths, or batch_size < 1.
    """

    stateful = False

    def __init__(self, inputs, targets, batch_size, *, seed=0, shuffle=True, lengths=None,
                 drop_last=False, batch_first=False):
        self.inputs = np.asarray(inputs)
        self.targets = np.asarray(targets)
        self.batch_first = check_bool("batch_first", batch_first)
        layout = "(N, T, ...)" if self.batch_first else "(T, N, ...)"
        if self.inputs.ndim < 2:
            raise ValueError(f"inputs: expected {layout}, got shape {self.inputs.shape}")
        self.batch_axis = 0 if self.batch_first else 1
        self.N = self.inputs.shape[self.batch_axis]
        self.target_axis = self.batch_axis if self.targets.ndim == self.inputs.ndim else 0
        if self.targets.shape[self.target_axis] != self.N:
            raise ValueError(
                f"targets: expected {self.N} sequences along axis {self.target_axis} "
                f"(inputs are {layout} with N = {self.N}), got shape {self.targets.shape}"
            )
        self.lengths = None if lengths is None else check_int_array("lengths", lengths, 1)
        if self.lengths is not None and self.lengths.shape != (self.N,):
            raise ValueError(f"lengths: expected shape ({self.N},), got {self.lengths.shape}")
        self.batch_size = check_positive_int("batch_size", batch_size)
        if self.lengths is not None and self.lengths.size and self.lengths.max() > len(
                self.inputs):
            raise ValueError(f"lengths: expected values in 1..T = {len(self.inputs)} (the "
                             f"sequence length of inputs), got {self.lengths.max()}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise TypeError(f"seed: expected an int, got {seed!r}")
        self.seed = int(seed)
        self.shuffle = check_bool("shuffle", shuffle)
        self.drop_last = check_bool("drop_last", drop_last)
        n = self.N // self.batch_size if drop_last else math.ceil(self.N / self.batch_size)
        if n < 1:
            raise ValueError(f"batch_size {batch_size} exceeds the {self.N} sequences")
        self.num_batches = n

    def get(self, step: int) -> Batch:
        """The batch for global step ``step`` (epoch = step // num_batches)."""
        epoch, j = divmod(int(step), self.num_batches)
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.N)
                 if self.shuffle else np.arange(self.N))
        idx = order[j * self.batch_size : (j + 1) * self.batch_size]
        kwargs = {} if self.lengths is None else {"lengths": self.lengths[idx]}
        return Batch(np.take(self.inputs, idx, axis=self.batch_axis),
                     np.take(self.targets, idx, axis=self.target_axis), kwargs,
                     reset_state=True)


class TBPTTStream:
    """Truncated-BPTT windows over B parallel streams: token ids (language modelling) or float
    feature vectors (a multivariate time series), laid out the same way.

    Parameters
    ----------
    streams : integer ndarray (N, B), or float ndarray (N, B, D)
        B contiguous streams, time-major (see :func:`lstm_bptt.data.batchify`). Inputs are
        ``streams[t]``; targets ``streams[t + 1]`` (next-step prediction) unless ``targets``
        is given.
    k1 : int
        Steps per window (and per update), 1 .. the steps of a stream (N - 1 for next-step
        prediction, N with ``targets``); the state is carried across windows.
    k2 : int, optional
        Steps to backpropagate through (k2 >= k1; default k1). With k2 > k1 every update
        backpropagates through the last k2 steps (fewer only at the start of the stream): the
        window is extended into the past and the loss there masked out (Williams & Peng 1990).
        So with k2 >= N - 1 the accumulated gradients are exactly those of full BPTT.
    targets : ndarray (N, B, ...), optional
        A target for every step of ``streams`` (e.g. a label per time step, or another series):
        the window's inputs are ``streams[t]`` and its targets ``targets[t]``, all N steps.

    Raises
    ------
    TypeError
        ``streams`` neither integer ids (N, B) nor float vectors (N, B, D).
    ValueError
        Negative ids or non-finite values; fewer than 2 steps (N < 2 without ``targets``);
        ``targets`` not (N, B, ...); ``k1`` < 1 or longer than a stream (more than its N - 1
        steps of next-step prediction, N with ``targets``); ``k2 < k1``.

    Notes
    -----
    ``num_batches`` windows make one pass over the streams (an epoch); at the first window of
    every pass ``reset_state`` is True, since the streams restart there and the carried state
    belongs to their ends. Windows with k2 > k1 pass ``mask`` (T, B) to the model's loss.
    """

    stateful = True

    def __init__(self, streams, k1: int, k2: int | None = None, *, targets=None):
        arr = np.asarray(streams)
        if arr.dtype.kind == "f":
            if arr.ndim != 3:
                raise TypeError(f"streams: expected integer token ids (N, B) or float feature "
                                f"vectors (N, B, D), got {arr.dtype} of shape {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError("streams: expected finite values, got NaN or inf")
            self.streams = arr
        else:
            self.streams = check_int_array("streams", arr, 0)
            if self.streams.ndim != 2:
                raise ValueError(f"streams: expected token ids (N, B), got {self.streams.shape}")
        self.targets = None if targets is None else np.asarray(targets)
        if self.targets is not None and (self.targets.ndim < 2
                                         or self.targets.shape[:2] != self.streams.shape[:2]):
            raise ValueError(f"targets: expected (N, B, ...) = {self.streams.shape[:2]} + (...) "
                             f"like streams, got {self.targets.shape}")
        # positions with a target: next-step prediction has one fewer than the stream
        self.n_steps = self.streams.shape[0] - (1 if self.targets is None else 0)
        if self.n_steps < 1:
            raise ValueError(f"streams: expected (N, B) with N >= 2, got {self.streams.shape}")
        self.k1 = check_positive_int("k1", k1)
        if self.k1 > self.n_steps:
            raise ValueError(f"k1: expected at most the {self.n_steps} steps of a stream "
                             f"(streams {self.streams.shape[:2]}), got {self.k1}")
        self.k2 = self.k1 if k2 is None else check_positive_int("k2", k2)
        if self.k2 < self.k1:
            raise ValueError(f"k2: expected k2 >= k1 = {self.k1}, got {self.k2}")
        # positions: next-step prediction has one target fewer than the stream has steps, so
        # with per-step targets the window arithmetic runs over N + 1 "positions"
        self._positions = self.n_steps + 1
        self.num_batches = num_bptt_windows(self._positions, self.k1)

    def _window(self, w: int):
        """(lo, start, end) of window ``w``: see :func:`lstm_bptt.data.bptt_window`."""
        return bptt_window(self._positions, w, self.k1, self.k2)

    def get(self, step: int) -> Batch:
        """Window ``step % num_batches``: inputs/targets (<= k2, B) and the kwargs ``mask``
        and ``state_at`` telling the model where the counted loss starts and which state to
        carry to the next window."""
        w = int(step) % self.num_batches
        lo, start, end = self._window(w)
        hist = start - lo
        inputs = self.streams[lo:end]
        if self.targets is None:
            targets = self.streams[lo + 1 : end + 1]
        else:
            targets = self.targets[lo:end]
        kwargs = {}
        if hist:
            mask = np.ones(targets.shape[:2], bool)
            mask[:hist] = False
            kwargs["mask"] = mask
        if self.k2 > self.k1 and w + 1 < self.num_batches:
            next_lo = self._window(w + 1)[0]
            kwargs["state_at"] = next_lo - lo
        return Batch(inputs, targets, kwargs, reset_state=(w == 0))


def tbptt_gradients(model, source: TBPTTStream, num_windows: int | None = None, state=None):
    """Sum over windows of (loss x counted positions) and of its gradients, without updates.

    For checking truncated BPTT: with k2 >= the stream length, dividing the result by the total
    number of counted positions gives exactly the full-BPTT loss and gradient of the mean
    loss over the whole stream.

    Returns
    -------
    total_loss : float (sum over windows of mean loss x counted positions)
    grads : dict keyed like ``model.params`` (same weighting)
    count : int, counted positions
    """
    total, count, acc = 0.0, 0, {k: np.zeros_like(p) for k, p in model.params.items()}
    for w in range(source.num_batches if num_windows is None else num_windows):
        b = source.get(w)
        if b.reset_state:
            state = None
        loss, grads, state = model.loss(b.inputs, b.targets, state, train=False, **b.kwargs)
        # counted entries of the mean: masked positions times the entries per position
        mask = b.kwargs.get("mask")
        n = b.targets.size if mask is None else int(mask.sum()) * (b.targets.size // mask.size)
        total += loss * n
        count += n
        for k in acc:
            acc[k] += grads[k] * n
    return total, acc, count


class Trainer:
    """Generic training loop with validation, early stopping, checkpoints and exact resume.

    Parameters
    ----------
    model : model with ``params``, ``loss``, ``config``, ``rng`` (see :mod:`lstm_bptt.models`)
    optimizer : an optimizer of :mod:`lstm_bptt.optim` over ``model.params``
    source : MinibatchSource, TBPTTStream, or any object with ``num_batches``, ``stateful``
        and ``get(step) -> Batch``
    max_steps : int, optional
        Update budget. Give this or ``epochs``.
    epochs : int, optional
        Passes over the source (max_steps = epochs * source.num_batches).
    scheduler : a schedule of :mod:`lstm_bptt.schedules`, optional
        Stepped after every update (ReduceLROnPlateau: after every evaluation, with the
        monitored metric).
    clip_norm : float, optional
        Clip gradients by their global L2 norm (Pascanu, Mikolov & Bengio 2013).
    eval_fn : callable ``(model) -> dict`` of metrics, optional
        Run every ``eval_every`` steps and at the end.
    eval_every : int, optional
        Steps between evaluations and checkpoints (``eval_fn`` may be None to only write
        checkpoints); without it ``eval_fn`` runs once, at the end.
    log_every : int
        Steps between history rows (mean training loss over the interval).
    monitor : str
        Metric for early stopping / ReduceLROnPlateau (lower is better).
    patience : int, optional
        Stop after this many evaluations without improvement of ``monitor``.
    checkpoint_path : str or Path, optional
        Where to write the checkpoint (atomically) after each evaluation and at the end.
    callbacks : iterable
        Objects with optional ``on_step_end(trainer, info)`` and
        ``on_eval_end(trainer, metrics)`` methods.
    progress : bool or None
        tqdm bar; None shows it only on a terminal.
    verbose : bool
        Print one line with the metrics after each evaluation (independent of the bar).
    perplexity : bool
        Show exp(loss) in the bar (for cross-entropy losses in nats).
    extra : dict, optional
        Stored in the checkpoint as is (e.g. the vocabulary).
    on_divergence : {"raise", "rollback"}
        What :meth:`fit` does when training diverges (rule below). Both first restore the
        last good state from memory. ``"raise"`` (default) then raises
        :class:`TrainingDivergedError`; ``"rollback"`` multiplies the learning rate (and the
        schedule's) by ``lr_factor`` and goes on from there, at most ``max_rollbacks`` times
        in the run, then raises.
    max_rollbacks : int
        Retries allowed with ``on_divergence="rollback"`` (default 3).
    lr_factor : float in (0, 1)
        Learning-rate multiplier at each rollback (default 0.1).
    spike_factor : float > 1 or None
        Loss-spike threshold (default 10; None: only non-finite values count).
    snapshot_every : int
        Steps between in-memory snapshots of the last good state (default 1: every step,
        about one copy of parameters and optimizer state, a few percent of a step of the
        CLI's default model; larger values save that and roll back further).

    Notes
    -----
    **Divergence rule.** Training has diverged when any of these holds at some step:
    ``model.loss`` overflows (it runs under ``np.errstate(over="raise", invalid="raise")``);
    the loss or the gradient norm is NaN or inf; after the update, a parameter or an optimizer
    state array holds NaN or inf; the loss exceeds ``spike_factor`` times its reference value,
    the loss of the run's first step (the untrained model's, kept across resumes: about ln V
    nats for a fresh language model, so a loss above 10 ln V, ten times worse than guessing,
    is caught whether the run blows up at once or creeps up); an evaluation returns a NaN or
    inf metric, or a monitored metric whose name ends in "loss" above that same threshold.
    (The running mean of the loss, ``ema``, is kept for the record; it does not move the
    threshold, so a slow divergence cannot raise its own bar.)

    The state restored is the newest snapshot, taken at the start of a step once that step's
    loss has passed these checks (and at the start of :meth:`fit`), so it never holds a value
    that failed them. A checkpoint after an evaluation is written only once the next step's
    loss has passed them too (a spike shows a bad state one step late), or at the end of
    :meth:`fit`, or on KeyboardInterrupt; so a diverging run never replaces a good file.

    Raises
    ------
    ValueError
        Both or neither of ``max_steps`` and ``epochs``; ``patience`` without ``eval_fn``;
        non-positive sizes, ``clip_norm`` or ``patience``; an optimizer that does not hold
        this model's parameter arrays; an unknown ``on_divergence``; (in :meth:`fit`) metrics
        without ``monitor`` when early stopping or ReduceLROnPlateau needs it.
    TypeError
        Arguments of the wrong type (e.g. a str for a number or a flag).
    TrainingDivergedError
        In :meth:`fit`, on an unrecovered divergence (see the rule above).
    """

    def __init__(self, model, optimizer, source, *, max_steps=None, epochs=None, scheduler=None,
                 clip_norm=None, eval_fn=None, eval_every=None, log_every=10,
                 monitor="val_loss", patience=None, checkpoint_path=None, callbacks=(),
                 progress=None, perplexity=False, extra=None, verbose=True,
                 on_divergence="raise", max_rollbacks=3, lr_factor=0.1, spike_factor=10.0,
                 snapshot_every=1):
        if (max_steps is None) == (epochs is None):
            raise ValueError("give exactly one of max_steps and epochs")
        for name in ("params", "loss", "config", "rng"):
            if not hasattr(model, name):
                raise TypeError(f"model: expected a model with `{name}` (see lstm_bptt.models),"
                                f" got {type(model).__name__}")
        for name in ("step", "state_dict", "load_state_dict"):
            if not hasattr(optimizer, name):
                raise TypeError(f"optimizer: expected an lstm_bptt.optim optimizer, got "
                                f"{type(optimizer).__name__}")
        for name in ("num_batches", "get"):
            if not hasattr(source, name):
                raise TypeError(f"source: expected a batch source with `{name}` "
                                f"(MinibatchSource, TBPTTStream), got {type(source).__name__}")
        self.max_steps = (check_positive_int("max_steps", max_steps) if max_steps is not None
                          else check_positive_int("epochs", epochs) * source.num_batches)
        opt_params = getattr(optimizer, "params", None)
        if isinstance(opt_params, dict):
            foreign = sorted(k for k, p in model.params.items() if opt_params.get(k) is not p)
            if foreign or set(opt_params) != set(model.params):
                raise ValueError(
                    "optimizer: expected an optimizer over this model's parameter arrays "
                    f"(built as Opt(model.params, ...)), got one over other arrays (differing: "
                    f"{(foreign or sorted(set(opt_params) ^ set(model.params)))[:3]}); the "
                    "model would never be updated")
        self.clip_norm = (None if clip_norm is None
                          else check_real("clip_norm", clip_norm, low=0, low_open=True))
        self.model, self.optimizer, self.source = model, optimizer, source
        if scheduler is not None and getattr(scheduler, "optimizer", optimizer) is not optimizer:
            raise ValueError("scheduler: expected a schedule of this trainer's optimizer, got one"
                             " built on another optimizer")
        self.scheduler = scheduler
        if eval_fn is not None and not callable(eval_fn):
            raise TypeError(f"eval_fn: expected a callable (model) -> dict, got "
                            f"{type(eval_fn).__name__}")
        if eval_fn is None and patience is not None:
            raise ValueError("patience (early stopping) needs an eval_fn that returns metrics")
        self.eval_fn = eval_fn
        self.eval_every = None if eval_every is None else check_positive_int("eval_every",
                                                                              eval_every)
        self.log_every = check_positive_int("log_every", log_every)
        if not isinstance(monitor, str):
            raise TypeError(f"monitor: expected a metric name (str), got {monitor!r}")
        self.monitor = monitor
        self.patience = None if patience is None else check_positive_int("patience", patience)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.callbacks = list(callbacks)
        self.progress = None if progress is None else check_bool("progress", progress)
        self.perplexity = check_bool("perplexity", perplexity)
        self.verbose = check_bool("verbose", verbose)
        if extra is not None and not isinstance(extra, dict):
            raise TypeError(f"extra: expected a dict or None, got {type(extra).__name__}")
        self.extra = dict(extra or {})
        self.on_divergence = check_choice("on_divergence", on_divergence, _ON_DIVERGENCE)
        self.max_rollbacks = check_nonneg_int("max_rollbacks", max_rollbacks)
        self.lr_factor = check_real("lr_factor", lr_factor, low=0, high=1, low_open=True,
                                    high_open=True)
        self.spike_factor = (None if spike_factor is None else
                             check_real("spike_factor", spike_factor, low=1, low_open=True))
        self.snapshot_every = check_positive_int("snapshot_every", snapshot_every)
        self.step = 0
        self.state = None
        self.history: list[dict] = []
        self.best = math.inf
        self.bad_evals = 0
        self.stopped_early = False
        self.saved_step = None  # step of the last checkpoint written by fit, if any
        self.stop_reason = None  # set by request_stop(); fit ends after the current update
        self.elapsed_before = 0.0  # training seconds of earlier segments (restored on resume)
        self.rollbacks = 0
        self._interval = []
        # loss statistics for the spike rule: mean of the first 10 accepted losses, then EMA
        self._loss_stats = {"n": 0, "ref": 0.0, "ema": 0.0}
        self._snapshot = None
        self._pending = None  # (step, checkpoint tree) waiting for the next loss check

    # ------------------------------------------------------------------ divergence
    def _take_snapshot(self, rng_before=None) -> None:
        """Remember the current state as the last good one (parameters, optimizer state,
        schedule, rng, carried state, step, bookkeeping). ``rng_before``: the model rng's state
        before this step's forward drew from it."""
        snap = self._snapshot
        if snap is None or snap["params"].keys() != self.model.params.keys():
            snap = self._snapshot = {"params": {k: np.array(v)
                                                for k, v in self.model.params.items()}}
        else:
            for k, v in self.model.params.items():
                np.copyto(snap["params"][k], v)
        snap["optimizer"] = self.optimizer.state_dict()
        snap["scheduler"] = None if self.scheduler is None else self.scheduler.state_dict()
        snap["rng"] = (rng_before if rng_before is not None
                       else self.model.rng.bit_generator.state)
        snap["state"] = None if self.state is None else tuple(np.array(s) for s in self.state)
        snap["step"] = self.step
        snap["book"] = {"best": self.best, "bad_evals": self.bad_evals,
                        "stopped_early": self.stopped_early, "n_history": len(self.history),
                        "interval": [dict(r) for r in self._interval],
                        "loss_stats": dict(self._loss_stats)}

    def _restore_snapshot(self) -> int:
        """Go back to the last good state; returns its step."""
        snap = self._snapshot
        for k, v in self.model.params.items():
            np.copyto(v, snap["params"][k])
        self.optimizer.load_state_dict(snap["optimizer"])
        if self.scheduler is not None and snap["scheduler"] is not None:
            self.scheduler.load_state_dict(snap["scheduler"])
        self.model.rng.bit_generator.state = snap["rng"]
        self.state = None if snap["state"] is None else tuple(np.array(s)
                                                              for s in snap["state"])
        self.step = snap["step"]
        book = snap["book"]
        self.best, self.bad_evals = book["best"], book["bad_evals"]
        self.stopped_early = book["stopped_early"]
        del self.history[book["n_history"]:]
        self._interval = [dict(r) for r in book["interval"]]
        self._loss_stats = dict(book["loss_stats"])
        return self.step

    def _diverged(self, step, tensor, value, what):
        """Restore the last good state and build the error (raised by the caller)."""
        self._pending = None  # a state that led to a failed check is never written
        restored = self._restore_snapshot() if self._snapshot else self.step
        detail = (f"training diverged at step {step}: {what}; back at step {restored}, the "
                  "last state that passed the checks")
        spike = (f" (or a higher spike_factor than {self.spike_factor:g})"
                 if "reference value" in what else "")
        msg = (f"{detail}. Try a lower learning rate, gradient clipping (clip_norm) or "
               f"float64{spike}.")
        return TrainingDivergedError(msg, step=step, tensor=tensor, value=value,
                                     restored_step=restored, detail=detail)

    def _spike_threshold(self):
        st = self._loss_stats
        if self.spike_factor is None or st["n"] < 1:
            return None
        return self.spike_factor * st["ref"]

    def _accept_loss(self, loss: float) -> None:
        st = self._loss_stats
        if st["n"] == 0:
            st["ref"] = st["ema"] = loss  # the untrained model's loss
        else:
            st["ema"] = 0.9 * st["ema"] + 0.1 * loss
        st["n"] += 1

    def _scale_lr(self, factor: float) -> float:
        if self.scheduler is not None and hasattr(self.scheduler, "scale_lr"):
            self.scheduler.scale_lr(factor)
        else:
            self.optimizer.lr = float(self.optimizer.lr) * factor
        return float(self.optimizer.lr)

    # ------------------------------------------------------------------ training
    def request_stop(self, reason: str = "stop requested", *, evaluate: bool = True) -> None:
        """Ask :meth:`fit` to stop after the update in progress, as at the end of the budget:
        it then evaluates (unless ``evaluate=False``, e.g. for Ctrl-C, where a prompt exit
        matters more), writes the checkpoint and returns. Safe to call from a signal handler
        or a callback (only flags are set; no update is ever cut in half)."""
        self.stop_reason = str(reason)
        self._eval_on_stop = bool(evaluate)

    def _may_evaluate(self) -> bool:
        return self.stop_reason is None or getattr(self, "_eval_on_stop", True)

    def train_step(self) -> dict:
        """One update on ``source.get(self.step)``; returns {"loss", "grad_norm", "lr"}.

        Raises
        ------
        TrainingDivergedError
            The step failed the divergence checks (see :class:`Trainer`); the trainer is back
            at the last good state, whatever ``on_divergence`` says (:meth:`fit` applies it).
        """
        if self._snapshot is None:
            self._take_snapshot()
        step = self.step + 1
        batch = self.source.get(self.step)
        state = None if (batch.reset_state or not self.source.stateful) else self.state
        snap_now = self.step % self.snapshot_every == 0
        rng_before = self.model.rng.bit_generator.state if snap_now else None

        def fail(tensor, value, what):
            # the current parameters produced this loss: they are not good, go back to the
            # newest state whose loss passed (the update of this step is not applied)
            return self._diverged(step, tensor, value, what + " (the update was not applied)")

        try:
            # An overflow anywhere in the forward/backward is the divergence itself; without
            # this it surfaces later as a ValueError about inf inputs deep inside a layer.
            with np.errstate(over="raise", invalid="raise"):
                loss, grads, new_state = self.model.loss(batch.inputs, batch.targets, state,
                                                         **batch.kwargs)
        except FloatingPointError as exc:
            raise fail("forward/backward", math.nan,
                       f"the forward/backward pass overflowed ({exc})") from exc
        with np.errstate(all="ignore"):  # inf * 0 in clipping: reported below instead
            if self.clip_norm is not None:
                gnorm = clip_grad_norm(grads, self.clip_norm)
            else:
                gnorm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64)))
                                      for g in grads.values()))
        loss = float(loss)
        if not math.isfinite(loss):
            raise fail("loss", loss, f"loss = {loss}")
        if not math.isfinite(gnorm):
            raise fail("gradient norm", gnorm, f"gradient norm = {gnorm}")
        limit = self._spike_threshold()
        if limit is not None and loss > limit:
            # the damage was done by an earlier update: go back to before it in any case
            raise fail("loss", loss, f"loss = {loss:.6g}, more than {self.spike_factor:g} x "
                       f"its reference value = {limit:.6g}")
        if self._pending is not None:
            self._flush_pending()  # its state has now passed this loss check too
        if snap_now:
            self._take_snapshot(rng_before)
        with np.errstate(all="ignore"):  # an overflow in the update is reported by name below
            self.optimizer.step(grads)
        bad = _first_nonfinite(self.model.params.items())
        if bad is None and isinstance(getattr(self.optimizer, "state", None), dict):
            bad = _first_nonfinite(
                (f"optimizer/{name}/{k}", a) for name, st in self.optimizer.state.items()
                for k, a in st.items() if isinstance(a, np.ndarray))
        if bad is not None:
            tensor = bad[0] if bad[0].startswith("optimizer/") else f"params/{bad[0]}"
            raise self._diverged(step, tensor, bad[1], f"after the update {tensor} holds "
                                 f"{bad[1]} (loss before it {loss:.6g}, gradient norm "
                                 f"{gnorm:.6g})")
        self._accept_loss(loss)
        if self.scheduler is not None and not hasattr(self.scheduler, "num_bad_epochs"):
            self.scheduler.step()
        self.state = (tuple(new_state) if new_state is not None else None
                      ) if self.source.stateful else None
        self.step += 1
        return {"loss": loss, "grad_norm": gnorm, "lr": float(self.optimizer.lr)}

    def evaluate(self) -> dict:
        """Run ``eval_fn``, record the metrics in the history, update early stopping and
        ReduceLROnPlateau. (``fit`` then prints them and calls the ``on_eval_end`` callbacks.)"""
        metrics = dict(self.eval_fn(self.model)) if self.eval_fn is not None else {}
        for k, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, numbers.Real | np.ndarray | np.generic):
                raise TypeError(f"eval_fn: expected a dict of numbers, got {k!r}: {v!r}")
            if not math.isfinite(float(v)):
                # a non-finite validation result is never reported as one: the model diverged
                raise self._diverged(self.step, f"metric {k}", float(v),
                                     f"evaluation returned {k} = {float(v)}")
            limit = self._spike_threshold()
            if k == self.monitor and k.endswith("loss") and limit is not None and v > limit:
                raise self._diverged(self.step, f"metric {k}", float(v),
                                     f"evaluation returned {k} = {float(v):.6g}, more than "
                                     f"{self.spike_factor:g} x the training loss's reference "
                                     f"value = {limit:.6g}")
        row = {k: float(v) for k, v in metrics.items()}
        if self.history and self.history[-1].get("step") == self.step:
            self.history[-1].update(row)  # one row per step: the log row of this step
        else:
            self.history.append({"step": self.step, **row})
        if self.monitor not in metrics and (self.patience is not None or (
                self.scheduler is not None and hasattr(self.scheduler, "num_bad_epochs"))):
            raise ValueError(
                f"monitor: eval_fn returned {sorted(metrics)}, without {self.monitor!r} which "
                "early stopping / ReduceLROnPlateau watch; pass monitor=<one of those keys>")
        if self.monitor in metrics:
            value = float(metrics[self.monitor])
            if value < self.best:
                self.best, self.bad_evals = value, 0
            else:
                self.bad_evals += 1
            if self.scheduler is not None and hasattr(self.scheduler, "num_bad_epochs"):
                self.scheduler.step(value)
            if self.patience is not None and self.bad_evals >= self.patience:
                self.stopped_early = True
        return metrics

    def _after_eval(self, bar, metrics):
        if self.verbose and metrics:
            bar.write(self._format_eval(metrics))
        for cb in self.callbacks:
            if hasattr(cb, "on_eval_end"):
                cb.on_eval_end(self, metrics)

    def fit(self) -> list[dict]:
        """Train until ``max_steps``, early stopping or :meth:`request_stop`; returns the history.

        A history row is written every ``log_every`` steps (mean training loss, gradient norm,
        lr, ``elapsed_s`` counted across resumes); an evaluation at a logged step fills its
        columns into that step's row.

        Raises
        ------
        TrainingDivergedError
            Non-finite loss or gradient, or an overflow in the forward/backward pass (the
            last good checkpoint is left untouched).
        """
        self.stop_reason = None
        t0 = self._fit_t0 = time.perf_counter() - self.elapsed_before  # continues on resume
        bar = tqdm(total=self.max_steps, initial=self.step, disable=self._bar_disabled(),
                   dynamic_ncols=True, unit="step")
        last_eval = None
        if self._snapshot is None or self._snapshot["step"] != self.step:
            self._take_snapshot()  # the starting point (initial or loaded) is the first good
        try:
            while (self.step < self.max_steps and not self.stopped_early
                   and self.stop_reason is None):
                try:
                    info = self.train_step()
                except TrainingDivergedError as exc:
                    self._handle_divergence(bar, exc)
                    bar.n = self.step
                    continue
                self._interval.append(info)
                for cb in self.callbacks:
                    if hasattr(cb, "on_step_end"):
                        cb.on_step_end(self, info)
                bar.update(1)
                if self.step % self.log_every == 0 or self.step == self.max_steps:
                    self._log(bar, time.perf_counter() - t0)
                if self.eval_every and self.step % self.eval_every == 0 and self._may_evaluate():
                    try:
                        metrics = self.evaluate()
                    except TrainingDivergedError as exc:
                        self._handle_divergence(bar, exc)
                        bar.n = self.step
                        continue
                    last_eval = self.step
                    self._after_eval(bar, metrics)
                    # written once the next step's loss has passed the checks: a loss spike
                    # shows a bad state one step late, and it must not replace a good file
                    self._pending = self._checkpoint_now()
            if self._interval:
                self._log(bar, time.perf_counter() - t0)
            if self.eval_fn is not None and last_eval != self.step and self._may_evaluate():
                self._after_eval(bar, self.evaluate())  # a divergence here is final
            self._pending = None
            self._save()
        except KeyboardInterrupt:
            self._flush_pending()  # the state of the last evaluation, as before the interrupt
            raise
        finally:
            bar.close()
            self.elapsed_before = time.perf_counter() - t0
            self._fit_t0 = None
        return self.history

    def _elapsed_now(self) -> float:
        """Training seconds so far, across resumes (the clock of the running fit, if any)."""
        t0 = getattr(self, "_fit_t0", None)
        return self.elapsed_before if t0 is None else time.perf_counter() - t0

    def _checkpoint_now(self):
        """(step, tree) to write later, or None without a checkpoint path."""
        if self.checkpoint_path is None:
            return None
        return self.step, self._checked_tree()

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            save_checkpoint(self.checkpoint_path, pending[1])
            self.saved_step = pending[0]

    def _handle_divergence(self, bar, exc: TrainingDivergedError) -> None:
        """Apply ``on_divergence`` to a divergence (the state is already restored)."""
        if self.on_divergence == "raise":
            raise exc
        if self.rollbacks >= self.max_rollbacks:
            gave_up = (f"gave up after {self.rollbacks} rollback(s), the learning rate lowered "
                       f"to {float(self.optimizer.lr):.3g}")
            raise TrainingDivergedError(
                f"{exc} G{gave_up[1:]} (max_rollbacks).",
                step=exc.step, tensor=exc.tensor, value=exc.value,
                restored_step=exc.restored_step, detail=f"{exc.detail}; {gave_up}") from None
        self.rollbacks += 1
        lr = self._scale_lr(self.lr_factor)
        self._snapshot["optimizer"] = self.optimizer.state_dict()  # the lower lr is kept
        if self.scheduler is not None:
            self._snapshot["scheduler"] = self.scheduler.state_dict()
        self.history.append({"step": self.step, "rollback": self.rollbacks,
                             "diverged_step": exc.step, "lr": lr})
        self._snapshot["book"]["n_history"] = len(self.history)
        if self.verbose:
            bar.write(f"step {exc.step}: {exc.tensor} = {exc.value:.3g}: diverged; rolled back "
                      f"to step {self.step}, learning rate now {lr:.3g} "
                      f"(rollback {self.rollbacks} of {self.max_rollbacks})")

    def _bar_disabled(self):
        if self.progress is None:
            return None  # tqdm: off when not attached to a terminal
        return not self.progress

    def _log(self, bar, elapsed):
        rows = self._interval
        self._interval = []
        loss = float(np.mean([r["loss"] for r in rows]))
        row = {"step": self.step, "loss": loss,
               "grad_norm": float(np.mean([r["grad_norm"] for r in rows])),
               "lr": rows[-1]["lr"], "elapsed_s": round(elapsed, 3)}
        self.history.append(row)
        post = {"loss": f"{loss:.4f}"}
        if self.perplexity:
            post["ppl"] = f"{math.exp(min(loss, 700)):.2f}"
        post["gnorm"] = f"{row['grad_norm']:.2f}"
        post["lr"] = f"{row['lr']:.2e}"
        bar.set_postfix(post, refresh=False)

    def _format_eval(self, metrics):
        parts = [f"step {self.step}"] + [
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()]
        return " | ".join(parts)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_tree(self) -> dict:
        """Everything needed to resume exactly, as a checkpoint tree."""
        return {
            "model": {"class": type(self.model).__name__, "config": self.model.config()},
            "params": {k: np.array(v) for k, v in self.model.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": {"model": rng_state(self.model.rng)},
            "step": self.step,
            "state": None if self.state is None else [np.array(s) for s in self.state],
            "history": self.history,
            # the pending log interval too: otherwise the first history row after a resume
            # averages fewer steps than the uninterrupted run's
            "trainer": {"best": self.best, "bad_evals": self.bad_evals,
                        "max_steps": self.max_steps, "stopped_early": self.stopped_early,
                        "elapsed_s": self._elapsed_now(),
                        "interval": [dict(r) for r in self._interval],
                        "rollbacks": self.rollbacks, "loss_stats": dict(self._loss_stats)},
            "extra": self.extra,
        }

    def _save(self):
        if self.checkpoint_path is None:
            return
        self.save(self.checkpoint_path)
        self.saved_step = self.step

    def _checked_tree(self) -> dict:
        tree = self.checkpoint_tree()
        try:
            check_finite_tree({"params": tree["params"], "optimizer": tree["optimizer"],
                               "state": tree["state"]})
        except ValueError as exc:
            raise TrainingDivergedError(f"refusing to write a checkpoint at step {self.step}: "
                                        f"{exc}", step=self.step) from None
        return tree

    def save(self, path) -> Path:
        """Write a checkpoint to ``path`` now (atomically).

        Raises
        ------
        TrainingDivergedError
            A parameter, optimizer state or carried state holds NaN or inf: a checkpoint is
            never written from such a state (the file at ``path`` is left as it was).
        """
        return save_checkpoint(path, self._checked_tree())

    def expected_members(self, name: str):
        """(shape, dtype) a checkpoint member of this trainer's model must have, or None:
        parameters and optimizer state arrays, checked before a file's data is read."""
        parts = name.split("/")
        params = self.model.params
        if len(parts) == 2 and parts[0] == "params" and parts[1] in params:
            p = params[parts[1]]
            return p.shape, p.dtype
        if (len(parts) == 4 and parts[:2] == ["optimizer", "state"] and parts[2] in params):
            p = params[parts[2]]
            return p.shape, p.dtype
        return None

    def load(self, path_or_tree) -> dict:
        """Restore params, optimizer, schedule, rng, step, carried state and history.

        The checkpoint is validated against this trainer's model before anything changes
        (all or nothing): required members, each parameter's shape and dtype (from the file's
        headers, before its data is read), finite values, ``step`` a non-negative int, a
        well-formed carried state, rng state and history.

        Returns the checkpoint tree (for its ``extra``).

        Raises
        ------
        ValueError
            A missing or malformed member, naming it and what was expected (another model
            class, other shapes, NaN/inf values, a negative step, ...).
        TypeError
            ``path_or_tree`` is neither a path nor a dict.
        """
        if isinstance(path_or_tree, dict):
            tree, where = path_or_tree, "checkpoint"
        elif isinstance(path_or_tree, str | Path):
            budget = 5 * sum(p.nbytes for p in self.model.params.values()) + (64 << 20)
            head = peek_checkpoint(path_or_tree, max_bytes=budget)
            model_entry = head.get("model") if isinstance(head, dict) else None
            cls = model_entry.get("class") if isinstance(model_entry, dict) else None
            if cls != type(self.model).__name__:
                raise ValueError(f"{path_or_tree}: model/class: expected a "
                                 f"{type(self.model).__name__} checkpoint, got {cls!r}")
            tree = load_checkpoint(path_or_tree, expect=self.expected_members,
                                   max_bytes=budget)
            where = str(path_or_tree)
        else:
            raise TypeError(f"path_or_tree: expected a path or a checkpoint dict, got "
                            f"{type(path_or_tree).__name__}")
        self._check_tree(tree, where)
        undo = self._snapshot_for_load()
        try:
            self.model.load_params(tree["params"])
            self.optimizer.load_state_dict(tree["optimizer"])
            if self.scheduler is not None and tree.get("scheduler") is not None:
                self.scheduler.load_state_dict(tree["scheduler"])
            set_rng_state(self.model.rng, tree["rng"]["model"])
        except (TypeError, ValueError, KeyError) as exc:
            undo()
            raise ValueError(f"{where}: {exc}") from None
        self.step = int(tree["step"])
        st = tree["state"]
        self.state = None if st is None else tuple(np.array(s) for s in st)
        self.history = list(tree.get("history") or [])
        tr = tree.get("trainer", {})
        self.best = float(tr.get("best", math.inf))
        self.bad_evals = int(tr.get("bad_evals", 0))
        self.stopped_early = bool(tr.get("stopped_early", False))
        self.elapsed_before = float(tr.get("elapsed_s", 0.0))
        self.rollbacks = int(tr.get("rollbacks", 0))
        stats = tr.get("loss_stats")
        self._loss_stats = ({"n": int(stats["n"]), "ref": float(stats["ref"]),
                             "ema": float(stats["ema"])} if stats else
                            {"n": 0, "ref": 0.0, "ema": 0.0})
        self._interval = [{k: float(v) for k, v in r.items()} for r in tr.get("interval", [])]
        self._snapshot = None  # the loaded state becomes the first good one at fit()
        self._pending = None
        return tree

    def _snapshot_for_load(self):
        """A closure undoing a half-applied load (params, optimizer, schedule, rng)."""
        params = {k: np.array(v) for k, v in self.model.params.items()}
        opt = self.optimizer.state_dict()
        sched = None if self.scheduler is None else self.scheduler.state_dict()
        rng = self.model.rng.bit_generator.state

        def undo():
            for k, v in self.model.params.items():
                np.copyto(v, params[k])
            self.optimizer.load_state_dict(opt)
            if sched is not None:
                self.scheduler.load_state_dict(sched)
            self.model.rng.bit_generator.state = rng

        return undo

    def _check_tree(self, tree, where: str) -> None:
        """Schema of a checkpoint written by :meth:`save`; one-line ValueError naming the
        member that is missing or malformed."""

        def bad(member, expected, got):
            raise ValueError(f"{where}: {member}: expected {expected}, got {got}")

        def need(d, key, kind, prefix=""):
            member = f"{prefix}{key}"
            if not isinstance(d, dict) or key not in d:
                bad(member, f"a member {member!r} (an lstm-bptt Trainer checkpoint)", "none")
            if kind is not None and not isinstance(d[key], kind):
                bad(member, kind.__name__ if isinstance(kind, type) else
                    " or ".join(k.__name__ for k in kind), type(d[key]).__name__)
            return d[key]

        if not isinstance(tree, dict):
            bad("/", "a dict", type(tree).__name__)
        model = need(tree, "model", dict)
        cls = need(model, "class", str, "model/")
        if cls != type(self.model).__name__:
            bad("model/class", f"a {type(self.model).__name__} checkpoint", repr(cls))
        need(model, "config", dict, "model/")
        params = need(tree, "params", dict)
        if set(params) != set(self.model.params):
            bad("params", f"the parameters {sorted(self.model.params)}",
                f"missing {sorted(set(self.model.params) - set(params))}, unexpected "
                f"{sorted(set(params) - set(self.model.params))[:5]}")
        for k, p in self.model.params.items():
            v = params[k]
            if not isinstance(v, np.ndarray):
                bad(f"params/{k}", "an array", type(v).__name__)
            if v.dtype != p.dtype or v.shape != p.shape:
                bad(f"params/{k}", f"shape {p.shape} and dtype {p.dtype} (the model's)",
                    f"shape {v.shape} and dtype {v.dtype}")
        opt = need(tree, "optimizer", dict)
        try:
            check_finite_tree({"params": params, "optimizer": opt})
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if self.scheduler is not None:
            need(tree, "scheduler", dict)
        rng = need(tree, "rng", dict)
        need(rng, "model", str, "rng/")
        step = need(tree, "step", int)
        if isinstance(step, bool) or step < 0:
            bad("step", "an int >= 0", repr(step))
        state = need(tree, "state", (list, type(None)))
        if state is not None:
            dt = next(iter(self.model.params.values())).dtype
            for i, s in enumerate(state):
                if not isinstance(s, np.ndarray) or s.dtype != dt:
                    got = f"dtype {s.dtype}" if isinstance(s, np.ndarray) else type(s).__name__
                    bad(f"state/{i}", f"an array of dtype {dt}", got)
                if s.ndim != 3 or not np.isfinite(s).all():
                    bad(f"state/{i}", "a finite (num_layers, B, H) array",
                        f"shape {s.shape}" + ("" if np.isfinite(s).all() else " with NaN/inf"))
        history = need(tree, "history", list)
        if not all(isinstance(r, dict) for r in history):
            bad("history", "a list of dicts", "other entries")
        tr = need(tree, "trainer", dict)
        for key, kind in (("best", float | int), ("bad_evals", int), ("interval", list)):
            if key in tr and (isinstance(tr[key], bool) or not isinstance(tr[key], kind)):
                bad(f"trainer/{key}", "a number" if key == "best" else kind.__name__,
                    repr(tr[key])[:40])
        for i, r in enumerate(tr.get("interval", [])):
            if not isinstance(r, dict) or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in r.values()):
                bad(f"trainer/interval/{i}", "a dict of numbers", repr(r)[:60])
        stats = tr.get("loss_stats")
        if stats is not None and (not isinstance(stats, dict) or set(stats) != {
                "n", "ref", "ema"}):
            bad("trainer/loss_stats", "a dict with n, ref, ema", repr(stats)[:60])

    def write_history(self, path) -> Path:
        """Write the history as CSV (``.csv``) or JSON (any other suffix)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".csv":
            keys = list(dict.fromkeys(k for row in self.history for k in row))
            with open(path, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=keys)
                w.writeheader()
                w.writerows(self.history)
        else:
            path.write_text(json.dumps(self.history, indent=1))
        return path
