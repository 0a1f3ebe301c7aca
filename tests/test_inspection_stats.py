"""Gate saturation, text properties, unit ranking and the LSTMVis export, on hand-built data."""

import numpy as np
import pytest

from lstm_bptt.inspection import export_lstmvis, gate_saturation, rank_units, text_properties


def test_gate_saturation_counts_hand_built_steps():
    T, B = 4, 2  # 8 steps per unit
    i = np.empty((T, B, 3))
    i[..., 0] = 0.05  # always left-saturated
    i[..., 1] = [[0.95, 0.5]] * T  # right-saturated in batch row 0 only: 4 of 8
    i[..., 2] = [[0.1, 0.9]] * T  # exactly on the thresholds: neither (strict < and >)
    f = np.full((T, B, 3), 0.5)
    f[0, 0, 2] = 0.01  # 1 of 8 left
    f[3, 1, 2] = 0.99  # 1 of 8 right
    g = np.full((T, B, 3), -1.0)  # tanh gate: not a sigmoid gate, ignored
    sat = gate_saturation({"i": i, "f": f, "g": g, "h": g})
    assert set(sat) == {"i", "f"}
    np.testing.assert_array_equal(sat["i"][0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(sat["i"][1], [0.0, 0.5, 0.0])
    np.testing.assert_array_equal(sat["f"][0], [0.0, 0.0, 0.125])
    np.testing.assert_array_equal(sat["f"][1], [0.0, 0.0, 0.125])


def test_gate_saturation_other_thresholds_and_gru_gates():
    z = np.array([[0.2], [0.3], [0.75], [0.8]])  # (N, H=1)
    sat = gate_saturation({"z": z, "r": 1 - z}, low=0.25, high=0.75)
    assert sat["z"][0][0] == 0.25 and sat["z"][1][0] == 0.25  # 0.2 < .25; 0.8 > .75 (0.75 not)
    assert sat["r"][0][0] == 0.25 and sat["r"][1][0] == 0.25


@pytest.mark.parametrize("bad, match", [
    ({"i": np.full((2, 2), 1.5)}, "must lie in"),
    ({"g": np.zeros((2, 2))}, "sigmoid gates"),
])
def test_gate_saturation_refuses_non_gates(bad, match):
    with pytest.raises(ValueError, match=match):
        gate_saturation(bad)


def test_gate_saturation_refuses_bad_thresholds():
    with pytest.raises(ValueError, match="low < high"):
        gate_saturation({"i": np.zeros((2, 2))}, low=0.9, high=0.1)


def test_text_properties_by_hand():
    text = 'a("b")\n  [x]\n"q\nz'
    p = text_properties(text)
    #                 a  (  "  b  "  )  \n sp sp [  x  ]  \n "  q  \n z
    quote = [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    depth = [0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]
    col = [1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 0, 1, 2, 0, 1]
    indent = [0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(p["inside quotes"], quote)
    np.testing.assert_array_equal(p["bracket depth"], depth)
    np.testing.assert_array_equal(p["inside brackets"], np.array(depth) > 0)
    np.testing.assert_array_equal(p["position in line"], col)
    np.testing.assert_array_equal(p["indentation"], indent)


def test_text_properties_unmatched_closer_and_type():
    np.testing.assert_array_equal(text_properties("))(")["bracket depth"], [0, 0, 1])
    with pytest.raises(TypeError, match="text: expected a str"):
        text_properties(b"abc")


def test_rank_units_finds_a_planted_unit():
    rng = np.random.default_rng(0)
    N = 400
    props = {"a": (rng.random(N) < 0.3).astype(float), "b": rng.normal(size=N),
             "constant": np.ones(N)}
    h = rng.normal(size=(N, 6))
    h[:, 4] = 2.0 * props["a"] + 0.1 * rng.normal(size=N)  # tracks a
    c = rng.normal(size=(N, 3))
    c[:, 1] = -props["b"]  # anti-tracks b exactly
    c[:, 2] = 0.0  # constant unit: r = 0, no division by zero
    ranking = rank_units({(0, "h"): h, (0, "tanh_c"): c}, props, top=2)
    by = {}
    for r in ranking:
        by.setdefault(r["property"], []).append(r)
    assert set(by) == {"a", "b"}  # the constant property is skipped
    assert by["a"][0]["key"] == (0, "h") and by["a"][0]["unit"] == 4 and by["a"][0]["r"] > 0.99
    assert by["b"][0]["key"] == (0, "tanh_c") and by["b"][0]["unit"] == 1
    assert by["b"][0]["r"] == pytest.approx(-1.0, abs=1e-12)
    assert len(by["a"]) == 2 and abs(by["a"][1]["r"]) <= abs(by["a"][0]["r"])


def test_rank_units_refuses_wrong_length():
    with pytest.raises(ValueError, match=r"expected \(5, H\)"):
        rank_units({"x": np.zeros((4, 2))}, {"p": np.arange(5.0)})


def test_export_lstmvis_layout(tmp_path):
    h5py = pytest.importorskip("h5py")
    ids = np.array([0, 1, 2, 1])
    c = np.arange(8.0).reshape(4, 2)
    values = [{"h": c / 10, "c": c}, {"h": -c / 10}]  # layer 2 without a cell state (GRU-like)
    yml = export_lstmvis(tmp_path, ids, ["a", " ", "\n"], values, name="demo")
    with h5py.File(tmp_path / "states.hdf5") as f:
        np.testing.assert_array_equal(f["states1"][...], c)
        np.testing.assert_allclose(f["output1"][...], c / 10, rtol=1e-6)
        np.testing.assert_allclose(f["states2"][...], -c / 10, rtol=1e-6)
    with h5py.File(tmp_path / "train.hdf5") as f:
        np.testing.assert_array_equal(f["words"][...], ids)
    # LSTMVis reads "token id" lines split on whitespace
    lines = (tmp_path / "words.dict").read_text(encoding="utf-8").splitlines()
    assert [ln.split() for ln in lines] == [["a", "0"], ["<space>", "1"], ["<nl>", "2"]]
    text = yml.read_text()
    assert "path: states1" in text and "path: output2, transform: none" in text
    assert "dict_file: words" in text and "name: demo" in text


def test_export_lstmvis_refuses_mismatched_lengths(tmp_path):
    pytest.importorskip("h5py")
    with pytest.raises(ValueError, match="expected 3 steps"):
        export_lstmvis(tmp_path, np.array([0, 1, 0]), ["a", "b"], [{"h": np.zeros((2, 1))}])


def test_export_lstmvis_without_h5py_says_how_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("No module named 'h5py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(ImportError, match=r'pip install "lstm-bptt\[lstmvis\]"'):
        export_lstmvis(tmp_path, np.array([0]), ["a"], [{"h": np.zeros((1, 1))}])
