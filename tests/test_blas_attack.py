"""The per-step GEMM by column blocks (lstm_bptt._blas) under hostile conditions.

With the small-kernel limit patched down (so blocks are used at small sizes on any machine):
how the module reads the BLAS core when NumPy's libraries are missing or foreign, the block
rule at its edges, :class:`StepProduct` with strided and garbage-filled arrays, NaN/inf
propagated as one GEMM does, the projection / ``last`` / one-hot LSTM, GRU and RNN with
checkpointing, bidirectional multi-layer layers, user weights that are views or Fortran-ordered,
and two threads running at once.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from conftest import fast_paths as _paths

from lstm_bptt import _blas, _fast, gradcheck
from lstm_bptt.cells.gru import gru_backward, gru_forward
from lstm_bptt.cells.lstm import lstm_backward, lstm_forward
from lstm_bptt.recurrent import GRU, LSTM, RNN

pytestmark = pytest.mark.usefixtures("restore_fast_switch")  # tests/conftest.py


def _leaves(x):
    """The arrays of a nested result (dicts by sorted key), in a fixed order."""
    if isinstance(x, np.ndarray):
        return [x]
    if isinstance(x, dict):
        return [a for k in sorted(x) for a in _leaves(x[k])]
    if isinstance(x, (tuple, list)):
        return [a for e in x for a in _leaves(e)]
    return []


# --------------------------------------------------------------------- reading the BLAS core


class _FakeLib:
    def __init__(self, **symbols):
        for name, value in symbols.items():
            setattr(self, name, lambda value=value: value)


@pytest.mark.parametrize("case, want", [
    ("no numpy.libs", None),
    ("cannot load", None),
    ("another BLAS", None),
    ("name is NULL", None),
    ("SkylakeX", "SkylakeX"),
    ("Haswell", "Haswell"),
])
def test_openblas_core_with_missing_or_foreign_libraries(monkeypatch, case, want):
    files = [] if case == "no numpy.libs" else ["/nowhere/numpy.libs/libscipy_openblas.so"]
    monkeypatch.setattr(_blas.glob, "glob", lambda pattern: list(files))

    def load(path):
        if case == "cannot load":
            raise OSError(f"{path}: cannot open shared object file")
        if case == "another BLAS":
            return _FakeLib(mkl_get_version=0)
        name = None if case == "name is NULL" else f" {case}\n".encode()
        return _FakeLib(scipy_openblas_get_corename64_=name)

    monkeypatch.setattr(_blas.ctypes, "CDLL", load)
    # the cached values are left alone: both lookups run afresh on the fake libraries
    monkeypatch.setattr(_blas, "_numpy_openblas", _blas._numpy_openblas.__wrapped__)
    core = _blas.openblas_core.__wrapped__()
    assert _blas.numpy_blas_threads() == 1  # no thread count to read: one thread assumed
    assert core == want
    monkeypatch.setattr(_blas, "openblas_core", lambda: core)
    blocks = _blas.SMALL_KERNEL_MACS if want == "SkylakeX" else 0
    assert _blas.small_gemm_macs() == blocks
    assert (_blas.step_chunk(32, 256, 1024, 4) > 0) == bool(blocks)


# --------------------------------------------------------------------------- the block rule


def _rule(B, K, N, itemsize, limit):
    """step_chunk's statement, by brute force over every width."""
    if not limit or B < _blas.MIN_ROWS or B * K * N <= limit:
        return 0
    ok = [c for c in range(_blas.MIN_BLOCK, N) if c % 8 == 0 and N % c == 0 and
          B * K * c <= limit and c * itemsize <= _blas.MAX_BLOCK_BYTES]
    return max(ok, default=0)


@pytest.mark.parametrize("B", [3, 4, 5, 32, 64, 1000])
@pytest.mark.parametrize("K", [1, 7, 64, 256, 1024, 10**6, 10**9])
@pytest.mark.parametrize("itemsize", [4, 8])
def test_step_chunk_is_its_rule_at_the_edges(limit, B, K, itemsize):
    limit(1_000_000)
    for N in (1, 8, 15, 16, 17, 24, 32, 36, 40, 48, 100, 128, 130, 256, 1000, 1004, 1024,
              4096, 2**20):
        assert _blas.step_chunk(B, K, N, itemsize) == _rule(B, K, N, itemsize, 1_000_000), N


