"""Hostile-input sweep: try many bad inputs against the public Python API and the CLI, and
classify what each one does.

    python scripts/hostile_sweep.py [--api-only | --cli-only] [--json OUT] [--verbose]

Classes (the goal is "clear" for every case):

* clear      : a TypeError / ValueError / OSError / TrainingDivergedError (CLI: exit 1 or 2,
               130/143 for signals) with a one-line message, raised by lstm_bptt's own check
               (the innermost frame is in the package, not in NumPy or the standard library);
* traceback  : any other exception, or one raised from deep inside NumPy/the standard library
               (CLI: "Traceback" on stderr);
* silent     : the call returned (CLI: exit 0) although the input is wrong; a few cases accept
               a documented result instead (their ``ok`` check must hold);
* hang       : no answer within the time limit (5 s per API case, 60 s per CLI case).

The process limits its address space to 4 GiB, so a case that would eat memory ends as a
MemoryError (a traceback) rather than taking the machine down. Runs with any version of the
package (it only uses the public names), so the figures before and after a change compare.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lstm_bptt as L  # noqa: E402

CLEAR_TYPES = (TypeError, ValueError, OSError)


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout


def _innermost_in_package(tb) -> bool:
    frames = traceback.extract_tb(tb)
    return bool(frames) and "lstm_bptt" in frames[-1].filename


# --------------------------------------------------------------------------------- fixtures
def charlm(**kw):
    return L.CharLM(5, 6, dtype=np.float64, rng=0, **kw)


def clf():
    return L.SequenceClassifier(3, 4, 2, rng=0)


def reg(**kw):
    return L.SequenceRegressor(3, 4, 1, rng=0, **kw)


IDS = np.array([[0, 1], [2, 3], [4, 0]])  # (T=3, B=2)
X = np.random.default_rng(0).standard_normal((4, 2, 3))  # (T, B, D)


def _trainer(**kw):
    m = charlm()
    src = L.TBPTTStream(np.tile(np.arange(5), 8).reshape(-1, 2), 4)
    return L.Trainer(m, L.Adam(m.params, lr=0.01), src, **{"max_steps": 2, "progress": False,
                                                              **kw})


def _ckpt_dir():
    d = Path(tempfile.mkdtemp(prefix="hostile-"))
    return d


def _good_ckpt():
    d = _ckpt_dir()
    tr = _trainer(checkpoint_path=d / "ck.npz", eval_every=1)
    tr.fit()
    return d / "ck.npz"


def _forged(tree_edit):
    path = _good_ckpt()
    tree = L.load_checkpoint(path)
    tree_edit(tree)
    L.save_checkpoint(path, tree)
    return path


def _load_into_trainer(path):
    return _trainer().load(path)


def _bomb():
    """1.2 MB file with a 1 GiB (declared) extra member, deflated zeros."""
    path = _good_ckpt()
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("extra.npy", "w", force_zip64=True) as fh:
            chunk = bytes(1 << 24)
            for _ in range(64):
                fh.write(chunk)
    return path


def _bomb_param():
    """The member of a parameter replaced by a 256 MiB deflated array (header consistent)."""
    path = _good_ckpt()
    tmp = path.with_suffix(".new")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(
            tmp, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename == "params/head.weight.npy":
                with dst.open(info.filename, "w", force_zip64=True) as fh:
                    np.lib.format.write_array_header_1_0(
                        fh, {"descr": "<f8", "fortran_order": False, "shape": (1 << 25,)})
                    chunk = bytes(1 << 24)
                    for _ in range(16):
                        fh.write(chunk)
            else:
                dst.writestr(info, src.read(info))
    os.replace(tmp, path)
    return path


def _deep_json():
    path = _ckpt_dir() / "ck.npz"
    meta = '{"format": "lstm-bptt-checkpoint-v1", "tree": ' + "[" * 50000 + "]" * 50000 + "}"
    np.savez(path, __tree__=np.array(meta))
    return path


def _fifo():
    p = _ckpt_dir() / "fifo.npz"
    os.mkfifo(p)
    return p


def _devzero():
    p = _ckpt_dir() / "zero.npz"
    p.symlink_to("/dev/zero")
    return p


def _noperm():
    p = _good_ckpt()
    p.chmod(0)
    return p


# --------------------------------------------------------------------------------- API cases
def api_cases():
    C = []

    def case(name, fn, ok=None, prep=None):
        # prep (untimed) builds a costly fixture; fn then receives it
        C.append((name, fn, ok, prep))

    # models: constructors
    for k, v in [("vocab_size", 0), ("vocab_size", 2.5), ("vocab_size", "5"), ("hidden_size", -1),
                 ("hidden_size", True), ("num_layers", 0), ("embedding_dim", 0),
                 ("dropout", 1.0), ("dropout", -0.1), ("dropout", "0.2"), ("dropout", math.nan),
                 ("dtype", np.int32), ("dtype", "float16"), ("rng", "seed"),
                 ("forget_bias", "1"), ("forget_bias", math.inf)]:
        kw = {"vocab_size": 5, "hidden_size": 6, k: v}
        case(f"CharLM({k}={v!r})", lambda kw=kw: L.CharLM(**kw))
    case("SequenceClassifier(num_classes=0)", lambda: L.SequenceClassifier(3, 4, 0))
    case("SequenceRegressor(many_to_one='no')",
         lambda: L.SequenceRegressor(3, 4, many_to_one="no"))
    case("SequenceRegressor(output_size=-2)", lambda: L.SequenceRegressor(3, 4, -2))
    # models: forward / loss
    case("CharLM.loss(float inputs)", lambda: charlm().loss(IDS.astype(float), IDS))
    case("CharLM.loss(ids >= V)", lambda: charlm().loss(IDS + 5, IDS))
    case("CharLM.loss(negative ids)", lambda: charlm().loss(IDS - 1, IDS))
    case("CharLM.loss(1-D inputs)", lambda: charlm().loss(IDS[:, 0], IDS[:, 0]))
    case("CharLM.loss(targets shape)", lambda: charlm().loss(IDS, IDS[:2]))
    case("CharLM.loss(state_at=-1)", lambda: charlm().loss(IDS, IDS, state_at=-1))
    case("CharLM.loss(state_at=T+1)", lambda: charlm().loss(IDS, IDS, state_at=4))
    case("CharLM.loss(state_at=1.5)", lambda: charlm().loss(IDS, IDS, state_at=1.5))
    case("CharLM.loss(state wrong shape)",
         lambda: charlm().loss(IDS, IDS, (np.zeros((1, 3, 6)), np.zeros((1, 3, 6)))))
    case("CharLM.loss(state = one array)", lambda: charlm().loss(IDS, IDS, np.zeros((1, 2, 6))))
    case("CharLM.loss(state with NaN)",
         lambda: charlm().loss(IDS, IDS, (np.full((1, 2, 6), np.nan), np.zeros((1, 2, 6)))))
    case("CharLM.loss(state float32 into float64)",
         lambda: charlm().loss(IDS, IDS, (np.zeros((1, 2, 6), np.float32),) * 2))
    case("CharLM.loss(mask shape)", lambda: charlm().loss(IDS, IDS, mask=np.ones((2, 2), bool)))
    case("CharLM.loss(mask all False)", lambda: charlm().loss(IDS, IDS, mask=np.zeros((3, 2),
                                                                                     bool)))
    case("CharLM.loss(train='no')", lambda: charlm().loss(IDS, IDS, train="no"))
    case("CharLM.forward(train='false')", lambda: charlm(dropout=0.5).forward(IDS, train="false"))
    case("CharLM.loss(empty T)", lambda: charlm().loss(IDS[:0], IDS[:0]))
    case("CharLM.loss(None inputs)", lambda: charlm().loss(None, IDS))
    case("CharLM.evaluate(batch_size=0)", lambda: charlm().evaluate(np.arange(20) % 5,
                                                                   batch_size=0))
    case("CharLM.evaluate(batch_size=-1)", lambda: charlm().evaluate(np.arange(20) % 5,
                                                                    batch_size=-1))
    case("CharLM.evaluate(k1=0)", lambda: charlm().evaluate(np.arange(20) % 5, k1=0))
    case("CharLM.evaluate(batch_size=2.5)", lambda: charlm().evaluate(np.arange(20) % 5,
                                                                     batch_size=2.5))
    case("CharLM.evaluate(2-D ids)", lambda: charlm().evaluate(IDS, batch_size=1))
    case("CharLM.evaluate(too short)", lambda: charlm().evaluate(np.arange(3), batch_size=4))
    case("CharLM.sample(temperature=inf)", lambda: charlm().sample(5, temperature=math.inf))
    case("CharLM.sample(temperature=1e-320)", lambda: charlm().sample(5, temperature=1e-320),
         ok=lambda r: isinstance(r, np.ndarray) and r.shape == (5,))
    case("CharLM.sample(temperature=0)", lambda: charlm().sample(5, temperature=0))
    case("CharLM.sample(temperature=nan)", lambda: charlm().sample(5, temperature=math.nan))
    case("CharLM.sample(temperature='hot')", lambda: charlm().sample(5, temperature="hot"))
    case("CharLM.sample(length=-1)", lambda: charlm().sample(-1))
    case("CharLM.sample(length=2.5)", lambda: charlm().sample(2.5))
    case("CharLM.sample(length=10**12)", lambda: charlm().sample(10**12))
    case("CharLM.sample(top_k=0)", lambda: charlm().sample(5, top_k=0))
    case("CharLM.sample(top_k=99)", lambda: charlm().sample(5, top_k=99))
    case("CharLM.sample(greedy='yes')", lambda: charlm().sample(5, greedy="yes"))
    case("CharLM.sample(prime=str)", lambda: charlm().sample(5, prime="ab"))
    case("CharLM.sample(prime float)", lambda: charlm().sample(5, prime=[0.5, 1.0]))
    case("CharLM.sample(prime >= V)", lambda: charlm().sample(5, prime=[7]))
    case("CharLM.sample(rng='x')", lambda: charlm().sample(5, rng="x"))
    case("Classifier.loss(int inputs)", lambda: clf().loss(np.ones((4, 2, 3), int),
                                                         np.array([0, 1])))
    case("Classifier.loss(D mismatch)", lambda: clf().loss(X[..., :2], np.array([0, 1])))
    case("Classifier.loss(targets >= C)", lambda: clf().loss(X, np.array([0, 2])))
    case("Classifier.loss(targets float)", lambda: clf().loss(X, np.array([0.0, 1.0])))
    case("Classifier.loss(lengths > T)", lambda: clf().loss(X, np.array([0, 1]),
                                                          lengths=np.array([5, 2])))
    case("Classifier.loss(lengths 0)", lambda: clf().loss(X, np.array([0, 1]),
                                                        lengths=np.array([0, 2])))
    case("Classifier.loss(lengths shape)", lambda: clf().loss(X, np.array([0, 1]),
                                                            lengths=np.array([1, 2, 3])))
    case("Classifier.loss(NaN inputs)", lambda: clf().loss(np.full((4, 2, 3), np.nan),
                                                         np.array([0, 1])))
    case("Classifier.predict(lengths float)", lambda: clf().predict(X, lengths=[2.0, 3.0]))
    case("Regressor.loss(targets shape)", lambda: reg().loss(X, np.zeros((4, 2, 2))))
    case("Regressor.loss(float32 targets)", lambda: reg().loss(X, np.zeros((4, 2, 1),
                                                                          np.float32)))
    case("Regressor.loss(lengths > T)", lambda: reg().loss(X, np.zeros((4, 2, 1)),
                                                         lengths=np.array([9, 1])))
    case("Regressor.loss(mask shape)", lambda: reg().loss(X, np.zeros((4, 2, 1)),
                                                        mask=np.ones((3, 2), bool)))
    case("load_params(int64)", lambda: charlm().load_params(
        {k: v.astype(np.int64) for k, v in charlm().params.items()}))
    case("load_params(float16)", lambda: charlm().load_params(
        {k: v.astype(np.float16) for k, v in charlm().params.items()}))
    case("load_params(bool)", lambda: charlm().load_params(
        {k: v > 0 for k, v in charlm().params.items()}))
    case("load_params(NaN)", lambda: charlm().load_params(
        {k: np.full_like(v, np.nan) for k, v in charlm().params.items()}))
    case("load_params(list)", lambda: charlm().load_params([1, 2]))
    case("build_model(unknown)", lambda: __import__("lstm_bptt.models").models.build_model(
        "GPT", {}))
    case("build_model(config junk)", lambda: __import__("lstm_bptt.models").models.build_model(
        "CharLM", {"vocab_size": 5, "bogus": 1}))
    # layers
    case("LSTM(input_size=0)", lambda: L.LSTM(0, 4))
    case("LSTM(dropout=2)", lambda: L.LSTM(3, 4, 2, dropout=2))
    case("LSTM(batch_first='yes')", lambda: L.LSTM(3, 4, batch_first="yes"))
    case("LSTM(bias='no')", lambda: L.LSTM(3, 4, bias="no"))
    case("LSTM.forward(2-D x)", lambda: L.LSTM(3, 4).forward(X[0]))
    case("LSTM.forward(D mismatch)", lambda: L.LSTM(3, 4).forward(X[..., :2]))
    case("LSTM.forward(hx wrong)", lambda: L.LSTM(3, 4).forward(X, (np.zeros((1, 2, 5)),
                                                                    np.zeros((1, 2, 4)))))
    case("LSTM.forward(train=1)", lambda: L.LSTM(3, 4, 2, dropout=0.5).forward(X, train=1))
    case("LSTM.backward(None cache)", lambda: L.LSTM(3, 4).backward(np.zeros((4, 2, 4)), None))
    case("LSTM.backward(dout shape)", lambda: (lambda lay: lay.backward(
        np.zeros((4, 2, 5)), lay.forward(X)[2]))(L.LSTM(3, 4)))
    case("LSTM.backward(cache of another)", lambda: (lambda a, b: a.backward(
        np.zeros((4, 2, 4)), b.forward(np.zeros((4, 2, 5)))[2]))(L.LSTM(3, 4), L.LSTM(5, 4)))
    case("Linear.forward(D mismatch)", lambda: L.Linear(3, 2).forward(np.zeros((2, 4))))
    case("Linear.backward(None cache)", lambda: L.Linear(3, 2).backward(np.zeros((2, 2)), None))
    case("Embedding.forward(ids >= V)", lambda: L.Embedding(4, 2).forward(np.array([[4]])))
    case("Embedding.forward(float ids)", lambda: L.Embedding(4, 2).forward(np.array([[1.0]])))
    case("dropout_forward(p=1)", lambda: L.dropout_forward(X, 1.0, np.random.default_rng(0)))
    case("dropout_forward(p=-0.5)", lambda: L.dropout_forward(X, -0.5, np.random.default_rng(0)))
    case("dropout_forward(train='no')", lambda: L.dropout_forward(X, 0.5, 0, train="no"))
    case("dropout_backward(None mask)", lambda: L.dropout_backward(X, None),
         ok=lambda r: isinstance(r, np.ndarray) and r.shape == X.shape)
    case("lstm_cell_backward(None cache)",
         lambda: L.lstm_cell_backward(np.zeros((2, 4)), np.zeros((2, 4)), None))
    # losses
    case("softmax_cross_entropy(targets >= V)",
         lambda: L.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3])))
    case("softmax_cross_entropy(float targets)",
         lambda: L.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0])))
    case("softmax_cross_entropy(inf logits)",
         lambda: L.softmax_cross_entropy(np.full((2, 3), np.inf), np.array([0, 1])))
    case("softmax_cross_entropy(shape)",
         lambda: L.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2])))
    case("mse_loss(shape mismatch)", lambda: L.mse_loss(np.zeros((2, 3)), np.zeros((3, 2))))
    case("mse_loss(float32 overflow)", lambda: L.mse_loss(np.full((4,), 3e38, np.float32),
                                                         np.full((4,), -3e38, np.float32)),
         ok=lambda r: all(np.isfinite(np.asarray(v)).all() for v in r))
    case("mse_loss(mixed dtypes)", lambda: L.mse_loss(np.zeros(2, np.float32), np.zeros(2)))
    case("mse_loss(mask all False)", lambda: L.mse_loss(np.zeros(2), np.zeros(2),
                                                       np.zeros(2, bool)))
    # optimizers
    for cls, kw in [(L.SGD, {"lr": -1}), (L.SGD, {"lr": "0.1"}), (L.SGD, {"lr": math.nan}),
                    (L.SGD, {"lr": 0.1, "nesterov": "yes"}), (L.SGD, {"lr": 0.1, "momentum": -1}),
                    (L.Adam, {"lr": 0.1, "eps": 0}), (L.Adam, {"lr": 0.1, "eps": -1e-8}),
                    (L.Adam, {"lr": 0.1, "betas": (1.0, 0.999)}),
                    (L.Adam, {"lr": 0.1, "betas": (0.9,)}),
                    (L.Adam, {"lr": 0.1, "amsgrad": "false"}), (L.AdamW, {"lr": 0.1,
                                                                          "weight_decay": -1}),
                    (L.RMSprop, {"lr": 0.1, "alpha": 1.5}), (L.RMSprop, {"lr": 0.1, "eps": 0}),
                    (L.Adagrad, {"lr": 0.1, "eps": 0}), (L.Adagrad, {"lr": 0.1, "lr_decay": -1})]:
        case(f"{cls.__name__}({kw})", lambda cls=cls, kw=kw: cls(charlm().params, **kw))
    case("Adam(params=list)", lambda: L.Adam([np.zeros(3)], lr=0.1))
    case("Adam(int params)", lambda: L.Adam({"w": np.zeros(3, int)}, lr=0.1))
    case("Adam.step(grads missing)", lambda: L.Adam({"w": np.zeros(3)}, lr=0.1).step({}))
    case("Adam.step(grads shape)", lambda: L.Adam({"w": np.zeros(3)}, lr=0.1).step(
        {"w": np.zeros(4)}))
    case("Adam.step(grads list)", lambda: L.Adam({"w": np.zeros(3)}, lr=0.1).step(
        {"w": [0.0, 0.0, 0.0]}))
    case("Adam.load_state_dict(junk)", lambda: L.Adam({"w": np.zeros(3)}, lr=0.1)
         .load_state_dict({"type": "Adam"}))
    case("clip_grad_norm(max_norm=0)", lambda: L.clip_grad_norm({"w": np.ones(3)}, 0))
    case("clip_grad_norm(max_norm=-1)", lambda: L.clip_grad_norm({"w": np.ones(3)}, -1))
    case("clip_grad_norm(max_norm=nan)", lambda: L.clip_grad_norm({"w": np.ones(3)}, math.nan))
    case("clip_grad_value(clip=-1)", lambda: L.clip_grad_value({"w": np.ones(3)}, -1))
    # schedules
    opt = lambda: L.SGD({"w": np.zeros(2)}, lr=0.1)  # noqa: E731
    case("ExponentialLR(gamma=1e10)", lambda: L.ExponentialLR(opt(), gamma=1e10))
    case("ExponentialLR(gamma=0)", lambda: L.ExponentialLR(opt(), gamma=0))
    case("ExponentialLR(gamma=-1)", lambda: L.ExponentialLR(opt(), gamma=-1))
    case("StepLR(step_size=0)", lambda: L.StepLR(opt(), step_size=0))
    case("StepLR(gamma=2)", lambda: L.StepLR(opt(), step_size=2, gamma=2.0))
    case("CosineAnnealingLR(T_max=0)", lambda: L.CosineAnnealingLR(opt(), T_max=0))
    case("CosineAnnealingLR(eta_min > lr)", lambda: L.CosineAnnealingLR(opt(), T_max=5,
                                                                        eta_min=1.0))
    case("LinearWarmup(warmup=-1)", lambda: L.LinearWarmup(opt(), -1))
    case("LinearWarmup(start_factor=0)", lambda: L.LinearWarmup(opt(), 3, start_factor=0))
    case("ReduceLROnPlateau(factor=1)", lambda: L.ReduceLROnPlateau(opt(), factor=1.0))
    case("ReduceLROnPlateau(mode='avg')", lambda: L.ReduceLROnPlateau(opt(), mode="avg"))
    case("ReduceLROnPlateau.step('1.0')", lambda: L.ReduceLROnPlateau(opt()).step("1.0"))
    case("StepLR(optimizer=None)", lambda: L.StepLR(None, 2))
    # trainer and sources
    case("Trainer(patience=-1)", lambda: _trainer(patience=-1, eval_fn=lambda m: {}))
    case("Trainer(patience=0)", lambda: _trainer(patience=0, eval_fn=lambda m: {}))
    case("Trainer(verbose='false')", lambda: _trainer(verbose="false"))
    case("Trainer(progress='no')", lambda: _trainer(progress="no"))
    case("Trainer(clip_norm=-1)", lambda: _trainer(clip_norm=-1))
    case("Trainer(clip_norm='5')", lambda: _trainer(clip_norm="5"))
    case("Trainer(max_steps=0)", lambda: _trainer(max_steps=0))
    case("Trainer(max_steps=2.5)", lambda: _trainer(max_steps=2.5))
    case("Trainer(eval_every=0)", lambda: _trainer(eval_every=0))
    case("Trainer(log_every=-5)", lambda: _trainer(log_every=-5))
    case("Trainer(eval_fn='x')", lambda: _trainer(eval_fn="x"))
    case("Trainer(monitor=None, patience)", lambda: _trainer(monitor=None, patience=2,
                                                            eval_fn=lambda m: {}))

    def foreign_opt():
        m, other = charlm(), charlm()
        src = L.TBPTTStream(np.tile(np.arange(5), 8).reshape(-1, 2), 4)
        tr = L.Trainer(m, L.Adam(other.params, lr=0.1), src, max_steps=3, progress=False)
        before = {k: v.copy() for k, v in m.params.items()}
        tr.fit()
        return all(np.array_equal(before[k], m.params[k]) for k in before)

    case("Trainer(another model's optimizer)", foreign_opt)
    case("Trainer(model=None)", lambda: L.Trainer(None, None, None, max_steps=1))
    case("Trainer(eval_fn returns str)", lambda: _trainer(eval_fn=lambda m: {"val_loss": "low"},
                                                          eval_every=1).fit())
    case("Trainer(eval_fn returns nan)", lambda: _trainer(eval_fn=lambda m: {"val_loss":
                                                                            math.nan}).fit())
    case("Trainer.load(dir)", lambda: _trainer().load(_ckpt_dir()))
    case("Trainer.load(42)", lambda: _trainer().load(42))
    case("MinibatchSource(batch_size=0)", lambda: L.MinibatchSource(X, np.zeros(2, int), 0))
    case("MinibatchSource(N mismatch)", lambda: L.MinibatchSource(X, np.zeros(3, int), 1))
    case("MinibatchSource(shuffle='no')", lambda: L.MinibatchSource(X, np.zeros(2, int), 1,
                                                                     shuffle="no"))
    case("MinibatchSource(lengths > T)", lambda: L.MinibatchSource(X, np.zeros(2, int), 1,
                                                                    lengths=np.array([9, 9])))
    case("TBPTTStream(k1=0)", lambda: L.TBPTTStream(np.zeros((10, 2), int), 0))
    case("TBPTTStream(k2<k1)", lambda: L.TBPTTStream(np.zeros((10, 2), int), 4, 2))
    case("TBPTTStream(float streams)", lambda: L.TBPTTStream(np.zeros((10, 2)), 4))
    case("TBPTTStream(1-D)", lambda: L.TBPTTStream(np.zeros(10, int), 4))
    # data
    case("CharVocab([])", lambda: L.CharVocab([]))
    case("CharVocab(['ab'])", lambda: L.CharVocab(["ab"]))
    case("CharVocab.encode(unknown)", lambda: L.CharVocab.from_text("abc").encode("abz"))
    case("CharVocab.decode(out of range)", lambda: L.CharVocab.from_text("abc").decode([5]))
    case("CharVocab.from_array(float)", lambda: L.CharVocab.from_array(np.array([97.5])))
    case("batchify(batch_size=0)", lambda: L.batchify(np.arange(10), 0))
    case("batchify(batch_size>N)", lambda: L.batchify(np.arange(10), 20))
    case("split_train_val(fraction=1.5)", lambda: L.split_train_val(np.arange(10), 1.5))
    case("load_text(missing)", lambda: L.load_text("/nonexistent/file.txt"))
    case("load_text(dir)", lambda: L.load_text(tempfile.gettempdir()))
    case("load_text(binary)", lambda: L.load_text(_devzero_bin()))
    # gradcheck
    case("gradcheck(eps=0)", lambda: L.gradcheck(lambda: 0.0, {"w": np.zeros(2)},
                                                 {"w": np.zeros(2)}, eps=0))
    case("gradcheck(keys differ)", lambda: L.gradcheck(lambda: 0.0, {"w": np.zeros(2)},
                                                       {"v": np.zeros(2)}))
    case("gradcheck(loss returns str)", lambda: L.gradcheck(lambda: "x", {"w": np.zeros(2)},
                                                            {"w": np.zeros(2)}))

    def nondeterministic():
        rng = np.random.default_rng(0)
        w = np.ones(3)
        return L.gradcheck(lambda: float(np.sum(w * rng.random(3))), {"w": w},
                           {"w": np.full(3, 0.5)}, raise_on_fail=False)

    case("gradcheck(non-deterministic loss)", nondeterministic)
    # checkpoints
    case("save_checkpoint(key '__tree__')", lambda: L.save_checkpoint(
        _ckpt_dir() / "c.npz", {"__tree__": np.zeros(2)}))
    case("save_checkpoint(key 'allow_pickle')", lambda: L.load_checkpoint(L.save_checkpoint(
        _ckpt_dir() / "c.npz", {"allow_pickle": np.zeros(2)}))["allow_pickle"].shape == (2,),
         ok=lambda r: r is True)
    case("save_checkpoint(key 'file')", lambda: L.load_checkpoint(L.save_checkpoint(
        _ckpt_dir() / "c.npz", {"file": np.zeros(2)}))["file"].shape == (2,),
         ok=lambda r: r is True)
    case("save_checkpoint(object leaf)", lambda: L.save_checkpoint(_ckpt_dir() / "c.npz",
                                                                   {"x": object()}))
    case("save_checkpoint(list tree)", lambda: L.save_checkpoint(_ckpt_dir() / "c.npz", [1]))
    case("load_checkpoint(fifo)", lambda: L.load_checkpoint(_fifo()))
    case("load_checkpoint(/dev/zero link)", lambda: L.load_checkpoint(_devzero()))
    case("load_checkpoint(directory)", lambda: L.load_checkpoint(_ckpt_dir()))
    case("load_checkpoint(1 GiB extra member)", lambda p: L.load_checkpoint(p),
         ok=lambda r: isinstance(r, dict), prep=_bomb)
    case("Trainer.load(256 MiB forged parameter)", lambda p: _load_into_trainer(p),
         prep=_bomb_param)
    case("load_checkpoint(deep JSON)", lambda: L.load_checkpoint(_deep_json()))
    case("load_checkpoint(text file)", lambda: L.load_checkpoint(_text_file()))
    if os.geteuid() != 0:
        case("load_checkpoint(unreadable)", lambda: L.load_checkpoint(_noperm()))
    for what, edit in [
        ("int64 weights", lambda t: t["params"].update(
            {"head.weight": t["params"]["head.weight"].astype(np.int64)})),
        ("bool weights", lambda t: t["params"].update(
            {"head.weight": t["params"]["head.weight"] > 0})),
        ("float16 weights", lambda t: t["params"].update(
            {"head.weight": t["params"]["head.weight"].astype(np.float16)})),
        ("NaN weights", lambda t: t["params"]["head.bias"].fill(np.nan)),
        ("step=-5", lambda t: t.update(step=-5)),
        ("missing state", lambda t: t.pop("state")),
        ("missing params", lambda t: t.pop("params")),
        ("missing optimizer", lambda t: t.pop("optimizer")),
        ("missing rng", lambda t: t.pop("rng")),
        ("missing model", lambda t: t.pop("model")),
        ("history=str", lambda t: t.update(history="x")),
        ("rng garbage", lambda t: t["rng"].update(model="{}")),
        ("transposed weight", lambda t: t["params"].update(
            {"head.weight": t["params"]["head.weight"].T.copy()})),
    ]:
        case(f"Trainer.load({what})", lambda edit=edit: _load_into_trainer(_forged(edit)))
    return C


def _devzero_bin():
    p = _ckpt_dir() / "bin.txt"
    p.write_bytes(b"\xff\xfe\x00\x81" * 100)
    return p


def _text_file():
    p = _ckpt_dir() / "notes.npz"
    p.write_text("hello")
    return p


def run_api(verbose=False):
    results = []
    signal.signal(signal.SIGALRM, _alarm)
    import warnings

    for name, fn, ok, prep in api_cases():
        fixture = prep() if prep is not None else None
        signal.alarm(5)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = fn() if prep is None else fn(fixture)
            signal.alarm(0)
            user = [w for w in caught if issubclass(w.category, UserWarning)]
            if ok is not None and ok(out):
                cls, msg = "clear", f"documented result: {str(out)[:60]}"
            elif user:  # a documented conversion, said out loud
                cls, msg = "clear", f"documented warning: {str(user[0].message)[:100]}"
            else:
                cls, msg = "silent", f"returned {str(out)[:80]!r}"
        except _Timeout:
            cls, msg = "hang", "no answer in 5 s"
        except BaseException as exc:  # noqa: BLE001 - classifying is the point
            signal.alarm(0)
            text = str(exc)
            one_line = "\n" not in text.strip()
            ours = _innermost_in_package(exc.__traceback__)
            diverged = type(exc).__name__ == "TrainingDivergedError"
            if (isinstance(exc, CLEAR_TYPES) or diverged) and one_line and (
                    ours or isinstance(exc, OSError)):
                cls = "clear"
            else:
                cls = "traceback"
            msg = f"{type(exc).__name__}: {text[:160]}"
        results.append({"kind": "api", "case": name, "class": cls, "detail": msg})
        if verbose:
            print(f"[{cls:9}] {name}: {msg}", flush=True)
    return results


# --------------------------------------------------------------------------------- CLI cases
def cli_cases(tmp: Path):
    text = tmp / "t.txt"
    text.write_text("hello world, hello lstm. " * 200)
    small = ["--text", str(text), "--hidden-size", "8", "--steps", "4", "--eval-every", "2",
             "--no-baselines", "--sample-length", "0", "--quiet"]
    C = []

    def case(name, argv, expect_codes=(1, 2), prep=None, signal_after=None):
        C.append((name, argv, expect_codes, prep, signal_after))

    out = lambda n: ["--out-dir", str(tmp / n)]  # noqa: E731
    for flag, val in [("--hidden-size", "100000000"), ("--embedding-dim", "100000000"),
                      ("--num-layers", "100000"), ("--sample-length", "10000000000"),
                      ("--threads", "100000"), ("--batch-size", "100000000"),
                      ("--seq-length", "100000000"), ("--steps", "0"), ("--lr", "nan"),
                      ("--lr", "-1"), ("--dropout", "1.5"), ("--clip", "inf"),
                      ("--eval-every", "0"), ("--forget-bias", "nan"), ("--seed", "-1"),
                      ("--hidden-size", "abc"), ("--k2", "1")]:
        case(f"train {flag} {val}", ["train", *small, *out(f"o{len(C)}"), flag, val])
    case("train --warmup > --steps", ["train", *small, *out("w"), "--warmup", "50"])
    case("train --text missing", ["train", "--text", str(tmp / "nope"), *out("m")])
    case("train --text directory", ["train", "--text", str(tmp), *out("d")])
    case("train --text /dev/zero", ["train", "--text", "/dev/zero", *out("z")])
    case("train --out-dir is a file", ["train", *small, "--out-dir", str(text)])
    ro = tmp / "readonly"
    if os.geteuid() != 0:  # root writes anywhere: the case says nothing then
        case("train --out-dir read-only", ["train", *small, "--out-dir", str(ro / "run")],
             prep=lambda: (ro.mkdir(exist_ok=True), ro.chmod(0o500)))
    case("train --resume missing", ["train", *small, *out("r"), "--resume", str(tmp / "no.npz")])
    case("train --resume fifo", ["train", *small, *out("rf"), "--resume", str(tmp / "f.npz")],
         prep=lambda: os.mkfifo(tmp / "f.npz") if not (tmp / "f.npz").exists() else None)
    case("train --resume /dev/zero", ["train", *small, *out("rz"), "--resume", str(tmp / "z")],
         prep=lambda: (tmp / "z").symlink_to("/dev/zero") if not (tmp / "z").exists() else None)
    case("train sgd lr 1e3 clip 0 constant (diverges)",
         ["train", *small, *out("div"), "--optimizer", "sgd", "--lr", "1e3", "--clip", "0",
          "--schedule", "constant", "--steps", "20"])
    case("train adam lr 10 (diverges)", ["train", *small, *out("div2"), "--lr", "10", "--clip",
                                         "0", "--steps", "20"])
    case("train SIGINT at 1 s", ["train", *small, *out("int"), "--steps", "100000"],
         expect_codes=(130,), signal_after=(signal.SIGINT, 1.0))
    case("train SIGTERM at 1 s", ["train", *small, *out("term"), "--steps", "100000"],
         expect_codes=(143,), signal_after=(signal.SIGTERM, 1.0))
    case("train SIGINT at 0.2 s", ["train", *small, *out("int0"), "--steps", "100000"],
         expect_codes=(130,), signal_after=(signal.SIGINT, 0.2))
    case("sample --temperature 1e-320", ["sample", "--checkpoint", str(tmp / "good" /
                                         "checkpoint.npz"), "--temperature", "1e-320",
                                         "--length", "5"], expect_codes=(0, 2))
    case("sample --temperature 1e300", ["sample", "--checkpoint", str(tmp / "good" /
                                        "checkpoint.npz"), "--temperature", "1e300",
                                        "--length", "5"], expect_codes=(0, 2))
    case("sample --length 10**12", ["sample", "--checkpoint", str(tmp / "good" /
                                    "checkpoint.npz"), "--length", "1000000000000"])
    case("sample --checkpoint /dev/zero", ["sample", "--checkpoint", "/dev/zero"])
    case("sample --checkpoint text", ["sample", "--checkpoint", str(text)])
    case("sample --top-k 0", ["sample", "--checkpoint", str(tmp / "good" / "checkpoint.npz"),
                              "--top-k", "0"])
    case("gradcheck --eps 0", ["gradcheck", "--eps", "0"])
    case("gradcheck --tol nan", ["gradcheck", "--tol", "nan"])
    case("task unknown", ["task", "nope"])
    return C, small


def run_cli(verbose=False):
    results = []
    with tempfile.TemporaryDirectory(prefix="hostile-cli-") as d:
        tmp = Path(d)
        cases, small = cli_cases(tmp)
        env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
        subprocess.run([sys.executable, "-m", "lstm_bptt", "train", *small, "--out-dir",
                        str(tmp / "good")], env=env, capture_output=True, timeout=300)
        for name, argv, codes, prep, sig in cases:
            if prep is not None:
                prep()
            proc = subprocess.Popen([sys.executable, "-m", "lstm_bptt", *argv], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                if sig is not None:
                    try:
                        proc.wait(timeout=sig[1])
                    except subprocess.TimeoutExpired:
                        proc.send_signal(sig[0])
                out, err = proc.communicate(timeout=60)
                code = proc.returncode
                lines = [ln for ln in err.strip().splitlines() if ln.strip()]
                if "Traceback" in err:
                    cls = "traceback"
                elif code == 0 and 0 not in codes:
                    cls = "silent"
                elif code in codes or (code != 0 and 0 in codes):
                    cls = "clear"
                else:
                    cls = "traceback" if code < 0 else "silent"
                if sig is not None and cls == "clear":
                    leftovers = [p.name for p in tmp.rglob("*.tmp")]
                    if leftovers:
                        cls = "silent"
                detail = f"exit {code}: " + (lines[-1][:160] if lines else "")
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                cls, detail = "hang", "no answer in 60 s"
            results.append({"kind": "cli", "case": name, "class": cls, "detail": detail})
            if verbose:
                print(f"[{cls:9}] {name}: {detail}", flush=True)
        ro = tmp / "readonly"
        if ro.exists():
            ro.chmod(0o700)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api-only", action="store_true")
    ap.add_argument("--cli-only", action="store_true")
    ap.add_argument("--json", help="write the per-case results here")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    results = []
    if not args.cli_only:
        results += run_api(args.verbose)
    if not args.api_only:
        results += run_cli(args.verbose)
    counts = {c: sum(r["class"] == c for r in results)
              for c in ("clear", "traceback", "silent", "hang")}
    print(f"{len(results)} cases: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for r in results:
        if r["class"] != "clear":
            print(f"  [{r['class']}] {r['kind']} {r['case']}: {r['detail']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"counts": counts, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
