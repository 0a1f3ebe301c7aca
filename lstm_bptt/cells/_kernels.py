"""Compiled time loops (numba) for the optional fast path; imported only by ``lstm_bptt._fast``.

Each kernel is the whole time loop of one cell's sequence forward or BPTT backward: per step one
BLAS GEMM (``np.dot`` with ``out``, which numba sends to the BLAS that SciPy ships) and one fused
pass over the step's elementwise work, instead of ~10-15 NumPy calls each sweeping a (B, H) or
(B, 4H) block. The arithmetic is the NumPy path's, operation for operation and in the same order
(so the backward of equal gates is bitwise equal); only tanh differs, computed by
:func:`tanh_` below in plain arithmetic that LLVM vectorises (numba's ``math.tanh`` is a scalar
libm call, ~60 ns per element here against ~0.4-2 ns for NumPy's vectorised tanh).

Rules kept for every kernel: module level with ``cache=True`` (compiled once per machine, then
loaded from ``__pycache__``), ``error_model="numpy"`` (no ZeroDivisionError checks), float32
constants typed through :func:`like` (a bare Python float would promote the loop to float64),
and no ``fastmath`` (NaN and inf must propagate exactly as in the NumPy path), except the one
flag ``contract`` inside :func:`tanh_`: it lets LLVM fuse a * b + c into one FMA instruction,
which assumes nothing about NaN or inf.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

_JIT = {"cache": True, "error_model": "numpy", "nogil": True}
F32 = np.float32


@intrinsic
def _as_float(typingctx, bits):
    """Reinterpret the bits of an int32 / int64 as a float32 / float64 (no conversion)."""
    ret = {types.int32: types.float32, types.int64: types.float64}.get(bits)
    if ret is None:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(ret))

    return ret(bits), codegen


def like(x, value):
    """``value`` as a constant of x's float type (compile-time; pure-Python stub)."""
    return type(x)(value)


@overload(like, jit_options={"error_model": "numpy"})
def _like(x, value):
    if x == types.float32:
        return lambda x, value: np.float32(value)
    if x == types.float64:
        return lambda x, value: np.float64(value)
    return None


def tanh_(x):
    """tanh in plain, vectorisable arithmetic (compiled only; pure-Python stub).

    |x| <= 0.625: x + x^3 P(x^2) (/ Q(x^2) in float64); otherwise 1 - 2 / (exp(2|x|) + 1)
    with exp by Cody-Waite range reduction, a polynomial (Pade form in float64) and the
    power of two built from its exponent bits. Both branches are computed and one is selected,
    so the loop has no branch. |x| is clamped to 10 (float32) / 20 (float64) inside exp, where
    tanh already rounds to +-1; NaN propagates through the small branch, +-inf gives +-1,
    the sign (also of -0.0) is restored with copysign. Max error measured: 1.33 ulp (float32,
    every float32) and 1.59 ulp (float64, 10^7 random points and grids around 0.625, 10, 20)
    against a long-double reference, 2 ulp against NumPy's tanh.

    Speed (vectorised; measured on an AMD EPYC with AVX2 only, where OpenBLAS runs its Haswell
    kernels): the exponent k is converted through int32, because AVX2 has no vector
    conversion from floating point to int64 (LLVM would convert lane by lane); the
    polynomials are contracted into FMAs (``fastmath={"contract"}``); in float64 both branches
    share one division (exp(w) = 2^k (q + p) / (q - p) folded into 2 / (exp(w) + 1)), where
    Cephes has three. Float32 1.72 -> 0.85 ns, float64 3.3 -> 1.9 ns per element.

    References: S. L. Moshier, Cephes Math Library (tanh.c, tanhf.c, exp.c, expf.c).
    """
    return np.tanh(x)


