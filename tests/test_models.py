"""Tests for lstm_bptt.models: end-to-end gradient checks (float64, central differences) of
CharLM, SequenceClassifier and SequenceRegressor, and CharLM sampling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import toy_rnn_cell
from scipy.special import softmax

from lstm_bptt import LSTM
from lstm_bptt.gradcheck import GradcheckError, gradcheck
from lstm_bptt.models import CharLM, SequenceClassifier, SequenceRegressor, build_model

TOL = 1e-7


def _randomize(model, rng, scale=0.5):
    """Every parameter entry random and non-zero (biases too), so no term can hide."""
    for p in model.params.values():
        p[...] = scale * rng.standard_normal(p.shape)


def _state(rng, L, B, H, scale=0.5):
    return (scale * rng.standard_normal((L, B, H)), scale * rng.standard_normal((L, B, H)))


def _check_model(model, loss_call):
    """gradcheck of every parameter tensor of ``model`` against ``loss_call()``."""
    loss, grads, _ = loss_call()
    assert set(grads) == set(model.params)
    for k, g in grads.items():
        assert g.shape == model.params[k].shape and g.dtype == np.float64, k
    report = gradcheck(lambda: loss_call()[0], model.params, grads, tol=TOL)
    assert report.passed and report.max_rel_error < TOL
    return loss, grads


# ---------------------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("embedding_dim", [None, 4], ids=["one-hot", "embedding"])
def test_charlm_gradcheck_two_layers_state_and_mask(embedding_dim):
    rng = np.random.default_rng(1)
    V, H, L, T, B = 5, 3, 2, 4, 2
    model = CharLM(V, H, num_layers=L, embedding_dim=embedding_dim, dtype=np.float64, rng=0)
    _randomize(model, rng)
    inputs = rng.integers(0, V, (T, B))
    targets = rng.integers(0, V, (T, B))
    state = _state(rng, L, B, H)
    mask = np.array([[1, 0], [1, 1], [0, 1], [1, 1]], bool)
    _check_model(model, lambda: model.loss(inputs, targets, state, mask, train=False))
    if embedding_dim is not None:
        # rows of ids never looked up get exactly zero gradient
        _, grads, _ = model.loss(inputs, targets, state, mask, train=False)
        unused = np.setdiff1d(np.arange(V), inputs)
        assert np.all(grads["embedding.weight"][unused] == 0)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_charlm_folded_embedding_gradcheck_and_equals_the_lookup(num_layers, monkeypatch):
    """V <= 2 D and T*B >= 6 D: the embedding is folded into the first layer's input weights
    (a gather of E W_ih^T, gradients unfolded after the backward); the gradients are checked
    against central differences and against the plain lookup + GEMM path."""
    rng = np.random.default_rng(5)
    V, D, H, T, B = 6, 4, 3, 6, 4
    model = CharLM(V, H, num_layers=num_layers, embedding_dim=D, dtype=np.float64, rng=0)
    _randomize(model, rng)
    inputs = rng.integers(0, V - 1, (T, B))  # id V - 1 never looked up
    targets = rng.integers(0, V, (T, B))
    state = _state(rng, num_layers, B, H)
    mask = rng.random((T, B)) < 0.8
    assert model._folds_embedding(inputs)
    loss, grads = _check_model(model, lambda: model.loss(inputs, targets, state, mask,
                                                         train=False))
    assert np.all(grads["embedding.weight"][V - 1] == 0)
    monkeypatch.setattr(CharLM, "_folds_embedding", lambda self, ids: False)
    loss_plain, grads_plain, _ = model.loss(inputs, targets, state, mask, train=False)
    assert loss == pytest.approx(loss_plain, rel=1e-14)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_plain[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_charlm_embedding_fold_only_where_it_pays():
    ids = np.zeros((64, 32), np.int64)
    assert CharLM(103, 8, embedding_dim=64)._folds_embedding(ids)
    assert not CharLM(103, 8, embedding_dim=32)._folds_embedding(ids)  # V > 2 D
    assert not CharLM(103, 8, embedding_dim=64)._folds_embedding(ids[:1, :1])  # sampling
    assert not CharLM(103, 8, embedding_dim=64, cell="gru")._folds_embedding(ids)


@pytest.mark.parametrize("embedding_dim", [None, 3], ids=["one-hot", "embedding"])
def test_charlm_gradcheck_with_dropout(embedding_dim):
    """train=True: dropout between the layers and before the head, masks held fixed by
    rewinding the model's (shared) rng before every loss evaluation."""
    rng = np.random.default_rng(12)
    V, H, L, T, B = 4, 3, 2, 3, 2
    model = CharLM(V, H, num_layers=L, embedding_dim=embedding_dim, dropout=0.4,
                   dtype=np.float64, rng=0)
    _randomize(model, rng)
    inputs, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    state = _state(rng, L, B, H)
    saved = model.rng.bit_generator.state

    def call():
        model.rng.bit_generator.state = saved
        return model.loss(inputs, targets, state, train=True)

    loss, _ = _check_model(model, call)
    model.rng.bit_generator.state = saved
    assert loss != model.loss(inputs, targets, state, train=False)[0]  # dropout is active


