"""Generate tests/fixtures/optim_torch.npz: PyTorch optimizer and LR-schedule trajectories.

Run once, by hand, with ``pip install torch==2.13.0`` (CPU)::

    python scripts/make_optim_fixtures.py

The tests read the .npz without importing torch. Contents (all float64):

* ``configs``: JSON string ``{case: {"optimizer": class name, "kwargs": {...}}}``;
* ``params0/<name>``: initial parameters, ``grads/<name>``: per-step gradients, shape (S, ...);
* ``traj/<case>/<name>``: parameters after steps 0..S, shape (S + 1, ...);
* ``schedules``: JSON string ``{case: {...}}`` describing each LR schedule run;
* ``lr/<case>``: learning rates after construction and after each ``step``, shape (N + 1,).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "optim_torch.npz"
N_STEPS = 5
N_SCHED = 14

# Gradient scale per step: grows then shrinks, so AMSGrad's running max differs from exp_avg_sq.
GRAD_SCALE = [1.0, 3.0, 0.5, 0.2, 1.5]

CONFIGS = {
    "sgd": ("SGD", {"lr": 0.1}),
    "sgd_momentum": ("SGD", {"lr": 0.1, "momentum": 0.9}),
    "sgd_momentum_dampening_wd": ("SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3,
                                          "weight_decay": 0.1}),
    "sgd_nesterov_wd": ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                "weight_decay": 0.01}),
    "adam": ("Adam", {"lr": 0.01}),
    "adam_wd": ("Adam", {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}),
    "adam_amsgrad": ("Adam", {"lr": 0.01, "betas": (0.9, 0.99), "amsgrad": True}),
    "adamw": ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    "adamw_amsgrad": ("AdamW", {"lr": 0.02, "betas": (0.85, 0.9), "weight_decay": 0.05,
                                "amsgrad": True}),
    "rmsprop": ("RMSprop", {"lr": 0.01}),
    "rmsprop_momentum_wd": ("RMSprop", {"lr": 0.01, "alpha": 0.9, "momentum": 0.5,
                                        "weight_decay": 0.05}),
    "rmsprop_centered": ("RMSprop", {"lr": 0.01, "alpha": 0.95, "centered": True}),
    "rmsprop_centered_momentum": ("RMSprop", {"lr": 0.005, "alpha": 0.9, "eps": 1e-6,
                                              "momentum": 0.9, "centered": True}),
    "adagrad": ("Adagrad", {"lr": 0.1}),
    "adagrad_decay_wd_init": ("Adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1,
                                          "initial_accumulator_value": 0.2, "eps": 1e-8}),
}

PLATEAU_METRICS = [5.0, 4.0, 4.0, 3.9999, 4.1, 3.0, 3.5, 3.5, 3.5, 3.5, 2.0, 2.5, 2.5, 2.5]

SCHEDULES = {
    "step": {"schedule": "StepLR", "lr": 0.1, "kwargs": {"step_size": 3, "gamma": 0.5}},
    "exponential": {"schedule": "ExponentialLR", "lr": 0.1, "kwargs": {"gamma": 0.8}},
    # runs past T_max: the cosine climbs back up (period 2 T_max)
    "cosine": {"schedule": "CosineAnnealingLR", "lr": 0.1, "kwargs": {"T_max": 5,
                                                                    "eta_min": 0.001}},
    "warmup": {"schedule": "LinearWarmup", "lr": 0.1,
               "kwargs": {"warmup_steps": 4, "start_factor": 0.25}},
    "warmup_cosine": {"schedule": "LinearWarmup", "lr": 0.1,
                      "kwargs": {"warmup_steps": 4, "start_factor": 0.1},
                      "after": {"schedule": "CosineAnnealingLR", "kwargs": {"T_max": 8}}},
    "plateau_min_rel": {"schedule": "ReduceLROnPlateau", "lr": 0.1,
                        "kwargs": {"mode": "min", "factor": 0.5, "patience": 1,
                                   "threshold": 0.01, "cooldown": 1},
                        "metrics": PLATEAU_METRICS},
    "plateau_max_abs": {"schedule": "ReduceLROnPlateau", "lr": 0.1,
                        "kwargs": {"mode": "max", "factor": 0.3, "patience": 2,
                                   "threshold": 0.5, "threshold_mode": "abs",
                                   "min_lr": 0.005},
                        "metrics": [-m for m in PLATEAU_METRICS]},
}


def run_optimizer(name, kwargs, params0, grads):
    tensors = {k: torch.tensor(v, dtype=torch.float64) for k, v in params0.items()}
    opt = getattr(torch.optim, name)(list(tensors.values()), foreach=False, **kwargs)
    traj = {k: [v.copy()] for k, v in params0.items()}
    for t in range(N_STEPS):
        for k, p in tensors.items():
            p.grad = torch.tensor(grads[k][t], dtype=torch.float64)
        opt.step()
        for k, p in tensors.items():
            traj[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in traj.items()}


def run_schedule(spec):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=spec["lr"])
    sch = torch.optim.lr_scheduler
    kw = dict(spec["kwargs"])
    if spec["schedule"] == "LinearWarmup":
        w = kw["warmup_steps"]
        warm = sch.LinearLR(opt, start_factor=kw["start_factor"], end_factor=1.0, total_iters=w)
        if "after" in spec:
            after = getattr(sch, spec["after"]["schedule"])(opt, **spec["after"]["kwargs"])
            s = sch.SequentialLR(opt, [warm, after], milestones=[w])
        else:
            s = warm
    else:
        s = getattr(sch, spec["schedule"])(opt, **kw)
    lrs = [opt.param_groups[0]["lr"]]
    for i in range(N_SCHED):
        opt.step()
        if "metrics" in spec:
            s.step(spec["metrics"][i])
        else:
            s.step()
        lrs.append(opt.param_groups[0]["lr"])
    return np.array(lrs, dtype=np.float64)


def main() -> None:
    rng = np.random.default_rng(20240611)
    # H != D-like shapes, plus a vector (bias-like) so a broadcasting slip would show
    params0 = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    grads = {k: np.stack([s * rng.standard_normal(v.shape) for s in GRAD_SCALE])
             for k, v in params0.items()}
    arrays = {}
    for k in params0:
        arrays[f"params0/{k}"] = params0[k]
        arrays[f"grads/{k}"] = grads[k]
    for case, (name, kwargs) in CONFIGS.items():
        for k, v in run_optimizer(name, kwargs, params0, grads).items():
            arrays[f"traj/{case}/{k}"] = v
    for case, spec in SCHEDULES.items():
        arrays[f"lr/{case}"] = run_schedule(spec)
    configs = {c: {"optimizer": n, "kwargs": kw} for c, (n, kw) in CONFIGS.items()}
    arrays["configs"] = np.array(json.dumps(configs))
    arrays["schedules"] = np.array(json.dumps(SCHEDULES))
    arrays["torch_version"] = np.array(torch.__version__)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({len(arrays)} arrays, torch {torch.__version__})")


if __name__ == "__main__":
    main()