def test_step_chunk_just_over_the_limit(limit):
    B, K = 4, 32
    limit(B * K * 64)
    assert _blas.step_chunk(B, K, 64, 8) == 0  # exactly the limit: one GEMM
    assert _blas.step_chunk(B, K, 72, 8) == 24  # 8 columns over: 3 blocks of 24
    assert _blas.step_chunk(B, K, 68, 8) == 0  # no multiple of 8 divides 68


# ------------------------------------------------------------------------------ StepProduct


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_product_with_strided_arrays_and_garbage_in_its_buffers(limit, dtype):
    limit(4096)
    rng = np.random.default_rng(0)
    B, K, N = 4, 32, 96  # three blocks of 32 (float32: 3 of 32 too, 64 does not divide 96)
    w_c = rng.standard_normal((K, N)).astype(dtype)
    want = np.dot(rng.standard_normal((B, K)).astype(dtype), w_c)  # warm-up, unused
    a_c = rng.standard_normal((B, K)).astype(dtype)
    want = a_c.astype(np.float64) @ w_c.astype(np.float64)
    tol = 8 * K * np.finfo(dtype).eps * float(np.max(np.abs(want)))
    weights = {"C": w_c, "F": np.asfortranarray(w_c),
               "view": np.repeat(w_c, 2, axis=1)[:, ::2], "transposed": w_c.T.copy().T}
    inputs = {"C": a_c, "F": np.asfortranarray(a_c),
              "rows strided": np.repeat(a_c, 3, axis=0)[::3],
              "columns strided": np.repeat(a_c, 2, axis=1)[:, ::2]}
    results = []
    for wname, w in weights.items():
        product = _blas.StepProduct(w, B)
        assert product.blocks is not None and product.blocks.shape[0] == 3, wname
        product.scratch[...] = np.nan  # np.empty may hold NaN: it must never leak out
        for aname, a in inputs.items():
            for out in (np.full((B, N), np.nan, dtype),
                        np.full((B, 2 * N), np.nan, dtype)[:, ::2]):  # a strided out too
                assert product(a, out) is out
                np.testing.assert_allclose(out, want, rtol=0, atol=tol,
                                           err_msg=f"{wname} {aname}")
                results.append(out.copy())
    for r in results[1:]:  # every layout: the same blocks, the same products
        np.testing.assert_array_equal(r, results[0])
    # two products of the same shapes (e.g. two threads' forwards) never share a buffer
    p1, p2 = _blas.StepProduct(w_c, B), _blas.StepProduct(w_c, B)
    assert not np.shares_memory(p1.scratch, p2.scratch)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_propagate_as_in_one_gemm(limit, dtype):
    """Where one GEMM gives NaN/inf the blocks (NumPy path and kernel) give it, nowhere else."""
    limit(4096)
    rng = np.random.default_rng(1)
    B, K, N = 4, 32, 96
    w = rng.standard_normal((K, N)).astype(dtype)
    w[:, 5] = 0  # inf * 0 = NaN in column 5 only
    a = rng.standard_normal((B, K)).astype(dtype)
    a[1, 3] = np.nan
    a[2, 7] = np.inf
    a[3, :] = np.finfo(dtype).max  # overflows to +-inf in some columns
    with np.errstate(all="ignore"):
        want = np.dot(a, w)
        got = _blas.StepProduct(w, B)(a, np.empty((B, N), dtype))
    assert _blas.StepProduct(w, B).blocks is not None
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert np.isnan(got[1]).all() and np.isnan(got[2, 5]) and not np.isnan(got[0]).any()
    if _paths() == [False]:
        return
    from lstm_bptt.cells import _kernels

    blocks = _blas.step_blocks(w, B)
    scratch = np.full((1, blocks.shape[0], B, blocks.shape[2]), np.nan, dtype)  # whole rows
    out = np.full((B, N), np.nan, dtype)
    _kernels._block_product(a, w, out, blocks, scratch)
    np.testing.assert_array_equal(out, got)  # bitwise, NaN where NaN


