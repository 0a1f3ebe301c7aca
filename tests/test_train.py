"""Tests for lstm_bptt.train.Trainer: learning, determinism, exact resume, NaN guard, early
stopping, callbacks, history files, clipping, epochs, ReduceLROnPlateau."""

from __future__ import annotations

import copy
import csv
import json
import math

import numpy as np
import pytest
from conftest import toy_rnn_cell

from lstm_bptt import train as train_module
from lstm_bptt.checkpoint import load_checkpoint
from lstm_bptt.models import CharLM, SequenceClassifier, SequenceRegressor
from lstm_bptt.optim import SGD, Adam, RMSprop
from lstm_bptt.schedules import CosineAnnealingLR, ReduceLROnPlateau, StepLR
from lstm_bptt.train import MinibatchSource, TBPTTStream, Trainer, TrainingDivergedError

TEXT = np.array([0, 1, 2, 3, 1, 2] * 20)  # a short repetitive "string", V = 4


def _streams(B=2):
    n = len(TEXT) // B
    return TEXT[: n * B].reshape(B, n).T.copy()  # (N, B), contiguous streams


def _classification_data(N=24, T=5, seed=0):
    """Sign of the first input decides the class: trivially separable."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, N, 2))
    y = (x[0, :, 0] > 0).astype(np.int64)
    x[0, :, 0] += np.where(y == 1, 1.0, -1.0)
    return x, y


def _no_time(history):
    return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in history]


def _snapshot(model):
    return {k: v.copy() for k, v in model.params.items()}


def _assert_params_equal(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---------------------------------------------------------------------------- learning
def test_charlm_learns_repetitive_string():
    model = CharLM(4, 16, dtype=np.float64, rng=0)
    opt = Adam(model.params, lr=0.03)
    trainer = Trainer(model, opt, TBPTTStream(_streams(), 10), max_steps=60, log_every=5,
                      clip_norm=5.0, progress=False)
    history = trainer.fit()
    losses = [r["loss"] for r in history if "loss" in r]
    assert losses[0] > 1.0  # about ln 4 = 1.386 at the start
    assert losses[-1] < 0.2 * losses[0]
    # the learned model predicts the deterministic transitions 0->1, 3->1, 2->3 (greedy)
    assert model.evaluate(TEXT, batch_size=2, k1=10) < 0.5
    assert model.sample(6, [0, 1, 2], greedy=True).tolist() == [3, 1, 2, 0, 1, 2]


def test_classifier_learns_separable_task():
    x, y = _classification_data()
    model = SequenceClassifier(2, 8, 2, rng=0)
    src = MinibatchSource(x, y, 8, seed=1)
    trainer = Trainer(model, Adam(model.params, lr=0.05), src, epochs=15, log_every=3,
                      progress=False)
    hist = trainer.fit()
    assert hist[-1]["loss"] < 0.25 * hist[0]["loss"]
    assert np.mean(model.predict(x) == y) == 1.0


def test_float32_training_runs_without_false_divergence():
    """The overflow guard must not fire on a healthy float32 run (saturated gates, peaked
    softmax)."""
    model = CharLM(4, 16, num_layers=2, embedding_dim=8, dtype=np.float32, rng=1)
    tr = Trainer(model, Adam(model.params, lr=0.05), TBPTTStream(_streams(), 10, 15),
                 max_steps=60, log_every=10, progress=False)
    hist = tr.fit()
    assert all(p.dtype == np.float32 for p in model.params.values())
    assert hist[-1]["loss"] < 0.3 * hist[0]["loss"]


def test_same_seed_bit_identical():
    def run():
        model = CharLM(4, 6, num_layers=2, dropout=0.2, dtype=np.float64, rng=5)
        tr = Trainer(model, Adam(model.params, lr=0.01), TBPTTStream(_streams(), 5, 8),
                     max_steps=15, log_every=4, progress=False)
        return model, _no_time(tr.fit())

    m1, h1 = run()
    m2, h2 = run()
    _assert_params_equal(m1.params, m2.params)
    assert h1 == h2
    m3 = CharLM(4, 6, num_layers=2, dropout=0.2, dtype=np.float64, rng=6)
    assert not np.array_equal(m3.params["head.weight"], m1.params["head.weight"])


# ---------------------------------------------------------------------------- exact resume
class _Crash(Exception):
    pass


class _CrashAt:
    """Callback that simulates the process dying during step ``step``."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, info):
        if trainer.step == self.step:
            raise _Crash


def _charlm_setup(dropout=0.0, schedule=False, k2=8, seed=3, cell="lstm"):
    model = CharLM(4, 6, num_layers=2, dropout=dropout, dtype=np.float64, rng=seed, cell=cell)
    opt = Adam(model.params, lr=0.02)
    sched = CosineAnnealingLR(opt, T_max=20, eta_min=1e-3) if schedule else None
    return model, opt, sched, TBPTTStream(_streams(), 5, k2)


