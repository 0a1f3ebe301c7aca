"""Generate tests/fixtures/keras_flax_lstm.npz: Keras 3 ``LSTM`` and Flax ``LSTMCell`` forwards.

Run once, by hand, in an environment with Keras 3, JAX and Flax (CPU), for example::

    python -m venv venv-keras && venv-keras/bin/pip install keras jax flax
    venv-keras/bin/python scripts/make_keras_flax_fixtures.py

It does not import lstm_bptt: the weights are drawn at random in each library's own layout and
the outputs come from that library's own forward, so the tests (which never import Keras, JAX
or Flax) check our converters and forward against an independent implementation. Versions used
are stored in ``meta/versions``.

For every case ``<case>`` the file holds ``<case>/config`` (JSON: D, H, T, B, L, bias, dtype,
activation) and

* Keras cases (``LSTM(H, return_sequences=True, return_state=True)`` layers applied in turn,
  time axis second as Keras has it; in the float64 cases other than ``keras_f64_default_tanh``
  the activation is ``jax.numpy.tanh``, because Keras 3's own ``tanh`` computes float64 in
  float32 outside TensorFlow): ``<case>/l{k}/kernel`` (D or H, 4H),
  ``<case>/l{k}/recurrent_kernel`` (H, 4H), ``<case>/l{k}/bias`` (4H,) when bias; ``x``
  (B, T, D); ``h_0``, ``c_0`` (L, B, H) (each layer's ``initial_state=[h, c]``); ``output``
  (B, T, H) of the last layer; ``h_n``, ``c_n`` (L, B, H). ``keras_bidir_f64``: stacked
  ``Bidirectional(LSTM)`` layers, ``l{k}_reverse/...`` the backward layer, states (2L, B, H)
  in PyTorch's order, output (B, T, 2H).
* Flax cases (one ``flax.linen.LSTMCell(features=H)`` applied step by step):
  ``<case>/l0/<gate>/kernel`` for the eight dense layers ``ii, if, ig, io`` (D, H) and
  ``hi, hf, hg, ho`` (H, H), ``<case>/l0/h<g>/bias`` (H,); ``x`` (B, T, D); carry ``c_0``,
  ``h_0`` (1, B, H); ``output`` (B, T, H); ``c_n``, ``h_n`` (1, B, H).

GRU cases (``keras_gru_*``, ``flax_gru_f64``, config ``"cell": "gru"``): Keras ``GRU(H,
reset_after=True)`` layers (``l{k}/kernel`` (D, 3H), ``l{k}/recurrent_kernel`` (H, 3H),
``l{k}/bias`` (2, 3H)) and one Flax ``GRUCell`` (``l0/i{r,z,n}/kernel`` (D, H) and ``/bias``,
``l0/h{r,z,n}/kernel`` (H, H), ``l0/hn/bias``); ``x`` (B, T, D), ``h_0``, ``h_n`` (L, B, H),
``output`` (B, T, H). RNN cases (``keras_rnn_*``, ``flax_rnn_f64``, config ``"cell": "rnn"``
and ``"nonlinearity"``): Keras ``SimpleRNN`` layers (``l{k}/kernel`` (D, H),
``l{k}/recurrent_kernel`` (H, H), ``l{k}/bias`` (H,)) and one Flax ``SimpleCell``
(``l0/i/kernel`` (D, H), ``l0/i/bias`` (H,), ``l0/h/kernel`` (H, H)).

All weights, biases and initial states are random and non-zero (scale 0.5, so the gates are not
all near 0.5).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# JAX backend with x64. Keras 3's type promotion maps float64 to float32 outside TensorFlow: with
# the NumPy backend nearly every op of a "float64" LSTM runs in float32; with JAX only its tanh
# does (replaced by tanh64 below in the cases meant for 1e-12 comparisons).
os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import flax  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402


@keras.saving.register_keras_serializable(package="fixtures")
def tanh64(x):
    """jax.numpy.tanh, in the input's precision (Keras's own tanh computes float64 in float32)."""
    return jnp.tanh(x)


OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "keras_flax_lstm.npz"


def keras_case(out, name, D, H, L, T, B, bias, dtype, seed, use_tanh64=False):
    rng = np.random.default_rng(seed)
    keras.config.set_floatx(dtype)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    h_0 = (0.5 * rng.standard_normal((L, B, H))).astype(dtype)
    c_0 = rng.standard_normal((L, B, H)).astype(dtype)
    inp = x
    h_n, c_n = [], []
    for k in range(L):
        # Keras 3's own tanh computes float64 inputs in float32 (jax backend: result_type(
        # float64, float) is float32 outside TensorFlow), an error of ~5e-8; with tanh64 the
        # layer gets jax.numpy.tanh (float64) as its activation, everything else Keras's own
        extra = {"activation": tanh64} if use_tanh64 else {}
        layer = keras.layers.LSTM(H, use_bias=bias, return_sequences=True, return_state=True,
                                  dtype=dtype, **extra)
        d_in = D if k == 0 else H
        layer.build((B, T, d_in))
        weights = [(0.5 * rng.standard_normal(w.shape)).astype(dtype) for w in layer.get_weights()]
        layer.set_weights(weights)
        names = ["kernel", "recurrent_kernel", "bias"][: len(weights)]
        for n, w in zip(names, layer.get_weights(), strict=True):
            assert w.dtype == np.dtype(dtype), w.dtype
            out[f"{name}/l{k}/{n}"] = w
        seq, h, c = layer(inp, initial_state=[h_0[k], c_0[k]])
        seq, h, c = (keras.ops.convert_to_numpy(v) for v in (seq, h, c))
        assert seq.dtype == np.dtype(dtype), seq.dtype
        h_n.append(h)
        c_n.append(c)
        inp = seq
    out[f"{name}/config"] = np.array(json.dumps(
        {"D": D, "H": H, "L": L, "T": T, "B": B, "bias": bias, "dtype": dtype,
         "activation": "jax.numpy.tanh" if use_tanh64 else "keras default (tanh)"}))
    out[f"{name}/x"], out[f"{name}/h_0"], out[f"{name}/c_0"] = x, h_0, c_0
    out[f"{name}/output"] = inp
    out[f"{name}/h_n"], out[f"{name}/c_n"] = np.stack(h_n), np.stack(c_n)


def keras_bidirectional_case(out, name, D, H, L, T, B, dtype, seed):
    """Stacked ``Bidirectional(LSTM(...))`` layers (merge_mode "concat"); states in PyTorch's
    order: h_0[2k] forward, h_0[2k + 1] backward of layer k; layer k > 0 reads 2H features."""
    rng = np.random.default_rng(seed)
    keras.config.set_floatx(dtype)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    h_0 = (0.5 * rng.standard_normal((2 * L, B, H))).astype(dtype)
    c_0 = rng.standard_normal((2 * L, B, H)).astype(dtype)
    inp = x
    h_n, c_n = [], []
    for k in range(L):
        layer = keras.layers.Bidirectional(
            keras.layers.LSTM(H, return_sequences=True, return_state=True, dtype=dtype,
                              activation=tanh64), dtype=dtype)
        layer.build((B, T, D if k == 0 else 2 * H))
        weights = [(0.5 * rng.standard_normal(w.shape)).astype(dtype) for w in layer.get_weights()]
        layer.set_weights(weights)
        names = [f"l{k}/{n}" for n in ("kernel", "recurrent_kernel", "bias")]
        names += [f"l{k}_reverse/{n}" for n in ("kernel", "recurrent_kernel", "bias")]
        for n, w in zip(names, layer.get_weights(), strict=True):
            out[f"{name}/{n}"] = w
        seq, hf, cf, hb, cb = layer(inp, initial_state=[h_0[2 * k], c_0[2 * k],
                                                         h_0[2 * k + 1], c_0[2 * k + 1]])
        seq, hf, cf, hb, cb = (keras.ops.convert_to_numpy(v) for v in (seq, hf, cf, hb, cb))
        assert seq.dtype == np.dtype(dtype) and seq.shape == (B, T, 2 * H), seq.shape
        h_n += [hf, hb]
        c_n += [cf, cb]
        inp = seq
    out[f"{name}/config"] = np.array(json.dumps(
        {"D": D, "H": H, "L": L, "T": T, "B": B, "bias": True, "dtype": dtype,
         "bidirectional": True, "activation": "jax.numpy.tanh"}))
    out[f"{name}/x"], out[f"{name}/h_0"], out[f"{name}/c_0"] = x, h_0, c_0
    out[f"{name}/output"] = inp
    out[f"{name}/h_n"], out[f"{name}/c_n"] = np.stack(h_n), np.stack(c_n)


def keras_gru_case(out, name, D, H, L, T, B, bias, dtype, seed):
    """Stacked Keras ``GRU(H, reset_after=True)`` layers (Keras 3's default, PyTorch's GRU
    equations): kernel (D, 3H) and recurrent_kernel (H, 3H) with gate blocks z, r, h; bias
    (2, 3H) = (input bias, recurrent bias). States h_0, h_n (L, B, H)."""
    rng = np.random.default_rng(seed)
    keras.config.set_floatx(dtype)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    h_0 = (0.5 * rng.standard_normal((L, B, H))).astype(dtype)
    inp = x
    h_n = []
    for k in range(L):
        layer = keras.layers.GRU(H, use_bias=bias, reset_after=True, return_sequences=True,
                                 return_state=True, dtype=dtype, activation=tanh64)
        layer.build((B, T, D if k == 0 else H))
        weights = [(0.5 * rng.standard_normal(w.shape)).astype(dtype) for w in layer.get_weights()]
        layer.set_weights(weights)
        names = ["kernel", "recurrent_kernel", "bias"][: len(weights)]
        for n, w in zip(names, layer.get_weights(), strict=True):
            out[f"{name}/l{k}/{n}"] = w
        seq, h = layer(inp, initial_state=[h_0[k]])
        seq, h = keras.ops.convert_to_numpy(seq), keras.ops.convert_to_numpy(h)
        assert seq.dtype == np.dtype(dtype), seq.dtype
        h_n.append(h)
        inp = seq
    out[f"{name}/config"] = np.array(json.dumps(
        {"D": D, "H": H, "L": L, "T": T, "B": B, "bias": bias, "dtype": dtype, "cell": "gru",
         "activation": "jax.numpy.tanh"}))
    out[f"{name}/x"], out[f"{name}/h_0"] = x, h_0
    out[f"{name}/output"], out[f"{name}/h_n"] = inp, np.stack(h_n)


def keras_rnn_case(out, name, D, H, L, T, B, bias, dtype, seed, activation):
    """Stacked Keras ``SimpleRNN(H)`` layers: kernel (D, H), recurrent_kernel (H, H), bias (H,);
    states h_0, h_n (L, B, H)."""
    rng = np.random.default_rng(seed)
    keras.config.set_floatx(dtype)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    h_0 = (0.5 * rng.standard_normal((L, B, H))).astype(dtype)
    inp, h_n = x, []
    for k in range(L):
        layer = keras.layers.SimpleRNN(
            H, use_bias=bias, return_sequences=True, return_state=True, dtype=dtype,
            activation=tanh64 if activation == "tanh" else activation)
        layer.build((B, T, D if k == 0 else H))
        weights = [(0.5 * rng.standard_normal(w.shape)).astype(dtype) for w in layer.get_weights()]
        layer.set_weights(weights)
        names = ["kernel", "recurrent_kernel", "bias"][: len(weights)]
        for n, w in zip(names, layer.get_weights(), strict=True):
            out[f"{name}/l{k}/{n}"] = w
        seq, h = layer(inp, initial_state=[h_0[k]])
        seq, h = keras.ops.convert_to_numpy(seq), keras.ops.convert_to_numpy(h)
        assert seq.dtype == np.dtype(dtype), seq.dtype
        h_n.append(h)
        inp = seq
    out[f"{name}/config"] = np.array(json.dumps(
        {"D": D, "H": H, "L": L, "T": T, "B": B, "bias": bias, "dtype": dtype, "cell": "rnn",
         "nonlinearity": activation}))
    out[f"{name}/x"], out[f"{name}/h_0"] = x, h_0
    out[f"{name}/output"], out[f"{name}/h_n"] = inp, np.stack(h_n)


def flax_rnn_case(out, name, D, H, T, B, dtype, seed):
    """One ``flax.linen.SimpleCell(features=H)`` (tanh) step by step: i (D, H) with bias, h
    (H, H) without; carry h."""
    rng = np.random.default_rng(seed)
    cell = nn.SimpleCell(features=H, dtype=dtype, param_dtype=dtype)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    h_0 = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    variables = cell.init(jax.random.key(0), jnp.asarray(h_0), jnp.asarray(x[:, 0]))
    flat = flax.traverse_util.flatten_dict(variables["params"], sep="/")
    assert sorted(flat) == ["h/kernel", "i/bias", "i/kernel"], sorted(flat)
    flat = {k: (0.5 * rng.standard_normal(v.shape)).astype(dtype) for k, v in flat.items()}
    params = flax.traverse_util.unflatten_dict(flat, sep="/")
    carry, ys = jnp.asarray(h_0), []
    for t in range(T):
        carry, y = cell.apply({"params": params}, carry, jnp.asarray(x[:, t]))
        ys.append(np.asarray(y))
    for k, v in flat.items():
        out[f"{name}/l0/{k}"] = v
    out[f"{name}/config"] = np.array(json.dumps(
        {"D": D, "H": H, "L": 1, "T": T, "B": B, "bias": True, "dtype": dtype, "cell": "rnn",
         "nonlinearity": "tanh"}))
    out[f"{name}/x"], out[f"{name}/h_0"] = x, h_0[None]
    out[f"{name}/output"] = np.stack(ys, axis=1)
    out[f"{name}/h_n"] = np.asarray(carry)[None]


def flax_gru_case(out, name, D, H, T, B, dtype, seed):
    """One ``flax.linen.GRUCell(features=H)`` step by step: dense layers ir, iz, in (D, H) with
    bias, hr, hz (H, H) without, hn (H, H) with bias; carry h."""
    rng = np.random.default_rng(seed)
    cell = nn.GRUCell(features=H, dtype=dtype, param_dtype=dtype)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    h_0 = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    variables = cell.init(jax.random.key(0), jnp.asarray(h_0), jnp.asarray(x[:, 0]))
    flat = flax.traverse_util.flatten_dict(variables["params"], sep="/")
    assert sorted(flat) == sorted(
        [f"i{g}/kernel" for g in "rzn"] + [f"i{g}/bias" for g in "rzn"]
        + [f"h{g}/kernel" for g in "rzn"] + ["hn/bias"]), sorted(flat)
    flat = {k: (0.5 * rng.standard_normal(v.shape)).astype(dtype) for k, v in flat.items()}
    params = flax.traverse_util.unflatten_dict(flat, sep="/")
    carry = jnp.asarray(h_0)
    ys = []
    for t in range(T):
        carry, y = cell.apply({"params": params}, carry, jnp.asarray(x[:, t]))
        ys.append(np.asarray(y))
    output = np.stack(ys, axis=1)  # (B, T, H)
    assert output.dtype == np.dtype(dtype), output.dtype
    for k, v in flat.items():
        out[f"{name}/l0/{k}"] = v
    out[f"{name}/config"] = np.array(json.dumps(
        {"D": D, "H": H, "L": 1, "T": T, "B": B, "bias": True, "dtype": dtype, "cell": "gru"}))
    out[f"{name}/x"], out[f"{name}/h_0"] = x, h_0[None]
    out[f"{name}/output"], out[f"{name}/h_n"] = output, np.asarray(carry)[None]


def flax_case(out, name, D, H, T, B, dtype, seed):
    rng = np.random.default_rng(seed)
    cell = nn.LSTMCell(features=H, dtype=dtype, param_dtype=dtype)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    c_0 = rng.standard_normal((B, H)).astype(dtype)
    h_0 = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    variables = cell.init(jax.random.key(0), (jnp.asarray(c_0), jnp.asarray(h_0)),
                          jnp.asarray(x[:, 0]))
    flat = flax.traverse_util.flatten_dict(variables["params"], sep="/")
    assert sorted(flat) == sorted(
        [f"i{g}/kernel" for g in "ifgo"] + [f"h{g}/kernel" for g in "ifgo"]
        + [f"h{g}/bias" for g in "ifgo"]), sorted(flat)
    flat = {k: (0.5 * rng.standard_normal(v.shape)).astype(dtype) for k, v in flat.items()}
    params = flax.traverse_util.unflatten_dict(flat, sep="/")
    carry = (jnp.asarray(c_0), jnp.asarray(h_0))
    ys = []
    for t in range(T):
        carry, y = cell.apply({"params": params}, carry, jnp.asarray(x[:, t]))
        ys.append(np.asarray(y))
    output = np.stack(ys, axis=1)  # (B, T, H)
    assert output.dtype == np.dtype(dtype), output.dtype
    for k, v in flat.items():
        out[f"{name}/l0/{k}"] = v
    out[f"{name}/config"] = np.array(json.dumps(
        {"D": D, "H": H, "L": 1, "T": T, "B": B, "bias": True, "dtype": dtype}))
    out[f"{name}/x"] = x
    out[f"{name}/c_0"], out[f"{name}/h_0"] = c_0[None], h_0[None]
    out[f"{name}/output"] = output
    out[f"{name}/c_n"] = np.asarray(carry[0])[None]
    out[f"{name}/h_n"] = np.asarray(carry[1])[None]


def main():
    out: dict[str, np.ndarray] = {}
    # H != D everywhere, so a transposed kernel cannot pass
    keras_case(out, "keras_f64", D=3, H=4, L=2, T=5, B=2, bias=True, dtype="float64", seed=1,
               use_tanh64=True)
    keras_case(out, "keras_f64_nobias", D=4, H=3, L=1, T=4, B=3, bias=False, dtype="float64",
               seed=2, use_tanh64=True)
    keras_case(out, "keras_f64_default_tanh", D=3, H=4, L=2, T=5, B=2, bias=True,
               dtype="float64", seed=1)
    keras_case(out, "keras_f32", D=3, H=5, L=1, T=6, B=2, bias=True, dtype="float32", seed=3)
    keras_bidirectional_case(out, "keras_bidir_f64", D=3, H=4, L=2, T=5, B=2, dtype="float64",
                             seed=6)
    keras_gru_case(out, "keras_gru_f64", D=3, H=4, L=2, T=5, B=2, bias=True, dtype="float64",
                   seed=7)
    keras_gru_case(out, "keras_gru_f64_nobias", D=4, H=3, L=1, T=4, B=2, bias=False,
                   dtype="float64", seed=8)
    keras_rnn_case(out, "keras_rnn_f64", D=3, H=4, L=2, T=5, B=2, bias=True, dtype="float64",
                   seed=13, activation="tanh")
    keras_rnn_case(out, "keras_rnn_relu_f64_nobias", D=4, H=3, L=1, T=4, B=2, bias=False,
                   dtype="float64", seed=14, activation="relu")
    flax_rnn_case(out, "flax_rnn_f64", D=3, H=4, T=5, B=2, dtype="float64", seed=15)
    flax_gru_case(out, "flax_gru_f64", D=3, H=4, T=5, B=2, dtype="float64", seed=9)
    flax_case(out, "flax_f64", D=3, H=4, T=5, B=2, dtype="float64", seed=4)
    flax_case(out, "flax_f32", D=5, H=3, T=4, B=2, dtype="float32", seed=5)
    out["meta/versions"] = np.array(json.dumps({
        "keras": keras.__version__, "keras_backend": keras.backend.backend(),
        "jax": jax.__version__, "flax": flax.__version__, "numpy": np.__version__}))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): {json.loads(str(out['meta/versions']))}")


if __name__ == "__main__":
    main()
