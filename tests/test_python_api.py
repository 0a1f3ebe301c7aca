"""The Python API as a PyTorch user reaches for it: loading a trained model, callable layers
and models, float32 gradients into a float64 layer, dropout with one layer."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_bptt.checkpoint import CheckpointError, save_checkpoint
from lstm_bptt.data import CharVocab
from lstm_bptt.models import CharLM, SequenceClassifier

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
