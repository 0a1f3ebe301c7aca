"""The per-step recurrent GEMM by column blocks (lstm_bptt._blas).

The rule (:func:`step_chunk`) is checked against its statement; the blocks and the NumPy
path's :class:`StepProduct` against a plain product; and the LSTM with blocks forced on at
small sizes (the small-kernel limit patched down, so it runs on any machine and BLAS): central
differences in float64, the compiled path against the NumPy path (the backward of one cache
bitwise in float64), and a checkpointed forward bitwise the full one.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fast_paths as _paths

from lstm_bptt import _blas, _fast, gradcheck
from lstm_bptt.cells.lstm import lstm_backward, lstm_forward

pytestmark = pytest.mark.usefixtures("restore_fast_switch")  # tests/conftest.py


@pytest.mark.parametrize("B, K, N, itemsize, want", [
    (32, 256, 1024, 4, 64),   # the model row's forward product: 64 float32 columns
    (32, 256, 1024, 8, 32),   # float64: blocks of at most 256 bytes
    (64, 256, 1024, 4, 32),   # 64 * 256 * 64 > 10^6: the next multiple of 8 that divides N
    (32, 1024, 256, 4, 16),   # the backward's dh = da W_hh: 32 * 1024 * 16 <= 10^6
    (32, 100, 400, 4, 40),    # 64, 56, 48 do not divide 400
    (128, 512, 2048, 4, 0),   # blocks would be under 16 columns: one GEMM
    (32, 64, 256, 4, 0),      # 524,288 multiply-adds: one GEMM is the small kernel already
    (3, 512, 2048, 4, 0),     # fewer than MIN_ROWS rows
    (32, 256, 1000, 4, 40),   # 1000 = 8 * 125: 40 divides it
    (32, 256, 1004, 4, 0),    # no multiple of 8 divides 1004
])
def test_step_chunk_follows_its_rule(limit, B, K, N, itemsize, want):
    limit(1_000_000)
    c = _blas.step_chunk(B, K, N, itemsize)
    assert c == want
    if c:
        assert N % c == 0 and c % 8 == 0 and B * K * c <= 1_000_000
        assert c * itemsize <= _blas.MAX_BLOCK_BYTES and c >= _blas.MIN_BLOCK


def test_no_blocks_without_small_kernels(limit):
    limit(0)
    assert _blas.step_chunk(32, 256, 1024, 4) == 0
    assert _blas.step_blocks(np.ones((256, 1024), np.float32), 32) is None


def test_openblas_core_is_a_name_or_none():
    core = _blas.openblas_core()
    assert core is None or (isinstance(core, str) and core)
    assert _blas.small_gemm_macs() in (0, _blas.SMALL_KERNEL_MACS)


def _assert_product_is_a_at_w(product, B, K, N, dtype, rng):
    """product(a, out) == a @ w to rounding, for contiguous and for strided rows of a."""
    w = product.w
    wide = rng.standard_normal((B, 3 * K)).astype(dtype)
    for a in (np.ascontiguousarray(wide[:, :K]), wide[:, K : 2 * K]):  # strided rows too
        out = np.full((B, N), np.nan, dtype)
        assert product(a, out) is out
        want = a.astype(np.float64) @ w.astype(np.float64)
        np.testing.assert_allclose(out, want, rtol=0, atol=K * 4 * np.finfo(dtype).eps *
                                   float(np.max(np.abs(want))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_are_the_weight_columns_and_the_product_is_a_at_w(limit, dtype):
    limit(8192)
    rng = np.random.default_rng(0)
    B, K, N = 4, 32, 128
    w = rng.standard_normal((K, N)).astype(dtype)
    blocks = _blas.step_blocks(w, B)
    c = _blas.step_chunk(B, K, N, w.itemsize)
    assert c and blocks.shape == (N // c, K, c) and blocks.flags.c_contiguous
    for j in range(N // c):
        np.testing.assert_array_equal(blocks[j], w[:, j * c : (j + 1) * c])
    assert _blas.step_rows(B, blocks) == B  # whole rows
    _assert_product_is_a_at_w(_blas.StepProduct(w, B), B, K, N, dtype, rng)


def _assert_paths_give_the_same_backward(backward, *args):
    """The backward of one cache: the compiled path's numbers are the NumPy path's, bitwise
    (results (..., grads) as lstm_backward / gru_backward / rnn_backward return them)."""
    _fast.set_fast_path(False)
    *want, want_grads = backward(*args)
    _fast.set_fast_path(True)
    *got, got_grads = backward(*args)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    for name in want_grads:
        np.testing.assert_array_equal(got_grads[name], want_grads[name], err_msg=name)


def _problem(dtype, seed=0, T=6, B=4, D=3, H=32):
    rng = np.random.default_rng(seed)
    p = {"weight_ih": rng.standard_normal((4 * H, D)) * 0.3,
         "weight_hh": rng.standard_normal((4 * H, H)) * 0.3,
         "bias_ih": rng.standard_normal(4 * H) * 0.3,
         "bias_hh": rng.standard_normal(4 * H) * 0.3}
    p = {k: v.astype(dtype) for k, v in p.items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)
    h_0, dh_n = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    c_0, dc_n = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    return x, h_0, c_0, p, dout, dh_n, dc_n


def _assert_blocks_used(dtype, B=4, H=32):
    """The forward (h W_hh^T) and backward (da W_hh) products of _problem are cut."""
    assert _blas.step_blocks(np.empty((H, 4 * H), dtype), B) is not None
    assert _blas.step_blocks(np.empty((4 * H, H), dtype), B) is not None


@pytest.mark.parametrize("flag", _paths())
@pytest.mark.parametrize("k", [None, 4])
def test_lstm_with_blocks_matches_central_differences(limit, flag, k):
    limit(8192)
    _assert_blocks_used(np.float64)
    _fast.set_fast_path(flag)
    x, h_0, c_0, p, dout, dh_n, dc_n = _problem(np.float64, seed=1)

    def loss():
        out, (h_n, c_n), _ = lstm_forward(x, h_0, c_0, **p, checkpoint_every=k)
        return float(np.sum(out * dout) + np.sum(h_n * dh_n) + np.sum(c_n * dc_n))

    _, _, cache = lstm_forward(x, h_0, c_0, **p, checkpoint_every=k)
    dx, dh_0, dc_0, grads = lstm_backward(dout, cache, dh_n, dc_n)
    report = gradcheck(loss, {**p, "x": x, "h_0": h_0, "c_0": c_0},
                       {**grads, "x": dx, "h_0": dh_0, "c_0": dc_0})
    assert report.passed and report.max_rel_error < 1e-7


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lstm_with_blocks_equals_one_gemm(limit, dtype):
    """Blocks change how OpenBLAS computes each dot product, not what: within a few eps."""
    x, h_0, c_0, p, dout, dh_n, dc_n = _problem(dtype, seed=2)
    results = []
    for macs in (0, 8192):
        limit(macs)
        out, (h_n, c_n), cache = lstm_forward(x, h_0, c_0, **p)
        results.append((out, h_n, c_n, *lstm_backward(dout, cache, dh_n, dc_n)[:3],
                        *lstm_backward(dout, cache, dh_n, dc_n)[3].values()))
    _assert_blocks_used(dtype)
    eps = np.finfo(dtype).eps
    for a, b in zip(*results, strict=True):
        scale = max(1.0, float(np.max(np.abs(a))))
        assert float(np.max(np.abs(a.astype(np.float64) - b))) <= 64 * eps * scale


@pytest.mark.skipif(_paths() == [False], reason="needs numba (lstm-bptt[fast])")
def test_compiled_blocks_give_the_numpy_paths_backward_bitwise(limit):
    limit(8192)
    _assert_blocks_used(np.float64)
    x, h_0, c_0, p, dout, dh_n, dc_n = _problem(np.float64, seed=3)
    _fast.set_fast_path(False)
    _, _, cache = lstm_forward(x, h_0, c_0, **p)
    _assert_paths_give_the_same_backward(lstm_backward, dout, cache, dh_n, dc_n)
    # the forward: a few eps (the kernels' tanh is within 2 ulp of NumPy's)
    out_fast = lstm_forward(x, h_0, c_0, **p)[0]
    _fast.set_fast_path(False)
    out_np = lstm_forward(x, h_0, c_0, **p)[0]
    np.testing.assert_allclose(out_fast, out_np, rtol=0, atol=16 * np.finfo(float).eps)


@pytest.mark.parametrize("flag", _paths())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_checkpointed_forward_with_blocks_is_bitwise_the_full_one(limit, flag, dtype):
    limit(8192)
    _assert_blocks_used(dtype)
    _fast.set_fast_path(flag)
    x, h_0, c_0, p, dout, dh_n, dc_n = _problem(dtype, seed=4, T=9)
    full = lstm_forward(x, h_0, c_0, **p)
    ck = lstm_forward(x, h_0, c_0, **p, checkpoint_every=4)
    np.testing.assert_array_equal(ck[0], full[0])
    g_full = lstm_backward(dout, full[2], dh_n, dc_n)
    g_ck = lstm_backward(dout, ck[2], dh_n, dc_n)
    for a, b in zip(g_ck[:3], g_full[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    for name in g_full[3]:
        np.testing.assert_array_equal(g_ck[3][name], g_full[3][name], err_msg=name)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
@pytest.mark.parametrize("flag", _paths())
def test_gru_and_rnn_with_blocks_match_central_differences(limit, cell, flag):
    from lstm_bptt.cells.gru import gru_backward, gru_forward
    from lstm_bptt.cells.rnn import rnn_backward, rnn_forward

    G = 3 if cell == "gru" else 1
    limit(8192 if cell == "gru" else 2048)
    T, B, D, H = 5, 4, 3, 32
    assert _blas.step_blocks(np.empty((H, G * H)), B) is not None  # forward, cut
    assert _blas.step_blocks(np.empty((G * H, H)), B) is not None  # backward, cut
    rng = np.random.default_rng(5)
    p = {"weight_ih": rng.standard_normal((G * H, D)) * 0.4,
         "weight_hh": rng.standard_normal((G * H, H)) * 0.4,
         "bias_ih": rng.standard_normal(G * H) * 0.4,
         "bias_hh": rng.standard_normal(G * H) * 0.4}
    x = rng.standard_normal((T, B, D))
    h_0, dh_n = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    dout = rng.standard_normal((T, B, H))
    fwd, bwd = (gru_forward, gru_backward) if cell == "gru" else (rnn_forward, rnn_backward)
    _fast.set_fast_path(flag)

    def loss():
        out, h_n, _ = fwd(x, h_0, **p)
        return float(np.sum(out * dout) + np.sum(h_n * dh_n))

    _, _, cache = fwd(x, h_0, **p)
    dx, dh_0, grads = bwd(dout, cache, dh_n)
    report = gradcheck(loss, {**p, "x": x, "h_0": h_0}, {**grads, "x": dx, "h_0": dh_0})
    assert report.passed and report.max_rel_error < 1e-7
    if flag:  # and the backward of this cache is bitwise the NumPy path's
        _assert_paths_give_the_same_backward(bwd, dout, cache, dh_n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M", [64, 70])  # a whole number of blocks, and a remainder
def test_matmul_rows_is_a_at_w_for_contiguous_and_strided_rows(limit, dtype, M):
    limit(4096)
    K, N = 16, 8
    assert _blas.rows_per_block(M, K, N) == 32 and _blas.rows_per_block(16, K, N) == 0
    rng = np.random.default_rng(6)
    w = rng.standard_normal((K, N)).astype(dtype)
    wide = rng.standard_normal((M, 3 * K)).astype(dtype)
    for a in (np.ascontiguousarray(wide[:, :K]), wide[:, K : 2 * K]):  # row stride 3K
        out = np.full((M, N), np.nan, dtype)
        assert _blas.matmul_rows(a, w, out) is out
        want = a.astype(np.float64) @ w.astype(np.float64)
        np.testing.assert_allclose(out, want, rtol=0, atol=K * 4 * np.finfo(dtype).eps *
                                   float(np.max(np.abs(want))))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("flag", _paths())
def test_dx_by_row_blocks_matches_central_differences(limit, cell, flag):
    """dx = da W_ih by blocks of rows (T*B = 40 rows: one block of 32 and a remainder)."""
    from lstm_bptt.cells.gru import gru_backward, gru_forward
    from lstm_bptt.cells.rnn import rnn_backward, rnn_forward

    T, B, D, H = 10, 4, 2, 4
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    limit(G * H * D * 32)
    assert _blas.rows_per_block(T * B, G * H, D) == 32
    rng = np.random.default_rng(8)
    p = {"weight_ih": rng.standard_normal((G * H, D)) * 0.5,
         "weight_hh": rng.standard_normal((G * H, H)) * 0.5,
         "bias_ih": rng.standard_normal(G * H) * 0.5,
         "bias_hh": rng.standard_normal(G * H) * 0.5}
    x = rng.standard_normal((T, B, D))
    dout = rng.standard_normal((T, B, H))
    fwd = {"lstm": lstm_forward, "gru": gru_forward, "rnn": rnn_forward}[cell]
    bwd = {"lstm": lstm_backward, "gru": gru_backward, "rnn": rnn_backward}[cell]
    _fast.set_fast_path(flag)

    def loss():
        return float(np.sum(fwd(x, None, **p)[0] * dout)) if cell != "lstm" else \
            float(np.sum(fwd(x, None, None, **p)[0] * dout))

    cache = fwd(x, None, **p)[2] if cell != "lstm" else fwd(x, None, None, **p)[2]
    dx = bwd(dout, cache)[0]
    report = gradcheck(loss, {"x": x}, {"x": dx})
    assert report.passed and report.max_rel_error < 1e-7


def test_with_several_blas_threads_the_numpy_path_uses_one_gemm(limit, monkeypatch):
    """One GEMM on all BLAS threads beats the single-threaded small kernel: no blocks then."""
    limit(4096)
    rng = np.random.default_rng(9)
    w = rng.standard_normal((32, 128))
    a = rng.standard_normal((64, 32))
    assert _blas.StepProduct(w, 4).blocks is not None
    assert _blas.rows_per_block(64, 32, 8) == 16
    monkeypatch.setattr(_blas, "numpy_blas_threads", lambda: 2)
    assert _blas.StepProduct(w, 4).blocks is None
    assert _blas.StepProduct(w, 4, _blas.step_blocks(w, 4)).blocks is None  # given ones too
    calls = []
    real = np.matmul
    monkeypatch.setattr(_blas.np, "matmul", lambda *args, **kw: calls.append(1) or real(*args,
                                                                                       **kw))
    out = np.empty((64, 8))
    _blas.matmul_rows(a, w[:, :8], out)
    assert calls == [1]  # one GEMM, not 4 blocks
    np.testing.assert_allclose(out, a @ w[:, :8], rtol=1e-13)


def test_numpy_blas_threads_limited_sets_the_count_and_restores_it():
    _, get, set_ = _blas._numpy_openblas()
    if set_ is None:
        pytest.skip("NumPy's BLAS is not the bundled OpenBLAS")
    before = get()
    set_(2)
    try:
        with _blas.numpy_blas_threads_limited(1):
            assert _blas.numpy_blas_threads() == 1
        assert _blas.numpy_blas_threads() == 2
        with _blas.numpy_blas_threads_limited(4):  # never raised
            assert _blas.numpy_blas_threads() == 2
    finally:
        set_(before)


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_numpy_blas_threads_limited_refuses_a_count_that_is_not_positive(n):
    with pytest.raises(ValueError, match="expected a positive int"):
        with _blas.numpy_blas_threads_limited(n):
            pass


def test_numpy_blas_threads_is_a_positive_count():
    assert _blas.numpy_blas_threads() >= 1


@pytest.mark.parametrize("B, K, N, itemsize, want", [
    (32, 256, 1024, 4, (32, 64)),     # whole rows when they allow 32 columns or more
    (32, 1024, 256, 4, (16, 32)),     # else tiles of 16 rows and 32 columns
    (40, 1024, 256, 4, (40, 16)),     # else (B not a multiple of 16) whole rows of 16
    (64, 1024, 256, 4, (16, 32)),     # the medium backward: tiles of 16 rows
    (128, 512, 2048, 4, (16, 64)),    # the large forward
    (128, 2048, 512, 4, (0, 0)),      # the large backward would need 16-column tiles:
    (128, 2048, 512, 8, (0, 0)),      # one GEMM, in both dtypes
    (64, 1024, 256, 8, (16, 32)),
    (72, 1024, 256, 4, (0, 0)),       # B not a multiple of 16
    (16, 4096, 256, 4, (0, 0)),       # B = 16: no smaller tiles
])
def test_step_tiles_follows_its_rule(limit, B, K, N, itemsize, want, monkeypatch):
    monkeypatch.setattr(_blas, "cpu_family", lambda: ("AuthenticAMD", 26))  # Zen 5, say
    limit(1_000_000)
    assert _blas.step_tiles(B, K, N, itemsize) == want
    rows, c = want
    if c:
        assert rows * K * c <= 1_000_000 and N % c == 0
        blocks = _blas.step_blocks(np.empty((K, N), np.float32 if itemsize == 4 else float), B)
        assert blocks.shape == (N // c, K, c) and _blas.step_rows(B, blocks) == rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_product_by_tiles_is_a_at_w(limit, dtype):
    limit(16384)
    rng = np.random.default_rng(10)
    B, K, N = 64, 32, 128
    product = _blas.StepProduct(rng.standard_normal((K, N)).astype(dtype), B)
    assert product.blocks is not None and _blas.step_rows(B, product.blocks) == 16
    _assert_product_is_a_at_w(product, B, K, N, dtype, rng)


# limit 16384: the forward's (64, 32) @ (32, 128) in tiles of 16 rows; 65536: the backward's
# (64, 128) @ (128, 32) in tiles of 16 rows (and the forward in whole-row blocks)
@pytest.mark.parametrize("macs, side", [(16384, "forward"), (65536, "backward")])
@pytest.mark.parametrize("flag", _paths())
def test_lstm_with_tiles_matches_central_differences(limit, macs, side, flag):
    limit(macs)
    B, H = 64, 32
    w_fwd, w_bwd = np.empty((H, 4 * H)), np.empty((4 * H, H))
    assert _blas.step_rows(B, _blas.step_blocks(w_fwd if side == "forward" else w_bwd, B)) == 16
    _fast.set_fast_path(flag)
    x, h_0, c_0, p, dout, dh_n, dc_n = _problem(np.float64, seed=11, T=3, B=B, D=2, H=H)

    def loss():
        out, (h_n, c_n), _ = lstm_forward(x, h_0, c_0, **p)
        return float(np.sum(out * dout) + np.sum(h_n * dh_n) + np.sum(c_n * dc_n))

    _, _, cache = lstm_forward(x, h_0, c_0, **p)
    dx, dh_0, dc_0, grads = lstm_backward(dout, cache, dh_n, dc_n)
    report = gradcheck(loss, {"weight_hh": p["weight_hh"], "h_0": h_0},
                       {"weight_hh": grads["weight_hh"], "h_0": dh_0})
    assert report.passed and report.max_rel_error < 1e-7
    if flag:  # the compiled tiles give the NumPy path's backward, bitwise
        _assert_paths_give_the_same_backward(lstm_backward, dout, cache, dh_n, dc_n)


def _gate_params(rng, G, D, H, dtype, scale):
    """weight_ih (G H, D), weight_hh (G H, H), bias_ih, bias_hh (G H,) of a cell with G gate
    blocks (LSTM 4, GRU 3, RNN 1), standard normal times ``scale``, in ``dtype``."""
    p = {"weight_ih": rng.standard_normal((G * H, D)) * scale,
         "weight_hh": rng.standard_normal((G * H, H)) * scale,
         "bias_ih": rng.standard_normal(G * H) * scale,
         "bias_hh": rng.standard_normal(G * H) * scale}
    return {k: v.astype(dtype) for k, v in p.items()}


@pytest.mark.parametrize("cell", ["gru", "rnn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gru_and_rnn_with_tiles_equal_one_gemm(limit, cell, dtype):
    from lstm_bptt.cells.gru import gru_backward, gru_forward
    from lstm_bptt.cells.rnn import rnn_backward, rnn_forward

    G = 3 if cell == "gru" else 1
    B, H, T, D = 64, 64, 3, 2
    rng = np.random.default_rng(12)
    p = _gate_params(rng, G, D, H, dtype, 0.3)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    fwd, bwd = (gru_forward, gru_backward) if cell == "gru" else (rnn_forward, rnn_backward)
    results = []
    for macs in (0, 32768):
        limit(macs)
        out, h_n, cache = fwd(x, None, **p)
        results.append([out, h_n, *bwd(dout, cache)[:2], *bwd(dout, cache)[2].values()])
    # the forward (64, 64) @ (64, G 64) in tiles of 16 rows (and the backward too for the RNN)
    rows = [_blas.step_rows(B, _blas.step_blocks(np.empty(s, dtype), B))
            for s in ((H, G * H), (G * H, H))]
    assert 16 in rows, rows
    eps = np.finfo(dtype).eps
    for a, b in zip(*results, strict=True):
        scale = max(1.0, float(np.max(np.abs(a))))
        assert float(np.max(np.abs(a.astype(np.float64) - b))) <= 64 * eps * scale


# --- the transposed float32 step product of the compiled kernels ------------------------------

@pytest.mark.parametrize("macs, B, K, N, dtype, want", [
    (0, 32, 128, 512, np.float32, True),      # no small-matrix kernel: every B >= 4
    (0, 4, 8, 16, np.float32, True),
    (0, 128, 512, 2048, np.float32, True),
    (0, 3, 128, 512, np.float32, False),      # fewer than MIN_ROWS rows
    (0, 32, 128, 512, np.float64, False),     # float64: the direct product
    (10**6, 32, 128, 512, np.float32, True),  # small-matrix kernel: over its limit ...
    (10**6, 32, 64, 256, np.float32, False),  # ... not under it (the small kernel is faster)
    (10**6, 64, 256, 1024, np.float32, False),  # ... and only for B < 64
])
def test_transposed_product_follows_its_rule(limit, macs, B, K, N, dtype, want):
    limit(macs)
    w = np.empty((K, N), dtype)
    assert _blas.transposed_product(B, w) is want
    assert _blas.transposed_product(B, w, blocks=np.empty((N // 8, K, 8), dtype)) is False
    blocks = _blas.step_blocks(w, B)
    assert _blas.step_plan(B, w, blocks) == (blocks, _blas.step_rows(B, blocks),
                                              _blas.transposed_product(B, w, blocks))


@pytest.mark.parametrize("G, B", [(512, 32), (36, 5), (7, 3), (8, 8), (1, 9)])
def test_transpose_into_by_tiles_is_the_transpose(G, B):
    pytest.importorskip("numba")
    from lstm_bptt.cells import _kernels

    src = np.random.default_rng(G + B).standard_normal((G, B)).astype(np.float32)
    out = np.full((B, G), np.nan, np.float32)
    _kernels._transpose_into(src, out, None)
    np.testing.assert_array_equal(out, src.T)
    scale = np.random.default_rng(G).standard_normal(G).astype(np.float32)
    _kernels._transpose_into(src, out, scale)  # row k of src times scale[k]: column k of out
    np.testing.assert_array_equal(out, (src * scale[:, None]).T)


@pytest.mark.skipif(_paths() == [False], reason="needs numba (lstm-bptt[fast])")
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_transposed_product_gives_the_numpy_paths_results(limit, cell):
    """Float32 with the transposed product forced on (no small-matrix kernel): the compiled
    forward and backward equal the NumPy path's to a few eps (B = 5 and 4H = 36: the 8 x 8
    tiles of the transpose back have remainders on both sides)."""
    from lstm_bptt.cells.gru import gru_backward, gru_forward
    from lstm_bptt.cells.rnn import rnn_backward, rnn_forward

    limit(0)
    dtype, T, B, D, H = np.float32, 4, 5, 3, 9
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    rng = np.random.default_rng(21)
    p = _gate_params(rng, G, D, H, dtype, 0.4)
    assert _blas.transposed_product(B, np.empty((H, G * H), dtype))
    assert _blas.transposed_product(B, np.empty((G * H, H), dtype))
    x = rng.standard_normal((T, B, D)).astype(dtype)
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    h_0 = rng.standard_normal((B, H)).astype(dtype)
    results = []
    for flag in (False, True):
        _fast.set_fast_path(flag)
        if cell == "lstm":
            out, state, cache = lstm_forward(x, h_0, h_0 * 0.5, **p)
            back = lstm_backward(dout, cache)
            results.append([out, *state, *back[:3], *back[3].values()])
        else:
            fwd, bwd = (gru_forward, gru_backward) if cell == "gru" else (rnn_forward,
                                                                        rnn_backward)
            out, h_n, cache = fwd(x, h_0, **p)
            back = bwd(dout, cache)
            results.append([out, h_n, *back[:2], *back[2].values()])
    eps = np.finfo(dtype).eps
    for a, b in zip(*results, strict=True):
        scale = max(1.0, float(np.max(np.abs(b))))
        assert float(np.max(np.abs(a.astype(np.float64) - b))) <= 8 * eps * scale


@pytest.mark.parametrize("cpu, want", [
    (("AuthenticAMD", 25), (16, 16)),  # Zen 4: the large float32 backward in 16-column tiles
    (("AuthenticAMD", 26), (0, 0)),    # Zen 5: one GEMM
    (("GenuineIntel", 6), (0, 0)),
    (None, (0, 0)),
])
def test_sixteen_column_tiles_on_zen4_only(limit, monkeypatch, cpu, want):
    monkeypatch.setattr(_blas, "cpu_family", lambda: cpu)
    limit(1_000_000)
    assert _blas.step_tiles(128, 2048, 512, 4) == want
    assert _blas.step_tiles(128, 2048, 512, 8) == (0, 0)  # float64: one GEMM everywhere
    assert _blas.step_tiles(32, 1024, 256, 4) == (16, 32)  # wider tiles first, everywhere


def test_cpu_family_reads_this_machine():
    got = _blas.cpu_family()
    if got is not None:
        vendor, family = got
        assert isinstance(vendor, str) and vendor and isinstance(family, int) and family > 0