def test_classifier_gradcheck_with_dropout():
    rng = np.random.default_rng(13)
    model = SequenceClassifier(2, 3, 3, num_layers=2, dropout=0.5, rng=0)
    _randomize(model, rng)
    x, y = rng.standard_normal((4, 3, 2)), np.array([2, 0, 1])
    saved = model.rng.bit_generator.state

    def call():
        model.rng.bit_generator.state = saved
        return model.loss(x, y, lengths=np.array([4, 2, 3]), train=True)

    _check_model(model, call)


def test_charlm_gradcheck_t1_b1_no_state():
    rng = np.random.default_rng(2)
    model = CharLM(3, 2, dtype=np.float64, rng=0)
    _randomize(model, rng)
    _check_model(model, lambda: model.loss(np.array([[2]]), np.array([[0]]), train=False))


def test_gradcheck_flags_a_planted_bug():
    """The check above can fail: a sign flip on one gradient tensor is caught."""
    rng = np.random.default_rng(3)
    model = CharLM(4, 3, dtype=np.float64, rng=0)
    _randomize(model, rng)
    inputs, targets = rng.integers(0, 4, (3, 2)), rng.integers(0, 4, (3, 2))
    _, grads, _ = model.loss(inputs, targets, train=False)
    grads["lstm.bias_hh_l0"] = -grads["lstm.bias_hh_l0"]
    with pytest.raises(GradcheckError, match="bias_hh_l0"):
        gradcheck(lambda: model.loss(inputs, targets, train=False)[0], model.params, grads)


def test_charlm_masked_positions_do_not_count():
    rng = np.random.default_rng(4)
    model = CharLM(5, 3, dtype=np.float64, rng=0)
    inputs = rng.integers(0, 5, (4, 2))
    targets = rng.integers(0, 5, (4, 2))
    mask = np.ones((4, 2), bool)
    mask[1, 0] = mask[3, 1] = False
    other = targets.copy()
    other[1, 0] = (other[1, 0] + 1) % 5
    other[3, 1] = (other[3, 1] + 2) % 5
    l1, g1, _ = model.loss(inputs, targets, mask=mask, train=False)
    l2, g2, _ = model.loss(inputs, other, mask=mask, train=False)
    assert l1 == l2
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    # loss is the mean over the 6 counted positions (nats), computed here from the logits
    logits = model.forward(inputs)[0]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    assert l1 == pytest.approx(nll[mask].sum() / 6, rel=1e-12)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_classifier_gradcheck_with_lengths(num_layers):
    rng = np.random.default_rng(5)
    D, H, C, T, B = 3, 4, 3, 5, 3
    model = SequenceClassifier(D, H, C, num_layers=num_layers, rng=0)
    _randomize(model, rng)
    x = rng.standard_normal((T, B, D))
    y = np.array([0, 2, 1])
    lengths = np.array([5, 2, 1])
    state = _state(rng, num_layers, B, H)
    _check_model(model, lambda: model.loss(x, y, state, lengths, train=False))


