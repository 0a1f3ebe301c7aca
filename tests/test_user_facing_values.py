"""Exact values of what users read off outside the math: the evaluation loss, sampling, the
CLI's defaults, the checkpoint file. Each expected value is computed independently (NumPy by
hand, or the documented constant), never by the code under test.

These close the survivors of the planted-bug check (scripts/mutation_check.py)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from lstm_bptt.checkpoint import save_checkpoint
from lstm_bptt.experiments.cli import build_parser
from lstm_bptt.models import CharLM

V = 5


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _model(**kw):
    m = CharLM(V, 6, dtype=np.float64, rng=0, **kw)
    rng = np.random.default_rng(1)
    for p in m.params.values():  # far from uniform predictions
        p[...] = rng.normal(0, 0.8, p.shape)
    return m


def _reference_eval(m, ids, B):
    """Mean CE of predicting ids[1:] from ids[:-1] in B contiguous streams, one token at a
    time with the state carried (no windows at all), log-softmax by hand."""
    n = (len(ids) - 1) // B
    total = 0.0
    for b in range(B):
        x = ids[b * n : (b + 1) * n]
        y = ids[b * n + 1 : (b + 1) * n + 1]
        state = None
        for t in range(n):
            logits, state, _ = m.forward(np.array([[x[t]]]), state)
            total -= _log_softmax(logits[0, 0])[y[t]]
    return total / (n * B)


@pytest.mark.parametrize("k1", [3, 4, 100])
def test_evaluate_is_the_mean_cross_entropy_over_every_position(k1):
    """Windows of k1 (3 and 4 do not divide the 10 steps), the state carried across them, the
    next token as target, every position weighted once; dropout off at evaluation."""
    m = _model(dropout=0.5)
    ids = np.random.default_rng(2).integers(0, V, 23)  # B = 2 streams of n = 11 steps
    expected = _reference_eval(m, ids, 2)
    assert m.evaluate(ids, batch_size=2, k1=k1) == pytest.approx(expected, rel=1e-12)


def _reference_sample(m, length, prime, temperature, top_k, seed, greedy=False):
    rng = np.random.default_rng(seed)
    logits, state, _ = m.forward(np.asarray(prime)[:, None], None)
    last = logits[-1, 0]
    out = []
    for _ in range(length):
        if greedy:
            nxt = int(np.argmax(last))
        else:
            z = last / temperature
            p = np.exp(z - z.max())
            p /= p.sum()
            if top_k is not None:
                keep = np.argsort(p)[-top_k:]
                q = np.zeros_like(p)
                q[keep] = p[keep]
                p = q / q.sum()
            nxt = int(rng.choice(V, p=p))
        out.append(nxt)
        logits, state, _ = m.forward(np.array([[nxt]]), state)
        last = logits[0, 0]
    return out


@pytest.mark.parametrize("temperature, top_k", [(0.5, None), (2.0, None), (1.0, 2)])
def test_sample_draws_from_the_tempered_top_k_distribution(temperature, top_k):
    m = _model()
    prime = [1, 3, 0]
    got = m.sample(12, prime, temperature=temperature, top_k=top_k, rng=7).tolist()
    assert got == _reference_sample(m, 12, prime, temperature, top_k, 7)


def test_greedy_sample_follows_the_argmax():
    m = _model()
    got = m.sample(10, [2, 4], greedy=True).tolist()
    assert got == _reference_sample(m, 10, [2, 4], 1.0, None, 0, greedy=True)


# ---------------------------------------------------------------------------- CLI defaults
TRAIN_DEFAULTS = {  # what the README and --help promise (steps: None = 7 passes over the text)
    "hidden_size": 256, "num_layers": 1, "embedding_dim": 128, "dropout": 0.2,
    "seq_length": 64, "k2": None, "batch_size": 32, "steps": None, "lr": 1e-2,
    "optimizer": "adam", "schedule": "cosine", "warmup": 0, "clip": 5.0, "dtype": "float32",
    "seed": 0, "eval_every": 500, "sample_length": 200, "out_dir": "runs/charlm", "threads": 1,
    "on_divergence": "stop",
}


def test_train_defaults():
    args = build_parser().parse_args(["train"])
    assert {k: getattr(args, k) for k in TRAIN_DEFAULTS} == TRAIN_DEFAULTS


def test_sample_defaults():
    from lstm_bptt.experiments.cli import SAMPLE_TEMPERATURE

    args = build_parser().parse_args(["sample"])
    # --temperature not given: 0.8 (None lets --greedy refuse an explicit one)
    assert (args.checkpoint, args.length, args.temperature, args.top_k, args.greedy,
            args.seed) == ("runs/charlm/checkpoint.npz", 500, None, None, False, 0)
    assert SAMPLE_TEMPERATURE == 0.8


def test_default_schedule_is_cosine_down_to_a_tenth():
    from lstm_bptt.experiments.train_job import build_run

    args = build_parser().parse_args(["train", "--steps", "10", "--hidden-size", "4"])
    _, opt, sched = build_run(args, 3)
    lrs = [opt.lr]
    for _ in range(10):
        sched.step()
        lrs.append(opt.lr)
    # lr(t) = 1e-3 + (1e-2 - 1e-3) (1 + cos(pi t / 10)) / 2
    expected = [1e-3 + 9e-3 * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(11)]
    assert lrs == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------- checkpoint file
def test_checkpoint_file_has_the_usual_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "ck.npz", {"step": 1})
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by others, like any file written


def test_checkpoint_skeleton_is_strict_json(tmp_path):
    """NaN and inf are stored as tagged strings, so any JSON reader can read the skeleton."""
    path = save_checkpoint(tmp_path / "ck.npz", {"best": math.inf, "h": [math.nan, 1.0]})

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["__tree__"]), parse_constant=refuse)
    assert meta["tree"]["__dict__"]["best"] == {"__float__": "inf"}
