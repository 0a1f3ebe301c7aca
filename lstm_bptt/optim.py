"""Optimizers (SGD, Adam, AdamW, RMSprop, Adagrad) and gradient clipping, in NumPy.

Every optimizer follows the update rule of the corresponding ``torch.optim`` class (its documented
pseudo-code, single parameter group, ``maximize=False``) and updates the parameter arrays IN PLACE,
so a model that holds the same arrays in its ``.params`` sees the new values without copying.

Conventions shared by all optimizers
------------------------------------
* ``params`` is a dict ``name -> np.ndarray`` (floating dtype, any shape). The dict is copied
  (shallowly) at construction; the arrays are not.
* ``opt.step(grads)`` takes a dict keyed exactly like ``params`` whose arrays have the parameter's
  shape and dtype; ``grads`` is never modified. float32 parameters stay float32 and their state
  arrays are float32 too.
* ``opt.lr`` (and every other hyperparameter) is a public attribute; learning-rate schedules in
  :mod:`lstm_bptt.schedules` set ``opt.lr`` between steps.
* Per-parameter state lives in ``opt.state[name]``, a dict created lazily at the first step with
  PyTorch's keys: ``step`` (int, number of updates this parameter received) and the moment arrays
  (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``square_avg``,
  ``grad_avg``, ``sum``).
* ``state_dict()`` returns a nested dict whose leaves are only NumPy arrays and Python
  int/float/bool/str, so it can be flattened into an ``.npz`` file without pickle;
  ``load_state_dict`` accepts such a dict back (also with scalars turned into 0-d arrays by the
  ``.npz`` round trip) and copies its values into the optimizer.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from ._checks import check_bool, check_int, check_real

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "clip_grad_norm",
    "clip_grad_value",
]


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _positive_eps(value) -> float:
    """``eps`` of the adaptive optimizers: > 0, or a parameter whose squared gradients are
    all zero divides 0 by 0 (NaN)."""
    eps = check_real("eps", value, low=0.0)
    if eps == 0:
        raise ValueError("eps: expected a number > 0 (it keeps 0 / sqrt(0) finite), got 0.0")
    return eps


def _check_params(params) -> dict[str, np.ndarray]:
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict name -> np.ndarray, got {type(params).__name__}")
    if len(params) == 0:
        raise ValueError("params: expected at least one parameter array, got an empty dict")
    seen: dict[int, str] = {}
    out: dict[str, np.ndarray] = {}
    for name, p in params.items():
        if not isinstance(name, str):
            raise TypeError(f"params: expected str keys, got {type(name).__name__} {name!r}")
        if not isinstance(p, np.ndarray):
            raise TypeError(f"params[{name!r}]: expected a np.ndarray, got {type(p).__name__}")
        if not np.issubdtype(p.dtype, np.floating):
            raise TypeError(f"params[{name!r}]: expected a floating dtype, got {p.dtype}")
        if not p.flags.writeable:
            raise ValueError(f"params[{name!r}]: expected a writeable array (the optimizer updates "
                             "it in place), got a read-only one")
        if id(p) in seen:
            raise ValueError(
                f"params[{name!r}] is the same array as params[{seen[id(p)]!r}]; "
                "it would be updated twice per step"
            )
        seen[id(p)] = name
        out[name] = p
    return out


def _check_grads(params: Mapping[str, np.ndarray], grads) -> None:
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads: expected a dict name -> np.ndarray, got {type(grads).__name__}")
    if grads.keys() != params.keys():
        missing = sorted(set(params) - set(grads))
        extra = sorted(set(grads) - set(params))
        raise ValueError(
            f"grads: expected the keys of params, got missing {missing}, unexpected {extra}"
        )
    for name, p in params.items():
        g = grads[name]
        if not isinstance(g, np.ndarray):
            raise TypeError(f"grads[{name!r}]: expected a np.ndarray, got {type(g).__name__}")
        if g.shape != p.shape or g.dtype != p.dtype:
            raise ValueError(
                f"grads[{name!r}]: expected shape {p.shape} dtype {p.dtype} (its parameter's), "
                f"got shape {g.shape} dtype {g.dtype}"
            )


def _buffer(st: dict, key: str, p: np.ndarray) -> np.ndarray:
    """State array ``st[key]``, created as zeros if absent (e.g. amsgrad switched on later)."""
    buf = st.get(key)
    if buf is None:
        buf = st[key] = np.zeros_like(p)
    return buf


def _scalar_leaf(value):
    """Turn a 0-d array / NumPy scalar (from an .npz round trip) back into a Python scalar."""
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise ValueError(f"expected a scalar, got an array of shape {value.shape}")
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    return value


# --------------------------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------------------------


class Optimizer:
    """Base class: parameter bookkeeping, lazy per-parameter state and ``state_dict``.

    Subclasses define ``_hyper`` (the names of their hyperparameter attributes), validate them in
    ``_validate``, and implement ``_state_keys`` and ``_update``.

    Parameters
    ----------
    params : dict of str -> np.ndarray
        Parameter arrays (floating dtype, any shape), updated in place by :meth:`step`.

    Attributes
    ----------
    params : dict of str -> np.ndarray
        The same array objects that were passed in.
    state : dict of str -> dict
        Per-parameter state, created at the first :meth:`step`: ``"step"`` (int) and the moment
        arrays named as in PyTorch, each with the parameter's shape and dtype.
    """

    _hyper: tuple[str, ...] = ()

    def __init__(self, params) -> None:
        self.params = _check_params(params)
        self.state: dict[str, dict] = {}

    # subclass interface ----------------------------------------------------------------------
    def _validate(self, hp: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _state_keys(self) -> tuple[str, ...]:  # pragma: no cover - abstract
        """Names of the state arrays a parameter has after one step under the current config."""
        raise NotImplementedError

    def _init_state(self, p: np.ndarray) -> dict:
        return {"step": 0, **{k: np.zeros_like(p) for k in self._state_keys()}}

    def _update(self, p: np.ndarray, g: np.ndarray, st: dict) -> None:  # pragma: no cover
        raise NotImplementedError

    # public API ------------------------------------------------------------------------------
    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        """Apply one update to every parameter, in place.

        Parameters
        ----------
        grads : dict of str -> np.ndarray
            Gradient of the loss w.r.t. each parameter, keyed exactly like ``params``, each with
            its parameter's shape and dtype. Not modified. Non-finite values are not checked.

        Raises
        ------
        ValueError
            If a key is missing or unexpected, or a shape or dtype differs from the parameter's.
        TypeError
            If ``grads`` is not a mapping.
        """
        _check_grads(self.params, grads)
        for name, p in self.params.items():
            st = self.state.get(name)
            if st is None:
                st = self.state[name] = self._init_state(p)
            st["step"] += 1
            self._update(p, grads[name], st)

    def hyperparams(self) -> dict:
        """Current hyperparameters as a flat dict of Python scalars (``betas`` split in two)."""
        out = {}
        for k in self._hyper:
            v = getattr(self, k)
            if k == "betas":
                out["beta1"], out["beta2"] = float(v[0]), float(v[1])
            else:
                out[k] = v if isinstance(v, bool) else float(v)
        return out

    def state_dict(self) -> dict:
        """Snapshot of hyperparameters and per-parameter state.

        Returns
        -------
        dict
            ``{"type": str, "hyperparams": {name: float | bool}, "state": {param_name: {"step":
            int, <moment name>: np.ndarray copy}}}``. Leaves are only arrays and Python scalars.
        """
        state = {}
        for name, st in self.state.items():
            state[name] = {
                k: (int(v) if k == "step" else np.array(v, copy=True)) for k, v in st.items()
            }
        return {"type": type(self).__name__, "hyperparams": self.hyperparams(), "state": state}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Copy hyperparameters and state from ``state_dict`` (as made by :meth:`state_dict`).

        Everything is validated before anything changes. Arrays are copied (cast to each
        parameter's dtype), never aliased. Scalars may be Python scalars, NumPy scalars or 0-d
        arrays (what an ``.npz`` round trip gives back). An empty or absent ``"state"`` means
        "no step taken yet".

        Raises
        ------
        ValueError
            If the optimizer type differs, a hyperparameter is missing or invalid, the state
            covers a different set of parameters, a state entry is missing/unexpected, or an
            array's shape differs from its parameter's.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        kind = _scalar_leaf(state_dict.get("type"))
        if kind != type(self).__name__:
            raise ValueError(f"state_dict: expected one of optimizer {type(self).__name__!r}, got "
                             f"{kind!r}")
        raw_hp = state_dict.get("hyperparams", {})
        expected_hp = set(self.hyperparams())
        if not isinstance(raw_hp, Mapping) or set(raw_hp) != expected_hp:
            got = sorted(raw_hp) if isinstance(raw_hp, Mapping) else type(raw_hp).__name__
            raise ValueError(f"state_dict hyperparams: expected keys {sorted(expected_hp)}, "
                             f"got {got}")
        hp = {k: _scalar_leaf(v) for k, v in raw_hp.items()}
        if "beta1" in hp:
            hp["betas"] = (hp.pop("beta1"), hp.pop("beta2"))
        hp = self._validate(hp)

        raw_state = state_dict.get("state", {})
        if not isinstance(raw_state, Mapping):
            raise TypeError(f"state_dict['state']: expected a dict, got {type(raw_state).__name__}")
        if raw_state and set(raw_state) != set(self.params):
            raise ValueError(
                "state_dict holds state for a different set of parameters: expected "
                f"{sorted(self.params)}, got {sorted(raw_state)}"
            )
        # The expected state arrays depend on the (new) hyperparameters, e.g. amsgrad.
        old_hp = {k: getattr(self, k) for k in self._hyper}
        for k, v in hp.items():
            setattr(self, k, v)
        try:
            keys = set(self._state_keys())
            new_state = {}
            for name, st in raw_state.items():
                p = self.params[name]
                if not isinstance(st, Mapping) or set(st) != keys | {"step"}:
                    got = sorted(st) if isinstance(st, Mapping) else type(st).__name__
                    raise ValueError(f"state for {name!r}: expected keys "
                                     f"{sorted(keys | {'step'})}, got {got}")
                step = _scalar_leaf(st["step"])
                entry: dict = {"step": check_int(f"state[{name!r}]['step']", step, low=1)}
                for k in sorted(keys):
                    a = np.asarray(st[k])
                    if a.shape != p.shape:
                        raise ValueError(f"state[{name!r}][{k!r}]: expected shape {p.shape} "
                                         f"(the parameter's), got {a.shape}")
                    entry[k] = np.array(a, dtype=p.dtype, copy=True)
                new_state[name] = entry
        except Exception:
            for k, v in old_hp.items():
                setattr(self, k, v)
            raise
        self.state = new_state

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams().items())
        return f"{type(self).__name__}({len(self.params)} params, {hp})"


# --------------------------------------------------------------------------------------------
# optimizers
# --------------------------------------------------------------------------------------------


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay.

    Parameters
    ----------
    params : dict of str -> np.ndarray
        Parameter arrays (float32 or float64, any shape), updated in place.
    lr : float
        Learning rate gamma >= 0.
    momentum : float, default 0
        Momentum factor mu >= 0.
    dampening : float, default 0
        Dampening tau for momentum.
    nesterov : bool, default False
        Use Nesterov momentum (requires ``momentum > 0`` and ``dampening == 0``).
    weight_decay : float, default 0
        L2 penalty lambda >= 0, added to the gradient.

    Raises
    ------
    ValueError
        For a negative or non-finite lr, momentum or weight_decay, or Nesterov without momentum
        or with dampening.
    TypeError
        For a non-dict ``params`` or non-floating arrays.

    Notes
    -----
    PyTorch's ``torch.optim.SGD`` rule, per parameter at step t (t = 1, 2, ...)::

        g_t = grad + lambda * theta_{t-1}                  # if weight_decay != 0
        if mu != 0:
            b_t = g_t                      if t == 1
                  mu * b_{t-1} + (1 - tau) * g_t  otherwise
            g_t = g_t + mu * b_t          if nesterov else b_t
        theta_t = theta_{t-1} - gamma * g_t

    State: ``step`` and, with momentum, ``momentum_buffer`` (b). PyTorch's SGD keeps no step
    counter; it is kept here so that every optimizer's state looks alike.

    References
    ----------
    .. [1] Sutskever, Martens, Dahl & Hinton (2013), "On the importance of initialization and
       momentum in deep learning", ICML, Section 2, Eqs. (1)-(4) (the PyTorch form above applies
       the learning rate outside the buffer).
    .. [2] PyTorch documentation, ``torch.optim.SGD``.
    """

    _hyper = ("lr", "momentum", "dampening", "nesterov", "weight_decay")

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(params)
        hp = self._validate(dict(lr=lr, momentum=momentum, dampening=dampening,
                                 nesterov=nesterov, weight_decay=weight_decay))
        self.lr, self.momentum, self.dampening = hp["lr"], hp["momentum"], hp["dampening"]
        self.nesterov, self.weight_decay = hp["nesterov"], hp["weight_decay"]

    def _validate(self, hp: dict) -> dict:
        out = {
            "lr": check_real("lr", hp["lr"], low=0.0),
            "momentum": check_real("momentum", hp["momentum"], low=0.0),
            "dampening": check_real("dampening", hp["dampening"]),
            "nesterov": check_bool("nesterov", hp["nesterov"]),
            "weight_decay": check_real("weight_decay", hp["weight_decay"], low=0.0),
        }
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError("nesterov: expected momentum > 0 and dampening == 0 (Nesterov "
                             f"momentum), got momentum={out['momentum']}, "
                             f"dampening={out['dampening']}")
        return out

    def _state_keys(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum != 0 else ()

    def _init_state(self, p: np.ndarray) -> dict:
        return {"step": 0}  # the buffer is set to the first gradient, not to zeros

    def _update(self, p, g, st) -> None:
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        if self.momentum != 0:
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = np.array(g, copy=True)
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p -= self.lr * g


class Adam(Optimizer):
    r"""Adam, with optional L2 weight decay and the AMSGrad variant.

    Parameters
    ----------
    params : dict of str -> np.ndarray
        Parameter arrays (float32 or float64, any shape), updated in place.
    lr : float, default 1e-3
        Step size gamma >= 0.
    betas : tuple of float, default (0.9, 0.999)
        Decay rates (beta1, beta2) of the first and second moment averages, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator after the bias-corrected square root, >= 0.
    weight_decay : float, default 0
        L2 penalty lambda >= 0 added to the gradient (coupled; see :class:`AdamW` for the
        decoupled form).
    amsgrad : bool, default False
        Normalise by the running maximum of the second moment (Reddi et al., 2018).

    Raises
    ------
    ValueError
        For negative/non-finite lr, eps or weight_decay, or betas outside [0, 1).

    Notes
    -----
    PyTorch's ``torch.optim.Adam`` rule, per parameter at step t (t = 1, 2, ...), m_0 = v_0 = 0::

        g_t   = grad + lambda * theta_{t-1}                # if weight_decay != 0
        m_t   = beta1 * m_{t-1} + (1 - beta1) * g_t        # exp_avg
        v_t   = beta2 * v_{t-1} + (1 - beta2) * g_t**2     # exp_avg_sq
        if amsgrad: vmax_t = max(vmax_{t-1}, v_t); v_t <- vmax_t   # max_exp_avg_sq
        theta_t = theta_{t-1} - (gamma / (1 - beta1**t)) * m_t
                                / (sqrt(v_t) / sqrt(1 - beta2**t) + eps)

    This is Algorithm 1 of Kingma & Ba: eps is added to the bias-corrected sqrt(v_hat), as
    PyTorch does (not the "efficient" reordering at the end of the paper's Section 2, which adds
    eps before the bias correction). On the first step m_hat = g and sqrt(v_hat) = |g|, so every
    weight with |g| >> eps moves by exactly gamma.

    References
    ----------
    .. [1] Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization", ICLR, Algorithm 1.
    .. [2] Reddi, Kale & Kumar (2018), "On the Convergence of Adam and Beyond", ICLR, Alg. 2.
    .. [3] PyTorch documentation, ``torch.optim.Adam``.
    """

    _hyper = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(params)
        hp = self._validate(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                 amsgrad=amsgrad))
        self.lr, self.betas, self.eps = hp["lr"], hp["betas"], hp["eps"]
        self.weight_decay, self.amsgrad = hp["weight_decay"], hp["amsgrad"]

    def _validate(self, hp: dict) -> dict:
        betas = hp["betas"]
        if not isinstance(betas, (tuple, list)):
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        if len(betas) != 2:
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        return {
            "lr": check_real("lr", hp["lr"], low=0.0),
            "betas": (check_real("betas[0]", betas[0], low=0.0, high=1.0, high_open=True),
                      check_real("betas[1]", betas[1], low=0.0, high=1.0, high_open=True)),
            "eps": _positive_eps(hp["eps"]),
            "weight_decay": check_real("weight_decay", hp["weight_decay"], low=0.0),
            "amsgrad": check_bool("amsgrad", hp["amsgrad"]),
        }

    def _state_keys(self) -> tuple[str, ...]:
        keys = ("exp_avg", "exp_avg_sq")
        return keys + ("max_exp_avg_sq",) if self.amsgrad else keys

    def _update(self, p, g, st) -> None:
        beta1, beta2 = self.betas
        t = st["step"]
        if self.weight_decay != 0:
            if self._decoupled:
                p *= 1.0 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * (g * g)
        if self.amsgrad:
            vmax = _buffer(st, "max_exp_avg_sq", p)
            np.maximum(vmax, v, out=vmax)
            v = vmax
        step_size = self.lr / (1.0 - beta1**t)
        denom = np.sqrt(v)
        denom /= math.sqrt(1.0 - beta2**t)
        denom += self.eps
        p -= step_size * (m / denom)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (AdamW).

    Same parameters as :class:`Adam` except ``weight_decay`` defaults to 1e-2 and is applied
    directly to the weights instead of being added to the gradient.

    Notes
    -----
    PyTorch's ``torch.optim.AdamW`` rule, per parameter at step t::

        theta_{t-1} <- theta_{t-1} - gamma * lambda * theta_{t-1}   # decoupled decay, first
        m_t, v_t (and vmax_t) as in Adam, from the raw gradient g_t
        theta_t = theta_{t-1} - (gamma / (1 - beta1**t)) * m_t
                                / (sqrt(v_t) / sqrt(1 - beta2**t) + eps)

    The decay is scaled by the learning rate gamma (PyTorch's convention; the paper's schedule
    multiplier eta_t times lambda plays that role).

    References
    ----------
    .. [1] Loshchilov & Hutter (2019), "Decoupled Weight Decay Regularization", ICLR,
       Algorithm 2 (line 12).
    .. [2] PyTorch documentation, ``torch.optim.AdamW``.
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


