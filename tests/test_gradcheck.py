"""The gradient checker itself: exact restoration, known derivatives, planted bugs flagged."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import lstm_params

from lstm_bptt import gradcheck, lstm_backward, lstm_forward, numerical_gradient, rel_error
from lstm_bptt.gradcheck import GradcheckError

PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def test_numerical_gradient_of_known_function(rng):
    x = rng.standard_normal((3, 4))
    # f = sum(x^3) + sin(x00): df/dx = 3 x^2 (+ cos(x00) at [0, 0])
    g = numerical_gradient(lambda v: np.sum(v**3) + math.sin(v[0, 0]), x)
    expected = 3 * x**2
    expected[0, 0] += math.cos(x[0, 0])
    assert g.shape == x.shape and g.dtype == np.float64
    np.testing.assert_allclose(g, expected, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("dtype, eps", [(np.float64, 1e-6), (np.float64, 0.3), (np.float32, 1e-3)])
def test_numerical_gradient_restores_x_bit_for_bit(rng, dtype, eps):
    # values whose x + eps - eps != x in floating point, so restoring by subtraction would fail
    x = (rng.standard_normal((4, 3)) * 10.0 ** rng.integers(-8, 8, (4, 3))).astype(dtype)
    candidates = np.linspace(0.01, 1, 1000).astype(dtype)
    x[0, 0] = next(v for v in candidates if (v + dtype(eps)) - dtype(eps) != v)
    before = x.tobytes()
    numerical_gradient(lambda v: float(np.sum(np.sin(v))), x, eps)
    assert x.tobytes() == before


def test_numerical_gradient_restores_x_when_f_raises():
    x = np.array([1.0, 2.0, 3.0]) / 7
    before = x.tobytes()

    def f(v):
        if v[1] != 2.0 / 7:
            raise RuntimeError("boom")
        return 0.0

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(f, x)
    assert x.tobytes() == before


def test_numerical_gradient_f_may_ignore_its_argument(rng):
    """f reads the array from a closure (like a model's params), not from its argument."""
    w = rng.standard_normal((2, 3))
    a = rng.standard_normal((2, 3))
    before = w.tobytes()
    g = numerical_gradient(lambda _unused: float(np.sum(a * w**2)), w)
    np.testing.assert_allclose(g, 2 * a * w, rtol=1e-7, atol=1e-8)
    assert w.tobytes() == before


def test_numerical_gradient_noncontiguous_view(rng):
    base = rng.standard_normal((4, 6))
    view = base[:, ::2]  # perturbing the view must perturb base, and be undone
    before = base.tobytes()
    g = numerical_gradient(lambda _v: float(np.sum(base[:, ::2] ** 2)), view)
    # absolute rounding noise of central differences: ~1e-16 * |f| / eps ~ 1e-9
    np.testing.assert_allclose(g, 2 * view, rtol=1e-7, atol=1e-8)
    assert base.tobytes() == before


def test_numerical_gradient_bad_arguments():
    with pytest.raises(TypeError, match="float ndarray"):
        numerical_gradient(lambda v: 0.0, np.arange(3))
    with pytest.raises(ValueError, match="eps"):
        numerical_gradient(lambda v: 0.0, np.zeros(3), eps=0.0)
    with pytest.raises(ValueError, match="non-finite"):
        numerical_gradient(lambda v: float("nan"), np.zeros(3))


def test_rel_error_by_hand():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    # |1 - 3| / (1 + 3) = 0.5
    assert rel_error(np.array([1.0, 0.0]), np.array([3.0, 0.0])) == pytest.approx(0.5)
    # both tiny: the floor (1e-8) is the denominator
    assert rel_error(np.array([1e-12]), np.array([-1e-12])) == pytest.approx(2e-12 / 1e-8)
    assert rel_error(np.zeros(0), np.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.zeros(2), np.zeros(3))


def test_gradcheck_passes_correct_and_reports_every_tensor(rng):
    a = rng.standard_normal((3, 2))
    b = rng.standard_normal(4)
    R = rng.standard_normal((3, 2))

    def loss():
        return float(np.sum(np.tanh(a) * R) + np.sum(b**2))

    report = gradcheck(loss, {"a": a, "b": b}, {"a": (1 - np.tanh(a) ** 2) * R, "b": 2 * b})
    assert report.passed
    assert [r.name for r in report.rows] == ["a", "b"]
    assert report["a"].shape == (3, 2) and report["b"].shape == (4,)
    assert report.max_rel_error < 1e-8
    assert "a" in report.format() and "FAIL" not in report.format()


def test_gradcheck_missing_or_misshaped_gradient():
    x = np.zeros(3)
    with pytest.raises(ValueError, match="no analytic gradient for 'x'"):
        gradcheck(lambda: 0.0, {"x": x}, {})
    with pytest.raises(ValueError, match=r"expected shape \(3,\), got \(2,\)"):
        gradcheck(lambda: 0.0, {"x": x}, {"x": np.zeros(2)})


# ---------------------------------------------------------------- planted bugs in BPTT


def _lstm_check(rng, D, H, backward, T=3, B=2):
    x = rng.standard_normal((T, B, D))
    h_0, c_0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    params = lstm_params(rng, D, H)
    R = rng.standard_normal((T, B, H))
    Rh, Rc = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    def loss():
        out, (h_n, c_n), _ = lstm_forward(x, h_0, c_0, *params)
        return np.sum(out * R) + np.sum(h_n * Rh) + np.sum(c_n * Rc)

    _, _, cache = lstm_forward(x, h_0, c_0, *params)
    dx, dh_0, dc_0, grads = backward(R, cache, Rh, Rc)
    tensors = {"x": x, "h_0": h_0, "c_0": c_0, **dict(zip(PARAM_NAMES, params, strict=True))}
    return gradcheck(loss, tensors, {"x": dx, "h_0": dh_0, "c_0": dc_0, **grads})


@pytest.mark.parametrize("gate", [0, 1, 2, 3], ids=["i", "f", "g", "o"])
@pytest.mark.parametrize("tensor", ["weight_ih", "weight_hh", "bias_hh"])
def test_planted_sign_flip_in_one_gate_block_is_flagged(rng, gate, tensor):
    D, H = 3, 2

    def buggy(dout, cache, dh_n, dc_n):
        dx, dh_0, dc_0, grads = lstm_backward(dout, cache, dh_n, dc_n)
        grads = dict(grads)
        grads[tensor] = grads[tensor].copy()
        grads[tensor][gate * H : (gate + 1) * H] *= -1
        return dx, dh_0, dc_0, grads

    assert _lstm_check(rng, D, H, lstm_backward).passed  # the unplanted backward passes
    with pytest.raises(GradcheckError, match=tensor) as info:
        _lstm_check(rng, D, H, buggy)
    report = info.value.report
    assert [r.name for r in report.rows if not r.passed] == [tensor]
    bad = report[tensor]
    assert gate * H <= bad.worst_index[0] < (gate + 1) * H
    assert bad.max_rel_error > 0.1
    assert bad.analytic == pytest.approx(-bad.numerical, rel=1e-6)


@pytest.mark.parametrize("tensor", ["weight_ih", "weight_hh"])
def test_planted_transposed_weight_gradient_is_flagged(rng, tensor):
    """Square case D = H: transposing each (H, H) gate block keeps the shape, so only the
    values can reveal the bug."""
    D = H = 3

    def buggy(dout, cache, dh_n, dc_n):
        dx, dh_0, dc_0, grads = lstm_backward(dout, cache, dh_n, dc_n)
        grads = dict(grads)
        grads[tensor] = grads[tensor].reshape(4, H, H).transpose(0, 2, 1).reshape(4 * H, H)
        return dx, dh_0, dc_0, grads

    with pytest.raises(GradcheckError, match=f"{tensor}: max rel error") as info:
        _lstm_check(rng, D, H, buggy)
    report = info.value.report
    assert [r.name for r in report.rows if not r.passed] == [tensor]
    assert report[tensor].max_rel_error > 1e-2


def test_planted_bug_in_input_gradient_is_flagged(rng):
    """A dx that is 0.1 % too large everywhere is flagged, and only x is blamed."""
    D, H = 3, 2

    def buggy(dout, cache, dh_n, dc_n):
        dx, dh_0, dc_0, grads = lstm_backward(dout, cache, dh_n, dc_n)
        return 1.001 * dx, dh_0, dc_0, grads

    with pytest.raises(GradcheckError, match="x: max rel error") as info:
        _lstm_check(rng, D, H, buggy)
    assert [r.name for r in info.value.report.rows if not r.passed] == ["x"]
    assert info.value.report["x"].max_rel_error == pytest.approx(0.001 / 2.001, rel=1e-3)


def test_gradcheck_report_without_raising(rng):
    a = rng.standard_normal(3)
    report = gradcheck(lambda: float(np.sum(a**2)), {"a": a}, {"a": -2 * a}, raise_on_fail=False)
    assert not report.passed
    assert report["a"].max_rel_error == pytest.approx(1.0)
    assert "FAIL" in report.format()


def test_numerical_gradient_refuses_read_only_arrays_clearly():
    import numpy as np

    from lstm_bptt.gradcheck import numerical_gradient

    x = np.ones(3)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        numerical_gradient(lambda v: float(v.sum()), x)


# ------------------------------------------------ float32 warning, atol, argument checks


def test_float32_tensor_warns_and_failure_explains_float64(rng):
    """A correct gradient of a float32 loss still fails (rounding ~1e-7 |L| / eps); the user is
    told why instead of getting a bare FAIL."""
    a = rng.standard_normal((3, 4)).astype(np.float32)
    R = rng.standard_normal((3, 4)).astype(np.float32)

    def loss():
        return float(np.sum(np.sin(a) * R, dtype=np.float32))

    exact = np.cos(a.astype(np.float64)) * R  # d/da sum(sin(a) R) = cos(a) R
    with pytest.warns(UserWarning, match=r"a \(float32\) not float64"):
        with pytest.raises(GradcheckError, match=r"need float64.*dtype=np\.float64"):
            gradcheck(loss, {"a": a}, {"a": exact})


def test_float64_tensors_do_not_warn(rng):
    a = rng.standard_normal(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gradcheck(lambda: float(np.sum(a**2)), {"a": a}, {"a": 2 * a}).passed


def test_atol_lets_correct_tiny_gradients_pass(rng):
    """L = 1 + 1e-10 sum(a R): the true gradient 1e-10 R is exact, but the central difference
    carries a rounding error of ~1e-16 * |L| / eps = 1e-11, i.e. ~10 % relative."""
    a = rng.standard_normal(20)
    R = rng.standard_normal(20)

    def loss():
        return 1.0 + 1e-10 * float(np.sum(a * R))

    grad = 1e-10 * R
    report = gradcheck(loss, {"a": a}, {"a": grad}, raise_on_fail=False)
    assert not report.passed and report["a"].max_rel_error > 1e-3
    # each loss value is rounded to ~2^-52 |L| with |L| ~ 1, so a difference is off by at most
    # a few 2^-52 / (2 eps) ~ 1e-11, far below atol
    assert report["a"].max_abs_error < 1e-9
    report = gradcheck(loss, {"a": a}, {"a": grad}, atol=1e-9)
    assert report.passed and report.atol == 1e-9


def test_atol_does_not_hide_a_real_bug(rng):
    a = rng.standard_normal(3)
    with pytest.raises(GradcheckError, match="max abs error"):
        gradcheck(lambda: float(np.sum(a**2)), {"a": a}, {"a": -2 * a}, atol=1e-9)


def test_max_abs_error_by_hand(rng):
    """L = sum(a c) is linear, so the central difference is exact up to rounding; an analytic
    gradient off by 0.001 everywhere has max |a - n| = 0.001."""
    a = rng.standard_normal((2, 3))
    c = rng.standard_normal((2, 3))
    report = gradcheck(lambda: float(np.sum(a * c)), {"a": a}, {"a": c + 0.001},
                       raise_on_fail=False)
    assert report["a"].max_abs_error == pytest.approx(0.001, rel=1e-5)
    assert "max abs err" in report.format()


def test_tensorcheck_positional_construction_still_works():
    from lstm_bptt.gradcheck import GradcheckReport, TensorCheck

    row = TensorCheck("w", (2,), 1e-9, (0,), 1.0, 1.0, True)
    assert math.isnan(row.max_abs_error)
    assert GradcheckReport([row], 1e-7).passed


@pytest.mark.parametrize("kwargs, exc, msg", [
    ({"tol": 0.0}, ValueError, "tol: expected a positive finite number, got 0.0"),
    ({"tol": -1e-7}, ValueError, "tol: expected a positive finite number"),
    ({"tol": float("nan")}, ValueError, "tol: expected a positive finite number, got nan"),
    ({"tol": float("inf")}, ValueError, "tol: expected a positive finite number, got inf"),
    ({"tol": "1e-7"}, TypeError, "tol: expected a positive finite number, got str"),
    ({"eps": 0.0}, ValueError, "eps: expected a positive finite number, got 0.0"),
    ({"eps": -1e-5}, ValueError, "eps: expected a positive finite number"),
    ({"atol": -1.0}, ValueError, "atol: expected a finite number >= 0, got -1.0"),
    ({"atol": float("nan")}, ValueError, "atol: expected a finite number >= 0"),
])
def test_gradcheck_bad_tolerances(kwargs, exc, msg):
    x = np.zeros(3)
    with pytest.raises(exc, match=msg):
        gradcheck(lambda: 0.0, {"x": x}, {"x": np.zeros(3)}, **kwargs)


def test_gradcheck_refuses_non_float_tensors():
    with pytest.raises(TypeError, match=r"tensors\['w'\]: expected a float ndarray, got list"):
        gradcheck(lambda: 0.0, {"w": [1.0, 2.0]}, {"w": np.zeros(2)})
    with pytest.raises(TypeError, match=r"tensors\['ids'\]: expected a float ndarray, got int64"):
        gradcheck(lambda: 0.0, {"ids": np.arange(3, dtype=np.int64)}, {"ids": np.zeros(3)})