@overload(tanh_, jit_options={"error_model": "numpy", "fastmath": {"contract"}})
def _tanh(x):
    if x == types.float64:
        def impl(x):
            z = abs(x)
            s = z * z
            p = (-9.64399179425052238628e-1 * s - 9.92877231001918586564e1) * s \
                - 1.61468768441708447952e3
            q = ((s + 1.12811678491632931402e2) * s + 2.23548839060100448583e3) * s \
                + 4.84406305325125486048e3
            w = 2.0 * (z if z < 20.0 else 20.0)  # NaN -> 40: valid exponent, result unused
            k = np.floor(1.4426950408889634073599 * w + 0.5)
            r = w - k * 6.93145751953125e-1 - k * 1.42860682030941723212e-6
            rr = r * r
            pr = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr
                      + 9.99999999999999999910e-1)
            qr = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
                  + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0
            # exp(w) = 2^k (qr + pr) / (qr - pr), so 2 / (exp(w) + 1) = 2 (qr - pr) / den
            d = qr - pr
            den = (qr + pr) * _as_float((np.int64(np.int32(k)) + 1023) << 52) + d
            big = z > 0.625
            ratio = (2.0 * d if big else p) / (den if big else q)  # one division, either branch
            return np.copysign(1.0 - ratio if big else z + z * s * ratio, x)
        return impl
    if x == types.float32:
        def impl(x):
            z = abs(x)
            s = z * z
            small = ((((F32(-5.70498872745e-3) * s + F32(2.06390887954e-2)) * s
                       - F32(5.37397155531e-2)) * s + F32(1.33314422036e-1)) * s
                     - F32(3.33332819422e-1)) * s * z + z
            w = F32(2.0) * (z if z < F32(10.0) else F32(10.0))
            k = np.floor(F32(1.44269504088896341) * w + F32(0.5))
            r = w - k * F32(0.693359375) - k * F32(-2.12194440e-4)
            rr = r * r
            p = (((((F32(1.9875691500e-4) * r + F32(1.3981999507e-3)) * r
                    + F32(8.3334519073e-3)) * r + F32(4.1665795894e-2)) * r
                  + F32(1.6666665459e-1)) * r + F32(5.0000001201e-1)) * rr + r + F32(1.0)
            e = p * _as_float(np.int32((np.int32(k) + 127) << 23))
            big = F32(1.0) - F32(2.0) / (e + F32(1.0))
            return np.copysign(big if z > F32(0.625) else small, x)
        return impl
    return None


@njit(**_JIT)
def scatter_add_rows(out, ids, rows):
    """out[ids[n]] += rows[n] for n = 0, 1, ... in order (x^T da for one-hot rows x)."""
    for n in range(ids.size):
        o, r = out[ids[n]], rows[n]
        for g in range(r.size):
            o[g] += r[g]


@njit(**_JIT)
def tanh_array(x, out):
    """out[...] = tanh_(x) elementwise (for tests and measurements); contiguous arrays."""
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    for k in range(xf.size):
        of[k] = tanh_(xf[k])


# --- LSTM: equations (1)-(6) of lstm_bptt.cell; internal gate order (o, i, f, g) ----------
# The per-row work is split into short loops that each write one or two arrays: LLVM then
# vectorises them behind a few run-time overlap checks (one loop writing many views of
# different arrays is left scalar, ~3x slower). A loop over ``range(3 * H, 4 * H)`` was also
# left scalar (unknown sign of the start index); offsets are added inside ``range(H)`` loops.

