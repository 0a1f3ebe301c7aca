"""The Python API as a PyTorch user reaches for it: loading a trained model, callable layers
and models, float32 gradients into a float64 layer, dropout with one layer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lstm_bptt.checkpoint import CheckpointError, save_checkpoint
from lstm_bptt.data import CharVocab
from lstm_bptt.layers import Embedding, Linear
from lstm_bptt.models import CharLM, SequenceClassifier, SequenceRegressor, SequenceTagger
from lstm_bptt.recurrent import GRU, LSTM, RNN

TEXT = "hello world, hello lstm. " * 400


# --------------------------------------------------------------------- CharLM.from_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint written by `lstm-bptt train` (2 steps, H = 8)."""
    from lstm_bptt.checkpoint import load_checkpoint
    from lstm_bptt.experiments.cli import main

    out = tmp_path_factory.mktemp("from_checkpoint")
    text = out / "hw.txt"
    text.write_text(TEXT)
    code = main(["train", "--text", str(text), "--steps", "2", "--hidden-size", "8", "--quiet",
                 "--no-baselines", "--sample-length", "0", "--out-dir", str(out / "run")])
    assert code == 0
    path = out / "run" / "checkpoint.npz"
    return path, load_checkpoint(path)


def test_from_checkpoint_gives_the_trained_model_and_its_vocabulary(trained):
    path, tree = trained
    model, vocab = CharLM.from_checkpoint(path)
    assert isinstance(model, CharLM) and model.hidden_size == 8
    assert model.config() == tree["model"]["config"]
    assert set(model.params) == set(tree["params"])
    for name, value in tree["params"].items():
        assert model.params[name].dtype == value.dtype
        np.testing.assert_array_equal(model.params[name], value)
    assert isinstance(vocab, CharVocab) and len(vocab) == model.vocab_size
    assert vocab.chars == sorted(set(TEXT))
    ids = vocab.encode("hello lstm")
    assert vocab.decode(ids) == "hello lstm"
    assert vocab.decode(model.sample(5, ids, rng=0)).isprintable()


def test_from_checkpoint_refuses_a_classifier_checkpoint(tmp_path):
    clf = SequenceClassifier(3, 4, 2, rng=0)
    path = save_checkpoint(tmp_path / "clf.npz", {
        "model": {"class": "SequenceClassifier", "config": clf.config()},
        "params": dict(clf.params), "extra": {"task": "toy"}})
    with pytest.raises(ValueError, match="expected a checkpoint of a CharLM.*"
                                         "got model/class 'SequenceClassifier'"):
        CharLM.from_checkpoint(path)


def test_from_checkpoint_refuses_a_charlm_without_vocabulary(tmp_path):
    lm = CharLM(5, 4, rng=0)
    path = save_checkpoint(tmp_path / "lm.npz", {
        "model": {"class": "CharLM", "config": lm.config()}, "params": dict(lm.params)})
    with pytest.raises(ValueError, match="extra/vocab"):
        CharLM.from_checkpoint(path)


def test_from_checkpoint_refuses_a_vocabulary_of_another_size(tmp_path):
    lm = CharLM(5, 4, rng=0)
    path = save_checkpoint(tmp_path / "lm.npz", {
        "model": {"class": "CharLM", "config": lm.config()}, "params": dict(lm.params),
        "extra": {"vocab": CharVocab.from_text("abc").to_array()}})
    with pytest.raises(ValueError, match=r"extra/vocab: expected 5 integer code points"):
        CharLM.from_checkpoint(path)


def test_from_checkpoint_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("not a zip")
    with pytest.raises(CheckpointError):
        CharLM.from_checkpoint(path)


def test_char_vocab_given_code_points_names_from_array():
    codes = CharVocab.from_text("abc").to_array()
    with pytest.raises((TypeError, ValueError), match="CharVocab.from_array"):
        CharVocab(codes)


# --------------------------------------------------------------- the other float precision