def test_classifier_padding_is_ignored():
    rng = np.random.default_rng(6)
    D, H, C, T, B = 2, 3, 4, 6, 3
    model = SequenceClassifier(D, H, C, rng=0)
    _randomize(model, rng)
    x = rng.standard_normal((T, B, D))
    y = np.array([3, 0, 1])
    lengths = np.array([6, 3, 1])
    x2 = x.copy()
    for b, n in enumerate(lengths):
        x2[n:, b] = 100 * rng.standard_normal((T - n, D))  # garbage after each length
    logits = model.forward(x, lengths=lengths)[0]
    np.testing.assert_array_equal(model.forward(x2, lengths=lengths)[0], logits)
    l1, g1, _ = model.loss(x, y, lengths=lengths, train=False)
    l2, g2, _ = model.loss(x2, y, lengths=lengths, train=False)
    assert l1 == l2
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=0, atol=1e-15)
    # the prediction of sequence b equals that of the truncated sequence x[:l_b, b]
    for b, n in enumerate(lengths):
        alone = model.forward(x[:n, b : b + 1])[0]
        np.testing.assert_allclose(alone[0], logits[b], rtol=1e-12, atol=1e-14)
    # numerically, padding has zero gradient: perturbing it leaves the loss bit for bit
    x3 = x.copy()
    x3[3:, 1] += 1e-3
    assert model.loss(x3, y, lengths=lengths, train=False)[0] == l1
    # and without lengths the padding does change the prediction (the test can see it)
    assert not np.allclose(model.forward(x2)[0], model.forward(x)[0])


def test_classifier_lengths_validation():
    model = SequenceClassifier(2, 3, 2, rng=0)
    x = np.zeros((4, 2, 2))
    with pytest.raises(ValueError, match="lengths"):
        model.forward(x, lengths=np.array([0, 3]))
    with pytest.raises(ValueError, match="lengths"):
        model.forward(x, lengths=np.array([5, 3]))
    with pytest.raises(ValueError, match="lengths"):
        model.forward(x, lengths=np.array([1, 2, 3]))


def test_regressor_per_step_gradcheck_with_mask():
    rng = np.random.default_rng(7)
    D, H, K, T, B, L = 3, 4, 2, 4, 2, 2
    model = SequenceRegressor(D, H, K, num_layers=L, rng=0)
    _randomize(model, rng)
    x = rng.standard_normal((T, B, D))
    y = rng.standard_normal((T, B, K))
    mask = np.array([[1, 1], [0, 1], [1, 0], [1, 1]], bool)
    state = _state(rng, L, B, H)
    _check_model(model, lambda: model.loss(x, y, state, mask=mask, train=False))
    # the loss is the mean squared error over the 6 * K counted entries
    pred = model.predict(x)
    assert pred.shape == (T, B, K)
    pred_s = model.forward(x, state)[0]
    expected = np.sum(((pred_s - y) ** 2)[mask]) / (mask.sum() * K)
    assert model.loss(x, y, state, mask=mask, train=False)[0] == pytest.approx(expected, 1e-12)


def test_regressor_many_to_one_gradcheck():
    rng = np.random.default_rng(8)
    D, H, K, T, B = 2, 3, 2, 5, 3
    model = SequenceRegressor(D, H, K, many_to_one=True, rng=0)
    _randomize(model, rng)
    x = rng.standard_normal((T, B, D))
    y = rng.standard_normal((B, K))
    state = _state(rng, 1, B, H)
    _check_model(model, lambda: model.loss(x, y, state, train=False))
    lengths = np.array([5, 1, 3])
    _check_model(model, lambda: model.loss(x, y, state, lengths=lengths, train=False))
    assert model.predict(x).shape == (B, K)


def test_float32_models_keep_dtype():
    model = CharLM(4, 3, dtype=np.float32, rng=0)
    ids = np.array([[0, 1], [2, 3]])
    loss, grads, (h, c) = model.loss(ids, ids)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert h.dtype == c.dtype == np.float32 and np.isfinite(loss)


