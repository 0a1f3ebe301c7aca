"""Inputs that once gave a deep traceback or a silently wrong result: each now raises the
documented error naming the argument, what was expected and what came."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lstm_bptt as L
from lstm_bptt.experiments.gradcheck_suite import run_suite

IDS = np.array([[0, 1], [2, 3], [4, 0]])  # (T=3, B=2), V = 5
X = np.random.default_rng(0).standard_normal((4, 2, 3))


def charlm(**kw):
    return L.CharLM(5, 6, dtype=np.float64, rng=0, **kw)


def _sgd():
    return L.SGD({"w": np.zeros(2)}, lr=0.1)


CASES = {
    "regressor many_to_one str": (lambda: L.SequenceRegressor(3, 4, many_to_one="no"),
                                  TypeError, "many_to_one: expected True or False, got 'no'"),
    "state_at -1": (lambda: charlm().loss(IDS, IDS, state_at=-1), ValueError,
                    r"state_at: expected an int in 0..T = 3, got -1"),
    "state_at T+1": (lambda: charlm().loss(IDS, IDS, state_at=4), ValueError,
                     r"state_at: expected an int in 0..T = 3, got 4"),
    "state_at float": (lambda: charlm().loss(IDS, IDS, state_at=1.5), TypeError,
                       "state_at: expected an int"),
    "train str (loss)": (lambda: charlm().loss(IDS, IDS, train="no"), TypeError,
                         "train: expected True or False, got 'no'"),
    "train str (forward)": (lambda: charlm(dropout=0.5).forward(IDS, train="false"), TypeError,
                            "train: expected True or False, got 'false'"),
    "evaluate batch_size 0": (lambda: charlm().evaluate(np.arange(20) % 5, batch_size=0),
                              ValueError, "batch_size: expected a positive int, got 0"),
    "evaluate k1 0": (lambda: charlm().evaluate(np.arange(20) % 5, k1=0), ValueError,
                      "k1: expected a positive int, got 0"),
    "sample temperature inf": (lambda: charlm().sample(5, temperature=math.inf), ValueError,
                               "temperature: expected a finite number > 0, got inf"),
    "sample temperature str": (lambda: charlm().sample(5, temperature="hot"), TypeError,
                               "temperature: expected a number > 0"),
    "sample greedy str": (lambda: charlm().sample(5, greedy="yes"), TypeError,
                          "greedy: expected True or False"),
    "sample length huge": (lambda: charlm().sample(10**12), ValueError,
                           "length: expected at most 10,000,000 ids"),
    "LSTM batch_first str": (lambda: L.LSTM(3, 4, batch_first="yes"), TypeError,
                             "batch_first: expected True or False"),
    "LSTM bias str": (lambda: L.LSTM(3, 4, bias="no"), TypeError, "bias: expected True or False"),
    "LSTM train int": (lambda: L.LSTM(3, 4, 2, dropout=0.5).forward(X, train=1), TypeError,
                       "train: expected True or False, got 1"),
    "Linear None cache": (lambda: L.Linear(3, 2).backward(np.zeros((2, 2)), None), TypeError,
                          r"cache: expected the cache returned by this layer's forward"),
    "Embedding None cache": (lambda: L.Embedding(4, 2).backward(np.zeros((1, 1, 2)), None),
                             TypeError, "cache: expected the cache returned"),
    "dropout train str": (lambda: L.dropout_forward(X, 0.5, 0, train="no"), TypeError,
                          "train: expected True or False"),
    "dropout p str": (lambda: L.dropout_forward(X, "0.5", 0), TypeError, "p: expected a float"),
    "Adam eps 0": (lambda: L.Adam({"w": np.zeros(2)}, lr=0.1, eps=0), ValueError,
                   "eps: expected a number > 0"),
    "RMSprop eps 0": (lambda: L.RMSprop({"w": np.zeros(2)}, lr=0.1, eps=0), ValueError,
                      "eps: expected a number > 0"),
    "Adagrad eps 0": (lambda: L.Adagrad({"w": np.zeros(2)}, lr=0.1, eps=0), ValueError,
                      "eps: expected a number > 0"),
    "clip max_norm 0": (lambda: L.clip_grad_norm({"w": np.ones(3)}, 0), ValueError,
                        "max_norm: expected a number > 0"),
    "ExponentialLR gamma 1e10": (lambda: L.ExponentialLR(_sgd(), gamma=1e10), ValueError,
                                 r"gamma: expected a decay factor in \(0, 1\], got 10000000000.0"),
    "StepLR gamma 2": (lambda: L.StepLR(_sgd(), 2, gamma=2.0), ValueError,
                       r"gamma: expected a decay factor in \(0, 1\]"),
    "Cosine eta_min > lr": (lambda: L.CosineAnnealingLR(_sgd(), 5, eta_min=1.0), ValueError,
                            r"eta_min: expected at most the optimizer.s lr = 0.1 .*got 1.0"),
    "MinibatchSource shuffle str": (
        lambda: L.MinibatchSource(X, np.zeros(2, int), 1, shuffle="no"), TypeError,
        "shuffle: expected True or False"),
    "MinibatchSource lengths > T": (
        lambda: L.MinibatchSource(X, np.zeros(2, int), 1, lengths=np.array([9, 9])),
        ValueError, r"lengths: expected values in 1..T = 4 .*got 9"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_the_documented_error(name):
    fn, error, pattern = CASES[name]
    with pytest.raises(error, match=pattern):
        fn()


def test_mse_loss_does_not_overflow_in_float32():
    loss, d = L.mse_loss(np.full(4, 3e38, np.float32), np.full(4, -3e38, np.float32))
    assert loss == pytest.approx(3.6e77, rel=1e-6)  # (6e38)^2, computed in float64
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, np.full(4, 3e38, np.float32), rtol=1e-6)  # 2 * 6e38 / 4


def test_sample_at_a_tiny_temperature_is_the_greedy_choice():
    m = charlm()
    prime = [1, 2]
    greedy = m.sample(6, prime, greedy=True)
    assert m.sample(6, prime, temperature=1e-320, rng=0).tolist() == greedy.tolist()


def test_gradcheck_detects_a_nondeterministic_loss():
    rng = np.random.default_rng(0)
    w = np.ones(3)
    with pytest.raises(ValueError, match="loss_fn: the loss is not deterministic .*dropout"):
        L.gradcheck(lambda: float(np.sum(w * rng.random(3))), {"w": w}, {"w": np.zeros(3)})


def test_gradcheck_of_a_model_drawing_fresh_dropout_masks_says_so():
    m = L.CharLM(5, 4, num_layers=2, dropout=0.5, dtype=np.float64, rng=0)
    x = np.array([[0, 1], [2, 3]])
    _, grads, _ = m.loss(x, x)
    with pytest.raises(ValueError, match="not deterministic"):
        L.gradcheck(lambda: m.loss(x, x)[0], m.params, grads)


def test_gradcheck_suite_has_dropout_components_with_fixed_masks():
    rows = [r for r in run_suite() if "dropout" in r["component"]]
    assert {r["component"] for r in rows} == {
        "CharLM (dropout 0.3, masks fixed)", "SequenceClassifier (dropout 0.4, masks fixed)",
        "SequenceClassifier (LSTM peephole, layer norm, variational dropout, learned h_0/c_0, "
        "lengths)"}
    assert all(r["passed"] and r["max_rel_error"] < 1e-7 for r in rows)