class RMSprop(Optimizer):
    r"""RMSprop, with optional momentum, centering and L2 weight decay.

    Parameters
    ----------
    params : dict of str -> np.ndarray
        Parameter arrays (float32 or float64, any shape), updated in place.
    lr : float, default 1e-2
        Learning rate gamma >= 0.
    alpha : float, default 0.99
        Smoothing constant of the squared-gradient average, in [0, 1].
    eps : float, default 1e-8
        Added to the root-mean-square denominator, >= 0.
    weight_decay : float, default 0
        L2 penalty lambda >= 0 added to the gradient.
    momentum : float, default 0
        Momentum factor mu >= 0.
    centered : bool, default False
        Normalise by an estimate of the gradient's variance instead of its second moment.

    Raises
    ------
    ValueError
        For negative/non-finite lr, eps, weight_decay or momentum, or alpha outside [0, 1]
        (PyTorch only rejects alpha < 0).

    Notes
    -----
    PyTorch's ``torch.optim.RMSprop`` rule, per parameter at step t, v_0 = gbar_0 = b_0 = 0::

        g_t    = grad + lambda * theta_{t-1}               # if weight_decay != 0
        v_t    = alpha * v_{t-1} + (1 - alpha) * g_t**2    # square_avg
        if centered:
            gbar_t = alpha * gbar_{t-1} + (1 - alpha) * g_t   # grad_avg
            d_t = sqrt(v_t - gbar_t**2) + eps
        else:
            d_t = sqrt(v_t) + eps
        if mu > 0:
            b_t = mu * b_{t-1} + g_t / d_t                 # momentum_buffer
            theta_t = theta_{t-1} - gamma * b_t
        else:
            theta_t = theta_{t-1} - gamma * g_t / d_t

    References
    ----------
    .. [1] Tieleman & Hinton (2012), "Lecture 6.5 - RMSProp", COURSERA: Neural Networks for
       Machine Learning.
    .. [2] Graves (2013), "Generating Sequences With Recurrent Neural Networks",
       arXiv:1308.0850, Eqs. (38)-(41) (the centered variant; Graves puts eps inside the square
       root, PyTorch and this class outside).
    .. [3] PyTorch documentation, ``torch.optim.RMSprop``.
    """

    _hyper = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False) -> None:
        super().__init__(params)
        hp = self._validate(dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                 momentum=momentum, centered=centered))
        self.lr, self.alpha, self.eps = hp["lr"], hp["alpha"], hp["eps"]
        self.weight_decay, self.momentum = hp["weight_decay"], hp["momentum"]
        self.centered = hp["centered"]

    def _validate(self, hp: dict) -> dict:
        return {
            "lr": check_real("lr", hp["lr"], low=0.0),
            "alpha": check_real("alpha", hp["alpha"], low=0.0, high=1.0),
            "eps": _positive_eps(hp["eps"]),
            "weight_decay": check_real("weight_decay", hp["weight_decay"], low=0.0),
            "momentum": check_real("momentum", hp["momentum"], low=0.0),
            "centered": check_bool("centered", hp["centered"]),
        }

    def _state_keys(self) -> tuple[str, ...]:
        keys = ("square_avg",)
        if self.momentum > 0:
            keys += ("momentum_buffer",)
        if self.centered:
            keys += ("grad_avg",)
        return keys

    def _update(self, p, g, st) -> None:
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        v = st["square_avg"]
        v *= self.alpha
        v += (1.0 - self.alpha) * (g * g)
        if self.centered:
            gbar = _buffer(st, "grad_avg", p)
            gbar *= self.alpha
            gbar += (1.0 - self.alpha) * g
            denom = np.sqrt(v - gbar * gbar)
        else:
            denom = np.sqrt(v)
        denom += self.eps
        if self.momentum > 0:
            buf = _buffer(st, "momentum_buffer", p)
            buf *= self.momentum
            buf += g / denom
            p -= self.lr * buf
        else:
            p -= self.lr * (g / denom)