def test_build_model_from_config():
    m = CharLM(6, 5, num_layers=2, embedding_dim=3, rng=0)
    m2 = build_model("CharLM", m.config(), rng=1)
    assert m2.config() == m.config()
    assert {k: v.shape for k, v in m2.params.items()} == {k: v.shape for k, v in m.params.items()}
    m2.load_params(m.params)
    ids = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(m2.forward(ids)[0], m.forward(ids)[0])
    with pytest.raises(ValueError, match="unknown model"):
        build_model("GPT", {})
    with pytest.raises(ValueError, match="missing"):
        m2.load_params({"head.weight": m.params["head.weight"]})


# ---------------------------------------------------------------------------- sampling
@pytest.fixture
def lm():
    model = CharLM(6, 8, num_layers=2, embedding_dim=4, dtype=np.float64, rng=3)
    _randomize(model, np.random.default_rng(9), scale=1.0)  # peaked, varied distributions
    return model


def _greedy_reference(model, prime, length):
    """Greedy decoding written out with forward calls: argmax, feed back, repeat."""
    logits, state, _ = model.forward(np.asarray(prime)[:, None])
    last, out = logits[-1, 0], []
    for _ in range(length):
        nxt = int(np.argmax(last))
        out.append(nxt)
        logits, state, _ = model.forward(np.array([[nxt]]), state)
        last = logits[0, 0]
    return out


def test_greedy_is_deterministic_argmax(lm):
    prime = [1, 4, 2]
    a = lm.sample(12, prime, greedy=True, rng=0)
    b = lm.sample(12, prime, greedy=True, rng=99)
    assert a.dtype == np.int64 and a.shape == (12,)
    np.testing.assert_array_equal(a, b)
    assert a.tolist() == _greedy_reference(lm, prime, 12)


def test_top_k_1_equals_greedy(lm):
    prime = [0, 5]
    greedy = lm.sample(10, prime, greedy=True)
    for seed in range(3):
        np.testing.assert_array_equal(lm.sample(10, prime, top_k=1, rng=seed), greedy)


def test_top_k_samples_only_among_the_k_most_probable(lm):
    prime = [2, 3, 1]
    logits = lm.forward(np.array(prime)[:, None])[0][-1, 0]
    top2 = set(np.argsort(logits)[-2:].tolist())
    firsts = {int(lm.sample(1, prime, top_k=2, rng=s)[0]) for s in range(40)}
    assert firsts <= top2 and len(firsts) == 2


def test_temperature_sampling_matches_reference_draw(lm):
    """First draw equals rng.choice with softmax(logits / T) from the same seed."""
    prime = [4, 4, 0]
    logits = lm.forward(np.array(prime)[:, None])[0][-1, 0]
    for temperature in (0.5, 1.0, 2.0):
        for seed in range(5):
            p = softmax(logits / temperature)
            expected = np.random.default_rng(seed).choice(6, p=p)
            got = lm.sample(1, prime, temperature=temperature, rng=seed)[0]
            assert got == expected


def test_very_low_temperature_is_greedy(lm):
    prime = [1, 1, 2]
    np.testing.assert_array_equal(lm.sample(8, prime, temperature=1e-4, rng=5),
                                  lm.sample(8, prime, greedy=True))


@pytest.mark.parametrize("kwargs, pattern", [
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": -1.0}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": 7}, "top_k"),
])
def test_sampling_validation(lm, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        lm.sample(3, [1], **kwargs)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"temperature": float("nan")}, "temperature"),
    ({"top_k": 2.5}, "top_k"),
    ({"length": -1}, "length"),
    ({"length": 2.0}, "length"),
    ({"prime": [1.7, 2.0]}, "prime"),
])
def test_sampling_type_and_value_errors(lm, kwargs, pattern):
    args = {"length": 3, "prime": [1], **kwargs}
    with pytest.raises((TypeError, ValueError), match=pattern):
        lm.sample(args.pop("length"), args.pop("prime"), **args)


def test_prime_outside_vocabulary(lm):
    with pytest.raises(ValueError, match="prime"):
        lm.sample(3, [1, 6])
    assert lm.sample(0, [1]).shape == (0,)


