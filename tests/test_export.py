"""Weights in and out: safetensors by hand, converters to Keras / Flax / CS231n, PyTorch hand-off.

Reference values come from other implementations, never from the code under test:

* ``keras_flax_lstm.npz`` (scripts/make_keras_flax_fixtures.py): weights in Keras 3's and Flax
  linen's own layouts and those libraries' own forward outputs;
* ``export_torch.npz`` and the ``.safetensors`` files (scripts/make_export_fixtures.py): files
  written by ``safetensors.torch.save_file``, PyTorch's outputs, and PyTorch's outputs after it
  loaded a file written by our writer;
* the CS231n step (``lstm_step_forward`` of the CS231n assignment) is re-typed below from its
  published equations;
* the byte layout of safetensors is built by hand from the format description.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from lstm_bptt import LSTM
from lstm_bptt.export import (
    export_weights,
    gru_from_flax,
    gru_from_keras,
    gru_to_flax,
    gru_to_keras,
    import_weights,
    load_safetensors,
    load_state_dict_into,
    lstm_from_cs231n,
    lstm_from_flax,
    lstm_from_keras,
    lstm_to_cs231n,
    lstm_to_flax,
    lstm_to_keras,
    module_metadata,
    rnn_from_flax,
    rnn_from_keras,
    rnn_to_keras,
    safetensors_metadata,
    save_npz,
    save_safetensors,
)

FIX = Path(__file__).parent / "fixtures"
KF = np.load(FIX / "keras_flax_lstm.npz")
TORCH = np.load(FIX / "export_torch.npz")


def case(data, name):
    cfg = json.loads(str(data[f"{name}/config"]))
    arrays = {k[len(name) + 1:]: data[k] for k in data.files if k.startswith(name + "/")}
    return cfg, arrays


def weights_of(arrays):
    return {k: v for k, v in arrays.items() if k.startswith("l") and "/" in k}


def lstm_with(sd, cfg, batch_first=False, bias=True):
    lstm = LSTM(cfg["D"], cfg["H"], cfg["L"], bias=bias, batch_first=batch_first,
                dtype=cfg["dtype"])
    lstm.load_state_dict(sd)
    return lstm


def max_err(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    return float(np.max(np.abs(a - b)))


TOL = {"float64": 1e-12, "float32": 2e-6}

# --------------------------------------------------------------------------------- Keras 3


# Keras 3's own tanh evaluates float64 in float32 outside TensorFlow (its type promotion maps
# float64 to float32), so with Keras's default activation the float64 outputs agree only to
# float32 accuracy; the other float64 cases give the Keras layer jax.numpy.tanh.
KERAS_TOL = {"keras_f64": 1e-12, "keras_f64_nobias": 1e-12, "keras_f64_default_tanh": 2e-7,
             "keras_f32": TOL["float32"]}


@pytest.mark.parametrize("name", sorted(KERAS_TOL))
def test_keras_lstm_outputs_match_after_conversion(name):
    cfg, a = case(KF, name)
    sd = lstm_from_keras(weights_of(a), bias=cfg["bias"])
    lstm = lstm_with(sd, cfg, batch_first=True, bias=cfg["bias"])  # Keras is (B, T, D)
    out, (h_n, c_n), _ = lstm.forward(a["x"], (a["h_0"], a["c_0"]))
    tol = KERAS_TOL[name]
    assert max_err(out, a["output"]) < tol
    assert max_err(h_n, a["h_n"]) < tol
    assert max_err(c_n, a["c_n"]) < tol


@pytest.mark.parametrize("name", sorted(KERAS_TOL))
def test_keras_round_trip_is_exact(name):
    cfg, a = case(KF, name)
    w = weights_of(a)
    back = lstm_to_keras(lstm_from_keras(w, bias=cfg["bias"]))
    assert sorted(back) == sorted(w)
    for k in w:
        assert back[k].dtype == w[k].dtype and np.array_equal(back[k], w[k]), k


def test_keras_bias_split_documented(rng):
    """to -> from keeps b_ih + b_hh (so the outputs), with the sum in bias_ih and bias_hh = 0."""
    lstm = LSTM(3, 4, 2, rng=0)
    sd = lstm_from_keras(lstm_to_keras(lstm.params))
    for k in range(2):
        assert np.array_equal(sd[f"weight_ih_l{k}"], lstm.params[f"weight_ih_l{k}"])
        assert np.array_equal(sd[f"bias_ih_l{k}"],
                              lstm.params[f"bias_ih_l{k}"] + lstm.params[f"bias_hh_l{k}"])
        assert not sd[f"bias_hh_l{k}"].any()
    x = rng.standard_normal((5, 2, 3))
    other = lstm_with(sd, {"D": 3, "H": 4, "L": 2, "dtype": "float64"})
    assert max_err(other.forward(x)[0], lstm.forward(x)[0]) < 1e-14


# ------------------------------------------------------------------------------ Flax linen


@pytest.mark.parametrize("name", ["flax_f64", "flax_f32"])
def test_flax_lstmcell_outputs_match_after_conversion(name):
    cfg, a = case(KF, name)
    sd = lstm_from_flax(weights_of(a))
    lstm = lstm_with(sd, cfg, batch_first=True)
    # Flax's carry is (c, h); ours (h, c)
    out, (h_n, c_n), _ = lstm.forward(a["x"], (a["h_0"], a["c_0"]))
    tol = TOL[cfg["dtype"]]
    assert max_err(out, a["output"]) < tol
    assert max_err(h_n, a["h_n"]) < tol
    assert max_err(c_n, a["c_n"]) < tol


@pytest.mark.parametrize("name", ["flax_f64", "flax_f32"])
def test_flax_round_trip_is_exact(name):
    _, a = case(KF, name)
    w = weights_of(a)
    back = lstm_to_flax(lstm_from_flax(w))
    assert sorted(back) == sorted(w)
    for k in w:
        assert back[k].dtype == w[k].dtype and np.array_equal(back[k], w[k]), k


def test_flax_without_bias():
    lstm = LSTM(3, 2, bias=False, rng=0)
    w = lstm_to_flax(lstm.params)
    assert not any(w[f"l0/h{g}/bias"].any() for g in "ifgo")  # Flax always has the bias
    assert sorted(lstm_from_flax(w, bias=False)) == ["weight_hh_l0", "weight_ih_l0"]
    w["l0/hf/bias"] = w["l0/hf/bias"] + 1.0
    with pytest.raises(ValueError, match="non-zero bias but bias=False"):
        lstm_from_flax(w, bias=False)


# ---------------------------------------------------------------------------------- CS231n


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def cs231n_lstm_forward(x, h0, c0, Wx, Wh, b):
    """CS231n's lstm_step_forward, looped over T (gate order i, f, o, g). x (T, B, D)."""
    H = h0.shape[1]
    h, c, hs = h0, c0, []
    for t in range(x.shape[0]):
        a = x[t] @ Wx + h @ Wh + b
        i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H])
        g = np.tanh(a[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs), h, c


def test_cs231n_layout_matches_keras_output():
    """Keras weights -> PyTorch names -> CS231n layout, run by the CS231n step equations,
    reproduce Keras's own outputs (a check of lstm_to_cs231n independent of our forward)."""
    cfg, a = case(KF, "keras_f64")
    w = lstm_to_cs231n(lstm_from_keras(weights_of(a)))
    inp = a["x"].transpose(1, 0, 2)  # (T, B, D)
    for k in range(cfg["L"]):
        inp, h, c = cs231n_lstm_forward(inp, a["h_0"][k], a["c_0"][k], w[f"l{k}/Wx"],
                                        w[f"l{k}/Wh"], w[f"l{k}/b"])
        assert max_err(h, a["h_n"][k]) < 1e-12 and max_err(c, a["c_n"][k]) < 1e-12
    assert max_err(inp.transpose(1, 0, 2), a["output"]) < 1e-12


def test_cs231n_into_our_lstm(rng):
    D, H, T, B = 4, 3, 5, 2
    w = {"l0/Wx": rng.standard_normal((D, 4 * H)), "l0/Wh": rng.standard_normal((H, 4 * H)),
         "l0/b": rng.standard_normal(4 * H)}
    x, h0, c0 = (rng.standard_normal(s) for s in ((T, B, D), (B, H), (B, H)))
    ref, h_ref, c_ref = cs231n_lstm_forward(x, h0, c0, w["l0/Wx"], w["l0/Wh"], w["l0/b"])
    lstm = lstm_with(lstm_from_cs231n(w), {"D": D, "H": H, "L": 1, "dtype": "float64"})
    out, (h_n, c_n), _ = lstm.forward(x, (h0[None], c0[None]))
    assert max_err(out, ref) < 1e-12 and max_err(c_n[0], c_ref) < 1e-12
    back = lstm_to_cs231n(lstm_from_cs231n(w))
    assert all(np.array_equal(back[k], w[k]) for k in w) and sorted(back) == sorted(w)


# ------------------------------------------------------------------ converter bad input


def test_converters_refuse_bad_input():
    lstm = LSTM(3, 4, rng=0)
    w = lstm_to_keras(lstm.params)
    with pytest.raises(ValueError, match=r"'l0/kernel'\]: expected shape \(3, 16\), got \(3, 8\)"):
        lstm_from_keras({**w, "l0/kernel": w["l0/kernel"][:, :8]})
    with pytest.raises(ValueError, match=r"recurrent_kernel.*expected shape \(H, 4H\)"):
        lstm_from_keras({**w, "l0/recurrent_kernel": w["l0/recurrent_kernel"].T})
    with pytest.raises(ValueError, match="unexpected key"):
        lstm_from_keras({**w, "l0/kernel_extra": w["l0/kernel"]})
    with pytest.raises(ValueError, match="unexpected key 'kernel'"):
        lstm_from_keras({"kernel": w["l0/kernel"]})
    with pytest.raises(TypeError, match="floating-point"):
        lstm_from_keras({**w, "l0/bias": w["l0/bias"].astype(int)})
    with pytest.raises(ValueError, match="missing 'l0/hg/bias'"):
        f = lstm_to_flax(lstm.params)
        del f["l0/hg/bias"]
        lstm_from_flax(f)
    with pytest.raises(ValueError, match=r"expected LSTM layer weights, weight_ih_l0 \(4H, D\)"):
        lstm_to_keras({"weight_ih_l0": np.zeros((9, 2)), "weight_hh_l0": np.zeros((9, 3))})
    with pytest.raises(ValueError, match="proj_size"):
        lstm_to_flax({**lstm.params, "weight_hr_l0": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="'weight_ci_l0' has no equivalent"):  # never dropped
        lstm_to_keras({**lstm.params, "weight_ci_l0": np.zeros(4)})
    with pytest.raises(ValueError, match="'weight' has no equivalent"):
        lstm_to_cs231n({"weight": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="expected recurrent weights named weight_ih_l0"):
        lstm_to_cs231n({})
    with pytest.raises(ValueError, match="format: expected one of"):
        export_weights(lstm, "onnx")


# ----------------------------------------------------------------- whole modules and models


@pytest.mark.parametrize("fmt", ["keras", "flax", "cs231n"])
def test_export_import_model_round_trip(fmt):
    from lstm_bptt import CharLM

    model = CharLM(7, hidden_size=5, num_layers=2, embedding_dim=3, dtype=np.float64, rng=0)
    w = export_weights(model, fmt)
    dense = {"keras": "kernel", "flax": "kernel", "cs231n": "w"}[fmt]
    assert w[f"head/{dense}"].shape == (5, 7)  # (H, V): Keras/Flax Dense and CS231n affine
    assert np.array_equal(w[f"head/{dense}"], model.params["head.weight"].T)
    other = CharLM(7, hidden_size=5, num_layers=2, embedding_dim=3, dtype=np.float64, rng=1)
    before = {k: id(v) for k, v in other.params.items()}
    import_weights(other, w, fmt)
    assert {k: id(v) for k, v in other.params.items()} == before  # in place
    w2 = export_weights(other, fmt)
    assert sorted(w2) == sorted(w) and all(np.array_equal(w[k], w2[k]) for k in w)
    ids = np.array([[1, 2], [3, 4], [5, 6]])
    assert max_err(other.forward(ids)[0], model.forward(ids)[0]) < 1e-13
    with pytest.raises(ValueError, match="unexpected key"):
        import_weights(other, {**w, "extra/kernel": w[f"head/{dense}"]}, fmt)


# --------------------------------------------------------------------- state dict loading


def test_load_state_dict_into_checks_everything_before_copying(rng):
    lstm = LSTM(3, 4, 2, rng=0)
    before = {k: v.copy() for k, v in lstm.params.items()}
    sd = {k: rng.standard_normal(v.shape) for k, v in lstm.params.items()}
    bad = dict(sd)
    bad["weight_hh_l1"] = bad["weight_hh_l1"].T[:3]
    with pytest.raises(ValueError, match=r"state_dict\['weight_hh_l1'\]: expected shape \(16, 4\)"):
        load_state_dict_into(lstm.params, bad)
    assert all(np.array_equal(before[k], lstm.params[k]) for k in before)  # nothing copied
    with pytest.raises(ValueError, match=r"missing key\(s\) \['bias_hh_l1'\]"):
        load_state_dict_into(lstm.params, {k: v for k, v in sd.items() if k != "bias_hh_l1"})
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['foo'\]"):
        load_state_dict_into(lstm.params, {**sd, "foo": np.zeros(1)})
    with pytest.raises(ValueError, match="prefix 'lstm.'"):
        load_state_dict_into(lstm.params, {"lstm." + k: v for k, v in sd.items()})
    with pytest.raises(TypeError, match="floating-point"):
        load_state_dict_into(lstm.params, {**sd, "bias_ih_l0": np.zeros(16, int)})
    with pytest.raises(TypeError, match="mapping"):
        load_state_dict_into(lstm.params, list(sd.items()))
    res = load_state_dict_into(lstm.params, {"bias_ih_l0": sd["bias_ih_l0"], "x": 1.0},
                               strict=False)
    assert res.unexpected_keys == ["x"] and "bias_ih_l0" not in res.missing_keys
    assert np.array_equal(lstm.params["bias_ih_l0"], sd["bias_ih_l0"])
    assert np.array_equal(lstm.params["bias_ih_l1"], before["bias_ih_l1"])
    load_state_dict_into(lstm.params, {k: v.astype(np.float32) for k, v in sd.items()})
    assert lstm.params["weight_ih_l0"].dtype == np.float64  # widened exactly
    assert np.array_equal(lstm.params["weight_ih_l0"],
                          sd["weight_ih_l0"].astype(np.float32).astype(np.float64))
    before = {k: v.copy() for k, v in lstm.params.items()}
    with pytest.raises(ValueError, match=r"'weight_hh_l0'\]: expected finite values, got 1"):
        load_state_dict_into(lstm.params, {**sd, "weight_hh_l0": np.where(
            np.arange(64).reshape(16, 4) == 5, np.nan, sd["weight_hh_l0"])})
    lstm32 = LSTM(3, 4, 2, dtype=np.float32, rng=0)
    with pytest.raises(TypeError, match="expected dtype float32.*got float64"):
        load_state_dict_into(lstm32.params, sd)
    assert all(np.array_equal(before[k], lstm.params[k]) for k in before)


# ---------------------------------------------------------------------- safetensors format


def handmade_file(path, header: dict, data: bytes, pad=b""):
    head = json.dumps(header).encode() + pad
    path.write_bytes(len(head).to_bytes(8, "little") + head + data)
    return path


def test_reads_a_file_built_by_hand_from_the_format_description(tmp_path):
    a = np.array([[1.5, -2.0], [3.25, 0.0]], "<f8")
    b = np.array([7, -8, 9], "<i4")
    bf16 = np.array([1.0, -2.5, 3.140625], np.float32)  # exactly representable in bfloat16
    bf16_bytes = (bf16.view("<u4") >> 16).astype("<u2").tobytes()
    header = {"b": {"dtype": "I32", "shape": [3], "data_offsets": [16 + 32, 16 + 32 + 12]},
              "__metadata__": {"k": "v"},
              "a": {"dtype": "F64", "shape": [2, 2], "data_offsets": [0, 32]},
              "c": {"dtype": "BF16", "shape": [3], "data_offsets": [32, 38]},
              "d": {"dtype": "U8", "shape": [0], "data_offsets": [38, 38]}}
    data = a.tobytes() + bf16_bytes + b"\0" * 10 + b.tobytes()
    header["c"]["data_offsets"] = [32, 38]
    header["pad"] = {"dtype": "U8", "shape": [10], "data_offsets": [38, 48]}
    header["b"]["data_offsets"] = [48, 60]
    p = handmade_file(tmp_path / "h.safetensors", header, data, pad=b"   ")
    got = load_safetensors(p)
    assert list(got) == ["b", "a", "c", "d", "pad"]  # header order
    assert got["a"].dtype == np.float64 and np.array_equal(got["a"], a)
    assert got["b"].dtype == np.int32 and np.array_equal(got["b"], b)
    assert got["c"].dtype == np.float32 and np.array_equal(got["c"], bf16)
    assert got["d"].shape == (0,)
    assert safetensors_metadata(p) == {"k": "v"}
    got["a"][0, 0] = 9.0  # writeable copies


def test_written_layout_follows_the_format_description(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    p = save_safetensors(tmp_path / "w.safetensors", {"a": a, "s": np.float64(2.5)},
                         {"format": "pt"})
    raw = p.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert (8 + n) % 8 == 0  # data aligned
    header = json.loads(raw[8:8 + n])
    assert header == {"__metadata__": {"format": "pt"},
                      "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                      "s": {"dtype": "F64", "shape": [], "data_offsets": [24, 32]}}
    assert raw[8 + n:] == a.astype("<f4").tobytes() + np.array(2.5, "<f8").tobytes()


def test_round_trip_all_dtypes(tmp_path, rng):
    t = {"f64": rng.standard_normal((2, 3)), "f32": rng.standard_normal(4).astype(np.float32),
         "f16": np.array([1.5, -2.0], np.float16), "i64": np.array(5, np.int64),
         "u8": np.arange(3, dtype=np.uint8), "b": np.array([True, False]),
         "empty": np.zeros((0, 4)), "be": np.arange(3, dtype=">f8"),
         "fortran": np.asfortranarray(rng.standard_normal((3, 2)))}
    got = load_safetensors(save_safetensors(tmp_path / "t.safetensors", t))
    for k, v in t.items():
        assert got[k].shape == v.shape and np.array_equal(got[k], v), k
        assert got[k].dtype == v.dtype.newbyteorder("="), k


def test_writer_refuses_overwrite_and_leaves_no_temporary_files(tmp_path):
    p = tmp_path / "w.safetensors"
    save_safetensors(p, {"a": np.ones(2)})
    first = p.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        save_safetensors(p, {"a": np.zeros(2)})
    assert p.read_bytes() == first
    with pytest.raises(TypeError, match="dtype object"):
        save_safetensors(p, {"a": np.array([None])}, overwrite=True)
    with pytest.raises(TypeError, match="str keys and values"):
        save_safetensors(p, {"a": np.ones(1)}, {"n": 1}, overwrite=True)
    with pytest.raises(ValueError, match="not allowed"):
        save_safetensors(p, {"__metadata__": np.ones(1)}, overwrite=True)
    assert p.read_bytes() == first
    save_safetensors(p, {"a": np.zeros(2)}, overwrite=True)
    assert np.array_equal(load_safetensors(p)["a"], np.zeros(2))
    with pytest.raises(IsADirectoryError):
        save_safetensors(tmp_path, {"a": np.ones(1)}, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["w.safetensors"]
    with pytest.raises(FileExistsError):
        save_npz(p, {"a": np.ones(1)})


def _valid(tmp_path, **changes):
    header = {"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]},
              "b": {"dtype": "F32", "shape": [1], "data_offsets": [16, 20]}}
    for k, v in changes.items():
        header[k] = v
    return header


@pytest.mark.parametrize("header, data, match", [
    ({"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 8]}}, bytes(8),
     "do not hold F64"),
    ({"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
      "b": {"dtype": "F64", "shape": [1], "data_offsets": [4, 12]}}, bytes(12),
     "contiguous"),
    ({"a": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}}, bytes(16), "contiguous"),
    ({"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}, bytes(12),
     "trailing data"),
    ({"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}}, bytes(8),
     "inside the 8-byte buffer"),
    ({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8),
     "unsupported dtype"),
    ({"a": {"dtype": "F64", "shape": [-1], "data_offsets": [0, 8]}}, bytes(8), "shape"),
    ({"a": {"dtype": "F64", "shape": [1]}}, bytes(8), "keys dtype, shape, data_offsets"),
    ({"__metadata__": {"a": 1}}, b"", "__metadata__ must map str to str"),
    ({"a": 1, "b": "x"}, b"", "expected an entry with keys"),
])
def test_reader_refuses_malformed_files(tmp_path, header, data, match):
    p = tmp_path / "bad.safetensors"
    head = json.dumps(header).encode()
    p.write_bytes(len(head).to_bytes(8, "little") + head + data)
    with pytest.raises(ValueError, match=match):
        load_safetensors(p)


def test_reader_refuses_other_files(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"abc")
    with pytest.raises(ValueError, match="less than the 8-byte"):
        load_safetensors(p)
    p.write_bytes((2**40).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="exceeds the limit"):
        load_safetensors(p)
    p.write_bytes((100).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="truncated"):
        load_safetensors(p)
    p.write_bytes((2).to_bytes(8, "little") + b"[]")
    with pytest.raises(ValueError, match="does not start with"):
        load_safetensors(p)
    p.write_bytes((3).to_bytes(8, "little") + b"{x}")
    with pytest.raises(ValueError, match="invalid safetensors header"):
        load_safetensors(p)
    head = b'{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"a":{}}'
    p.write_bytes(len(head).to_bytes(8, "little") + head)
    with pytest.raises(ValueError, match="duplicate key 'a'"):
        load_safetensors(p)
    with pytest.raises(ValueError, match="not a regular file"):
        load_safetensors(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_safetensors(tmp_path / "missing.safetensors")
    np.savez(tmp_path / "c.npz", a=np.ones(2))
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_safetensors(tmp_path / "c.npz")


def test_safetensors_package_reads_ours_and_writes_what_we_read(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    t = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(3).astype(np.float32),
         "i": np.arange(4, dtype=np.int64), "m": np.array([True])}
    ours = save_safetensors(tmp_path / "ours.safetensors", t, {"format": "np", "x": "y"})
    got = st.load_file(str(ours))
    assert sorted(got) == sorted(t)
    assert all(got[k].dtype == t[k].dtype and np.array_equal(got[k], t[k]) for k in t)
    theirs = tmp_path / "theirs.safetensors"
    st.save_file(t, str(theirs), metadata={"format": "np"})
    back = load_safetensors(theirs)
    assert all(back[k].dtype == t[k].dtype and np.array_equal(back[k], t[k]) for k in t)
    assert safetensors_metadata(theirs) == {"format": "np"}
    from safetensors import safe_open

    with safe_open(str(ours), framework="np") as f:
        assert f.metadata() == {"format": "np", "x": "y"}


# ------------------------------------------------------------------------ PyTorch hand-off


@pytest.mark.parametrize("tag", ["f64", "f32"])
def test_file_saved_by_pytorch_reproduces_pytorch_outputs(tag):
    cfg, a = case(TORCH, f"from_torch_{tag}")
    sd = load_safetensors(FIX / f"torch_lstm_{tag}.safetensors")
    assert list(sd) == sorted(sd)  # torch's writer orders by name; we keep the header order
    lstm = lstm_with(sd, cfg)
    out, (h_n, c_n), _ = lstm.forward(a["x"], (a["h_0"], a["c_0"]))
    tol = TOL[cfg["dtype"]]
    assert max_err(out, a["output"]) < tol
    assert max_err(h_n, a["h_n"]) < tol and max_err(c_n, a["c_n"]) < tol


def test_file_saved_here_is_the_one_pytorch_loaded(tmp_path):
    """The fixture script loaded ``ours_lstm.safetensors`` with ``safetensors.torch.load_file``
    into ``torch.nn.LSTM(...).load_state_dict`` (the README's lines) and recorded PyTorch's
    outputs. Here the same parameters are written again: the bytes must be identical, and our
    forward must give PyTorch's outputs."""
    cfg, a = case(TORCH, "to_torch")
    params = {k[len("param/"):]: v for k, v in a.items() if k.startswith("param/")}
    lstm = lstm_with(params, cfg)
    metadata = json.loads(str(a["metadata"]))
    p = save_safetensors(tmp_path / "lstm.safetensors", lstm.state_dict(), metadata)
    assert p.read_bytes() == (FIX / "ours_lstm.safetensors").read_bytes()
    out, (h_n, c_n), _ = lstm.forward(a["x"], (a["h_0"], a["c_0"]))
    assert max_err(out, a["output"]) < 1e-12
    assert max_err(h_n, a["h_n"]) < 1e-12 and max_err(c_n, a["c_n"]) < 1e-12


# ----------------------------------------------------------------------------------- CLI


@pytest.fixture
def charlm_checkpoint(tmp_path):
    from lstm_bptt import CharLM, CharVocab, save_checkpoint

    model = CharLM(5, hidden_size=4, num_layers=2, embedding_dim=3, dtype=np.float64, rng=0)
    path = tmp_path / "checkpoint.npz"
    # the fields of Trainer.checkpoint_tree that export reads
    save_checkpoint(path, {"model": {"class": "CharLM", "config": model.config()},
                           "params": {k: np.array(v) for k, v in model.params.items()},
                           "extra": {"vocab": CharVocab.from_text("abcdé").to_array()}})
    return model, path


def test_cli_export_safetensors(charlm_checkpoint, tmp_path, capsys):
    from lstm_bptt.experiments.cli import main

    model, ckpt = charlm_checkpoint
    out = tmp_path / "model.safetensors"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "safetensors",
                 "--out", str(out)]) == 0
    assert "lstm.weight_ih_l0 (16, 3)" in capsys.readouterr().out
    sd = load_safetensors(out)
    assert list(sd) == list(model.params)
    assert all(np.array_equal(sd[k], model.params[k]) for k in sd)
    meta = safetensors_metadata(out)
    assert meta["format"] == "pt" and meta["lstm_bptt.class"] == "CharLM"
    assert json.loads(meta["lstm_bptt.config"]) == model.config()
    assert json.loads(meta["lstm_bptt.vocab"]) == "abcdé"
    from lstm_bptt.models import build_model

    # the metadata is enough to rebuild the model here
    again = build_model(meta["lstm_bptt.class"], json.loads(meta["lstm_bptt.config"]))
    again.load_state_dict(sd)
    ids = np.array([[0, 1], [2, 3]])
    assert np.array_equal(again.forward(ids)[0], model.forward(ids)[0])


@pytest.mark.parametrize("fmt", ["keras", "flax", "cs231n"])
def test_cli_export_other_layouts(charlm_checkpoint, tmp_path, fmt):
    from lstm_bptt import CharLM
    from lstm_bptt.experiments.cli import main

    model, ckpt = charlm_checkpoint
    out = tmp_path / f"model.{fmt}.npz"
    assert main(["export", "--checkpoint", str(ckpt), "--format", fmt, "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as f:
        weights = {k: f[k] for k in f.files}
    other = CharLM(5, hidden_size=4, num_layers=2, embedding_dim=3, dtype=np.float64, rng=1)
    import_weights(other, weights, fmt)
    assert all(np.array_equal(other.params[k], model.params[k]) for k in model.params
               if "bias" not in k)
    ids = np.array([[0, 1], [2, 3], [4, 0]])
    assert max_err(other.forward(ids)[0], model.forward(ids)[0]) < 1e-14


def test_cli_export_refuses_to_replace_and_bad_checkpoints(charlm_checkpoint, tmp_path,
                                                           capsys):
    from lstm_bptt import save_checkpoint
    from lstm_bptt.experiments.cli import main

    _, ckpt = charlm_checkpoint
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"precious")
    args = ["export", "--checkpoint", str(ckpt), "--format", "safetensors", "--out", str(out)]
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert main(args + ["--overwrite"]) == 0
    assert load_safetensors(out)
    for extra in ([], ["--overwrite"]):  # a folder is never a place to write to
        assert main(args[:-1] + [str(tmp_path)] + extra) == 2
        assert "--out: expected a file name, got a directory" in capsys.readouterr().err
    save_checkpoint(tmp_path / "other.npz", {"step": 3})
    assert main(["export", "--checkpoint", str(tmp_path / "other.npz"), "--format", "keras",
                 "--out", str(tmp_path / "k.npz")]) == 2
    assert "not a model checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "k.npz").exists()
    with pytest.raises(SystemExit):
        main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", "x"])


def test_model_exported_by_the_cli_is_a_pytorch_modules_state_dict():
    """``ours_charlm.safetensors`` was written by ``lstm-bptt export`` and loaded (strict) into
    a torch module with attributes embedding, lstm, head (scripts/make_export_fixtures.py);
    its logits are PyTorch's."""
    from lstm_bptt import CharLM

    cfg = json.loads(str(TORCH["charlm/config"]))
    model = CharLM(cfg["V"], hidden_size=cfg["H"], num_layers=cfg["L"],
                   embedding_dim=cfg["E"], dtype=np.float64, rng=0)
    model.load_state_dict(load_safetensors(FIX / "ours_charlm.safetensors"))
    logits, _, _ = model.forward(TORCH["charlm/ids"])
    assert max_err(logits, TORCH["charlm/logits"]) < 1e-12


# -------------------------------------------------------- state_dict on modules and models


def _modules():
    from lstm_bptt import (
        GRU,
        LSTM,
        RNN,
        CharLM,
        Embedding,
        Linear,
        SequenceClassifier,
        SequenceRegressor,
        SequenceTagger,
    )

    return {
        "LSTM": lambda s: LSTM(3, 4, 2, rng=s),
        "LSTM_nobias_f32": lambda s: LSTM(3, 4, bias=False, dtype=np.float32, rng=s),
        "Linear": lambda s: Linear(4, 3, rng=s),
        "Embedding": lambda s: Embedding(5, 2, rng=s),
        "CharLM": lambda s: CharLM(6, hidden_size=4, num_layers=2, embedding_dim=3, rng=s),
        "CharLM_onehot": lambda s: CharLM(6, hidden_size=4, rng=s),
        "SequenceClassifier": lambda s: SequenceClassifier(3, 4, 5, num_layers=2, rng=s),
        "SequenceRegressor": lambda s: SequenceRegressor(3, 4, 2, rng=s),
        "GRU": lambda s: GRU(3, 4, 2, rng=s),
        "SequenceTagger_bidirectional": lambda s: SequenceTagger(3, 4, 5, bidirectional=True,
                                                                 rng=s),
        "CharLM_gru": lambda s: CharLM(6, hidden_size=4, cell="gru", rng=s),
        "SequenceClassifier_bidirectional": lambda s: SequenceClassifier(
            3, 4, 5, cell=LSTM(3, 4, bidirectional=True, rng=s), rng=s),
        "RNN_relu_bidirectional_nobias": lambda s: RNN(3, 4, nonlinearity="relu",
                                                       bidirectional=True, bias=False, rng=s),
    }


# the key lists PyTorch's state_dict() gives for the equivalent modules (from the nn.LSTM /
# nn.Linear / nn.Embedding documentation: attributes weight_ih_l[k], weight_hh_l[k],
# bias_ih_l[k], bias_hh_l[k]; weight, bias; weight)
TORCH_KEYS = {
    "LSTM": ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
             "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"],
    "LSTM_nobias_f32": ["weight_ih_l0", "weight_hh_l0"],
    "Linear": ["weight", "bias"],
    "Embedding": ["weight"],
    "CharLM": ["embedding.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
               "lstm.bias_hh_l0", "lstm.weight_ih_l1", "lstm.weight_hh_l1", "lstm.bias_ih_l1",
               "lstm.bias_hh_l1", "head.weight", "head.bias"],
    "CharLM_onehot": ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
                      "lstm.bias_hh_l0", "head.weight", "head.bias"],
    "SequenceClassifier": ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
                           "lstm.bias_hh_l0", "lstm.weight_ih_l1", "lstm.weight_hh_l1",
                           "lstm.bias_ih_l1", "lstm.bias_hh_l1", "head.weight", "head.bias"],
    "SequenceRegressor": ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
                          "lstm.bias_hh_l0", "head.weight", "head.bias"],
    "GRU": ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
            "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"],
    "SequenceTagger_bidirectional": [
        "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
        "lstm.weight_ih_l0_reverse", "lstm.weight_hh_l0_reverse", "lstm.bias_ih_l0_reverse",
        "lstm.bias_hh_l0_reverse", "head.weight", "head.bias"],
    "CharLM_gru": ["gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0",
                   "head.weight", "head.bias"],
    "SequenceClassifier_bidirectional": [
        "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
        "lstm.weight_ih_l0_reverse", "lstm.weight_hh_l0_reverse", "lstm.bias_ih_l0_reverse",
        "lstm.bias_hh_l0_reverse", "head.weight", "head.bias"],
    "RNN_relu_bidirectional_nobias": ["weight_ih_l0", "weight_hh_l0", "weight_ih_l0_reverse",
                                      "weight_hh_l0_reverse"],
}


@pytest.mark.parametrize("name", sorted(TORCH_KEYS))
def test_state_dict_names_copies_and_in_place_load(name, tmp_path):
    make = _modules()[name]
    a, b = make(0), make(1)
    sd = a.state_dict()
    assert list(sd) == TORCH_KEYS[name]
    assert all(sd[k] is not a.params[k] and np.array_equal(sd[k], a.params[k]) for k in sd)
    sd[next(iter(sd))][...] = 7.0  # a copy: the module does not change
    assert not np.any(a.params[next(iter(sd))] == 7.0)
    ids = {k: id(v) for k, v in b.params.items()}
    parts = {k: v for k, v in b.params.items()}
    path = save_safetensors(tmp_path / "m.safetensors", a)  # state_dict + module_metadata
    assert b.load_state_dict(load_safetensors(path)) == ([], [])
    assert {k: id(v) for k, v in b.params.items()} == ids  # in place: optimizers keep them
    assert all(parts[k] is b.params[k] for k in parts)
    assert all(np.array_equal(b.params[k], a.params[k]) for k in sd)
    for mname, module in getattr(b, "modules", {}).items():  # the modules' own arrays too
        assert all(np.array_equal(v, a.params[f"{mname}.{k}"]) for k, v in module.params.items())
    meta = safetensors_metadata(path)
    assert meta == module_metadata(a) and meta["lstm_bptt.class"] == type(a).__name__
    config = json.loads(meta["lstm_bptt.config"])
    if hasattr(a, "config"):
        assert config == json.loads(json.dumps(a.config()))
    else:
        assert all(config[k] == getattr(a, k) for k in config
                   if k not in ("cell", "cell_options"))
        if name.startswith("RNN"):
            assert config["cell"] == "rnn" and config["cell_options"]["nonlinearity"] == "relu"


def test_load_state_dict_errors_name_the_key():
    from lstm_bptt import CharLM

    m = CharLM(6, hidden_size=4, embedding_dim=3, rng=0)
    sd = m.state_dict()
    with pytest.raises(ValueError, match=r"state_dict for CharLM.*missing key\(s\) "
                                         r"\['head.bias'\]"):
        m.load_state_dict({k: v for k, v in sd.items() if k != "head.bias"})
    with pytest.raises(ValueError, match=r"state_dict\['head.weight'\]: expected shape \(6, 4\)"):
        m.load_state_dict({**sd, "head.weight": sd["head.weight"].T})
    with pytest.raises(ValueError, match=r"prefix 'lstm.'"):
        m.lstm.load_state_dict({k: v for k, v in sd.items() if k.startswith("lstm.")})
    res = m.lstm.load_state_dict(sd, strict=False)
    assert sorted(res.missing_keys) == sorted(m.lstm.params) and len(res.unexpected_keys) == 7


def test_pytorch_file_loads_into_our_lstm_by_the_method():
    cfg, a = case(TORCH, "from_torch_f64")
    lstm = LSTM(cfg["D"], cfg["H"], cfg["L"])
    lstm.load_state_dict(load_safetensors(FIX / "torch_lstm_f64.safetensors"))
    out, _, _ = lstm.forward(a["x"], (a["h_0"], a["c_0"]))
    assert max_err(out, a["output"]) < 1e-12


# ------------------------------------------------------------ bidirectional and proj_size


def test_pytorch_bidirectional_proj_size_file_loads_strictly():
    """``torch.nn.LSTM(3, 5, 2, bidirectional=True, proj_size=2)`` saved by
    ``safetensors.torch.save_file``: the same names (``*_reverse``, ``weight_hr_l{k}``) and
    shapes here, and PyTorch's outputs."""
    cfg, a = case(TORCH, "from_torch_bidir_proj")
    lstm = LSTM(cfg["D"], cfg["H"], cfg["L"], bidirectional=True, proj_size=cfg["proj_size"])
    sd = load_safetensors(FIX / "torch_lstm_bidir_proj.safetensors")
    assert sorted(sd) == sorted(lstm.params)
    lstm.load_state_dict(sd)
    out, (h_n, c_n), _ = lstm.forward(a["x"], (a["h_0"], a["c_0"]))
    assert max_err(out, a["output"]) < 1e-12
    assert max_err(h_n, a["h_n"]) < 1e-12 and max_err(c_n, a["c_n"]) < 1e-12
    with pytest.raises(ValueError, match="proj_size"):
        export_weights(lstm, "keras")


def test_keras_bidirectional_stack_matches_after_conversion():
    cfg, a = case(KF, "keras_bidir_f64")
    w = weights_of(a)
    sd = lstm_from_keras(w)
    assert sorted(k for k in sd if k.endswith("_reverse")) == sorted(
        f"{n}_l{k}_reverse" for k in range(cfg["L"])
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    lstm = LSTM(cfg["D"], cfg["H"], cfg["L"], batch_first=True, bidirectional=True)
    lstm.load_state_dict(sd)
    out, (h_n, c_n), _ = lstm.forward(a["x"], (a["h_0"], a["c_0"]))
    assert max_err(out, a["output"]) < 1e-12
    assert max_err(h_n, a["h_n"]) < 1e-12 and max_err(c_n, a["c_n"]) < 1e-12
    back = export_weights(lstm, "keras")
    assert sorted(back) == sorted(w)
    assert all(np.array_equal(back[k], w[k]) for k in w)


# -------------------------------------------------------------------------------------- GRU


def torch_gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    """PyTorch's nn.GRU equations (its documentation), one layer, gates r, z, n. x (T, B, D)."""
    H = h0.shape[1]
    h, hs = h0, []
    for t in range(x.shape[0]):
        gi = x[t] @ w_ih.T + b_ih  # (B, 3H)
        gh = h @ w_hh.T + b_hh
        r = sigmoid(gi[:, :H] + gh[:, :H])
        z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs), h


def run_torch_gru(sd, x, h_0, L):
    """Stacked layers of :func:`torch_gru_forward`; x (B, T, D) -> (B, T, H), h_n (L, B, H)."""
    inp, h_n = x.transpose(1, 0, 2), []
    for k in range(L):
        H = sd[f"weight_hh_l{k}"].shape[1]
        zeros = np.zeros(3 * H)
        inp, h = torch_gru_forward(inp, h_0[k], sd[f"weight_ih_l{k}"], sd[f"weight_hh_l{k}"],
                                   sd.get(f"bias_ih_l{k}", zeros), sd.get(f"bias_hh_l{k}", zeros))
        h_n.append(h)
    return inp.transpose(1, 0, 2), np.stack(h_n)


@pytest.mark.parametrize("name", ["keras_gru_f64", "keras_gru_f64_nobias", "flax_gru_f64"])
def test_gru_converters_reproduce_keras_and_flax(name):
    cfg, a = case(KF, name)
    w = weights_of(a)
    if name.startswith("keras"):
        sd, back = gru_from_keras(w, bias=cfg["bias"]), gru_to_keras
    else:
        sd, back = gru_from_flax(w), gru_to_flax
    out, h_n = run_torch_gru(sd, a["x"], a["h_0"], cfg["L"])
    assert max_err(out, a["output"]) < 1e-12 and max_err(h_n, a["h_n"]) < 1e-12
    again = back(sd)
    assert sorted(again) == sorted(w) and all(np.array_equal(again[k], w[k]) for k in w)


def test_gru_keras_is_exact_both_ways_and_refuses_lstm_shapes(rng):
    H, D = 3, 2
    sd = {"weight_ih_l0": rng.standard_normal((3 * H, D)),
          "weight_hh_l0": rng.standard_normal((3 * H, H)),
          "bias_ih_l0": rng.standard_normal(3 * H), "bias_hh_l0": rng.standard_normal(3 * H)}
    back = gru_from_keras(gru_to_keras(sd))  # both biases kept: bitwise
    assert all(np.array_equal(back[k], sd[k]) for k in sd)
    with pytest.raises(ValueError, match=r"reset_after=False"):
        gru_from_keras({**gru_to_keras(sd), "l0/bias": np.zeros(3 * H)})
    with pytest.raises(ValueError, match=r"expected GRU layer weights"):
        gru_to_flax(LSTM(2, 3, rng=0).params)


@pytest.mark.parametrize("name", ["keras_gru_f64", "keras_gru_f64_nobias", "flax_gru_f64"])
def test_our_gru_layer_after_import_matches_keras_and_flax(name):
    from lstm_bptt import GRU

    cfg, a = case(KF, name)
    fmt = name.split("_")[0]
    gru = GRU(cfg["D"], cfg["H"], cfg["L"], bias=cfg["bias"], batch_first=True)
    import_weights(gru, weights_of(a), fmt)
    out, h_n, _ = gru.forward(a["x"], a["h_0"])
    assert max_err(out, a["output"]) < 1e-12 and max_err(h_n, a["h_n"]) < 1e-12
    back = export_weights(gru, fmt)
    assert all(np.array_equal(back[k], v) for k, v in weights_of(a).items())
    with pytest.raises(ValueError, match="no converter for 'gru' layers"):
        export_weights(gru, "cs231n")


# -------------------------------------------------------------------------------------- RNN


@pytest.mark.parametrize("name", ["keras_rnn_f64", "keras_rnn_relu_f64_nobias", "flax_rnn_f64"])
def test_our_rnn_layer_after_import_matches_keras_and_flax(name):
    from lstm_bptt import RNN

    cfg, a = case(KF, name)
    fmt = name.split("_")[0]
    rnn = RNN(cfg["D"], cfg["H"], cfg["L"], nonlinearity=cfg["nonlinearity"], bias=cfg["bias"],
              batch_first=True)
    import_weights(rnn, weights_of(a), fmt)
    out, h_n, _ = rnn.forward(a["x"], a["h_0"])
    assert max_err(out, a["output"]) < 1e-12 and max_err(h_n, a["h_n"]) < 1e-12
    back = export_weights(rnn, fmt)
    assert sorted(back) == sorted(weights_of(a))
    assert all(np.array_equal(back[k], v) for k, v in weights_of(a).items())
    with pytest.raises(ValueError, match="no converter for 'rnn' layers"):
        export_weights(rnn, "cs231n")


def test_rnn_converters_refuse_other_shapes():
    with pytest.raises(ValueError, match=r"expected RNN layer weights"):
        rnn_to_keras(LSTM(2, 3, rng=0).params)
    with pytest.raises(ValueError, match=r"unexpected key 'l0/x/kernel'"):
        rnn_from_flax({"l0/x/kernel": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"recurrent_kernel'\]: expected shape \(H, H\)"):
        rnn_from_keras({"l0/kernel": np.zeros((2, 3)), "l0/recurrent_kernel": np.zeros((3, 4))})


@pytest.mark.parametrize("options", [{"peephole": True}, {"learn_initial_state": True}])
def test_parameters_without_an_equivalent_are_refused_not_dropped(options):
    lstm = LSTM(3, 4, rng=0, **options)
    extra = [k for k in lstm.params if not k.startswith(("weight_i", "weight_h", "bias_"))]
    assert extra  # the variant has parameters Keras / Flax / CS231n cannot hold
    for fmt in ("keras", "flax", "cs231n"):
        with pytest.raises(ValueError, match=f"{extra[0]!r} has no equivalent"):
            export_weights(lstm, fmt)
