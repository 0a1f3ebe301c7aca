"""Models over padded batches and streams: SequenceClassifier / SequenceRegressor with
``bidirectional`` and ``lengths``, the per-step SequenceTagger, and a stream of float feature
vectors trained with truncated BPTT.

Expected values come from central differences (gradcheck), from the cross-entropy / MSE written
out by hand, and from running each sequence alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from lstm_bptt import CELLS, batchify
from lstm_bptt.gradcheck import gradcheck
from lstm_bptt.models import (
    SequenceClassifier,
    SequenceRegressor,
    SequenceTagger,
    build_model,
)
from lstm_bptt.optim import Adam
from lstm_bptt.train import TBPTTStream, Trainer, tbptt_gradients

TOL = 1e-7
LENGTHS = np.array([4, 1, 5, 2])  # unsorted, includes 1 and T = 5


def _randomize(model, rng, scale=0.5):
    for p in model.params.values():
        p[...] = scale * rng.standard_normal(p.shape)
    return model


def _state(rng, model, B):
    dirs = 2 if model.bidirectional else 1
    sizes = model.recurrent.cell.state_sizes(model.hidden_size)
    return tuple(0.5 * rng.standard_normal((model.num_layers * dirs, B, S)) for S in sizes)


def _check_model(model, loss_call):
    """Every parameter against central differences: relative error < 1e-7, or an absolute
    error < 1e-10 (entries of ~1e-4 in these mean losses carry ~1e-11 of rounding noise)."""
    loss, grads, _ = loss_call()
    assert set(grads) == set(model.params)
    report = gradcheck(lambda: loss_call()[0], model.params, grads, tol=TOL, atol=1e-10)
    assert report.passed
    return loss, grads


def _softmax_ce(logits, targets):
    """-log softmax(logits)[target] per position, written out (no library code)."""
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], -1)[..., 0]


# ---------------------------------------------------------------------------- gradient checks

KW = [dict(bidirectional=True),
      dict(bidirectional=True, num_layers=2, cell_options={"proj_size": 1}),
      dict(cell_options={"proj_size": 1}),
      pytest.param(dict(bidirectional=True, cell="gru"), marks=pytest.mark.skipif(
          "gru" not in CELLS, reason="GRU cell not registered")),
      pytest.param(dict(bidirectional=True, cell="rnn", num_layers=2), marks=pytest.mark.skipif(
          "rnn" not in CELLS, reason="RNN cell not registered"))]
IDS = ["bidir", "bidir_L2_proj", "proj", "gru_bidir", "rnn_bidir_L2"]


@pytest.mark.parametrize("kw", KW, ids=IDS)
def test_classifier_gradcheck(kw):
    rng = np.random.default_rng(1)
    model = _randomize(SequenceClassifier(2, 2, 3, rng=0, **kw), rng)
    x = rng.standard_normal((5, 4, 2))
    y = np.array([0, 2, 1, 1])
    state = _state(rng, model, 4)
    _check_model(model, lambda: model.loss(x, y, state, LENGTHS, train=False))


@pytest.mark.parametrize("kw", KW, ids=IDS)
@pytest.mark.parametrize("many_to_one", [False, True])
def test_regressor_gradcheck(kw, many_to_one):
    rng = np.random.default_rng(2)
    model = _randomize(SequenceRegressor(2, 2, 2, many_to_one=many_to_one, rng=0, **kw), rng)
    x = rng.standard_normal((5, 4, 2))
    y = rng.standard_normal((4, 2) if many_to_one else (5, 4, 2))
    state = _state(rng, model, 4)
    _check_model(model, lambda: model.loss(x, y, state, LENGTHS, train=False))
    if not many_to_one:
        mask = rng.random((5, 4)) < 0.7
        mask[0] = True
        _check_model(model, lambda: model.loss(x, y, state, LENGTHS, mask, train=False))


@pytest.mark.parametrize("kw", KW, ids=IDS)
def test_tagger_gradcheck(kw):
    rng = np.random.default_rng(3)
    model = _randomize(SequenceTagger(2, 2, 4, rng=0, **kw), rng)
    x = rng.standard_normal((5, 4, 2))
    y = rng.integers(0, 4, (5, 4))
    state = _state(rng, model, 4)
    _check_model(model, lambda: model.loss(x, y, state, LENGTHS, train=False))


def test_tagger_gradcheck_with_dropout():
    rng = np.random.default_rng(4)
    model = _randomize(SequenceTagger(2, 3, 3, num_layers=2, bidirectional=True, dropout=0.4,
                                      rng=0), rng)
    x = rng.standard_normal((5, 4, 2))
    y = rng.integers(0, 3, (5, 4))
    saved = model.rng.bit_generator.state

    def call():
        model.rng.bit_generator.state = saved
        return model.loss(x, y, lengths=LENGTHS, train=True)

    loss, _ = _check_model(model, call)
    model.rng.bit_generator.state = saved
    assert loss != model.loss(x, y, lengths=LENGTHS, train=False)[0]  # dropout is active


# ----------------------------------------------------------------------------- semantics


def test_bidirectional_classifier_reads_last_valid_forward_and_first_reverse_step():
    rng = np.random.default_rng(5)
    H = 3
    model = _randomize(SequenceClassifier(2, H, 4, num_layers=2, bidirectional=True, rng=0),
                       rng)
    x = rng.standard_normal((5, 4, 2))
    logits = model.forward(x, lengths=LENGTHS)[0]
    out = model.lstm.forward(x, lengths=LENGTHS)[0]  # (T, B, 2H), top layer
    B = len(LENGTHS)
    feats = np.concatenate([out[LENGTHS - 1, np.arange(B), :H], out[0, :, H:]], axis=1)
    expected = feats @ model.params["head.weight"].T + model.params["head.bias"]
    np.testing.assert_allclose(logits, expected, rtol=1e-13, atol=1e-14)
    # each row equals the sequence run alone
    for b, n in enumerate(LENGTHS):
        alone = model.forward(x[:n, b : b + 1])[0]
        np.testing.assert_allclose(alone[0], logits[b], rtol=1e-12, atol=1e-14)


def test_tagger_loss_by_hand_and_padding_ignored():
    rng = np.random.default_rng(6)
    T, B, C = 5, 4, 3
    model = _randomize(SequenceTagger(2, 3, C, bidirectional=True, rng=0), rng)
    x = rng.standard_normal((T, B, 2))
    y = rng.integers(0, C, (T, B))
    valid = np.arange(T)[:, None] < LENGTHS[None, :]
    y_pad = np.where(valid, y, -100)  # PyTorch's usual ignore value at padded steps
    x_pad = np.where(valid[..., None], x, 50.0)
    loss, grads, _ = model.loss(x, y, lengths=LENGTHS, train=False)
    loss2, grads2, _ = model.loss(x_pad, y_pad, lengths=LENGTHS, train=False)
    assert loss == loss2
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads2[k])
    logits = model.forward(x, lengths=LENGTHS)[0]
    assert loss == pytest.approx(_softmax_ce(logits, y)[valid].mean(), rel=1e-13)
    tags = model.predict(x_pad, lengths=LENGTHS)
    assert tags.shape == (T, B) and np.all(tags[~valid] == -1)
    np.testing.assert_array_equal(tags[valid], np.argmax(logits, -1)[valid])
    # every row equals the sequence tagged alone
    for b, n in enumerate(LENGTHS):
        np.testing.assert_allclose(model.forward(x[:n, b : b + 1])[0][:, 0], logits[:n, b],
                                   rtol=1e-12, atol=1e-14)
    # a mask further restricts the counted positions
    mask = rng.random((T, B)) < 0.6
    mask[0, 0] = True
    counted = mask & valid
    loss3 = model.loss(x, y, lengths=LENGTHS, mask=mask, train=False)[0]
    assert loss3 == pytest.approx(_softmax_ce(logits, y)[counted].mean(), rel=1e-13)


def test_regressor_per_step_bidirectional_loss_by_hand():
    rng = np.random.default_rng(7)
    model = _randomize(SequenceRegressor(2, 3, 2, bidirectional=True, rng=0), rng)
    x = rng.standard_normal((5, 4, 2))
    y = rng.standard_normal((5, 4, 2))
    valid = np.arange(5)[:, None] < LENGTHS[None, :]
    pred = model.predict(x, lengths=LENGTHS)
    loss = model.loss(x, y, lengths=LENGTHS, train=False)[0]
    assert loss == pytest.approx(np.mean((pred - y)[valid] ** 2), rel=1e-13)


@pytest.mark.parametrize("cls, args", [(SequenceClassifier, (3, 4, 5)),
                                       (SequenceRegressor, (3, 4, 2)),
                                       (SequenceTagger, (3, 4, 5))])
def test_config_round_trip(cls, args):
    model = cls(*args, num_layers=2, bidirectional=True, cell_options={"proj_size": 2}, rng=0)
    again = build_model(cls.__name__, model.config(), rng=1)
    assert again.config() == model.config()
    assert {k: v.shape for k, v in again.params.items()} == \
        {k: v.shape for k, v in model.params.items()}
    assert model.params["head.weight"].shape[1] == 4  # 2 directions x proj_size 2


def test_tagger_bad_input():
    model = SequenceTagger(2, 3, 3, rng=0)
    x = np.zeros((4, 2, 2))
    with pytest.raises(ValueError,
                       match=r"targets: expected shape \(T, B\) = \(4, 2\), got \(4, 3\)"):
        model.loss(x, np.zeros((4, 3), int))
    with pytest.raises(TypeError, match="targets"):
        model.loss(x, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="lengths"):
        model.loss(x, np.zeros((4, 2), int), lengths=[0, 4])


# ------------------------------------------------------- a stream of float feature vectors


def _series(n, D, seed=0):
    """A noisy multivariate sine stream (n, D)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    return np.sin(0.3 * t + np.arange(D)) + 0.05 * rng.standard_normal((n, D))


