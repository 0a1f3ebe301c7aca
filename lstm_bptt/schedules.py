"""Learning-rate schedules that set ``optimizer.lr`` between optimizer steps.

Each schedule wraps any object with a public float attribute ``lr`` (the optimizers of
:mod:`lstm_bptt.optim`) and follows the corresponding ``torch.optim.lr_scheduler`` class, with a
single learning rate instead of one per parameter group:

* construction records ``base_lr = optimizer.lr``, sets the epoch counter ``last_epoch = 0`` and
  sets ``optimizer.lr`` to the schedule's value at t = 0;
* ``step()`` (``step(metric)`` for :class:`ReduceLROnPlateau`) increments ``last_epoch`` to t and
  sets ``optimizer.lr = lr(t)``; call it after ``optimizer.step``, once per epoch or per update,
  as you choose;
* ``get_last_lr()`` returns that value as a float (PyTorch returns a list);
* ``state_dict()`` / ``load_state_dict()`` round-trip the counters and hyperparameters with leaves
  that are Python int/float/bool/str only, so they can go into an ``.npz`` without pickle.

The closed-form schedules compute lr(t) directly from ``base_lr`` and t (PyTorch's
``_get_closed_form_lr``), so they never accumulate rounding error and are unaffected by anything
else that set ``optimizer.lr`` in between. Warm-up composes by wrapping: ``LinearWarmup(opt, 500,
after=CosineAnnealingLR(opt, T_max=10_000))`` warms up for 500 steps, then runs the cosine
schedule from its own t = 0 (PyTorch's ``SequentialLR([LinearLR, CosineAnnealingLR],
milestones=[500])``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from ._checks import check_choice, check_int, check_real
from .optim import _scalar_leaf

__all__ = [
    "LRScheduler",
    "StepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "LinearWarmup",
    "ReduceLROnPlateau",
]


def _check_optimizer(optimizer) -> None:
    lr = getattr(optimizer, "lr", None)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError("optimizer: expected an lstm_bptt.optim optimizer (a float attribute "
                        f"`lr`), got {type(optimizer).__name__}")


def _load_scalars(state_dict, expected: dict) -> dict:
    """Check ``state_dict`` has exactly the keys of ``expected`` and convert its scalar leaves."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
    kind = _scalar_leaf(state_dict.get("type"))
    if kind != expected["type"]:
        raise ValueError(f"state_dict: expected one of type {expected['type']!r}, got {kind!r}")
    if set(state_dict) != set(expected):
        raise ValueError(f"state_dict: expected keys {sorted(expected)}, got {sorted(state_dict)}")
    out = {}
    for k, ref in expected.items():
        v = state_dict[k]
        out[k] = v if isinstance(ref, dict) else _scalar_leaf(v)
    return out