@njit(**_JIT)
def lstm_forward_steps(gates, h, c, tanh_c, w_hh_t, w_hr_t, bias, ids, table, blocks, rows,
                       transposed):
    """The forward time loop of ``lstm._run_steps`` (same arguments, same in-place results).

    gates : (n, B, 4H) pre-activations without the recurrent term (sigmoid rows halved) on
    entry, post-activations (o, i, f, g) on exit; h (n + 1, B, P or H), c (n + 1, B, H):
    row 0 read, rows 1..n written; tanh_c : (n, B, H) written; w_hh_t : (P or H, 4H);
    w_hr_t : (H, P) or None (no projection); bias : (4H,) added to the gates first, or None;
    ids (n*B,), table (D, 4H): the input projection as a gather, gates[t, b] = table[ids[t*B + b]]
    written here just before its step (the table stays in cache), or both None;
    blocks : (4H / c, P or H, c) column blocks of w_hh_t (``lstm_bptt._blas.step_blocks``), or
    None; rows : rows per tile (``lstm_bptt._blas.step_rows``); transposed : compute the
    product transposed (``lstm_bptt._blas.transposed_product``).
    """
    n, B, H4 = gates.shape
    H = H4 // 4
    rec = np.empty((B, H4), gates.dtype)
    m = np.empty((B, H), gates.dtype)  # o * tanh(c), projected to h with w_hr_t
    half = like(gates[0, 0, 0], 0.5)
    w_hh = _transposed_copy(w_hh_t, transposed)  # (4H, P), for the transposed product
    rec_t = np.empty((H4, B), gates.dtype)
    scratch = _block_scratch(blocks, B, rows, gates)
    for t in range(n):
        _recurrent_product(h[t], w_hh_t, w_hh, rec, rec_t, blocks, scratch, transposed)
        for b in range(B):
            a, r = gates[t, b], rec[b]
            if table is not None:
                src = table[ids[t * B + b]]
                for k in range(4 * H):
                    a[k] = src[k]
            if bias is not None:  # ((x W_ih^T) + b) + h W_hh^T: the NumPy path's order
                for k in range(4 * H):
                    a[k] += bias[k]
            for k in range(3 * H):  # o, i, f: (4), (1), (2) as sigma(a) = (1 + tanh(a/2)) / 2
                a[k] = tanh_(a[k] + r[k]) * half + half
            for j in range(H):  # g: (3)
                a[3 * H + j] = tanh_(a[3 * H + j] + r[3 * H + j])
            c_prev, c_t = c[t, b], c[t + 1, b]
            for j in range(H):
                c_t[j] = a[2 * H + j] * c_prev[j] + a[H + j] * a[3 * H + j]  # (5) f c + i g
            tc = tanh_c[t, b]
            out = h[t + 1, b] if w_hr_t is None else m[b]
            for j in range(H):
                y = tanh_(c_t[j])
                tc[j] = y
                out[j] = a[j] * y  # (6)
        if w_hr_t is not None:
            np.dot(m, w_hr_t, h[t + 1])  # (7) h = W_hr m


@njit(**_JIT)
def _transposed_copy(w, transposed):
    """w^T contiguous when :func:`_recurrent_product` computes the transposed product, else an
    empty array."""
    if transposed:
        return np.ascontiguousarray(w.T)
    return np.empty((0, 0), w.dtype)


@njit(**_JIT)
def _transpose_into(src, out, scale):
    """out (B, G) = src (G, B)^T, each row k of src times scale[k] (scale None: no product),
    by 8 x 8 tiles (float32 (512, 32) 11.6 -> 6.2 us, (2048, 128) 439 -> 146 us against the
    row-by-row copy; with the scale, (1024, 256) 349 us against 464 for NumPy's take and
    transposing multiply, (512, 65) 43 against 60). numba compiles ``scale is None`` away."""
    G, B = src.shape
    G8, B8 = G - G % 8, B - B % 8
    for k0 in range(0, G8, 8):
        for b0 in range(0, B8, 8):
            for j in range(8):
                for i in range(8):
                    if scale is None:
                        out[b0 + j, k0 + i] = src[k0 + i, b0 + j]
                    else:
                        out[b0 + j, k0 + i] = src[k0 + i, b0 + j] * scale[k0 + i]
        for b in range(B8, B):
            for i in range(8):
                if scale is None:
                    out[b, k0 + i] = src[k0 + i, b]
                else:
                    out[b, k0 + i] = src[k0 + i, b] * scale[k0 + i]
    for k in range(G8, G):
        for b in range(B):
            if scale is None:
                out[b, k] = src[k, b]
            else:
                out[b, k] = src[k, b] * scale[k]