def _no_warning(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def test_layer_backward_converts_float32_gradients_like_forward_converts_inputs():
    lstm = LSTM(5, 6, batch_first=True, rng=0)  # float64
    x = np.random.default_rng(1).standard_normal((2, 3, 5))
    with pytest.warns(UserWarning, match="x: float32 input converted to the module's float64"):
        out, (h_n, c_n), cache = lstm.forward(x.astype(np.float32))
    r = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
    dh = np.ones(h_n.shape, np.float32)
    with pytest.warns(UserWarning, match="doutput: float32 input converted"):
        dx, dh0, grads = lstm.backward(r, cache, (dh.astype(np.float64), dh.astype(np.float64)))
    want = _no_warning(lstm.backward, r.astype(np.float64), cache,
                       (dh.astype(np.float64), dh.astype(np.float64)))
    assert dx.dtype == np.float64 and grads["weight_hh_l0"].dtype == np.float64
    np.testing.assert_array_equal(dx, want[0])
    for name in grads:
        np.testing.assert_array_equal(grads[name], want[2][name])
    with pytest.warns(UserWarning, match="dh_n: float32 input converted") as record:
        got = lstm.backward(None, cache, (dh, dh.astype(np.float64)))
    assert record[0].filename == __file__  # the warning points at the call
    want = _no_warning(lstm.backward, None, cache, (dh.astype(np.float64),) * 2)
    np.testing.assert_array_equal(got[1][0], want[1][0])
    with pytest.raises(TypeError, match="doutput: expected dtype float32 or float64, got int64"):
        lstm.backward(np.ones(out.shape, np.int64), cache)


@pytest.mark.parametrize("cls", [GRU, RNN])
def test_one_state_layers_convert_float64_gradients_into_float32(cls):
    layer = cls(3, 4, dtype=np.float32, rng=0)
    out, h_n, cache = layer.forward(np.ones((2, 1, 3), np.float32))
    with pytest.warns(UserWarning, match="doutput: float64 input converted to the module's "
                                         "float32"):
        dx, _, grads = layer.backward(np.ones(out.shape), cache)
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(
        dx, _no_warning(layer.backward, np.ones(out.shape, np.float32), cache)[0])


def test_linear_and_embedding_backward_convert_the_other_precision():
    lin = Linear(3, 2, rng=0)
    y, cache = lin.forward(np.ones((4, 3)))
    with pytest.warns(UserWarning, match="dy: float32 input converted"):
        dx, grads = lin.backward(np.ones(y.shape, np.float32), cache)
    assert dx.dtype == np.float64 and grads["weight"].dtype == np.float64
    np.testing.assert_array_equal(dx, lin.backward(np.ones(y.shape), cache)[0])
    with pytest.raises(TypeError, match="dy: expected dtype float32 or float64, got int64"):
        lin.backward(np.ones(y.shape, np.int64), cache)
    emb = Embedding(4, 3, rng=0)
    out, cache = emb.forward(np.array([[0, 3]]))
    with pytest.warns(UserWarning, match="dout: float32 input converted"):
        g = emb.backward(np.ones(out.shape, np.float32), cache)
    np.testing.assert_array_equal(g["weight"], emb.backward(np.ones(out.shape), cache)["weight"])


def test_models_convert_float_inputs_and_targets_of_the_other_precision():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 4))
    reg = SequenceRegressor(4, 5, 2, rng=0)
    y = rng.standard_normal((3, 2, 2))
    want = _no_warning(reg.loss, x, y)
    with pytest.warns(UserWarning) as record:
        got = reg.loss(x.astype(np.float32), y.astype(np.float32))
    assert {str(w.message).split(":")[0] for w in record} == {"inputs", "targets"}
    assert got[0] == pytest.approx(want[0], rel=1e-6)
    clf = SequenceClassifier(4, 5, 3, rng=0)
    with pytest.warns(UserWarning, match="inputs: float32 input converted"):
        logits = clf(x.astype(np.float32))[0]
    assert logits.dtype == np.float64
    with pytest.raises(TypeError, match="targets: expected dtype float32 or float64, got int64"):
        reg.loss(x, np.ones((3, 2, 2), np.int64))


# ------------------------------------------------------------------ callable layers, models


def _assert_same(got, want):
    """Equal outputs and states (a cache is compared by being usable, not by value)."""
    if isinstance(want, np.ndarray):
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, tuple) and not hasattr(want, "_fields"):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _assert_same(g, w)


@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
def test_recurrent_layers_are_callable_like_forward(cls):
    layer = cls(3, 4, num_layers=2, batch_first=True, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 5, 3))
    out, h_n, cache = layer(x)
    want = layer.forward(x)
    _assert_same((out, h_n), want[:2])
    # the cache from a call serves backward, and so do hx and lengths
    np.testing.assert_array_equal(layer.backward(np.ones(out.shape), cache)[0],
                                  layer.backward(np.ones(out.shape), want[2])[0])
    lengths = np.array([5, 2])
    _assert_same(layer(x, h_n, lengths=lengths)[:2],
                 layer.forward(x, h_n, lengths=lengths)[:2])


def test_linear_and_embedding_are_callable_like_forward():
    lin = Linear(3, 2, rng=0)
    x = np.random.default_rng(1).standard_normal((4, 3))
    np.testing.assert_array_equal(lin(x)[0], lin.forward(x)[0])
    emb = Embedding(5, 3, rng=0)
    ids = np.array([[0, 4], [2, 2]])
    np.testing.assert_array_equal(emb(ids)[0], emb.forward(ids)[0])


def test_models_are_callable_like_forward():
    rng = np.random.default_rng(0)
    lm = CharLM(6, 5, embedding_dim=3, rng=0)
    ids = rng.integers(0, 6, (4, 2))
    logits, state, _ = lm(ids)
    _assert_same((logits, state), lm.forward(ids)[:2])
    _assert_same(lm(ids, state)[:2], lm.forward(ids, state)[:2])
    x = rng.standard_normal((4, 2, 3))
    lengths = np.array([4, 3])
    for model in (SequenceClassifier(3, 5, 2, rng=0), SequenceRegressor(3, 5, 2, rng=0),
                  SequenceTagger(3, 5, 2, rng=0)):
        _assert_same(model(x)[:2], model.forward(x)[:2])
        _assert_same(model(x, None, lengths)[:2], model.forward(x, None, lengths)[:2])


# ------------------------------------------------------------------ dropout with one layer


@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
def test_dropout_with_one_layer_warns_as_in_pytorch(cls):
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1") \
            as record:
        cls(5, 6, dropout=0.5)
    assert record[0].filename == __file__  # points at the user's line


def test_charlm_with_one_layer_and_dropout_does_not_warn():
    """CharLM's dropout also acts before the head, so with one layer it is not a no-op."""
    model = _no_warning(CharLM, 5, 4, num_layers=1, dropout=0.2, rng=0)
    assert model.dropout == 0.2 and model.recurrent.dropout == 0.0
    ids = np.array([[0, 1], [2, 3]])
    assert not np.array_equal(model.forward(ids, train=True)[0], model.forward(ids)[0])


def test_sequence_model_with_one_layer_and_dropout_warns():
    """Its dropout acts only between recurrent layers: with one layer it does nothing."""
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        SequenceClassifier(3, 4, 2, num_layers=1, dropout=0.2, rng=0)
