"""A deliberately naive textbook NumPy LSTM: the baseline of ``bench_lstm.py``.

This is how the LSTM is usually first written from the equations: one weight matrix per gate
and per input (``W_xi, W_hi, ...``), one ``np.dot`` per gate per step, fresh arrays every step,
the cache as a Python list of per-step dicts, and a backward pass that accumulates the weight
gradients inside the time loop with one outer product per gate and step. It is correct (it
matches :func:`lstm_bptt.cells.lstm.lstm_forward` / :func:`~lstm_bptt.cells.lstm.lstm_backward`,
see ``check_against_library``) but does none of the batching of the library.

Dimension letters: T time, B batch, D input features, H hidden units.

Only the sigmoid is not textbook: ``1 / (1 + exp(-x))`` overflows (and warns) for x < -709, so
:func:`scipy.special.expit` is used instead; it costs the same.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

GATES = ("i", "f", "g", "o")  # PyTorch's order of the stacked (4H, .) blocks


def split_params(weight_ih, weight_hh, bias_ih, bias_hh):
    """Split PyTorch-layout stacked parameters into per-gate matrices.

    Parameters
    ----------
    weight_ih : ndarray (4H, D); weight_hh : ndarray (4H, H); bias_ih, bias_hh : ndarray (4H,)
        Gate blocks in the order i, f, g, o.

    Returns
    -------
    dict
        ``W_x{k}`` (D, H), ``W_h{k}`` (H, H), ``b_{k}`` (H,) for k in i, f, g, o (both biases
        summed); the weights are transposed copies so that ``x @ W_xk`` is the textbook form.
    """
    H = weight_hh.shape[1]
    p = {}
    for n, k in enumerate(GATES):
        rows = slice(n * H, (n + 1) * H)
        p[f"W_x{k}"] = weight_ih[rows].T.copy()
        p[f"W_h{k}"] = weight_hh[rows].T.copy()
        p[f"b_{k}"] = (bias_ih[rows] + bias_hh[rows]).copy()
    return p


def naive_forward(x, h_0, c_0, p):
    """Forward over the sequence, one step and one gate at a time.

    Parameters
    ----------
    x : ndarray (T, B, D)
    h_0, c_0 : ndarray (B, H)
    p : dict from :func:`split_params`

    Returns
    -------
    output : ndarray (T, B, H)
    (h_n, c_n) : tuple of ndarray (B, H)
    cache : list of dict, one per step
    """
    h, c = h_0, c_0
    outputs, cache = [], []
    for t in range(x.shape[0]):
        x_t = x[t]
        i = expit(np.dot(x_t, p["W_xi"]) + np.dot(h, p["W_hi"]) + p["b_i"])
        f = expit(np.dot(x_t, p["W_xf"]) + np.dot(h, p["W_hf"]) + p["b_f"])
        g = np.tanh(np.dot(x_t, p["W_xg"]) + np.dot(h, p["W_hg"]) + p["b_g"])
        o = expit(np.dot(x_t, p["W_xo"]) + np.dot(h, p["W_ho"]) + p["b_o"])
        c_new = f * c + i * g
        tanh_c = np.tanh(c_new)
        h_new = o * tanh_c
        cache.append({"x": x_t, "h_prev": h, "c_prev": c, "i": i, "f": f, "g": g, "o": o,
                      "tanh_c": tanh_c})
        outputs.append(h_new)
        h, c = h_new, c_new
    return np.stack(outputs), (h, c), cache


def naive_backward(doutput, cache, p):
    """BPTT, one step and one gate at a time, weight gradients accumulated per step.

    Parameters
    ----------
    doutput : ndarray (T, B, H)
    cache : list of dict from :func:`naive_forward`
    p : dict from :func:`split_params`

    Returns
    -------
    dx : ndarray (T, B, D)
    dh_0, dc_0 : ndarray (B, H)
    grads : dict keyed like ``p`` (``b_k`` is the gradient of each of the two summed biases)
    """
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dh_next = np.zeros_like(cache[0]["h_prev"])
    dc_next = np.zeros_like(cache[0]["c_prev"])
    dxs = []
    for t in reversed(range(len(cache))):
        s = cache[t]
        dh = doutput[t] + dh_next
        do = dh * s["tanh_c"]
        dc = dc_next + dh * s["o"] * (1 - s["tanh_c"] ** 2)
        di = dc * s["g"]
        df = dc * s["c_prev"]
        dg = dc * s["i"]
        dc_next = dc * s["f"]
        da = {
            "i": di * s["i"] * (1 - s["i"]),
            "f": df * s["f"] * (1 - s["f"]),
            "g": dg * (1 - s["g"] ** 2),
            "o": do * s["o"] * (1 - s["o"]),
        }
        dx = np.zeros_like(s["x"])
        dh_next = np.zeros_like(dh)
        for k in GATES:
            grads[f"W_x{k}"] += np.dot(s["x"].T, da[k])
            grads[f"W_h{k}"] += np.dot(s["h_prev"].T, da[k])
            grads[f"b_{k}"] += da[k].sum(axis=0)
            dx += np.dot(da[k], p[f"W_x{k}"].T)
            dh_next += np.dot(da[k], p[f"W_h{k}"].T)
        dxs.append(dx)
    return np.stack(dxs[::-1]), dh_next, dc_next, grads


def merge_grads(grads):
    """Per-gate gradients back to PyTorch's stacked layout.

    Returns
    -------
    dict
        ``weight_ih`` (4H, D), ``weight_hh`` (4H, H), ``bias_ih`` = ``bias_hh`` (4H,).
    """
    db = np.concatenate([grads[f"b_{k}"] for k in GATES])
    return {
        "weight_ih": np.concatenate([grads[f"W_x{k}"].T for k in GATES]),
        "weight_hh": np.concatenate([grads[f"W_h{k}"].T for k in GATES]),
        "bias_ih": db,
        "bias_hh": db.copy(),
    }


def check_against_library(T=7, B=3, D=5, H=4, dtype=np.float64, rng=0):
    """Max abs difference between this baseline and the library, forward and gradients.

    Parameters
    ----------
    T, B, D, H : int
        Sizes (H != D catches transposes).
    dtype : float32 or float64
    rng : int or np.random.Generator

    Returns
    -------
    float
        Largest absolute difference over output, h_n, c_n, dx, dh_0, dc_0 and all gradients.
    """
    from lstm_bptt.cells.lstm import lstm_backward, lstm_forward

    rng = np.random.default_rng(rng)
    w = {
        "weight_ih": rng.standard_normal((4 * H, D)),
        "weight_hh": rng.standard_normal((4 * H, H)),
        "bias_ih": rng.standard_normal(4 * H),
        "bias_hh": rng.standard_normal(4 * H),
    }
    w = {k: v.astype(dtype) for k, v in w.items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)
    h_0, c_0, dout = (rng.standard_normal(s).astype(dtype) for s in ((B, H), (B, H), (T, B, H)))
    out, (h_n, c_n), cache = lstm_forward(x, h_0, c_0, **w)
    dx, dh_0, dc_0, grads = lstm_backward(dout, cache)
    p = split_params(**w)
    out2, (h_n2, c_n2), cache2 = naive_forward(x, h_0, c_0, p)
    dx2, dh_02, dc_02, g2 = naive_backward(dout, cache2, p)
    g2 = merge_grads(g2)
    pairs = [(out, out2), (h_n, h_n2), (c_n, c_n2), (dx, dx2), (dh_0, dh_02), (dc_0, dc_02)]
    pairs += [(grads[k], g2[k]) for k in grads]
    return max(float(np.max(np.abs(a - b))) for a, b in pairs)


if __name__ == "__main__":
    for dt in (np.float64, np.float32):
        print(f"{np.dtype(dt).name}: max |naive - library| = {check_against_library(dtype=dt):.2e}")
