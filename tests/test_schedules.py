"""Tests for lstm_bptt.schedules: closed forms, PyTorch parity, plateau logic, state_dict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import npz_round_trip

from lstm_bptt import schedules
from lstm_bptt.optim import SGD, Adam
from lstm_bptt.schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    ReduceLROnPlateau,
    StepLR,
)

FIXTURE = Path(__file__).parent / "fixtures" / "optim_torch.npz"


def opt(lr=0.1, dtype=np.float64):
    return SGD({"w": np.zeros(2, dtype)}, lr=lr)


def run(sched, n, metrics=None):
    """lr after construction, then after each of n steps."""
    lrs = [sched.optimizer.lr]
    for i in range(n):
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[i])
        assert sched.get_last_lr() == sched.optimizer.lr
        lrs.append(sched.optimizer.lr)
    return lrs


# ------------------------------------------------------------------------------------------
# closed forms, values written out
# ------------------------------------------------------------------------------------------


def test_step_lr():
    lrs = run(StepLR(opt(0.1), step_size=3, gamma=0.5), 8)
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025],
                               rtol=1e-15)


def test_exponential_lr():
    lrs = run(ExponentialLR(opt(2.0), gamma=0.5), 4)
    np.testing.assert_allclose(lrs, [2.0, 1.0, 0.5, 0.25, 0.125], rtol=1e-15)


def test_cosine_annealing_lr():
    base, eta_min, t_max = 0.1, 0.02, 4
    lrs = run(CosineAnnealingLR(opt(base), T_max=t_max, eta_min=eta_min), 8)
    # eta_min + (base - eta_min)(1 + cos(pi t / T_max))/2 at t = 0..8
    half = (1 + math.cos(math.pi / 4)) / 2  # t = 1: cos(pi/4) = sqrt(2)/2
    expected = [0.1, 0.02 + 0.08 * half, 0.06, 0.02 + 0.08 * (1 - half), 0.02,
                0.02 + 0.08 * (1 - half), 0.06, 0.02 + 0.08 * half, 0.1]
    np.testing.assert_allclose(lrs, expected, rtol=1e-14)


def test_linear_warmup_alone():
    lrs = run(LinearWarmup(opt(0.1), warmup_steps=4, start_factor=0.25), 6)
    # 0.1 * (0.25 + 0.75 t / 4) for t < 4, then 0.1
    np.testing.assert_allclose(lrs, [0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1, 0.1],
                               rtol=1e-15)


def test_linear_warmup_then_step_lr():
    o = opt(1.0)
    sched = LinearWarmup(o, warmup_steps=2, start_factor=0.5, after=StepLR(o, 2, gamma=0.1))
    lrs = run(sched, 7)
    # warm-up 0.5, 0.75; then StepLR from its own t = 0: 1, 1, 0.1, 0.1, 0.01, 0.01
    np.testing.assert_allclose(lrs, [0.5, 0.75, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-15)
    assert sched.after.last_epoch == 5 and sched.after.get_last_lr() == pytest.approx(0.01)


def test_zero_warmup_hands_over_at_once():
    o = opt(0.1)
    lrs = run(LinearWarmup(o, 0, after=ExponentialLR(o, 0.5)), 2)
    np.testing.assert_allclose(lrs, [0.1, 0.05, 0.025], rtol=1e-15)


def test_schedule_drives_optimizer_and_keeps_float32():
    p = {"w": np.ones(3, np.float32)}
    o = Adam(p, lr=0.1)
    sched = LinearWarmup(o, warmup_steps=2, start_factor=0.5)
    o.step({"w": np.ones(3, np.float32)})  # first Adam step moves by exactly lr = 0.05
    np.testing.assert_allclose(p["w"], 0.95, rtol=1e-6)
    sched.step()
    o.step({"w": np.ones(3, np.float32)})  # lr = 0.075, m_hat = v_hat**0.5 = 1
    np.testing.assert_allclose(p["w"], 0.95 - 0.075, rtol=1e-6)
    assert p["w"].dtype == np.float32


# ------------------------------------------------------------------------------------------
# ReduceLROnPlateau, traced by hand
# ------------------------------------------------------------------------------------------


def test_plateau_min_rel_by_hand():
    sched = ReduceLROnPlateau(opt(0.1), factor=0.5, patience=1, threshold=0.01, cooldown=1)
    metrics = [5.0, 4.0, 4.0, 3.9999, 4.1, 3.0, 3.5, 3.5]
    lrs = run(sched, len(metrics), metrics)
    # 5: best; 4 < 5*0.99: best; 4: bad 1; 3.9999 not < 3.96: bad 2 > patience -> 0.05,
    # cooldown 1; 4.1: bad, but in cooldown -> 0; 3.0 best; 3.5: bad 1; 3.5: bad 2 -> 0.025
    assert lrs == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025]
    assert sched.best == 3.0 and sched.num_bad_epochs == 0 and sched.cooldown_counter == 1


def test_plateau_max_abs_and_min_lr():
    sched = ReduceLROnPlateau(opt(1.0), mode="max", factor=0.1, patience=0, threshold=0.5,
                              threshold_mode="abs", min_lr=0.05)
    # 1.0: best; 1.4 not > 1.5: cut to 0.1; 1.6 > 1.5: best; 1.7: cut to max(0.01, 0.05);
    # 1.8: the cut 0.05 -> 0.05 is below eps, lr stays
    lrs = run(sched, 5, [1.0, 1.4, 1.6, 1.7, 1.8])
    np.testing.assert_allclose(lrs, [1.0, 1.0, 0.1, 0.1, 0.05, 0.05], rtol=1e-15)


def test_plateau_accepts_numpy_scalars_and_rejects_arrays():
    sched = ReduceLROnPlateau(opt(0.1))
    sched.step(np.float32(2.0))
    sched.step(np.array(1.0))
    assert sched.best == 1.0
    with pytest.raises(TypeError, match="metric"):
        sched.step(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="metric"):
        sched.step("low")


# ------------------------------------------------------------------------------------------
# PyTorch parity (fixture from scripts/make_optim_fixtures.py)
# ------------------------------------------------------------------------------------------

with np.load(FIXTURE, allow_pickle=False) as _f:
    SCHEDULES = json.loads(_f["schedules"].item())
    TORCH_LR = {k: _f[f"lr/{k}"] for k in SCHEDULES}


def build(spec, o):
    kwargs = dict(spec["kwargs"])
    if "after" in spec:
        kwargs["after"] = getattr(schedules, spec["after"]["schedule"])(
            o, **spec["after"]["kwargs"])
    return getattr(schedules, spec["schedule"])(o, **kwargs)


@pytest.mark.parametrize("case", sorted(SCHEDULES))
def test_matches_torch(case):
    spec = SCHEDULES[case]
    ref = TORCH_LR[case]
    sched = build(spec, opt(spec["lr"]))
    lrs = run(sched, len(ref) - 1, spec.get("metrics"))
    np.testing.assert_allclose(lrs, ref, rtol=1e-12, atol=1e-15)


def test_fixture_plateau_cases_cut_the_lr():
    for case in ("plateau_min_rel", "plateau_max_abs"):
        assert len(set(TORCH_LR[case].tolist())) >= 3


# ------------------------------------------------------------------------------------------
# state_dict and validation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(SCHEDULES))
@pytest.mark.parametrize("via_npz", [False, True])
def test_resume(case, via_npz):
    spec = SCHEDULES[case]
    metrics = spec.get("metrics")
    n = len(TORCH_LR[case]) - 1
    full = run(build(spec, opt(spec["lr"])), n, metrics)

    o = opt(spec["lr"])
    first = build(spec, o)
    head = run(first, 6, metrics)
    sd = first.state_dict()
    osd = o.state_dict()
    if via_npz:
        sd, osd = npz_round_trip(sd), npz_round_trip(osd)
    o2 = opt(spec["lr"])
    o2.load_state_dict(osd)  # optimizer loaded BEFORE the schedule is built: still fine
    second = build(spec, o2)
    second.load_state_dict(sd)
    assert o2.lr == head[-1]
    tail = run(second, n - 6, None if metrics is None else metrics[6:])
    assert head + tail[1:] == full  # bit for bit


def test_state_dict_contents():
    o = opt(0.1)
    sched = LinearWarmup(o, 3, after=CosineAnnealingLR(o, 10, eta_min=0.01))
    sched.step()
    sd = sched.state_dict()
    assert sd["type"] == "LinearWarmup" and sd["last_epoch"] == 1 and sd["base_lr"] == 0.1
    assert sd["after"]["type"] == "CosineAnnealingLR" and sd["after"]["eta_min"] == 0.01
    npz_round_trip(sd)  # asserts the leaf types
    plateau = ReduceLROnPlateau(opt())
    assert plateau.state_dict()["best"] == math.inf
    npz_round_trip(plateau.state_dict())


def test_load_mismatch_raises():
    sd = StepLR(opt(), 3).state_dict()
    with pytest.raises(ValueError, match="'StepLR'"):
        ExponentialLR(opt(), 0.9).load_state_dict(sd)
    with pytest.raises(ValueError, match="expected keys"):
        StepLR(opt(), 3).load_state_dict({k: v for k, v in sd.items() if k != "gamma"})
    with pytest.raises(ValueError, match="step_size"):
        StepLR(opt(), 3).load_state_dict({**sd, "step_size": 0})
    o = opt()
    with pytest.raises(ValueError, match="after"):
        LinearWarmup(o, 2, after=StepLR(o, 2)).load_state_dict(LinearWarmup(opt(), 2).state_dict())


@pytest.mark.parametrize("ctor, exc", [
    (lambda o: StepLR(o, step_size=0), ValueError),
    (lambda o: StepLR(o, step_size=2.5), TypeError),
    (lambda o: StepLR(o, 2, gamma=0.0), ValueError),
    (lambda o: ExponentialLR(o, gamma=-0.5), ValueError),
    (lambda o: CosineAnnealingLR(o, T_max=0), ValueError),
    (lambda o: CosineAnnealingLR(o, T_max=5, eta_min=-1.0), ValueError),
    (lambda o: LinearWarmup(o, warmup_steps=-1), ValueError),
    (lambda o: LinearWarmup(o, 5, start_factor=0.0), ValueError),
    (lambda o: LinearWarmup(o, 5, start_factor=1.5), ValueError),
    (lambda o: LinearWarmup(o, 5, after=StepLR(opt(), 2)), ValueError),
    (lambda o: LinearWarmup(o, 5, after=ReduceLROnPlateau(o)), TypeError),
    (lambda o: ReduceLROnPlateau(o, mode="lowest"), ValueError),
    (lambda o: ReduceLROnPlateau(o, factor=1.0), ValueError),
    (lambda o: ReduceLROnPlateau(o, patience=-1), ValueError),
    (lambda o: ReduceLROnPlateau(o, threshold_mode="relative"), ValueError),
    (lambda o: ReduceLROnPlateau(o, min_lr=-1e-3), ValueError),
    (lambda o: StepLR(object(), 3), TypeError),
])
def test_invalid_arguments_raise(ctor, exc):
    with pytest.raises(exc):
        ctor(opt())