class LRScheduler:
    """Base class of the closed-form schedules: lr(t) = ``self.lr_at(t)``.

    Parameters
    ----------
    optimizer : Optimizer
        Any object with a float attribute ``lr``; its current value becomes ``base_lr``.

    Attributes
    ----------
    optimizer : Optimizer
    base_lr : float
        ``optimizer.lr`` at construction.
    last_epoch : int
        Number of :meth:`step` calls so far (t).
    """

    _hyper: tuple[str, ...] = ()

    def __init__(self, optimizer) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_epoch = 0
        self._last_lr = self.lr_at(0)
        optimizer.lr = self._last_lr

    def lr_at(self, t: int) -> float:  # pragma: no cover - abstract
        """Learning rate after ``t`` calls of :meth:`step`."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance t by one and set ``optimizer.lr = lr_at(t)``."""
        self.last_epoch += 1
        self._last_lr = self.lr_at(self.last_epoch)
        self.optimizer.lr = self._last_lr

    def get_last_lr(self) -> float:
        """The learning rate set by the last :meth:`step` (or by construction)."""
        return self._last_lr

    def scale_lr(self, factor: float) -> None:
        """Multiply every learning rate of the schedule by ``factor`` from now on (``base_lr``,
        ``eta_min`` and a wrapped ``after`` schedule's), keeping its position t, and set
        ``optimizer.lr`` accordingly. Every lr(t) here is linear in those, so the whole
        remaining curve is scaled. Used by the Trainer to retry a diverged run with a lower lr.

        Raises
        ------
        ValueError
            ``factor`` not in (0, 1].
        """
        factor = check_real("factor", factor, low=0.0, high=1.0)
        if factor == 0:
            raise ValueError("factor: expected a number in (0, 1], got 0.0")
        self.base_lr *= factor
        if hasattr(self, "eta_min"):
            self.eta_min *= factor
        after = getattr(self, "after", None)
        if after is not None:
            after.scale_lr(factor)
        self._last_lr = self.lr_at(self.last_epoch)
        self.optimizer.lr = self._last_lr

    def state_dict(self) -> dict:
        """``{"type", "base_lr", "last_epoch", "last_lr", <hyperparameters>}``, scalar leaves."""
        return {"type": type(self).__name__, "base_lr": self.base_lr,
                "last_epoch": self.last_epoch, "last_lr": self._last_lr,
                **{k: getattr(self, k) for k in self._hyper}}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore counters and hyperparameters, and set ``optimizer.lr`` to the restored lr.

        Setting ``optimizer.lr`` (PyTorch leaves it to the optimizer's own state) makes the
        result independent of whether the optimizer's state was loaded before or after this
        schedule was built.

        Raises
        ------
        ValueError
            If the schedule type or the set of keys differs, or a value is invalid.
        """
        sd = _load_scalars(state_dict, self.state_dict())
        hp = self._validate({k: sd[k] for k in self._hyper})
        base_lr = check_real("base_lr", sd["base_lr"], low=0.0)
        last_lr = check_real("last_lr", sd["last_lr"], low=0.0)
        last_epoch = check_int("last_epoch", sd["last_epoch"], low=0)
        for k, v in hp.items():
            setattr(self, k, v)
        self.base_lr, self.last_epoch, self._last_lr = base_lr, last_epoch, last_lr
        self.optimizer.lr = last_lr

    def _validate(self, hp: dict) -> dict:
        return hp

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper)
        return f"{type(self).__name__}({hp}, base_lr={self.base_lr}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    Parameters
    ----------
    optimizer : Optimizer
        Object with a float attribute ``lr``.
    step_size : int
        Period of the decay, >= 1.
    gamma : float, default 0.1
        Multiplicative factor, > 0.

    Raises
    ------
    ValueError
        For ``step_size < 1`` or ``gamma`` outside (0, 1] (a decay; PyTorch also accepts a
        growing lr, refused here as a likely typo).

    Notes
    -----
    lr(t) = base_lr * gamma ** floor(t / step_size).

    References
    ----------
    .. [1] PyTorch documentation, ``torch.optim.lr_scheduler.StepLR``.
    """

    _hyper = ("step_size", "gamma")

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1) -> None:
        hp = self._validate({"step_size": step_size, "gamma": gamma})
        self.step_size, self.gamma = hp["step_size"], hp["gamma"]
        super().__init__(optimizer)

    def _validate(self, hp: dict) -> dict:
        gamma = check_real("gamma", hp["gamma"], low=0.0)
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma: expected a decay factor in (0, 1], got {gamma}")
        return {"step_size": check_int("step_size", hp["step_size"], low=1), "gamma": gamma}

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma ** (t // self.step_size)


class ExponentialLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` every step.

    Parameters
    ----------
    optimizer : Optimizer
        Object with a float attribute ``lr``.
    gamma : float
        Multiplicative factor per step, > 0.

    Raises
    ------
    ValueError
        For ``gamma`` outside (0, 1] (a decay; a growing lr is refused as a likely typo).

    Notes
    -----
    lr(t) = base_lr * gamma ** t.

    References
    ----------
    .. [1] PyTorch documentation, ``torch.optim.lr_scheduler.ExponentialLR``.
    """

    _hyper = ("gamma",)

    def __init__(self, optimizer, gamma: float) -> None:
        self.gamma = self._validate({"gamma": gamma})["gamma"]
        super().__init__(optimizer)

    def _validate(self, hp: dict) -> dict:
        gamma = check_real("gamma", hp["gamma"], low=0.0)
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma: expected a decay factor in (0, 1], got {gamma}")
        return {"gamma": gamma}

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma**t


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from ``base_lr`` down to ``eta_min`` over ``T_max`` steps.

    Parameters
    ----------
    optimizer : Optimizer
        Object with a float attribute ``lr``.
    T_max : int
        Half-period in steps, >= 1.
    eta_min : float, default 0
        Minimum learning rate, >= 0.

    Raises
    ------
    ValueError
        For ``T_max < 1`` or a negative ``eta_min``.

    Notes
    -----
    lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2.

    Past ``T_max`` the formula keeps going (the lr rises again, period 2 T_max), as PyTorch's
    does; there are no warm restarts.

    References
    ----------
    .. [1] Loshchilov & Hutter (2017), "SGDR: Stochastic Gradient Descent with Warm Restarts",
       ICLR, Eq. (5).
    .. [2] PyTorch documentation, ``torch.optim.lr_scheduler.CosineAnnealingLR``.
    """

    _hyper = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803
        hp = self._validate({"T_max": T_max, "eta_min": eta_min})
        _check_optimizer(optimizer)
        if hp["eta_min"] > optimizer.lr:
            raise ValueError(f"eta_min: expected at most the optimizer's lr = {optimizer.lr} "
                             f"(the schedule anneals down to it), got {hp['eta_min']}")
        self.T_max, self.eta_min = hp["T_max"], hp["eta_min"]
        super().__init__(optimizer)

    def _validate(self, hp: dict) -> dict:
        return {"T_max": check_int("T_max", hp["T_max"], low=1),
                "eta_min": check_real("eta_min", hp["eta_min"], low=0.0)}

    def lr_at(self, t: int) -> float:
        cos = math.cos(math.pi * t / self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1.0 + cos) / 2.0


class LinearWarmup(LRScheduler):
    r"""Linear warm-up for ``warmup_steps`` steps, then constant or another schedule.

    Parameters
    ----------
    optimizer : Optimizer
        Object with a float attribute ``lr``.
    warmup_steps : int
        Length W of the warm-up, >= 0 (0 hands over to ``after`` at once).
    start_factor : float, default 1/3
        Fraction of ``base_lr`` used at t = 0, in (0, 1] (PyTorch ``LinearLR``'s default).
    after : LRScheduler, optional
        A closed-form schedule built on the SAME optimizer BEFORE this one (which is what
        writing it inline as an argument does), run from its own t = 0 once the warm-up ends.
        Without it the lr stays at ``base_lr``.

    Raises
    ------
    ValueError
        For ``warmup_steps < 0``, ``start_factor`` outside (0, 1], or ``after`` bound to another
        optimizer.
    TypeError
        If ``after`` is not a closed-form :class:`LRScheduler` (e.g. ReduceLROnPlateau).

    Notes
    -----
    ::

        lr(t) = base_lr * (s + (1 - s) * t / W)     for t < W
              = after.lr_at(t - W)                   for t >= W   (base_lr without ``after``)

    The same as PyTorch's ``SequentialLR([LinearLR(opt, s, 1.0, W), after], milestones=[W])``.
    ``after`` is driven by this object: call only this one's :meth:`step`.

    References
    ----------
    .. [1] Goyal et al. (2017), "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
       arXiv:1706.02677, Section 2.2 (gradual warm-up).
    .. [2] PyTorch documentation, ``torch.optim.lr_scheduler.LinearLR`` and ``SequentialLR``.
    """

    _hyper = ("warmup_steps", "start_factor")

    def __init__(self, optimizer, warmup_steps: int, start_factor: float = 1.0 / 3.0,
                 after: LRScheduler | None = None) -> None:
        hp = self._validate({"warmup_steps": warmup_steps, "start_factor": start_factor})
        self.warmup_steps, self.start_factor = hp["warmup_steps"], hp["start_factor"]
        if after is not None:
            if not isinstance(after, LRScheduler):
                raise TypeError("after: expected a closed-form LRScheduler (StepLR, ExponentialLR,"
                                f" CosineAnnealingLR, LinearWarmup), got {type(after).__name__}")
            if after.optimizer is not optimizer:
                raise ValueError("after: expected a scheduler of the warm-up's optimizer, got "
                                 "one of another optimizer")
            if after.last_epoch != 0:
                raise ValueError("after: expected a fresh scheduler (last_epoch 0), got "
                                 f"last_epoch {after.last_epoch}")
        self.after = after
        super().__init__(optimizer)
        if after is not None:
            # the lr the optimizer had before `after` set lr_at(0), normally the same value
            self.base_lr = after.base_lr
            self._last_lr = self.lr_at(0)
            optimizer.lr = self._last_lr

    def _validate(self, hp: dict) -> dict:
        s = check_real("start_factor", hp["start_factor"], low=0.0, high=1.0)
        if s <= 0:
            raise ValueError(f"start_factor: expected a number in (0, 1], got {s}")
        return {"warmup_steps": check_int("warmup_steps", hp["warmup_steps"], low=0),
                "start_factor": s}

    def lr_at(self, t: int) -> float:
        w = self.warmup_steps
        if t < w:
            return self.base_lr * (self.start_factor + (1.0 - self.start_factor) * t / w)
        return self.base_lr if self.after is None else self.after.lr_at(t - w)

    def step(self) -> None:
        super().step()
        if self.after is not None:
            self.after.last_epoch = max(0, self.last_epoch - self.warmup_steps)
            self.after._last_lr = self.after.lr_at(self.after.last_epoch)

    def state_dict(self) -> dict:
        """As :meth:`LRScheduler.state_dict`, plus ``"after"`` (nested; ``{}`` when absent)."""
        sd = super().state_dict()
        sd["after"] = {} if self.after is None else self.after.state_dict()
        return sd

    def load_state_dict(self, state_dict: Mapping) -> None:
        """As :meth:`LRScheduler.load_state_dict`, restoring ``after`` too.

        Raises
        ------
        ValueError
            If the type differs, or exactly one of the state and this object has ``after``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        kind = _scalar_leaf(state_dict.get("type"))
        if kind != type(self).__name__:
            raise ValueError(f"state_dict: expected one of type {type(self).__name__!r}, "
                             f"got {kind!r}")
        after_sd = state_dict.get("after", {})
        if (self.after is None) != (not after_sd):
            raise ValueError("state_dict and this LinearWarmup disagree on having an `after` "
                             "schedule")
        rest = {k: v for k, v in state_dict.items() if k != "after"}
        # `after` first: the warm-up's own load then sets optimizer.lr to the combined lr
        if self.after is not None:
            self.after.load_state_dict(after_sd)
        super().load_state_dict({**rest, "after": {}} if self.after is None else
                                {**rest, "after": self.after.state_dict()})


class ReduceLROnPlateau:
    r"""Reduce the learning rate when a monitored metric has stopped improving.

    Parameters
    ----------
    optimizer : Optimizer
        Object with a float attribute ``lr``.
    mode : {'min', 'max'}, default 'min'
        Whether lower or higher metric values are better.
    factor : float, default 0.1
        The lr is multiplied by this, in [0, 1).
    patience : int, default 10
        Number of non-improving steps tolerated; the lr is cut on the ``patience + 1``-th.
    threshold : float, default 1e-4
        Minimum improvement that counts, >= 0.
    threshold_mode : {'rel', 'abs'}, default 'rel'
        Improvement means ``a < best * (1 - threshold)`` ('rel', min mode) or
        ``a < best - threshold`` ('abs'); mirrored for max mode.
    cooldown : int, default 0
        Steps after a cut during which bad steps are not counted.
    min_lr : float, default 0
        Lower bound on the lr, >= 0.
    eps : float, default 1e-8
        A cut smaller than this is skipped (PyTorch's ``eps``).

    Raises
    ------
    ValueError
        For an unknown mode or threshold_mode, factor outside [0, 1), or negative patience,
        cooldown, threshold, min_lr or eps.

    Notes
    -----
    ``step(metric)`` follows PyTorch exactly::

        t += 1
        if is_better(metric, best): best = metric; bad = 0
        else: bad += 1
        if cooldown_counter > 0: cooldown_counter -= 1; bad = 0
        if bad > patience:
            new = max(lr * factor, min_lr); if lr - new > eps: lr = new
            cooldown_counter = cooldown; bad = 0

    ``best`` starts at +inf (min) or -inf (max). A NaN metric never improves.

    References
    ----------
    .. [1] PyTorch documentation, ``torch.optim.lr_scheduler.ReduceLROnPlateau``.
    """

    _hyper = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr",
              "eps")

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0.0, eps: float = 1e-8) -> None:
        _check_optimizer(optimizer)
        hp = self._validate(dict(mode=mode, factor=factor, patience=patience,
                                 threshold=threshold, threshold_mode=threshold_mode,
                                 cooldown=cooldown, min_lr=min_lr, eps=eps))
        for k, v in hp.items():
            setattr(self, k, v)
        self.optimizer = optimizer
        self.last_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._last_lr = float(optimizer.lr)

    @staticmethod
    def _validate(hp: dict) -> dict:
        check_choice("mode", hp["mode"], ("min", "max"))
        check_choice("threshold_mode", hp["threshold_mode"], ("rel", "abs"))
        return {
            "mode": str(hp["mode"]),
            "factor": check_real("factor", hp["factor"], low=0.0, high=1.0, high_open=True),
            "patience": check_int("patience", hp["patience"], low=0),
            "threshold": check_real("threshold", hp["threshold"], low=0.0),
            "threshold_mode": str(hp["threshold_mode"]),
            "cooldown": check_int("cooldown", hp["cooldown"], low=0),
            "min_lr": check_real("min_lr", hp["min_lr"], low=0.0),
            "eps": check_real("eps", hp["eps"], low=0.0),
        }

    def _is_better(self, a: float) -> bool:
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return a < self.best * (1.0 - self.threshold)
            return a < self.best - self.threshold
        if self.threshold_mode == "rel":
            return a > self.best * (self.threshold + 1.0)
        return a > self.best + self.threshold

    def step(self, metric: float) -> None:
        """Record ``metric`` (e.g. the validation loss) and cut the lr if it has plateaued.

        Raises
        ------
        TypeError
            If ``metric`` is not a real scalar (a 0-d or size-1 array is accepted).
        """
        m = metric
        if isinstance(m, (np.ndarray, np.generic)) and m.size == 1:
            m = m.reshape(()).item()
        if isinstance(m, bool) or not isinstance(m, numbers.Real):
            raise TypeError(f"metric: expected a real scalar, got {type(metric).__name__} "
                            f"{metric!r}")
        current = float(m)
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old = float(self.optimizer.lr)
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = float(self.optimizer.lr)

    def get_last_lr(self) -> float:
        """The optimizer's lr after the last :meth:`step` (or at construction)."""
        return self._last_lr

    def scale_lr(self, factor: float) -> None:
        """Multiply the optimizer's lr and ``min_lr`` by ``factor`` in (0, 1] (see
        :meth:`LRScheduler.scale_lr`)."""
        factor = check_real("factor", factor, low=0.0, high=1.0)
        if factor == 0:
            raise ValueError("factor: expected a number in (0, 1], got 0.0")
        self.min_lr *= factor
        self.optimizer.lr = float(self.optimizer.lr) * factor
        self._last_lr = float(self.optimizer.lr)

    def state_dict(self) -> dict:
        """Counters (``last_epoch, best, num_bad_epochs, cooldown_counter, last_lr``) and
        hyperparameters; scalar leaves (``best`` may be +-inf)."""
        return {"type": type(self).__name__, "last_epoch": self.last_epoch, "best": self.best,
                "num_bad_epochs": self.num_bad_epochs, "cooldown_counter": self.cooldown_counter,
                "last_lr": self._last_lr, **{k: getattr(self, k) for k in self._hyper}}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore counters and hyperparameters and set ``optimizer.lr`` to the restored lr.

        Raises
        ------
        ValueError
            If the type or key set differs or a value is invalid.
        """
        sd = _load_scalars(state_dict, self.state_dict())
        hp = self._validate({k: sd[k] for k in self._hyper})
        best = sd["best"]
        if isinstance(best, bool) or not isinstance(best, numbers.Real):
            raise TypeError(f"state_dict['best']: expected a float, got {best!r}")
        counters = {k: check_int(k, sd[k], low=0)
                    for k in ("last_epoch", "num_bad_epochs", "cooldown_counter")}
        last_lr = check_real("last_lr", sd["last_lr"], low=0.0)
        for k, v in {**hp, **counters}.items():
            setattr(self, k, v)
        self.best, self._last_lr = float(best), last_lr
        self.optimizer.lr = last_lr