class Adagrad(Optimizer):
    r"""Adagrad, with optional learning-rate decay and L2 weight decay.

    Parameters
    ----------
    params : dict of str -> np.ndarray
        Parameter arrays (float32 or float64, any shape), updated in place.
    lr : float, default 1e-2
        Learning rate gamma >= 0.
    lr_decay : float, default 0
        Learning-rate decay eta >= 0.
    weight_decay : float, default 0
        L2 penalty lambda >= 0 added to the gradient.
    initial_accumulator_value : float, default 0
        Starting value of the sum of squared gradients, >= 0.
    eps : float, default 1e-10
        Added to the square-root denominator, >= 0.

    Raises
    ------
    ValueError
        For any negative or non-finite hyperparameter.

    Notes
    -----
    PyTorch's ``torch.optim.Adagrad`` rule, per parameter at step t, s_0 =
    initial_accumulator_value::

        g_t     = grad + lambda * theta_{t-1}              # if weight_decay != 0
        gamma_t = gamma / (1 + (t - 1) * eta)
        s_t     = s_{t-1} + g_t**2                         # sum
        theta_t = theta_{t-1} - gamma_t * g_t / (sqrt(s_t) + eps)

    The ``sum`` state is created at the first step (PyTorch creates it at construction; the
    updates are identical).

    References
    ----------
    .. [1] Duchi, Hazan & Singer (2011), "Adaptive Subgradient Methods for Online Learning and
       Stochastic Optimization", JMLR 12, Section 1.1 (diagonal update).
    .. [2] PyTorch documentation, ``torch.optim.Adagrad``.
    """

    _hyper = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10) -> None:
        super().__init__(params)
        hp = self._validate(dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                 initial_accumulator_value=initial_accumulator_value, eps=eps))
        self.lr, self.lr_decay, self.weight_decay = hp["lr"], hp["lr_decay"], hp["weight_decay"]
        self.initial_accumulator_value = hp["initial_accumulator_value"]
        self.eps = hp["eps"]

    def _validate(self, hp: dict) -> dict:
        out = {k: check_real(k, hp[k], low=0.0) for k in self._hyper}
        out["eps"] = _positive_eps(out["eps"])
        return out

    def _state_keys(self) -> tuple[str, ...]:
        return ("sum",)

    def _init_state(self, p: np.ndarray) -> dict:
        return {"step": 0, "sum": np.full_like(p, self.initial_accumulator_value)}

    def _update(self, p, g, st) -> None:
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        clr = self.lr / (1.0 + (st["step"] - 1) * self.lr_decay)
        s = st["sum"]
        s += g * g
        denom = np.sqrt(s)
        denom += self.eps
        p -= clr * (g / denom)