def _classifier_setup(dropout=0.0, schedule=False, seed=3):
    x, y = _classification_data(N=10)
    model = SequenceClassifier(2, 5, 2, num_layers=2, dropout=dropout, rng=seed)
    opt = SGD(model.params, lr=0.1, momentum=0.9)
    if schedule == "plateau":
        sched = ReduceLROnPlateau(opt, factor=0.5, patience=0)
    else:
        sched = StepLR(opt, step_size=4, gamma=0.5) if schedule else None
    # 10 sequences in batches of 4: a partial batch and a new permutation every epoch
    return model, opt, sched, MinibatchSource(x, y, 4, seed=7, lengths=np.arange(10) % 5 + 1)


RESUME_CASES = {
    "tbptt-k2>k1": lambda seed=3: _charlm_setup(k2=8, seed=seed),
    "tbptt-dropout": lambda seed=3: _charlm_setup(dropout=0.3, seed=seed),
    "tbptt-schedule": lambda seed=3: _charlm_setup(schedule=True, seed=seed),
    # a one-state cell (state (h,)): the Trainer and checkpoints do not know the cell type
    "tbptt-one-state-cell": lambda seed=3: _charlm_setup(k2=8, seed=seed,
                                                         cell=toy_rnn_cell()),
    "minibatch-shuffle": lambda seed=3: _classifier_setup(seed=seed),
    "minibatch-dropout-schedule": lambda seed=3: _classifier_setup(dropout=0.4, schedule=True,
                                                                    seed=seed),
    "minibatch-plateau": lambda seed=3: _classifier_setup(schedule="plateau", seed=seed),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_is_bit_exact(tmp_path, case):
    N, k = 20, 7  # checkpoint at step 7; log_every = 3 does not divide it
    kw = dict(max_steps=N, eval_every=k, log_every=3, progress=False,
              eval_fn=lambda m: {"val_loss": float(np.sum(m.params["head.weight"] ** 2))})

    model, opt, sched, src = RESUME_CASES[case]()
    full = Trainer(model, opt, src, scheduler=sched, **kw)
    full.fit()

    ck = tmp_path / "ck.npz"
    model, opt, sched, src = RESUME_CASES[case]()
    crashed = Trainer(model, opt, src, scheduler=sched, checkpoint_path=ck,
                      callbacks=[_CrashAt(k + 3)], **kw)
    with pytest.raises(_Crash):
        crashed.fit()
    assert load_checkpoint(ck)["step"] == k

    # a fresh process: new objects built with a *different* seed, everything from the file
    model, opt, sched, src = RESUME_CASES[case](seed=12345)
    resumed = Trainer(model, opt, src, scheduler=sched, checkpoint_path=ck, **kw)
    tree = resumed.load(ck)
    assert resumed.step == k and tree["step"] == k
    resumed.fit()

    assert resumed.step == full.step == N
    _assert_params_equal(resumed.model.params, full.model.params)
    assert _no_time(resumed.history) == _no_time(full.history)
    assert resumed.optimizer.lr == full.optimizer.lr
    for name, st in full.optimizer.state.items():
        for key, v in st.items():
            np.testing.assert_array_equal(resumed.optimizer.state[name][key], v)
    # and the final checkpoint agrees with the uninterrupted model
    _assert_params_equal(load_checkpoint(ck)["params"], full.model.params)


def test_checkpoint_contents(tmp_path):
    model, opt, sched, src = _charlm_setup(schedule=True)
    ck = tmp_path / "run" / "ck.npz"
    tr = Trainer(model, opt, src, scheduler=sched, max_steps=6, eval_every=3,
                 checkpoint_path=ck, extra={"vocab": "abcd"}, progress=False)
    tr.fit()
    tree = load_checkpoint(ck)
    assert tree["step"] == 6
    assert tree["model"] == {"class": "CharLM", "config": model.config()}
    assert tree["extra"] == {"vocab": "abcd"}
    assert tree["scheduler"]["last_epoch"] == 6
    assert len(tree["state"]) == 2 and tree["state"][0].shape == (2, 2, 6)
    _assert_params_equal(tree["params"], model.params)
    other = SequenceClassifier(2, 3, 2, rng=0)
    with pytest.raises(ValueError, match="CharLM"):
        Trainer(other, SGD(other.params, lr=0.1), MinibatchSource(*_classification_data(), 4),
                max_steps=1).load(ck)


# ---------------------------------------------------------------------------- NaN guard
def test_nan_loss_raises_and_leaves_params_and_checkpoint(tmp_path, monkeypatch):
    model, opt, _, src = _charlm_setup()
    ck = tmp_path / "ck.npz"
    snaps = {0: _snapshot(model)}
    written = {}

    class Snap:
        def on_step_end(self, trainer, info):
            snaps[trainer.step] = _snapshot(trainer.model)

    real_loss = model.loss
    calls = []

    def loss_nan_at_step_5(*args, **kwargs):
        calls.append(1)
        loss, grads, state = real_loss(*args, **kwargs)
        return (math.nan if len(calls) == 5 else loss), grads, state

    monkeypatch.setattr(model, "loss", loss_nan_at_step_5)
    real_save = train_module.save_checkpoint

    def spy_save(path, tree):
        out = real_save(path, tree)
        written[tree["step"]] = ck.read_bytes()
        return out

    monkeypatch.setattr(train_module, "save_checkpoint", spy_save)
    tr = Trainer(model, opt, src, max_steps=10, eval_every=2, checkpoint_path=ck,
                 callbacks=[Snap()], progress=False)
    with pytest.raises(TrainingDivergedError, match=r"step 5: loss = nan") as info:
        tr.fit()
    assert "not applied" in str(info.value)
    assert (info.value.step, info.value.tensor, info.value.restored_step) == (5, "loss", 3)
    # back at the newest state whose loss passed the check (the start of step 4)
    assert tr.step == 3
    _assert_params_equal(model.params, snaps[3])
    # the step-4 state produced the NaN: its evaluation was never written; the step-2 one
    # was, once step 3's loss had passed, and it is what the file holds, byte for byte
    assert sorted(written) == [2]
    assert ck.read_bytes() == written[2]
    assert load_checkpoint(ck)["step"] == 2
    _assert_params_equal(load_checkpoint(ck)["params"], snaps[2])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf * 0 in clip
def test_nan_gradient_raises(monkeypatch):
    model, opt, _, src = _charlm_setup()
    real_loss = model.loss

    def bad_grads(*args, **kwargs):
        loss, grads, state = real_loss(*args, **kwargs)
        grads["head.bias"][0] = math.inf
        return loss, grads, state

    monkeypatch.setattr(model, "loss", bad_grads)
    before = _snapshot(model)
    tr = Trainer(model, opt, src, max_steps=3, clip_norm=1.0, progress=False)
    with pytest.raises(TrainingDivergedError, match="gradient norm = (inf|nan)"):
        tr.fit()
    _assert_params_equal(model.params, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_diverging_learning_rate_raises_diverged_error(tmp_path, dtype):
    """A real divergence (no monkeypatching): an absurd learning rate blows the regressor up;
    the trainer must say so with TrainingDivergedError, not a ValueError from deep inside."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 16, 2)).astype(dtype)
    y = rng.standard_normal((5, 16, 1)).astype(dtype)
    model = SequenceRegressor(2, 4, dtype=dtype, rng=0)
    before = _snapshot(model)
    tr = Trainer(model, SGD(model.params, lr=1e10), MinibatchSource(x, y, 4), max_steps=100,
                 eval_every=1, checkpoint_path=tmp_path / "ck.npz", progress=False)
    with pytest.raises(TrainingDivergedError, match="training diverged at step 2") as info:
        tr.fit()
    assert info.value.restored_step == 0 == tr.step
    _assert_params_equal(model.params, before)
    assert not (tmp_path / "ck.npz").exists()  # no state ever passed the next step's check


def _good_run_then_lr(tmp_path, dtype, opt_cls, clip, lr, on_divergence="raise", **kw):
    """Six healthy steps with a checkpoint at step 6, then a trainer resumed from it with an
    absurd learning rate."""
    ck = tmp_path / "ck.npz"
    model = CharLM(4, 8, dtype=dtype, rng=0)
    src = TBPTTStream(_streams(), 5)
    eval_fn = lambda m: {"val_loss": m.evaluate(TEXT, batch_size=2, k1=20)}  # noqa: E731
    Trainer(model, opt_cls(model.params, lr=0.01), src, max_steps=6, eval_every=3, clip_norm=clip,
            eval_fn=eval_fn, checkpoint_path=ck, progress=False, verbose=False).fit()
    good = ck.read_bytes()
    model2 = CharLM(4, 8, dtype=dtype, rng=0)
    tr = Trainer(model2, opt_cls(model2.params, lr=0.01), src, max_steps=40, eval_every=3,
                 clip_norm=clip, eval_fn=eval_fn, checkpoint_path=ck, progress=False,
                 verbose=False, on_divergence=on_divergence, **kw)
    tr.load(ck)
    tr.optimizer.lr = lr
    return tr, ck, good


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt_cls, lr", [(SGD, 1e3), (Adam, 10.0), (RMSprop, 10.0)])
@pytest.mark.parametrize("clip", [None, 1.0])
def test_exploding_runs_stop_with_the_message_and_keep_the_good_checkpoint(
        tmp_path, dtype, opt_cls, lr, clip):
    tr, ck, good = _good_run_then_lr(tmp_path, dtype, opt_cls, clip, lr)
    good_params = {k: v.copy() for k, v in tr.model.params.items()}
    with pytest.raises(TrainingDivergedError, match=r"^training diverged at step \d+: ") as info:
        tr.fit()
    err = info.value
    assert err.step > 6 and err.tensor and "\n" not in str(err)
    assert not math.isfinite(err.value) or err.value > 10 * math.log(4) * 0.5
    assert ck.read_bytes() == good  # the step-6 checkpoint, byte for byte
    assert all(np.isfinite(p).all() for p in tr.model.params.values())
    if tr.step == 6:
        _assert_params_equal(tr.model.params, good_params)


@pytest.mark.parametrize("opt_cls, lr", [(SGD, 1e3), (Adam, 10.0)])
def test_rollback_lowers_the_lr_and_reaches_a_finite_loss(tmp_path, opt_cls, lr):
    tr, ck, good = _good_run_then_lr(tmp_path, np.float32, opt_cls, None, lr,
                                     on_divergence="rollback", max_rollbacks=4, lr_factor=0.1)
    hist = tr.fit()
    rollbacks = [r for r in hist if "rollback" in r]
    assert 1 <= tr.rollbacks == len(rollbacks) <= 4
    assert [r["lr"] for r in rollbacks] == pytest.approx(
        [lr * 0.1 ** k for k in range(1, tr.rollbacks + 1)], rel=1e-12)
    assert tr.step == 40
    final = [r["val_loss"] for r in hist if "val_loss" in r][-1]
    # finite, and under the spike threshold (10 x the untrained model's ln 4 nats)
    assert math.isfinite(final) and final < 10 * math.log(4)
    assert load_checkpoint(ck)["step"] == 40
    assert load_checkpoint(ck)["trainer"]["rollbacks"] == tr.rollbacks


def test_rollback_gives_up_after_max_rollbacks(monkeypatch):
    model, opt, _, src = _charlm_setup()
    real_loss = model.loss
    calls = []

    def nan_from_call_4(*args, **kwargs):
        calls.append(1)
        loss, grads, state = real_loss(*args, **kwargs)
        return (math.nan if len(calls) >= 4 else loss), grads, state

    monkeypatch.setattr(model, "loss", nan_from_call_4)
    tr = Trainer(model, opt, src, max_steps=10, progress=False, verbose=False,
                 on_divergence="rollback", max_rollbacks=2, lr_factor=0.5)
    with pytest.raises(TrainingDivergedError, match=r"Gave up after 2 rollback\(s\)"):
        tr.fit()
    assert opt.lr == pytest.approx(0.02 * 0.25)
    assert tr.rollbacks == 2


def test_nonfinite_parameter_after_the_update_is_named_and_undone(monkeypatch):
    model, opt, _, src = _charlm_setup()
    tr = Trainer(model, opt, src, max_steps=10, progress=False)
    for _ in range(3):
        tr.train_step()
    before = _snapshot(model)
    real_step = opt.step

    def poisoned(grads):
        real_step(grads)
        model.params["head.bias"][1] = -math.inf

    monkeypatch.setattr(opt, "step", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"step 4: after the update params/head.bias "
                                                    r"holds -inf") as info:
        tr.train_step()
    assert (info.value.tensor, info.value.value) == ("params/head.bias", -math.inf)
    assert tr.step == 3
    _assert_params_equal(model.params, before)


def test_nonfinite_optimizer_state_is_named(monkeypatch):
    model, opt, _, src = _charlm_setup()
    tr = Trainer(model, opt, src, max_steps=10, progress=False)
    tr.train_step()
    real_step = opt.step

    def poisoned(grads):
        real_step(grads)
        opt.state["head.weight"]["exp_avg_sq"][0, 0] = math.nan

    monkeypatch.setattr(opt, "step", poisoned)
    with pytest.raises(TrainingDivergedError,
                       match="optimizer/head.weight/exp_avg_sq holds nan"):
        tr.train_step()
    assert np.isfinite(opt.state["head.weight"]["exp_avg_sq"]).all()


def test_nonfinite_validation_is_never_reported(tmp_path):
    model, opt, _, src = _charlm_setup()
    values = iter([1.5, math.inf])
    tr = Trainer(model, opt, src, max_steps=10, eval_every=2, progress=False, verbose=False,
                 eval_fn=lambda m: {"val_loss": next(values)}, checkpoint_path=tmp_path / "c")
    with pytest.raises(TrainingDivergedError, match="evaluation returned val_loss = inf"):
        tr.fit()
    assert [r["val_loss"] for r in tr.history if "val_loss" in r] == [1.5]
    assert load_checkpoint(tmp_path / "c")["step"] == 2


def test_loss_spike_rule():
    """A finite loss more than spike_factor x max(first loss, running mean) is divergence."""
    model, opt, _, src = _charlm_setup()
    tr = Trainer(model, opt, src, max_steps=10, progress=False, spike_factor=3.0)
    first = tr.train_step()["loss"]
    real_loss = model.loss
    model.loss = lambda *a, **k: (3.0 * first * 1.0001,) + real_loss(*a, **k)[1:]
    with pytest.raises(TrainingDivergedError, match=r"more than 3 x its reference value.*"
                       r"a higher spike_factor than 3\)\.$") as info:
        tr.train_step()
    assert info.value.value == pytest.approx(3.0003 * first)
    assert tr.step == 0  # the step-1 parameters produced the spike: back before that update
    model.loss = lambda *a, **k: (2.99 * first,) + real_loss(*a, **k)[1:]
    tr.train_step()  # just under the threshold: accepted
    assert tr.step == 1


def test_trainer_refuses_an_optimizer_over_other_arrays():
    model, _, _, src = _charlm_setup()
    other = CharLM(4, 6, num_layers=2, dtype=np.float64, rng=3)
    with pytest.raises(ValueError, match="optimizer: expected an optimizer over this model's"):
        Trainer(model, Adam(other.params, lr=0.1), src, max_steps=1)
    copies = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(ValueError, match="the model would never be updated"):
        Trainer(model, Adam(copies, lr=0.1), src, max_steps=1)


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"patience": -1, "eval_fn": lambda m: {}}, ValueError, "patience: expected a positive int"),
    ({"patience": 0, "eval_fn": lambda m: {}}, ValueError, "patience: expected a positive int"),
    ({"verbose": "false"}, TypeError, "verbose: expected True or False, got 'false'"),
    ({"perplexity": 1}, TypeError, "perplexity: expected True or False"),
    ({"on_divergence": "retry"}, ValueError, "on_divergence: expected one of"),
    ({"lr_factor": 1.0}, ValueError, "lr_factor: expected a finite number > 0 and < 1"),
    ({"max_rollbacks": -1}, ValueError, "max_rollbacks: expected an int >= 0"),
    ({"spike_factor": 0.5}, ValueError, "spike_factor: expected a finite number > 1"),
    ({"clip_norm": "5"}, TypeError, "clip_norm: expected a real number"),
    ({"clip_norm": math.nan}, ValueError, "clip_norm: expected a finite number > 0"),
    ({"eval_fn": "val"}, TypeError, "eval_fn: expected a callable"),
    ({"monitor": None}, TypeError, "monitor: expected a metric name"),
])
def test_trainer_argument_errors(kwargs, error, pattern):
    model, opt, _, src = _charlm_setup()
    with pytest.raises(error, match=pattern):
        Trainer(model, opt, src, max_steps=1, **kwargs)


# ---------------------------------------------------------------------------- early stopping
def _scripted_eval(values):
    it = iter(values)
    return lambda model: {"val_loss": next(it)}


def test_early_stopping_with_patience():
    model, opt, _, src = _charlm_setup()
    # evaluations at steps 2, 4, 6, ...: best 2.0 at step 4, then 2 non-improvements
    tr = Trainer(model, opt, src, max_steps=40, eval_every=2, patience=2, progress=False,
                 eval_fn=_scripted_eval([3.0, 2.0, 2.5, 2.0, 1.0, 0.5]))
    hist = tr.fit()
    assert tr.stopped_early and tr.step == 8
    assert tr.best == 2.0 and tr.bad_evals == 2
    assert [r["val_loss"] for r in hist if "val_loss" in r] == [3.0, 2.0, 2.5, 2.0]


def test_no_early_stopping_without_patience():
    model, opt, _, src = _charlm_setup()
    tr = Trainer(model, opt, src, max_steps=6, eval_every=2, progress=False,
                 eval_fn=_scripted_eval([1.0, 2.0, 3.0, 4.0]))
    tr.fit()
    assert tr.step == 6 and not tr.stopped_early


# ---------------------------------------------------------------------------- callbacks, history
def test_callbacks_called():
    model, opt, _, src = _charlm_setup()
    steps, evals = [], []

    class CB:
        def on_step_end(self, trainer, info):
            steps.append((trainer.step, set(info)))

        def on_eval_end(self, trainer, metrics):
            evals.append((trainer.step, dict(metrics)))

    class OnlyStep:  # a callback may implement just one hook
        n = 0

        def on_step_end(self, trainer, info):
            OnlyStep.n += 1

    tr = Trainer(model, opt, src, max_steps=10, eval_every=3, callbacks=[CB(), OnlyStep()],
                 eval_fn=lambda m: {"val_loss": 1.0}, progress=False)
    tr.fit()
    assert [s for s, _ in steps] == list(range(1, 11))
    assert all(keys == {"loss", "grad_norm", "lr"} for _, keys in steps)
    assert OnlyStep.n == 10
    # every 3 steps, plus the final evaluation at step 10
    assert evals == [(3, {"val_loss": 1.0}), (6, {"val_loss": 1.0}), (9, {"val_loss": 1.0}),
                     (10, {"val_loss": 1.0})]


def test_history_rows_and_files(tmp_path):
    model, opt, _, src = _charlm_setup()
    losses = []

    class CB:
        def on_step_end(self, trainer, info):
            losses.append(info["loss"])

    tr = Trainer(model, opt, src, max_steps=10, log_every=4, eval_every=5, callbacks=[CB()],
                 eval_fn=lambda m: {"val_loss": 0.5, "val_acc": 0.75}, progress=False)
    hist = tr.fit()
    train_rows = [r for r in hist if "loss" in r]
    assert [r["step"] for r in train_rows] == [4, 8, 10]
    # each row is the mean training loss over its interval
    assert train_rows[0]["loss"] == pytest.approx(np.mean(losses[0:4]), rel=1e-12)
    assert train_rows[1]["loss"] == pytest.approx(np.mean(losses[4:8]), rel=1e-12)
    assert train_rows[2]["loss"] == pytest.approx(np.mean(losses[8:10]), rel=1e-12)
    assert [r["step"] for r in hist if "val_loss" in r] == [5, 10]

    path_csv = tr.write_history(tmp_path / "out" / "history.csv")
    with open(path_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(hist)
    assert set(rows[0]) == {"step", "loss", "grad_norm", "lr", "elapsed_s", "val_loss",
                            "val_acc"}
    for row, ref in zip(rows, hist, strict=True):
        for k, v in ref.items():
            assert float(row[k]) == pytest.approx(v, rel=1e-12)
        for k in set(row) - set(ref):
            assert row[k] == ""

    path_json = tr.write_history(tmp_path / "history.json")
    assert json.loads(path_json.read_text()) == hist


# ---------------------------------------------------------------------------- clipping
def test_clip_norm_applied_and_history_has_pre_clip_norm():
    model, _, _, src = _charlm_setup()
    model.rng = np.random.default_rng(0)
    batch = src.get(0)
    _, grads, _ = model.loss(batch.inputs, batch.targets, None, **batch.kwargs)
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))  # by hand
    max_norm = 0.1 * norm
    lr = 0.5
    before = _snapshot(model)
    tr = Trainer(model, SGD(model.params, lr=lr), src, max_steps=1, log_every=1,
                 clip_norm=max_norm, progress=False)
    hist = tr.fit()
    assert hist[0]["grad_norm"] == pytest.approx(norm, rel=1e-12)  # before clipping
    # plain SGD: the update is -lr * g * max_norm / norm, of global norm lr * max_norm
    scale = max_norm / (norm + 1e-6)
    for k in before:
        np.testing.assert_allclose(before[k] - model.params[k], lr * scale * grads[k],
                                   rtol=1e-10, atol=1e-15)
    step_norm = math.sqrt(sum(float(np.sum((before[k] - model.params[k]) ** 2))
                              for k in before))
    assert step_norm == pytest.approx(lr * max_norm * norm / (norm + 1e-6), rel=1e-12)


def test_clip_norm_validation():
    model, opt, _, src = _charlm_setup()
    with pytest.raises(ValueError, match="clip_norm"):
        Trainer(model, opt, src, max_steps=1, clip_norm=0.0)
    with pytest.raises(ValueError, match="exactly one"):
        Trainer(model, opt, src)
    with pytest.raises(ValueError, match="exactly one"):
        Trainer(model, opt, src, max_steps=2, epochs=1)


# ---------------------------------------------------------------------------- epochs, plateau
def test_epochs_equals_max_steps():
    def run(**kw):
        model, opt, _, src = _classifier_setup(dropout=0.2)
        tr = Trainer(model, opt, src, progress=False, log_every=2, **kw)
        tr.fit()
        return tr, src

    a, src = run(epochs=2)
    assert src.num_batches == 3 and a.max_steps == 6 and a.step == 6
    b, _ = run(max_steps=6)
    _assert_params_equal(a.model.params, b.model.params)
    assert _no_time(a.history) == _no_time(b.history)


def test_reduce_lr_on_plateau_steps_on_monitored_metric():
    model, _, _, src = _charlm_setup()
    opt = SGD(model.params, lr=0.1)
    plateau = ReduceLROnPlateau(opt, factor=0.5, patience=1)
    # evals at 2, 4, 6, 8, 10: best 1.0, then 2 bad -> cut at step 6; 1 more good ... by hand:
    # step 2: 1.0 best; 4: 1.0 bad 1; 6: 1.0 bad 2 > 1 -> lr 0.05; 8: 0.5 best; 10: 0.6 bad 1
    values = {2: 1.0, 4: 1.0, 6: 1.0, 8: 0.5, 10: 0.6}
    lrs = []

    class CB:
        def on_step_end(self, trainer, info):
            lrs.append(info["lr"])

    tr = Trainer(model, opt, src, max_steps=10, eval_every=2, scheduler=plateau,
                 monitor="val_loss", callbacks=[CB()], progress=False,
                 eval_fn=lambda m: {"val_loss": values[tr.step], "other": 5.0})
    tr.fit()
    assert plateau.last_epoch == 5  # stepped once per evaluation, not per update
    assert lrs == [0.1] * 6 + [0.05] * 4
    assert opt.lr == 0.05 and plateau.best == 0.5

    # a monitor that is not in the metrics is a mistake to report, not a silent no-op
    model, _, _, src = _charlm_setup()
    opt = SGD(model.params, lr=0.1)
    plateau = ReduceLROnPlateau(opt, factor=0.5, patience=0)
    tr = Trainer(model, opt, src, max_steps=6, eval_every=1, scheduler=plateau,
                 monitor="val_loss", eval_fn=lambda m: {"acc": 1.0}, progress=False)
    with pytest.raises(ValueError, match="'val_loss'"):
        tr.fit()
    assert plateau.last_epoch == 0 and opt.lr == 0.1


def test_early_stopping_needs_the_monitored_metric():
    model, _, _, src = _charlm_setup()
    with pytest.raises(ValueError, match="eval_fn"):
        Trainer(model, SGD(model.params, lr=0.1), src, max_steps=5, patience=1)
    tr = Trainer(model, SGD(model.params, lr=0.1), src, max_steps=5, eval_every=1, patience=1,
                 eval_fn=lambda m: {"loss": 1.0}, progress=False, verbose=False)
    with pytest.raises(ValueError, match="monitor"):
        tr.fit()


def test_step_schedule_stepped_per_update():
    model, _, _, src = _charlm_setup()
    opt = SGD(model.params, lr=0.8)
    sched = StepLR(opt, step_size=3, gamma=0.5)
    lrs = []

    class CB:
        def on_step_end(self, trainer, info):
            lrs.append(info["lr"])

    Trainer(model, opt, src, max_steps=7, scheduler=sched, callbacks=[CB()],
            progress=False).fit()
    # info["lr"] is the lr after the schedule step: 0.8 * 0.5 ** (t // 3), t = 1..7
    assert lrs == [0.8 * 0.5 ** (t // 3) for t in range(1, 8)]


def test_minibatch_source_epochs_and_shuffle():
    x, y = _classification_data(N=10)
    src = MinibatchSource(x, y, 4, seed=3, lengths=np.full(10, 5))
    assert src.num_batches == 3
    for epoch in range(2):
        seen = np.concatenate([src.get(epoch * 3 + j).targets for j in range(3)])
        order = np.random.default_rng([3, epoch]).permutation(10)
        np.testing.assert_array_equal(seen, y[order])
    first = [src.get(j).inputs for j in range(3)]
    second = [src.get(3 + j).inputs for j in range(3)]
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert src.get(0).kwargs["lengths"].shape == (4,)
    assert len(src.get(2).targets) == 2  # partial last batch
    assert MinibatchSource(x, y, 4, drop_last=True).num_batches == 2
    with pytest.raises(ValueError, match="targets"):
        MinibatchSource(x, y[:5], 4)
    with pytest.raises(ValueError, match="exceeds"):
        MinibatchSource(x, y, 11, drop_last=True)


def test_history_survives_deepcopy_and_json():
    """History rows are plain floats/ints (JSON-able), so checkpoints can store them."""
    model, opt, _, src = _charlm_setup()
    tr = Trainer(model, opt, src, max_steps=4, log_every=2, progress=False)
    hist = tr.fit()
    assert json.loads(json.dumps(copy.deepcopy(hist))) == hist
    assert all(isinstance(v, int | float) for row in hist for v in row.values())


# ---------------------------------------------------------------------------- stop, rows, clock
def test_request_stop_ends_after_the_current_update_and_checkpoints_that_step(tmp_path):
    model, opt, _, source = _charlm_setup()

    class StopAtSeven:
        def on_step_end(self, trainer, info):
            if trainer.step == 7:
                trainer.request_stop("time budget")

    path = tmp_path / "c.npz"
    trainer = Trainer(model, opt, source, max_steps=50, checkpoint_path=path, eval_every=100,
                      callbacks=[StopAtSeven()], progress=False, verbose=False)
    trainer.fit()
    assert trainer.step == 7 and trainer.stop_reason == "time budget"
    assert int(load_checkpoint(path)["step"]) == 7
    # the same 7 updates as an uninterrupted 7-step run
    m2, o2, _, s2 = _charlm_setup()
    Trainer(m2, o2, s2, max_steps=7, progress=False, verbose=False).fit()
    _assert_params_equal(_snapshot(model), _snapshot(m2))


def test_one_history_row_per_step_with_evaluation_columns_filled_in():
    model, opt, _, source = _charlm_setup()
    trainer = Trainer(model, opt, source, max_steps=6, log_every=1, eval_every=3,
                      eval_fn=lambda m: {"val_loss": 1.5}, progress=False, verbose=False)
    history = trainer.fit()
    assert [r["step"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert [r.get("val_loss") for r in history] == [None, None, 1.5, None, None, 1.5]
    assert all("loss" in r for r in history)


def test_elapsed_time_continues_across_a_resume(tmp_path):
    model, opt, _, source = _charlm_setup()
    path = tmp_path / "c.npz"
    trainer = Trainer(model, opt, source, max_steps=4, checkpoint_path=path, progress=False,
                      verbose=False)
    trainer.fit()
    first = load_checkpoint(path)["trainer"]["elapsed_s"]
    assert first > 0
    m2, o2, _, s2 = _charlm_setup()
    resumed = Trainer(m2, o2, s2, max_steps=8, log_every=1, progress=False, verbose=False)
    resumed.load(path)
    assert resumed.elapsed_before == pytest.approx(first)
    resumed.fit()
    assert all(r["elapsed_s"] >= first for r in resumed.history if r["step"] > 4)


# ---------------------------------------------------------------------------- checkpoint schema
def _corrupt(tree, how):
    if how == "int64 weights":
        tree["params"]["head.weight"] = tree["params"]["head.weight"].astype(np.int64)
    elif how == "bool weights":
        tree["params"]["head.weight"] = tree["params"]["head.weight"] > 0
    elif how == "float16 weights":
        tree["params"]["head.weight"] = tree["params"]["head.weight"].astype(np.float16)
    elif how == "transposed weights":
        tree["params"]["head.weight"] = tree["params"]["head.weight"].T.copy()
    elif how == "nan weights":
        tree["params"]["head.bias"][0] = math.nan
    elif how == "nan optimizer state":
        tree["optimizer"]["state"]["head.bias"]["exp_avg"][0] = math.inf
    elif how == "negative step":
        tree["step"] = -5
    elif how == "float step":
        tree["step"] = 2.5
    elif how == "missing state":
        del tree["state"]
    elif how == "missing params":
        del tree["params"]
    elif how == "extra param":
        tree["params"]["head.extra"] = np.zeros(3)
    elif how == "state of ints":
        tree["state"] = [np.zeros((2, 2, 6), np.int64)] * 2
    elif how == "rng garbage":
        tree["rng"]["model"] = "{}"
    elif how == "history not a list":
        tree["history"] = "rows"
    elif how == "model not a dict":
        tree["model"] = "CharLM"
    elif how == "interval of strings":
        tree["trainer"]["interval"] = [{"loss": "high"}]
    return tree


SCHEMA_CASES = {
    "int64 weights": "params/head.weight: expected shape .* dtype float64, got .* dtype int64",
    "bool weights": "params/head.weight: expected shape .* got .* dtype bool",
    "float16 weights": "params/head.weight: expected .* got .* dtype float16",
    "transposed weights": r"params/head.weight: expected shape \(4, 6\)",
    "nan weights": "params/head.bias: expected finite values, got nan",
    "nan optimizer state": "optimizer/state/head.bias/exp_avg: expected finite values, got inf",
    "negative step": "step: expected an int >= 0, got -5",
    "float step": "step: expected int, got float",
    "missing state": "state: expected a member 'state'",
    "missing params": "params: expected a member 'params'",
    "extra param": r"params: expected the parameters .* unexpected \['head.extra'\]",
    "state of ints": "state/0: expected an array of dtype float64, got dtype int64",
    "rng garbage": "rng state: expected the JSON state of a PCG64",
    "history not a list": "history: expected list, got str",
    "model not a dict": "model/class: expected a CharLM checkpoint, got None",
    "interval of strings": "trainer/interval/0: expected a dict of numbers",
}


@pytest.mark.parametrize("how", list(SCHEMA_CASES))
def test_malformed_checkpoint_is_refused_naming_the_member(tmp_path, how):
    model, opt, _, src = _charlm_setup()
    ck = tmp_path / "ck.npz"
    Trainer(model, opt, src, max_steps=4, eval_every=2, checkpoint_path=ck,
            progress=False).fit()
    from lstm_bptt.checkpoint import save_checkpoint

    save_checkpoint(ck, _corrupt(load_checkpoint(ck), how))
    fresh, opt2, _, _ = _charlm_setup(seed=9)
    before = _snapshot(fresh)
    tr = Trainer(fresh, opt2, src, max_steps=8, progress=False)
    with pytest.raises(ValueError, match=SCHEMA_CASES[how]) as info:
        tr.load(ck)
    assert "\n" not in str(info.value) and str(ck) in str(info.value)
    _assert_params_equal(fresh.params, before)  # all or nothing
    assert tr.step == 0 and opt2.state == {}


def test_load_params_refuses_casts():
    m = CharLM(4, 6, dtype=np.float32, rng=0)
    p = {k: v.astype(np.float64) for k, v in m.params.items()}
    with pytest.raises(TypeError, match="expected an array of dtype float32, got dtype float64"):
        m.load_params(p)
    with pytest.raises(TypeError, match="params: expected a dict"):
        m.load_params([1, 2])
