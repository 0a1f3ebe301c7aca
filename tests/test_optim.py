"""Tests for lstm_bptt.optim: hand-worked updates, PyTorch parity, state_dict, clipping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import npz_round_trip

from lstm_bptt import optim
from lstm_bptt.optim import SGD, Adagrad, Adam, AdamW, RMSprop, clip_grad_norm, clip_grad_value

FIXTURE = Path(__file__).parent / "fixtures" / "optim_torch.npz"


@pytest.fixture(scope="module")
def torch_ref():
    with np.load(FIXTURE, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    data["configs"] = json.loads(data["configs"].item())
    return data


def make(case_cfg, params):
    kwargs = dict(case_cfg["kwargs"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return getattr(optim, case_cfg["optimizer"])(params, **kwargs)


# ------------------------------------------------------------------------------------------
# updates worked out by hand from the published rules (plain Python floats)
# ------------------------------------------------------------------------------------------


def test_sgd_plain_by_hand():
    p = {"w": np.array([1.0, -2.0])}
    opt = SGD(p, lr=0.1)
    opt.step({"w": np.array([0.5, 1.0])})
    # theta <- theta - lr * g
    np.testing.assert_allclose(p["w"], [1.0 - 0.1 * 0.5, -2.0 - 0.1 * 1.0], rtol=1e-15)
    assert opt.state["w"]["step"] == 1 and "momentum_buffer" not in opt.state["w"]


def test_sgd_momentum_dampening_by_hand():
    p = {"w": np.array([1.0, -2.0])}
    opt = SGD(p, lr=0.1, momentum=0.9, dampening=0.3)
    g1, g2, g3 = [0.5, 1.0], [-1.0, 0.25], [2.0, 0.0]
    opt.step({"w": np.array(g1)})
    b1 = g1  # first step: buffer = gradient (no dampening on step 1)
    w1 = [1.0 - 0.1 * b1[0], -2.0 - 0.1 * b1[1]]  # [0.95, -2.1]
    np.testing.assert_allclose(p["w"], w1, rtol=1e-15)
    opt.step({"w": np.array(g2)})
    b2 = [0.9 * b1[i] + (1 - 0.3) * g2[i] for i in range(2)]  # [-0.25, 1.075]
    w2 = [w1[i] - 0.1 * b2[i] for i in range(2)]  # [0.975, -2.2075]
    np.testing.assert_allclose(p["w"], w2, rtol=1e-15)
    np.testing.assert_allclose(opt.state["w"]["momentum_buffer"], b2, rtol=1e-15)
    opt.step({"w": np.array(g3)})
    b3 = [0.9 * b2[i] + 0.7 * g3[i] for i in range(2)]  # [1.175, 0.9675]
    w3 = [w2[i] - 0.1 * b3[i] for i in range(2)]  # [0.8575, -2.30425]
    np.testing.assert_allclose(p["w"], w3, rtol=1e-14)
    np.testing.assert_allclose(p["w"], [0.8575, -2.30425], rtol=1e-14)
    assert opt.state["w"]["step"] == 3


def test_sgd_nesterov_weight_decay_by_hand():
    p = {"w": np.array([1.0])}
    opt = SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)
    opt.step({"w": np.array([0.5])})
    # g' = 0.5 + 0.1*1.0 = 0.6; b = 0.6; direction = g' + 0.9 b = 1.14; w = 1 - 0.114
    np.testing.assert_allclose(p["w"], [0.886], rtol=1e-15)
    opt.step({"w": np.array([-1.0])})
    # g' = -1 + 0.1*0.886 = -0.9114; b = 0.9*0.6 - 0.9114 = -0.3714
    # direction = -0.9114 + 0.9*(-0.3714) = -1.24566; w = 0.886 + 0.124566 = 1.010566
    np.testing.assert_allclose(p["w"], [1.010566], rtol=1e-14)
    np.testing.assert_allclose(opt.state["w"]["momentum_buffer"], [-0.3714], rtol=1e-14)


def test_adam_three_steps_by_hand():
    # Kingma & Ba Algorithm 1 on one scalar weight, eps after the bias-corrected sqrt.
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    p = {"w": np.array([1.0]), "u": np.array([[0.0]])}
    opt = Adam(p, lr=lr, betas=(b1, b2), eps=eps)
    w, m, v = 1.0, 0.0, 0.0
    for t, g in enumerate([2.0, -1.0, 0.5], start=1):
        opt.step({"w": np.array([g]), "u": np.array([[0.0]])})
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        w = w - lr * m_hat / (math.sqrt(v_hat) + eps)
        np.testing.assert_allclose(p["w"], [w], rtol=1e-14)
        np.testing.assert_allclose(opt.state["w"]["exp_avg"], [m], rtol=1e-14)
        np.testing.assert_allclose(opt.state["w"]["exp_avg_sq"], [v], rtol=1e-14)
        assert opt.state["w"]["step"] == t
    # step 1: w = 1 - 0.1 * 2/(2 + 1e-8); written out as numbers for the first two steps:
    # m1 = 0.2, v1 = 0.004; m2 = 0.18 - 0.1 = 0.08, v2 = 0.003996 + 0.001 = 0.004996
    assert opt.state["w"]["exp_avg"][0] == pytest.approx(0.9 * 0.08 + 0.1 * 0.5, rel=1e-14)
    # a zero gradient never moves its weight (0/(0+eps) = 0)
    assert p["u"][0, 0] == 0.0


def test_adam_first_step_moves_each_weight_by_lr():
    g = np.array([1e-3, 0.5, -7.0, 300.0, -2e4])
    p = {"w": np.linspace(-1.0, 1.0, 5)}
    w0 = p["w"].copy()
    Adam(p, lr=0.01, eps=1e-300).step({"w": g})
    # m_hat = g, sqrt(v_hat) = |g| (eps = 1e-300 vanishes next to |g|; eps = 0 is refused):
    # each weight moves by exactly lr against the gradient sign
    np.testing.assert_allclose(w0 - p["w"], 0.01 * np.sign(g), rtol=1e-13)
    p = {"w": w0.copy()}
    Adam(p, lr=0.01).step({"w": g})
    # with eps = 1e-8 the move is lr * |g| / (|g| + eps): lr to within eps/|g| <= 2e-8
    np.testing.assert_allclose(np.abs(w0 - p["w"])[1:], 0.01, rtol=3e-8)
    assert np.all(np.abs(w0 - p["w"]) <= 0.01)


def test_amsgrad_uses_running_max_by_hand():
    lr, b1, b2 = 0.1, 0.9, 0.5
    p = {"w": np.array([0.0])}
    opt = Adam(p, lr=lr, betas=(b1, b2), eps=1e-300, amsgrad=True)
    opt.step({"w": np.array([2.0])})
    # m1 = 0.2, v1 = 0.5*4 = 2, vmax = 2: w1 = 0 - 0.1 * (0.2/0.1) / (sqrt(2/0.5)) = -0.1
    np.testing.assert_allclose(p["w"], [-0.1], rtol=1e-15)
    opt.step({"w": np.array([0.1])})
    # m2 = 0.18 + 0.01 = 0.19; v2 = 1 + 0.005 = 1.005 < vmax = 2 -> use 2
    # w2 = -0.1 - 0.1 * (0.19/0.19) / (sqrt(2)/sqrt(0.75))
    w2 = -0.1 - 0.1 * (0.19 / (1 - 0.81)) / (math.sqrt(2.0) / math.sqrt(1 - 0.25))
    np.testing.assert_allclose(p["w"], [w2], rtol=1e-14)
    np.testing.assert_allclose(opt.state["w"]["max_exp_avg_sq"], [2.0], rtol=1e-15)
    np.testing.assert_allclose(opt.state["w"]["exp_avg_sq"], [1.005], rtol=1e-15)


def test_adam_coupled_vs_adamw_decoupled_decay_by_hand():
    lr, wd = 0.1, 0.1
    # Adam: g' = 0.5 + 0.1*2 = 0.7; first step moves by lr * 0.7/(0.7+eps)
    p = {"w": np.array([2.0])}
    Adam(p, lr=lr, weight_decay=wd, eps=1e-300).step({"w": np.array([0.5])})
    np.testing.assert_allclose(p["w"], [2.0 - 0.1], rtol=1e-15)
    # AdamW: w <- 2*(1 - 0.01) = 1.98, then Adam on the raw gradient: -0.1 -> 1.88
    p = {"w": np.array([2.0])}
    opt = AdamW(p, lr=lr, weight_decay=wd, eps=1e-300)
    opt.step({"w": np.array([0.5])})
    np.testing.assert_allclose(p["w"], [1.88], rtol=1e-15)
    np.testing.assert_allclose(opt.state["w"]["exp_avg"], [0.05], rtol=1e-15)  # raw grad
    opt.step({"w": np.array([-0.5])})
    # w <- 1.88*0.99 = 1.8612; m2 = 0.045 - 0.05 = -0.005, v2 = 0.999*0.00025 + 0.00025*0.001
    m2, v2 = 0.9 * 0.05 + 0.1 * (-0.5), 0.999 * 0.00025 + 0.001 * 0.25
    w2 = 1.88 * 0.99 - 0.1 * (m2 / (1 - 0.81)) / (math.sqrt(v2) / math.sqrt(1 - 0.999**2))
    np.testing.assert_allclose(p["w"], [w2], rtol=1e-13)


def test_rmsprop_plain_by_hand():
    p = {"w": np.array([1.0])}
    opt = RMSprop(p, lr=0.01, alpha=0.9, eps=1e-300)
    opt.step({"w": np.array([2.0])})
    # v1 = 0.1*4 = 0.4; w1 = 1 - 0.01 * 2/sqrt(0.4)
    w1 = 1.0 - 0.01 * 2.0 / math.sqrt(0.4)
    np.testing.assert_allclose(p["w"], [w1], rtol=1e-15)
    opt.step({"w": np.array([-1.0])})
    # v2 = 0.36 + 0.1 = 0.46; w2 = w1 + 0.01/sqrt(0.46)
    np.testing.assert_allclose(p["w"], [w1 + 0.01 / math.sqrt(0.46)], rtol=1e-15)
    np.testing.assert_allclose(opt.state["w"]["square_avg"], [0.46], rtol=1e-15)


def test_rmsprop_centered_momentum_by_hand():
    lr, a, mu, eps = 0.01, 0.9, 0.5, 1e-8
    p = {"w": np.array([1.0])}
    opt = RMSprop(p, lr=lr, alpha=a, eps=eps, momentum=mu, centered=True)
    opt.step({"w": np.array([2.0])})
    # v1 = 0.4, gbar1 = 0.2, d1 = sqrt(0.4 - 0.04) + eps = 0.6 + eps; b1 = 2/d1
    d1 = math.sqrt(0.4 - 0.04) + eps
    b1 = 2.0 / d1
    w1 = 1.0 - lr * b1
    np.testing.assert_allclose(p["w"], [w1], rtol=1e-14)
    opt.step({"w": np.array([-1.0])})
    # v2 = 0.36 + 0.1 = 0.46, gbar2 = 0.18 - 0.1 = 0.08, d2 = sqrt(0.46 - 0.0064) + eps
    d2 = math.sqrt(0.46 - 0.0064) + eps
    b2 = mu * b1 + (-1.0) / d2
    np.testing.assert_allclose(p["w"], [w1 - lr * b2], rtol=1e-14)
    np.testing.assert_allclose(opt.state["w"]["grad_avg"], [0.08], rtol=1e-14)
    np.testing.assert_allclose(opt.state["w"]["momentum_buffer"], [b2], rtol=1e-14)


def test_adagrad_by_hand():
    lr, eta, s0, wd = 0.1, 0.5, 0.25, 0.0
    p = {"w": np.array([1.0])}
    opt = Adagrad(p, lr=lr, lr_decay=eta, initial_accumulator_value=s0, weight_decay=wd,
                  eps=1e-300)
    opt.step({"w": np.array([1.0])})
    # clr1 = 0.1; s1 = 0.25 + 1 = 1.25; w1 = 1 - 0.1 * 1/sqrt(1.25)
    w1 = 1.0 - 0.1 / math.sqrt(1.25)
    np.testing.assert_allclose(p["w"], [w1], rtol=1e-15)
    opt.step({"w": np.array([-2.0])})
    # clr2 = 0.1/(1 + 0.5) ; s2 = 1.25 + 4 = 5.25; w2 = w1 + clr2 * 2/sqrt(5.25)
    w2 = w1 + (0.1 / 1.5) * 2.0 / math.sqrt(5.25)
    np.testing.assert_allclose(p["w"], [w2], rtol=1e-15)
    opt.step({"w": np.array([0.5])})
    # clr3 = 0.1/2 ; s3 = 5.5
    np.testing.assert_allclose(p["w"], [w2 - 0.05 * 0.5 / math.sqrt(5.5)], rtol=1e-15)
    np.testing.assert_allclose(opt.state["w"]["sum"], [5.5], rtol=1e-15)


# ------------------------------------------------------------------------------------------
# PyTorch parity (fixture from scripts/make_optim_fixtures.py, torch 2.13, float64)
# ------------------------------------------------------------------------------------------

with np.load(FIXTURE, allow_pickle=False) as _f:
    CASES = sorted(json.loads(_f["configs"].item()))


def _grads(ref, t, dtype=np.float64):
    return {k: ref[f"grads/{k}"][t].astype(dtype) for k in ("W", "b")}


@pytest.mark.parametrize("case", CASES)
def test_matches_torch_float64(torch_ref, case):
    params = {k: torch_ref[f"params0/{k}"].copy() for k in ("W", "b")}
    ids = {k: id(v) for k, v in params.items()}
    opt = make(torch_ref["configs"][case], params)
    n = torch_ref["grads/W"].shape[0]
    for t in range(n):
        opt.step(_grads(torch_ref, t))
        for k in params:
            np.testing.assert_allclose(params[k], torch_ref[f"traj/{case}/{k}"][t + 1],
                                       rtol=1e-12, atol=1e-15, err_msg=f"{case} {k} step {t + 1}")
    assert {k: id(v) for k, v in params.items()} == ids  # updated in place
    assert all(st["step"] == n for st in opt.state.values())


@pytest.mark.parametrize("case", CASES)
def test_float32_stays_float32_and_tracks_torch(torch_ref, case):
    params = {k: torch_ref[f"params0/{k}"].astype(np.float32) for k in ("W", "b")}
    opt = make(torch_ref["configs"][case], params)
    for t in range(torch_ref["grads/W"].shape[0]):
        opt.step(_grads(torch_ref, t, np.float32))
    for k in params:
        assert params[k].dtype == np.float32
        for name, v in opt.state[k].items():
            assert name == "step" and type(v) is int or v.dtype == np.float32, name
        np.testing.assert_allclose(params[k], torch_ref[f"traj/{case}/{k}"][-1], rtol=2e-5,
                                   atol=2e-6)


def test_fixture_exercises_amsgrad(torch_ref):
    # the same run without amsgrad must leave the torch amsgrad trajectory: the max matters
    cfg = dict(torch_ref["configs"]["adam_amsgrad"])
    cfg["kwargs"] = {**cfg["kwargs"], "amsgrad": False}
    params = {k: torch_ref[f"params0/{k}"].copy() for k in ("W", "b")}
    opt = make(cfg, params)
    for t in range(torch_ref["grads/W"].shape[0]):
        opt.step(_grads(torch_ref, t))
    assert np.max(np.abs(params["W"] - torch_ref["traj/adam_amsgrad/W"][-1])) > 1e-4


# ------------------------------------------------------------------------------------------
# step() contract and validation
# ------------------------------------------------------------------------------------------


def test_step_does_not_modify_grads():
    for opt_cls, kw in [(SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
                        (Adam, dict(weight_decay=0.1)), (AdamW, {}),
                        (RMSprop, dict(momentum=0.9, centered=True, weight_decay=0.1)),
                        (Adagrad, dict(weight_decay=0.1))]:
        p = {"w": np.array([1.0, 2.0])}
        g = {"w": np.array([0.5, -0.5])}
        opt = opt_cls(p, **kw)
        opt.step(g)
        opt.step(g)
        np.testing.assert_array_equal(g["w"], [0.5, -0.5])
        # the momentum buffer must not alias the caller's gradient
        assert all(v is not g["w"] for v in opt.state["w"].values())


@pytest.mark.parametrize("bad_grads, match", [
    ({"a": np.zeros(2)}, "missing"),
    ({"a": np.zeros(2), "b": np.zeros((2, 3)), "c": np.zeros(1)}, "unexpected"),
    ({"a": np.zeros(3), "b": np.zeros((2, 3))}, r"expected shape \(2,\)"),
    ({"a": np.zeros(2, np.float32), "b": np.zeros((2, 3))}, "dtype float64"),
    ({"a": [0.0, 0.0], "b": np.zeros((2, 3))}, "grads\\['a'\\]: expected a np.ndarray, got list"),
])
def test_bad_grads_raise(bad_grads, match):
    opt = Adam({"a": np.zeros(2), "b": np.zeros((2, 3))})
    exc = TypeError if "list" in match else ValueError  # a list is the wrong type
    with pytest.raises(exc, match=match):
        opt.step(bad_grads)
    assert opt.state == {}


@pytest.mark.parametrize("ctor", [
    lambda p: SGD(p, lr=-0.1),
    lambda p: SGD(p, lr=float("nan")),
    lambda p: SGD(p, lr=0.1, momentum=-0.5),
    lambda p: SGD(p, lr=0.1, nesterov=True),
    lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
    lambda p: SGD(p, lr=0.1, weight_decay=-1e-4),
    lambda p: Adam(p, lr=-1e-3),
    lambda p: Adam(p, betas=(1.0, 0.999)),
    lambda p: Adam(p, betas=(0.9, -0.1)),
    lambda p: Adam(p, betas=(0.9,)),
    lambda p: Adam(p, eps=-1e-8),
    lambda p: AdamW(p, weight_decay=-0.01),
    lambda p: RMSprop(p, alpha=-0.1),
    lambda p: RMSprop(p, alpha=1.5),
    lambda p: RMSprop(p, momentum=-0.1),
    lambda p: RMSprop(p, eps=-1.0),
    lambda p: Adagrad(p, lr_decay=-0.1),
    lambda p: Adagrad(p, initial_accumulator_value=-1.0),
    lambda p: Adagrad(p, eps=-1e-10),
])
def test_invalid_hyperparameters_raise(ctor):
    with pytest.raises(ValueError, match=r"^\w+(\[\d\])?: expected"):
        ctor({"w": np.zeros(3)})


def test_invalid_params_raise():
    with pytest.raises(TypeError, match="dict"):
        Adam([np.zeros(3)])
    with pytest.raises(TypeError, match="floating"):
        Adam({"w": np.zeros(3, dtype=np.int64)})
    with pytest.raises(ValueError, match="params: expected at least one parameter array, got an "
                                         "empty dict"):
        Adam({})
    w = np.zeros(3)
    with pytest.raises(ValueError, match="same array"):
        Adam({"w": w, "v": w})
    with pytest.raises(TypeError, match="amsgrad: expected True or False, got 'yes'"):
        Adam({"w": np.zeros(3)}, amsgrad="yes")


def test_lr_is_a_public_attribute_used_by_step():
    p = {"w": np.array([1.0])}
    opt = SGD(p, lr=0.1)
    opt.lr = 0.5
    opt.step({"w": np.array([1.0])})
    assert p["w"][0] == 0.5


# ------------------------------------------------------------------------------------------
# state_dict
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("via_npz", [False, True])
def test_resume_is_bit_exact(torch_ref, case, via_npz):
    cfg = torch_ref["configs"][case]
    p_ref = {k: torch_ref[f"params0/{k}"].copy() for k in ("W", "b")}
    ref = make(cfg, p_ref)
    for t in range(5):
        ref.step(_grads(torch_ref, t))

    p = {k: torch_ref[f"params0/{k}"].copy() for k in ("W", "b")}
    first = make(cfg, p)
    for t in range(3):
        first.step(_grads(torch_ref, t))
    sd = first.state_dict()
    if via_npz:
        sd = npz_round_trip(sd)
    # a fresh optimizer with DIFFERENT hyperparameters on a copy of the params at step 3
    p2 = {k: v.copy() for k, v in p.items()}
    second = type(first)(p2, lr=123.0)
    second.load_state_dict(sd)
    for t in range(3, 5):
        second.step(_grads(torch_ref, t))
    for k in p2:
        np.testing.assert_array_equal(p2[k], p_ref[k])
    assert second.hyperparams() == ref.hyperparams()
    assert all(st["step"] == 5 for st in second.state.values())


def test_state_dict_leaves_and_snapshot():
    p = {"w": np.ones(3, np.float32)}
    opt = Adam(p, amsgrad=True)
    assert opt.state_dict()["state"] == {}
    opt.step({"w": np.ones(3, np.float32)})
    sd = opt.state_dict()
    npz_round_trip(sd)  # asserts every leaf is an array or Python scalar
    assert sd["type"] == "Adam" and sd["hyperparams"]["amsgrad"] is True
    assert set(sd["state"]["w"]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert type(sd["state"]["w"]["step"]) is int
    before = sd["state"]["w"]["exp_avg"].copy()
    opt.step({"w": np.ones(3, np.float32)})
    np.testing.assert_array_equal(sd["state"]["w"]["exp_avg"], before)  # a copy, not a view


def test_load_copies_instead_of_aliasing():
    p = {"w": np.ones(2)}
    opt = RMSprop(p, momentum=0.9)
    opt.step({"w": np.ones(2)})
    sd = opt.state_dict()
    other = RMSprop({"w": np.ones(2)}, momentum=0.9)
    other.load_state_dict(sd)
    sd["state"]["w"]["square_avg"][:] = 99.0
    np.testing.assert_array_equal(other.state["w"]["square_avg"], opt.state["w"]["square_avg"])


def test_load_mismatch_raises():
    opt = Adam({"w": np.ones(2), "b": np.ones(3)})
    opt.step({"w": np.ones(2), "b": np.ones(3)})
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="different set of parameters"):
        Adam({"w": np.ones(2)}).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"expected shape \(4,\)"):
        Adam({"w": np.ones(2), "b": np.ones(4)}).load_state_dict(sd)
    with pytest.raises(ValueError, match="state_dict: expected one of optimizer 'AdamW', got 'Ad"):
        AdamW({"w": np.ones(2), "b": np.ones(3)}).load_state_dict(sd)
    # amsgrad=True in the state but no max_exp_avg_sq: refused, and nothing changed
    sd["hyperparams"]["amsgrad"] = True
    target = Adam({"w": np.ones(2), "b": np.ones(3)}, lr=0.5)
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        target.load_state_dict(sd)
    assert target.lr == 0.5 and target.amsgrad is False and target.state == {}
    sd["hyperparams"]["amsgrad"] = False
    sd["hyperparams"]["eps"] = -1.0
    with pytest.raises(ValueError, match="eps"):
        target.load_state_dict(sd)


# ------------------------------------------------------------------------------------------
# gradient clipping
# ------------------------------------------------------------------------------------------


def test_clip_grad_norm_is_global():
    # each tensor's norm (3 and 4) is below 4.5, their global norm sqrt(9 + 16) = 5 is not
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0], [4.0]])}
    total = clip_grad_norm(grads, max_norm=4.5)
    assert isinstance(total, float) and total == 5.0
    scale = 4.5 / (5.0 + 1e-6)
    np.testing.assert_allclose(grads["a"], [3.0 * scale, 0.0], rtol=1e-15)
    np.testing.assert_allclose(grads["b"], [[0.0], [4.0 * scale]], rtol=1e-15)
    # the clipped global norm is max_norm (up to the 1e-6 guard)
    np.testing.assert_allclose(math.hypot(grads["a"][0], grads["b"][1, 0]), 4.5, rtol=1e-6)


def test_clip_grad_norm_below_threshold_is_a_no_op():
    a, b = np.array([3.0, 0.0]), np.array([[0.0], [4.0]])
    grads = {"a": a, "b": b}
    assert clip_grad_norm(grads, max_norm=5.1) == 5.0
    assert grads["a"] is a and grads["b"] is b
    np.testing.assert_array_equal(a, [3.0, 0.0])
    np.testing.assert_array_equal(b, [[0.0], [4.0]])


def test_clip_grad_norm_other_norms_and_float32():
    grads = {"a": np.array([3.0, -1.0], np.float32), "b": np.array([-4.0], np.float32)}
    assert clip_grad_norm(grads, max_norm=100.0, norm_type=1.0) == 8.0  # 3 + 1 + 4
    assert clip_grad_norm(grads, max_norm=100.0, norm_type=math.inf) == 4.0
    total = clip_grad_norm(grads, max_norm=1.0, norm_type=math.inf)
    assert total == 4.0 and grads["a"].dtype == np.float32 and grads["b"].dtype == np.float32
    np.testing.assert_allclose(grads["b"], [-4.0 / (4.0 + 1e-6)], rtol=1e-6)
    # p = 3: (27 + 1 + 64)^(1/3) on fresh arrays
    grads = {"a": np.array([3.0, -1.0]), "b": np.array([-4.0])}
    assert clip_grad_norm(grads, 100.0, norm_type=3.0) == pytest.approx(92.0 ** (1 / 3), 1e-15)


def test_clip_grad_norm_errors():
    with pytest.raises(ValueError, match="non-finite"):
        clip_grad_norm({"a": np.array([np.nan, 1.0])}, 1.0, error_if_nonfinite=True)
    assert math.isnan(clip_grad_norm({"a": np.array([np.nan, 1.0])}, 1.0))
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm({"a": np.ones(2)}, -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm({"a": np.ones(2)}, 1.0, norm_type=0.0)
    with pytest.raises(TypeError, match="floating"):
        clip_grad_norm({"a": [1.0]}, 1.0)
    assert clip_grad_norm({}, 1.0) == 0.0


def test_clip_grad_value():
    g = np.array([-3.0, 0.5, 2.0, -0.25], np.float32)
    grads = {"g": g}
    clip_grad_value(grads, 1.0)
    assert grads["g"] is g and g.dtype == np.float32
    np.testing.assert_array_equal(g, [-1.0, 0.5, 1.0, -0.25])
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value(grads, -1.0)