@njit(**_JIT)
def _block_scratch(blocks, B, rows, like_array):
    """(B / rows, n_blocks, rows, c) scratch for the blocked product (tiles of ``rows`` rows),
    or an empty array of like_array's dtype without blocks."""
    if blocks is None:
        return np.empty((0, 0, 0, 0), like_array.dtype)
    nb, _, c = blocks.shape
    return np.empty((B // rows, nb, rows, c), blocks.dtype)


@njit(**_JIT)
def _block_product(a, w, out, blocks, scratch):
    """out (B, G) = a (B, K) @ w (K, G): by tiles when blocks is not None, else one GEMM.

    blocks (G / c, K, c): w's column blocks; scratch (B / rows, G / c, rows, c): tile (i, j)
    = a[i rows : (i + 1) rows] @ blocks[j], copied into rows i rows.., columns j c.. of out.
    """
    if blocks is None:
        np.dot(a, w, out)
        return
    nr, nb, rows, c = scratch.shape
    a3 = a.reshape((nr, rows, a.shape[1]))  # row tiles (C-contiguous views)
    for i in range(nr):
        for j in range(nb):
            np.dot(a3[i], blocks[j], scratch[i, j])
    for i in range(nr):
        for r in range(rows):
            ob = out[i * rows + r]
            for j in range(nb):
                s = scratch[i, j, r]
                for k in range(c):
                    ob[j * c + k] = s[k]


@njit(**_JIT)
def _recurrent_product(h, w_t, w, out, out_t, blocks, scratch, transposed):
    """out (B, G) = h (B, K) @ w_t (K, G), the per-step product of every kernel.

    w = w_t^T contiguous (used only when ``transposed``), out_t (G, B) scratch;
    blocks (G / c, K, c): w_t's column blocks, or None; scratch: :func:`_block_scratch`.

    With blocks (``lstm_bptt._blas``: OpenBLAS's small-matrix kernel takes each block, which
    is faster than one large GEMM there), block j of the result is h @ blocks[j], copied into
    columns j c .. (j + 1) c of out: the products of the NumPy path's stacked matmul.

    With ``transposed`` (float32, ``lstm_bptt._blas.transposed_product``) OpenBLAS computes
    the transposed product w @ h^T, which is faster at these shapes, and the (G, B) result is
    transposed into out. Otherwise one direct GEMM.
    """
    if blocks is not None:
        _block_product(h, w_t, out, blocks, scratch)
    elif transposed:
        np.dot(w, h.T, out_t)
        _transpose_into(out_t, out, None)
    else:
        np.dot(h, w_t, out)


@njit(**_JIT)
def _add_or_copy(doutput, t, dh, out):
    """out = doutput[t] + dh (the output gradient plus the carried dh), or dh without doutput."""
    if doutput is None:
        out[:] = dh
    else:
        B, n = dh.shape
        for b in range(B):
            dout, dhb, ob = doutput[t, b], dh[b], out[b]
            for j in range(n):
                ob[j] = dout[j] + dhb[j]


@njit(**_JIT)
def lstm_backward_steps(gates, c, tanh_c, w_hh, da, doutput, dh, dc, w_hr, dhs, blocks,
                        rows, transposed):
    """The BPTT loop of ``lstm._backward_steps`` over n steps, fused per step.

    gates : (n, B, 4H) post-activations (o, i, f, g); c : (n + 1, B, H); tanh_c : (n, B, H);
    w_hh : (4H, P or H) internal order; da : (n, B, 4H) written (dL/da_t, contiguous);
    doutput : (n, B, P or H) or None; dh (B, P or H), dc (B, H): carried in (not modified);
    w_hr : (P, H) or None; dhs : (n, B, P) written with dL/dh_t when w_hr is given;
    blocks : (P / c, 4H, c) column blocks of w_hh (``lstm_bptt._blas.step_blocks``), or None;
    rows : rows per tile (``lstm_bptt._blas.step_rows``); transposed : as for the forward.
    Returns the new arrays (dh, dc) carried to the step before the first.
    The products are those of the NumPy loop, in the same order (bitwise equal results
    without ``transposed``, which only float32 uses: there the recurrent GEMM is computed
    transposed, and rounds differently).
    """
    n, B, H4 = gates.shape
    H = H4 // 4
    dh = dh.copy()
    dc = dc.copy()  # holds dc_t (u) within a step, then dc_{t-1}
    one = like(gates[0, 0, 0], 1.0)
    dm = np.empty((B, H), gates.dtype)  # dL/dm_t, m = o tanh(c_t) (= h_t without projection)
    w_hh_t = _transposed_copy(w_hh, transposed)  # (P, 4H), for the transposed product
    dh_tr = np.empty((dh.shape[1], B), gates.dtype)
    scratch = _block_scratch(blocks, B, rows, gates)
    for t in range(n - 1, -1, -1):
        if w_hr is None:
            _add_or_copy(doutput, t, dh, dm)  # dL/dh_t = dL/dm_t
        else:
            _add_or_copy(doutput, t, dh, dhs[t])  # dL/dh_t, h_t = W_hr m_t
            np.dot(dhs[t], w_hr, dm)  # dL/dm_t = dL/dh_t W_hr, through (7)
        for b in range(B):
            gt, tc, d, u, dhb = gates[t, b], tanh_c[t, b], da[t, b], dc[b], dm[b]
            for j in range(H):
                d[j] = dhb[j] * ((tc[j] * gt[j]) * (one - gt[j]))  # da_o = dh tanh_c o (1-o)
            for j in range(H):
                u[j] = dhb[j] * ((one - tc[j] * tc[j]) * gt[j]) + u[j]  # dc_t, through (6)
            c_prev = c[t, b]
            # one loop per output (one loop writing all three ran 7-9 % slower over the whole
            # kernel at H = 128, 256: see the module's note on vectorised loops)
            for j in range(H):
                i, g = gt[H + j], gt[3 * H + j]
                d[H + j] = u[j] * ((g * i) * (one - i))  # da_i = dc_t g i (1 - i)
            for j in range(H):
                f = gt[2 * H + j]
                d[2 * H + j] = u[j] * ((c_prev[j] * f) * (one - f))  # da_f = dc_t c f (1 - f)
            for j in range(H):
                i, g = gt[H + j], gt[3 * H + j]
                d[3 * H + j] = u[j] * (i * (one - g * g))  # da_g = dc_t i (1 - g^2)
            for j in range(H):
                u[j] = u[j] * gt[2 * H + j]  # dc_{t-1} = dc_t f
        _recurrent_product(da[t], w_hh, w_hh_t, dh, dh_tr, blocks, scratch,
                           transposed)  # dh = da_t W_hh
    return dh, dc


@njit(**_JIT)
def _transpose_columns(src, order, out):
    """out (G, D)[r, d] = src (D, G)[d, order[r]], by 8 x 8 tiles."""
    D, G = src.shape
    G8, D8 = G - G % 8, D - D % 8
    for r0 in range(0, G8, 8):
        for d0 in range(0, D8, 8):
            for i in range(8):
                k = order[r0 + i]
                for j in range(8):
                    out[r0 + i, d0 + j] = src[d0 + j, k]
        for d in range(D8, D):
            for i in range(8):
                out[r0 + i, d] = src[d, order[r0 + i]]
    for r in range(G8, G):
        for d in range(D):
            out[r, d] = src[d, order[r]]


@njit(**_JIT)
def lstm_layout(weight_ih, weight_hh, bias_ih, bias_hh, order, scale):
    """The forward's weights in the time loop's layout, in one call instead of ~8 NumPy calls.

    weight_ih (4H, D), weight_hh (4H, P), bias_ih, bias_hh (4H,) or both None: PyTorch's gate
    order (i, f, g, o), any strides; order (4H,): ``lstm._row_order(H, True)``; scale (4H,):
    ``lstm._half_sigmoid_rows`` (1/2 on the rows o, i, f, 1 on g). Returns, internal order
    (o, i, f, g):

    w_ih (4H, D), w_hh (4H, P): the rows reordered (``lstm.to_internal``);
    w_t (D, 4H) = (w_ih * scale)^T (``lstm._projection``); w_hh_t (P, 4H) = (w_hh * scale)^T
    (``lstm._recurrent_weights``); bias (4H,) = b_ih + b_hh and step_bias = bias * scale
    (``lstm._step_bias``), both of length 0 without biases; and whether all four inputs are
    finite (the caller then skips its own pass over them: ``check_lstm_weights(finite=False)``).

    The same IEEE operations as the NumPy code (copies, one product, one sum), so the same
    numbers, bit for bit.
    """
    G, D = weight_ih.shape
    P = weight_hh.shape[1]
    finite = True
    w_ih = np.empty((G, D), weight_ih.dtype)
    w_hh = np.empty((G, P), weight_hh.dtype)
    for r in range(G):  # (element loops: a row slice assignment costs ~0.1 us per call)
        src, dst = weight_ih[order[r]], w_ih[r]
        for d in range(D):
            dst[d] = src[d]
            finite &= np.isfinite(src[d])
        src, dst = weight_hh[order[r]], w_hh[r]
        for d in range(P):
            dst[d] = src[d]
            finite &= np.isfinite(src[d])
    w_t = np.empty((D, G), weight_ih.dtype)
    w_hh_t = np.empty((P, G), weight_hh.dtype)
    _transpose_into(w_ih, w_t, scale)
    _transpose_into(w_hh, w_hh_t, scale)
    n = 0 if bias_ih is None else G
    bias = np.empty(n, weight_ih.dtype)
    step_bias = np.empty(n, weight_ih.dtype)
    if bias_ih is not None and bias_hh is not None:
        for r in range(G):
            bias[r] = bias_ih[order[r]] + bias_hh[order[r]]
            step_bias[r] = bias[r] * scale[r]
            finite &= np.isfinite(bias_ih[r]) & np.isfinite(bias_hh[r])
    return w_ih, w_hh, w_t, w_hh_t, bias, step_bias, finite


@njit(**_JIT)
def lstm_grads_to_pytorch(dw_ih_t, dw_hh_t, da, order, has_bias):
    """The backward's weight and bias gradients in PyTorch's layout, in one call.

    dw_ih_t (D, 4H) = x^T da, dw_hh_t (P, 4H) = h^T da, columns in the internal gate order;
    da (N, 4H); order (4H,): ``lstm._row_order(H, False)``. Returns dW_ih (4H, D), dW_hh
    (4H, P) and, with ``has_bias``, db (4H,) = the sum of da's rows, rows in PyTorch's order
    (i, f, g, o) (db of length 0 without). db is summed row after row from +0.0, the order of
    NumPy's ``da.sum(axis=0)`` for a C-contiguous da (``lstm_backward``'s), so all three equal
    the NumPy code's bit for bit.
    """
    D, G = dw_ih_t.shape
    P = dw_hh_t.shape[0]
    dw_ih = np.empty((G, D), da.dtype)
    dw_hh = np.empty((G, P), da.dtype)
    _transpose_columns(dw_ih_t, order, dw_ih)
    _transpose_columns(dw_hh_t, order, dw_hh)
    acc = np.zeros(G if has_bias else 0, da.dtype)
    if has_bias:
        for n in range(da.shape[0]):
            row = da[n]
            for k in range(G):
                acc[k] += row[k]
    db = np.empty_like(acc)
    for r in range(acc.size):
        db[r] = acc[order[r]]
    return dw_ih, dw_hh, db


# --- GRU: equations (1)-(5) of lstm_bptt.cells.gru; gate order (r, z, n) ----------------------

@njit(**_JIT)
def gru_forward_steps(gates, h, m, w_hh_t, b_hn, blocks, rows, transposed):
    """The forward time loop of ``gru._run_steps`` (same arguments, same in-place results).

    gates : (n, B, 3H) projection rows on entry (r, z rows halved), post-activation r, z, n
    on exit; h : (n + 1, B, H), row 0 read, rows 1..n written; m : (n, B, H) written,
    W_hn h_{t-1} + b_hn; w_hh_t : (H, 3H) = (W_hh * scale)^T; b_hn : (H,) or None;
    blocks : column blocks of w_hh_t (``lstm_bptt._blas.step_blocks``) or None; rows : rows per
    tile; transposed : compute the product transposed (``lstm_bptt._blas.transposed_product``).
    """
    n, B, H3 = gates.shape
    H = H3 // 3
    rec = np.empty((B, H3), gates.dtype)
    half = like(gates[0, 0, 0], 0.5)
    scratch = _block_scratch(blocks, B, rows, gates)
    w_hh = _transposed_copy(w_hh_t, transposed)
    rec_t = np.empty((H3, B), gates.dtype)
    for t in range(n):
        _recurrent_product(h[t], w_hh_t, w_hh, rec, rec_t, blocks, scratch,
                           transposed)  # h_{t-1} (W_hh * scale)^T
        for b in range(B):
            a, r, mt = gates[t, b], rec[b], m[t, b]
            for k in range(2 * H):  # r, z: (1), (2) as sigma(a) = (1 + tanh(a/2)) / 2
                a[k] = tanh_(a[k] + r[k]) * half + half
            if b_hn is None:
                for j in range(H):
                    mt[j] = r[2 * H + j]
            else:
                for j in range(H):
                    mt[j] = r[2 * H + j] + b_hn[j]  # (3)
            for j in range(H):
                a[2 * H + j] = tanh_(a[2 * H + j] + a[j] * mt[j])  # (4) n = tanh(. + r m)
            h_prev, h_t = h[t, b], h[t + 1, b]
            for j in range(H):
                nj = a[2 * H + j]
                h_t[j] = (h_prev[j] - nj) * a[H + j] + nj  # (5) h' = n + z (h - n)


@njit(**_JIT)
def gru_backward_steps(gates, m, h, w_hh, work, doutput, dh, blocks, rows, transposed):
    """The BPTT loop of ``gru._backward_steps`` (same arguments; returns the new dh).

    gates : (n, B, 3H) r, z, n; m : (n, B, H); h : (n + 1, B, H); w_hh : (3H, H);
    work : (n, B, 4H) written [da_n | da_r | da_z | dm] per row; doutput : (n, B, H) or None;
    dh : (B, H) carried in (not modified); blocks, rows, transposed : as for the forward. The
    products of the NumPy loop, in its order.
    """
    n, B, H3 = gates.shape
    H = H3 // 3
    one = like(gates[0, 0, 0], 1.0)
    dh = dh.copy()
    dh_t = np.empty((B, H), gates.dtype)
    dgh = np.empty((B, H3), gates.dtype)  # [da_r, da_z, dm] contiguous, for the GEMM
    scratch = _block_scratch(blocks, B, rows, gates)
    w_hh_t = _transposed_copy(w_hh, transposed)
    dh_tr = np.empty((H, B), gates.dtype)
    for t in range(n - 1, -1, -1):
        _add_or_copy(doutput, t, dh, dh_t)  # dh': output gradient plus the carried one
        for b in range(B):
            g, w, h_prev, mt, d = gates[t, b], work[t, b], h[t, b], m[t, b], dh_t[b]
            for j in range(H):
                r, z, nn = g[j], g[H + j], g[2 * H + j]
                da_n = d[j] * ((one - nn * nn) * (one - z))  # (5), (4)
                w[j] = da_n
                w[H + j] = da_n * (mt[j] * (r * (one - r)))  # da_r: (4), (1)
                w[2 * H + j] = d[j] * ((h_prev[j] - nn) * (z * (one - z)))  # da_z: (5), (2)
                w[3 * H + j] = da_n * r  # dm: (4)
            dg = dgh[b]
            for k in range(H3):
                dg[k] = w[H + k]
        _recurrent_product(dgh, w_hh, w_hh_t, dh, dh_tr, blocks, scratch,
                           transposed)  # through (1)-(3)
        for b in range(B):
            z, d, dhb = gates[t, b, H : 2 * H], dh_t[b], dh[b]
            for j in range(H):
                dhb[j] += d[j] * z[j]  # through (5) directly
    return dh


# --- Elman RNN: h' = phi(x W_ih^T + b_ih + h W_hh^T + b_hh), phi = tanh or relu -----------------

@njit(**_JIT)
def rnn_forward_steps(h, w_hh_t, relu, blocks, rows, transposed):
    """The forward time loop of ``rnn.rnn_forward``: h (n + 1, B, H) holds h_0 in row 0 and
    the input pre-activations in rows 1..n on entry, h_1..h_n on exit; w_hh_t : (H, H)."""
    n = h.shape[0] - 1
    B, H = h.shape[1], h.shape[2]
    rec = np.empty((B, H), h.dtype)
    scratch = _block_scratch(blocks, B, rows, h)
    w_hh = _transposed_copy(w_hh_t, transposed)
    rec_t = np.empty((H, B), h.dtype)
    zero = like(h[0, 0, 0], 0.0)
    for t in range(n):
        _recurrent_product(h[t], w_hh_t, w_hh, rec, rec_t, blocks, scratch,
                           transposed)  # h_{t-1} W_hh^T
        for b in range(B):
            a, r = h[t + 1, b], rec[b]
            if relu:
                for j in range(H):
                    v = a[j] + r[j]
                    a[j] = v if (v >= zero or v != v) else zero  # np.maximum(v, 0), NaN kept
            else:
                for j in range(H):
                    a[j] = tanh_(a[j] + r[j])


@njit(**_JIT)
def rnn_backward_steps(h, w_hh, doutput, dh, relu, blocks, rows, transposed):
    """The BPTT loop of ``rnn.rnn_backward``: returns (da (n, B, H), dh_0); h : (n + 1, B, H),
    w_hh : (H, H), doutput : (n, B, H) or None, dh : (B, H) carried in (not modified);
    blocks : column blocks of w_hh (``lstm_bptt._blas.step_blocks``) or None; rows : rows per
    tile; transposed : as for the forward."""
    n = h.shape[0] - 1
    B, H = h.shape[1], h.shape[2]
    one = like(h[0, 0, 0], 1.0)
    zero = like(h[0, 0, 0], 0.0)
    da = np.empty((n, B, H), h.dtype)
    dh = dh.copy()
    scratch = _block_scratch(blocks, B, rows, h)
    w_hh_t = _transposed_copy(w_hh, transposed)
    dh_tr = np.empty((H, B), h.dtype)
    for t in range(n - 1, -1, -1):
        for b in range(B):
            hv, d, dhb = h[t + 1, b], da[t, b], dh[b]
            if doutput is not None:
                dout = doutput[t, b]
                for j in range(H):
                    dhb[j] = dhb[j] + dout[j]  # dh_t: output gradient plus the carried one
            for j in range(H):
                if relu:
                    d[j] = (one if hv[j] > zero else zero) * dhb[j]  # (2), phi' = [h > 0]
                else:
                    d[j] = (one - hv[j] * hv[j]) * dhb[j]  # (2), phi' = 1 - h^2
        _recurrent_product(da[t], w_hh, w_hh_t, dh, dh_tr, blocks, scratch,
                           transposed)  # dh_{t-1} = da_t W_hh
    return da, dh