# --------------------------------------------------------------------------------------------
# gradient clipping
# --------------------------------------------------------------------------------------------


def _grad_arrays(grads) -> list[np.ndarray]:
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads: expected a dict name -> np.ndarray, got {type(grads).__name__}")
    out = []
    for name, g in grads.items():
        if not isinstance(g, np.ndarray) or not np.issubdtype(g.dtype, np.floating):
            got = g.dtype if isinstance(g, np.ndarray) else type(g).__name__
            raise TypeError(f"grads[{name!r}]: expected a floating np.ndarray, got {got}")
        if not g.flags.writeable:
            raise ValueError(f"grads[{name!r}]: expected a writeable array (clipping works in "
                             "place), got a read-only one")
        out.append(g)
    return out


def clip_grad_norm(grads: Mapping[str, np.ndarray], max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False) -> float:
    r"""Rescale all gradients in place so that their GLOBAL norm is at most ``max_norm``.

    Parameters
    ----------
    grads : dict of str -> np.ndarray
        Gradient arrays (float32 or float64, any shapes), scaled in place.
    max_norm : float
        Largest allowed global norm, >= 0.
    norm_type : float, default 2.0
        Order p > 0 of the norm, or ``math.inf`` for the max-abs norm.
    error_if_nonfinite : bool, default False
        Raise if the total norm is NaN or infinite instead of returning it.

    Returns
    -------
    float
        The global norm of the gradients BEFORE clipping.

    Raises
    ------
    ValueError
        For a negative/non-finite ``max_norm``, a non-positive ``norm_type``, a read-only array,
        or (with ``error_if_nonfinite``) a non-finite total norm. PyTorch raises RuntimeError in
        the last case.
    TypeError
        If ``grads`` is not a dict of floating arrays.

    Notes
    -----
    The norm is taken over all entries of all arrays together (PyTorch's
    ``clip_grad_norm_``), not per array::

        N = ( sum_k ||g_k||_p^p )^(1/p)            (N = max_k max |g_k| for p = inf)
        c = max_norm / (N + 1e-6)
        if c < 1:  g_k <- c * g_k for every k

    Below the threshold the arrays are left untouched (bit for bit); the 1e-6 keeps c finite
    for N = 0. The norm is accumulated in float64 whatever the gradients' dtype.

    References
    ----------
    .. [1] Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent neural
       networks", ICML, Algorithm 1.
    .. [2] PyTorch documentation, ``torch.nn.utils.clip_grad_norm_``.
    """
    arrays = _grad_arrays(grads)
    max_norm = check_real("max_norm", max_norm, low=0.0)
    if max_norm == 0:
        raise ValueError("max_norm: expected a number > 0 (0 would zero every gradient), got "
                         "0.0")
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"norm_type: expected a real number > 0 or inf, got "
                        f"{type(norm_type).__name__} {norm_type!r}")
    p = float(norm_type)
    if not p > 0:
        raise ValueError(f"norm_type: expected a real number > 0 or inf, got {norm_type}")
    if not arrays:
        return 0.0
    if math.isinf(p):
        total = max((float(np.max(np.abs(g))) if g.size else 0.0) for g in arrays)
    else:
        acc = 0.0
        for g in arrays:
            g64 = g.astype(np.float64, copy=False).ravel()
            acc += float(np.dot(g64, g64)) if p == 2.0 else float(np.sum(np.abs(g64) ** p))
        total = acc ** (1.0 / p)
    if error_if_nonfinite and not math.isfinite(total):
        raise ValueError(f"the total {p}-norm of the gradients is non-finite ({total}); "
                         "pass error_if_nonfinite=False to clip anyway")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in arrays:
            g *= coef
    return total


def clip_grad_value(grads: Mapping[str, np.ndarray], clip_value: float) -> None:
    r"""Clamp every gradient entry to ``[-clip_value, clip_value]``, in place.

    Parameters
    ----------
    grads : dict of str -> np.ndarray
        Gradient arrays (float32 or float64, any shapes), clamped in place.
    clip_value : float
        Bound c >= 0.

    Raises
    ------
    ValueError
        For a negative or non-finite ``clip_value`` or a read-only array.
    TypeError
        If ``grads`` is not a dict of floating arrays.

    Notes
    -----
    ``g <- min(max(g, -c), c)`` elementwise (PyTorch's ``clip_grad_value_``). NaN stays NaN.

    References
    ----------
    .. [1] Mikolov (2012), "Statistical Language Models Based on Neural Networks", PhD thesis,
       Brno University of Technology (element-wise clipping of RNN gradients; discussed in
       Pascanu, Mikolov & Bengio 2013, Section 3.1).
    .. [2] PyTorch documentation, ``torch.nn.utils.clip_grad_value_``.
    """
    arrays = _grad_arrays(grads)
    c = check_real("clip_value", clip_value, low=0.0)
    for g in arrays:
        np.clip(g, -c, c, out=g)