def test_float_stream_windows():
    streams = batchify(_series(23, 2), 2)  # (11, 2, 2)
    src = TBPTTStream(streams, 3, 5)
    assert src.num_batches == 4  # ceil(10 / 3) next-step targets
    b = src.get(1)  # counts steps 3..5, backpropagates through 1..5
    np.testing.assert_array_equal(b.inputs, streams[1:6])
    np.testing.assert_array_equal(b.targets, streams[2:7])
    assert b.kwargs["mask"].shape == (5, 2) and b.kwargs["mask"].sum() == 6
    labels = np.arange(22).reshape(11, 2)
    tagged = TBPTTStream(streams, 4, targets=labels)  # a target for every step: 11 steps
    assert tagged.num_batches == 3
    np.testing.assert_array_equal(tagged.get(2).targets, labels[8:11])
    np.testing.assert_array_equal(tagged.get(2).inputs, streams[8:11])
    with pytest.raises(ValueError, match="targets"):
        TBPTTStream(streams, 4, targets=labels[:5])
    with pytest.raises(TypeError, match="feature vectors"):
        TBPTTStream(streams[..., 0], 4)


@pytest.mark.parametrize("k1, k2", [(3, 10), (4, 12), (10, 10)])
def test_float_stream_k2_covering_the_stream_equals_full_bptt(k1, k2):
    """A regressor on a stream of float vectors: with k2 >= T the count-weighted window
    gradients are exactly full BPTT over the whole stream (as for a text)."""
    rng = np.random.default_rng(8)
    model = _randomize(SequenceRegressor(2, 3, 2, num_layers=2, cell_options={"proj_size": 2},
                                         rng=0), rng)
    streams = batchify(_series(22, 2), 2)  # (11, 2, 2): T = 10
    total, grads, count = tbptt_gradients(model, TBPTTStream(streams, k1, k2))
    assert count == 10 * 2 * 2  # positions x output features (the MSE averages entries)
    loss_full, grads_full, _ = model.loss(streams[:-1], streams[1:], train=False)
    assert total / count == pytest.approx(loss_full, rel=1e-12)
    for k in grads_full:
        np.testing.assert_allclose(grads[k] / count, grads_full[k], rtol=1e-10, atol=1e-13,
                                   err_msg=k)