def test_same_seed_same_sample(lm):
    a = lm.sample(30, [1, 2], rng=7)
    b = lm.sample(30, [1, 2], rng=7)
    c = lm.sample(30, [1, 2], rng=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 6
    # the model's own rng is the default and advances
    g = np.random.default_rng(11)
    lm.rng = g
    d = lm.sample(30, [1, 2])
    np.testing.assert_array_equal(d, lm.sample(30, [1, 2], rng=np.random.default_rng(11)))


def test_priming_changes_the_state(lm):
    """Generation starts from the state after the prime, not from zeros."""
    zero_logits = lm.forward(np.array([[3]]))[0][0, 0]
    _, (h, c), _ = lm.forward(np.array([[0], [5], [2]]))
    assert np.abs(h).max() > 1e-3 and np.abs(c).max() > 1e-3
    primed_logits = lm.forward(np.array([[3]]), (h, c))[0][0, 0]
    assert not np.allclose(primed_logits, zero_logits)
    # greedy continuation after prime [0, 5, 2, 3] == reference from the primed state
    out = lm.sample(6, [0, 5, 2, 3], greedy=True)
    assert out.tolist() == _greedy_reference(lm, [0, 5, 2, 3], 6)
    assert out.tolist() != lm.sample(6, [3], greedy=True).tolist()


def test_regressor_per_step_lengths_mask_the_padding():
    # Steps at or after each sequence's length must not count: the loss equals the mean over
    # the valid steps computed directly from the predictions.
    rng = np.random.default_rng(5)
    m = SequenceRegressor(2, 4, 1, rng=0)
    x, y = rng.normal(size=(5, 3, 2)), rng.normal(size=(5, 3, 1))
    lengths = np.array([5, 2, 3])
    loss, grads, _ = m.loss(x, y, lengths=lengths, train=False)
    pred = m.predict(x)
    valid = np.arange(5)[:, None] < lengths[None, :]
    assert loss == pytest.approx(np.mean((pred - y)[valid] ** 2), rel=1e-12)
    y2 = y.copy()
    y2[~valid] += 100.0  # changing padded targets changes nothing
    loss2, grads2, _ = m.loss(x, y2, lengths=lengths, train=False)
    assert loss2 == loss
    assert all(np.array_equal(grads[k], grads2[k]) for k in grads)


# ------------------------------------------------------------------ constructor arguments


@pytest.mark.parametrize("make, exc, msg", [
    (lambda: CharLM(0, 8), ValueError, "vocab_size: expected a positive int, got 0"),
    (lambda: CharLM(2.5, 8), TypeError, "vocab_size: expected a positive int, got 2.5"),
    (lambda: CharLM("5", 8), TypeError, "vocab_size: expected a positive int, got '5'"),
    (lambda: CharLM(5, 0), ValueError, "hidden_size: expected a positive int, got 0"),
    (lambda: CharLM(5, 8, num_layers=0), ValueError, "num_layers: expected a positive int"),
    (lambda: CharLM(5, 8, embedding_dim=0), ValueError, "embedding_dim: expected a positive"),
    (lambda: CharLM(5, 8, dropout=None), TypeError, r"dropout: expected a float in \[0, 1\)"),
    (lambda: CharLM(5, 8, dropout=1.0), ValueError, r"dropout: expected a probability"),
    (lambda: SequenceClassifier(0, 3, 2), ValueError, "input_size: expected a positive int"),
    (lambda: SequenceClassifier(2, 3, 0), ValueError, "num_classes: expected a positive int"),
    (lambda: SequenceClassifier(2, 3, 2, num_layers=1.5), TypeError, "num_layers: expected"),
    (lambda: SequenceRegressor(2, 0), ValueError, "hidden_size: expected a positive int"),
    (lambda: SequenceRegressor(2, 3, 0), ValueError, "output_size: expected a positive int"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_model_constructors_name_the_bad_argument(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_charlm_one_layer_dropout_is_head_dropout_without_warning():
    """A one-layer CharLM still uses dropout (before the head), so the LSTM's "dropout needs
    num_layers > 1" warning would be wrong; the LSTM gets dropout 0 and the head keeps it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = CharLM(5, 4, num_layers=1, dropout=0.5, dtype=np.float64, rng=0)
    assert model.lstm.dropout == 0.0 and model.config()["dropout"] == 0.5
    ids = np.array([[0, 1, 2, 3]] * 3)
    # train=True draws a head mask: the logits differ from evaluation mode
    assert not np.allclose(model.forward(ids, train=True)[0], model.forward(ids)[0])
    two = CharLM(5, 4, num_layers=2, dropout=0.5, dtype=np.float64, rng=0)
    assert two.lstm.dropout == 0.5


def test_sample_with_a_string_prime_says_to_encode_it():
    m = CharLM(5, 4, rng=0)
    with pytest.raises(TypeError, match="encode"):
        m.sample(3, "abc")


# ------------------------------------------------------------------ any recurrent cell
def test_models_take_a_one_state_cell():
    """A cell with state (h,): gradients through CharLM / classifier / regressor, the state
    is a 1-tuple, and the state after step t (truncated BPTT) comes from the layer."""
    rng = np.random.default_rng(4)
    V, H, L, T, B = 5, 3, 2, 4, 2
    lm = CharLM(V, H, num_layers=L, embedding_dim=2, dtype=np.float64, rng=0,
                cell=toy_rnn_cell())
    assert lm.state_names == ("h",) and "toy.weight_hh_l1" in lm.params
    _randomize(lm, rng)
    inputs, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    state = (0.5 * rng.standard_normal((L, B, H)),)
    _check_model(lm, lambda: lm.loss(inputs, targets, state, train=False))
    _, _, new_state = lm.loss(inputs, targets, state, train=False, state_at=2)
    _, s2, _ = lm.forward(inputs[:2], state)
    assert isinstance(new_state, tuple) and len(new_state) == 1
    np.testing.assert_allclose(new_state[0], s2[0], rtol=1e-13, atol=1e-14)
    with pytest.raises(TypeError, match=r"state: expected a tuple \(h\) of \(num_layers, B, H\)"):
        lm.forward(inputs, (state[0], state[0]))

    clf = SequenceClassifier(3, H, 2, num_layers=L, rng=0, cell=toy_rnn_cell())
    _randomize(clf, rng)
    x = rng.standard_normal((T, B, 3))
    _check_model(clf, lambda: clf.loss(x, np.array([0, 1]), lengths=np.array([2, 4])))
    reg = SequenceRegressor(3, H, 2, rng=0, cell=toy_rnn_cell())
    _randomize(reg, rng)
    y = rng.standard_normal((T, B, 2))
    _check_model(reg, lambda: reg.loss(x, y))


def test_models_take_a_ready_recurrent_layer_and_cell_options():
    layer = LSTM(3, 4, num_layers=2, rng=0, forget_bias=2.0, recurrent_init="orthogonal")
    clf = SequenceClassifier(3, 4, 2, num_layers=2, rng=1, cell=layer)
    assert clf.recurrent is layer and clf.params["lstm.weight_ih_l0"] is layer.params[
        "weight_ih_l0"]
    cfg = clf.config()
    assert cfg["cell"] == "lstm" and cfg["forget_bias"] == 2.0
    assert cfg["cell_options"]["recurrent_init"] == "orthogonal"
    assert "input_bias" not in cfg["cell_options"]  # defaults are left out
    rebuilt = build_model("SequenceClassifier", cfg, rng=5)
    w = rebuilt.params["lstm.weight_hh_l0"][:4]
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-12)  # the option came back
    lm = CharLM(5, 4, rng=0, forget_bias=1.0, cell_options={"input_bias": -2.0})
    b = lm.params["lstm.bias_ih_l0"] + lm.params["lstm.bias_hh_l0"]
    np.testing.assert_array_equal(b[:4], -2.0)
    np.testing.assert_array_equal(b[4:8], 1.0)
    assert build_model("CharLM", lm.config()).config() == lm.config()
    with pytest.raises(ValueError, match="cell: expected a layer with hidden_size = 5, got 4"):
        SequenceClassifier(3, 5, 2, num_layers=2, cell=layer)
    with pytest.raises(TypeError, match="forget_bias"):
        CharLM(5, 4, forget_bias=1.0, cell=toy_rnn_cell())