# ---------------------------------------------------------------- the cells with blocks on


def _lstm_problem(dtype, seed, T=5, B=4, D=3, H=32, P=0, one_hot=False):
    rng = np.random.default_rng(seed)
    Q = P or H
    p = {"weight_ih": rng.standard_normal((4 * H, D)) * 0.4,
         "weight_hh": rng.standard_normal((4 * H, Q)) * 0.4,
         "bias_ih": rng.standard_normal(4 * H) * 0.4,
         "bias_hh": rng.standard_normal(4 * H) * 0.4}
    if P:
        p["weight_hr"] = rng.standard_normal((P, H)) * 0.4
    p = {k: v.astype(dtype) for k, v in p.items()}
    if one_hot:
        x = np.eye(D, dtype=dtype)[rng.integers(0, D, (T, B))]
    else:
        x = rng.standard_normal((T, B, D)).astype(dtype)
    h_0, dh_n = (rng.standard_normal((B, Q)).astype(dtype) for _ in range(2))
    c_0, dc_n = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    dout = rng.standard_normal((T, B, Q)).astype(dtype)
    return x, h_0, c_0, p, dout, dh_n, dc_n


LSTM_CASES = {  # H = 32 (4H = 128), B = 4: with the limit 8192 both products are cut
    "projection P=16": dict(P=16, limit=4096),  # forward cut; dh = da W_hh (N = 16): not
    "projection P=32": dict(P=32),   # both cut
    "last": dict(last=[4, 0, 2, 4]),
    "one-hot": dict(one_hot=True, D=5),
    "projection, last, checkpointed": dict(P=32, last=[1, 4, 3, 0], k=2),
}