def test_tagger_on_a_stream_with_carried_state_equals_one_pass():
    """Per-step labels of a float stream, k2 > k1: the loss over the windows equals the loss of
    one pass over the whole stream (the state carried at ``state_at`` is the right one)."""
    rng = np.random.default_rng(9)
    model = _randomize(SequenceTagger(2, 3, 3, num_layers=2, rng=0), rng)
    streams = batchify(_series(24, 2), 2)  # (12, 2, 2)
    labels = rng.integers(0, 3, (12, 2))
    total, _, count = tbptt_gradients(model, TBPTTStream(streams, 3, 5, targets=labels))
    assert count == 12 * 2
    loss_full = model.loss(streams, labels, train=False)[0]
    assert total / count == pytest.approx(loss_full, rel=1e-12)


def test_float_stream_training_learns():
    """One-step-ahead forecasting of a multivariate series, trained like a text."""
    series = _series(2002, 2, seed=1)
    streams = batchify(series, 8)  # (250, 8, 2)
    model = SequenceRegressor(2, 8, 2, rng=0)
    src = TBPTTStream(streams, 25)
    trainer = Trainer(model, Adam(model.params, lr=0.02), src, max_steps=60, log_every=20,
                      progress=False)
    before = tbptt_gradients(model, src)
    trainer.fit()
    after = tbptt_gradients(model, src)
    assert after[0] / after[2] < 0.25 * before[0] / before[2]


@pytest.mark.parametrize("cls, y_shape", [(SequenceTagger, "tags"),
                                          (SequenceRegressor, "values"),
                                          (SequenceClassifier, "classes")])
def test_batch_first_models_equal_time_major(cls, y_shape):
    """batch_first with lengths and bidirectional: the same numbers as time-major."""
    rng = np.random.default_rng(10)
    kw = dict(num_layers=2, bidirectional=True, rng=0)
    tm = _randomize(cls(2, 3, 3, **kw), rng)
    bf = cls(2, 3, 3, batch_first=True, **kw)
    bf.load_params({k: v.copy() for k, v in tm.params.items()})
    x = rng.standard_normal((5, 4, 2))
    y = {"tags": rng.integers(0, 3, (5, 4)), "values": rng.standard_normal((5, 4, 3)),
         "classes": rng.integers(0, 3, 4)}[y_shape]
    y_bf = y if y_shape == "classes" else y.swapaxes(0, 1)
    a = tm.loss(x, y, lengths=LENGTHS, train=False)
    b = bf.loss(x.swapaxes(0, 1), y_bf, lengths=LENGTHS, train=False)
    assert a[0] == b[0]
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k])
    pa, pb = tm.predict(x, lengths=LENGTHS), bf.predict(x.swapaxes(0, 1), lengths=LENGTHS)
    np.testing.assert_array_equal(pa, pb if y_shape == "classes" else pb.swapaxes(0, 1))