@pytest.mark.parametrize("case", list(LSTM_CASES))
@pytest.mark.parametrize("flag", _paths())
def test_lstm_variants_with_blocks_match_central_differences(limit, case, flag):
    kw = dict(LSTM_CASES[case])
    last, k = kw.pop("last", None), kw.pop("k", None)
    limit(kw.pop("limit", 8192))
    x, h_0, c_0, p, dout, dh_n, dc_n = _lstm_problem(np.float64, 7, **kw)
    assert _blas.step_blocks(np.empty(p["weight_hh"].shape[::-1]), 4) is not None
    last = None if last is None else np.array(last)
    _fast.set_fast_path(flag)
    run = dict(checkpoint_every=k, last=last)

    def loss():
        out, (h_n, c_n), _ = lstm_forward(x, h_0, c_0, **p, **run)
        return float(np.sum(out * dout) + np.sum(h_n * dh_n) + np.sum(c_n * dc_n))

    _, _, cache = lstm_forward(x, h_0, c_0, **p, **run)
    dx, dh_0, dc_0, grads = lstm_backward(dout, cache, dh_n, dc_n)
    # h_0, c_0 (and x): through every recurrent product; of the weights every 7th row
    # (views: perturbed in place), to keep the check fast
    tensors = {**{k: v[::7] for k, v in p.items()}, "h_0": h_0, "c_0": c_0}
    analytic = {**{k: v[::7] for k, v in grads.items()}, "h_0": dh_0, "c_0": dc_0}
    if not kw.get("one_hot"):
        tensors["x"], analytic["x"] = x, dx
    report = gradcheck(loss, tensors, analytic)
    assert report.passed and report.max_rel_error < 1e-7
    if flag and k is None:  # the compiled backward of this cache: bitwise the NumPy path's
        _fast.set_fast_path(False)
        want = lstm_backward(dout, cache, dh_n, dc_n)
        _fast.set_fast_path(True)
        got = lstm_backward(dout, cache, dh_n, dc_n)
        if kw.get("one_hot"):
            # dW_ih of a one-hot x: the kernels scatter-add da's rows in order, the NumPy
            # path is the GEMM x^T da, whose summation order is BLAS's (OpenBLAS's Haswell
            # kernels split it): equal to rounding, not bitwise
            a, b = got[3].pop("weight_ih"), want[3].pop("weight_ih")
            np.testing.assert_allclose(a, b, rtol=0, atol=8 * np.finfo(b.dtype).eps
                                       * np.max(np.abs(b)))
        for a, b in zip(_leaves(got), _leaves(want), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("flag", _paths())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gru_and_rnn_checkpointed_with_blocks_are_bitwise_the_full_ones(limit, flag, dtype):
    _fast.set_fast_path(flag)
    rng = np.random.default_rng(8)
    T, B, D, H = 7, 4, 3, 32
    for cls in (GRU, RNN):
        G = 3 if cls is GRU else 1
        limit(8192 if cls is GRU else 2048)
        assert _blas.step_blocks(np.empty((H, G * H), dtype), B) is not None
        assert _blas.step_blocks(np.empty((G * H, H), dtype), B) is not None
        x = rng.standard_normal((T, B, D)).astype(dtype)
        dout = rng.standard_normal((T, B, H)).astype(dtype)
        results = []
        for k in (None, 3):
            layer = cls(D, H, dtype=dtype, rng=np.random.default_rng(9), checkpoint_every=k)
            out, h_n, cache = layer.forward(x)
            results.append(_leaves((out, h_n, layer.backward(dout, cache))))
        for a, b in zip(*results, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=cls.__name__)


@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
def test_bidirectional_two_layer_with_lengths_and_blocks_match_central_differences(limit, cls):
    """Odd shapes: H = 40 (the forward's 4H = 160 in 5 blocks of 32, the backward's N = 40
    not cut), B = 4 (MIN_ROWS) with per-row lengths and checkpointing."""
    limit(4 * 40 * 32 if cls is not RNN else 4 * 80 * 16)
    _fast.set_fast_path(_paths()[-1])
    H = 40 if cls is not RNN else 80  # RNN: (80, 80), 5 blocks of 16
    G = {LSTM: 4, GRU: 3, RNN: 1}[cls]
    assert _blas.step_blocks(np.empty((H, G * H)), 4) is not None
    rng = np.random.default_rng(10)
    layer = cls(3, H, 2, bidirectional=True, checkpoint_every=2, rng=rng)
    x = rng.standard_normal((4, 4, 3))
    lengths = np.array([4, 1, 3, 2])
    out, h_n, cache = layer.forward(x, lengths=lengths)
    dout = rng.standard_normal(out.shape)
    dh_n = [rng.standard_normal(a.shape) for a in _leaves(h_n)]
    dx, _, grads = layer.backward(dout, cache, tuple(dh_n) if cls is LSTM else dh_n[0])
    # x's gradient goes through every dh = da W_hh of both layers and directions; of the
    # weights, every 13th row of the recurrent ones (views: perturbed in place) and two small
    names = ["weight_hh_l0", "weight_hh_l1_reverse", "weight_ih_l0", "bias_hh_l1"]
    rows = [slice(None, None, 13), slice(5, None, 13), slice(None), slice(None)]

    def loss():
        o, h, _ = layer.forward(x, lengths=lengths)
        pairs = zip(_leaves(h), dh_n, strict=True)
        return float(np.sum(o * dout) + sum(np.sum(a * b) for a, b in pairs))

    picked = list(zip(names, rows, strict=True))
    report = gradcheck(loss, {"x": x, **{n: layer.params[n][r] for n, r in picked}},
                       {"x": dx, **{n: grads[n][r] for n, r in picked}})
    assert report.passed and report.max_rel_error < 1e-7


@pytest.mark.parametrize("flag", _paths())
def test_user_weights_as_views_or_fortran_arrays_give_the_same_numbers(limit, flag):
    limit(8192)
    _fast.set_fast_path(flag)
    x, h_0, c_0, p, dout, dh_n, dc_n = _lstm_problem(np.float64, 11)
    want = _leaves(lstm_backward(dout, lstm_forward(x, h_0, c_0, **p)[2], dh_n, dc_n))
    for layout in ("F", "view"):
        q = {k: (np.asfortranarray(v) if layout == "F" else np.repeat(v, 2, axis=-1)[..., ::2])
             for k, v in p.items()}
        assert not q["weight_hh"].flags.c_contiguous
        got = _leaves(lstm_backward(dout, lstm_forward(x, h_0, c_0, **q)[2], dh_n, dc_n))
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=layout)
    # and through the GRU (its weights are transposed and scaled before the blocks are cut)
    rng = np.random.default_rng(12)
    w = {"weight_ih": rng.standard_normal((96, 3)), "weight_hh": rng.standard_normal((96, 32))}
    ref = _leaves(gru_backward(dout, gru_forward(x, h_0, **w)[2]))
    got = _leaves(gru_backward(dout, gru_forward(x, h_0, **{k: np.asfortranarray(v)
                                                              for k, v in w.items()})[2]))
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("flag", _paths())
def test_two_threads_with_blocks_give_the_sequential_numbers(limit, flag):
    """Each forward/backward makes its own block scratch: two threads at once do not mix
    (the kernels release the GIL, the NumPy path's BLAS calls too)."""
    limit(8192)
    _fast.set_fast_path(flag)
    problems = [_lstm_problem(np.float64, s, T=8, B=8) for s in (13, 14)]
    assert _blas.step_blocks(np.empty((32, 128)), 8) is not None

    def run(problem):
        x, h_0, c_0, p, dout, dh_n, dc_n = problem
        out, _, cache = lstm_forward(x, h_0, c_0, **p)
        return _leaves((out, lstm_backward(dout, cache, dh_n, dc_n)))

    want = [run(pr) for pr in problems]
    got = [[], []]
    errors = []
    start = threading.Barrier(2)

    def work(i):
        try:
            start.wait()
            for _ in range(100):
                got[i].append(run(problems[i]))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # switch threads often, also between NumPy calls
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    for i in range(2):
        assert len(got[i]) == 100
        for result in got[i]:
            for a, b in zip(result, want[i], strict=True):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("flag", _paths())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_change_no_value_beyond_rounding_and_make_no_nan(limit, flag, dtype):
    """Blocks on against one GEMM per step, for the three cells: the same numbers within a few
    eps of the dtype; and with float32 recurrent weights of 1e20 (saturated gates) no NaN or
    inf anywhere, as with one GEMM."""
    _fast.set_fast_path(flag)
    rng = np.random.default_rng(15)
    T, B, D, H = 4, 4, 3, 32
    eps = np.finfo(dtype).eps
    for cls, macs in ((LSTM, 8192), (GRU, 8192), (RNN, 2048)):
        for scale in (1.0, 1e20):
            if scale != 1 and dtype is np.float64:
                continue
            layer = cls(D, H, dtype=dtype, rng=np.random.default_rng(16))
            for name, p in layer.params.items():
                p[...] = rng.standard_normal(p.shape) * (scale if "weight_hh" in name else 0.5)
            x = rng.standard_normal((T, B, D)).astype(dtype)
            dout = rng.standard_normal((T, B, H)).astype(dtype)
            results = []
            for m in (0, macs):
                limit(m)
                out, h_n, cache = layer.forward(x)
                results.append(_leaves((out, h_n, layer.backward(dout, cache))))
            G = {LSTM: 4, GRU: 3, RNN: 1}[cls]
            assert _blas.step_blocks(np.empty((H, G * H), dtype), B) is not None
            for a, b in zip(*results, strict=True):
                assert np.isfinite(b).all(), cls.__name__
                a64, b64 = a.astype(np.float64), b.astype(np.float64)
                tol = 64 * eps * max(1.0, float(np.max(np.abs(a64))))
                assert float(np.max(np.abs(a64 - b64))) <= tol, (cls.__name__, scale)
