"""The ``lstm-bptt train`` job: a character language model trained with truncated BPTT.

Read top to bottom, :func:`cmd_train` is the whole job, one step per function:

1. :func:`check_train_args` validates every value and path before any work is done (no output
   folder is created and no baseline computed for a command that cannot run);
2. :func:`load_corpus` reads the text and fixes the vocabulary (a fresh one, or the checkpoint's
   for ``--resume`` / ``--init-from``) and the 90/10 split;
3. :func:`build_run` makes the model, optimizer and schedule from the run settings;
4. :func:`make_trainer` wires them into a :class:`~lstm_bptt.train.Trainer` with validation,
   samples, checkpoints, the time budget and early stopping;
5. :func:`run_with_signals` trains; Ctrl-C (SIGINT) and SIGTERM stop it after the update in
   progress, save a checkpoint at that step and write the history (exit 130 / 143);
6. :func:`report` prints the result beside the n-gram baselines and writes ``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ._cell_args import CELL_FLAG_DEFAULTS, cell_options_from_args
from ._runtime import retain_freed_memory, set_blas_threads

LN2 = math.log(2.0)

# Settings that define a training run; a checkpoint records them and --resume reuses them.
RUN_KEYS = (*CELL_FLAG_DEFAULTS, "hidden_size", "num_layers", "embedding_dim", "dropout",
            "forget_bias", "dtype", "seq_length", "k2", "batch_size", "steps", "lr", "optimizer",
            "schedule", "warmup", "clip", "seed")
# The settings that fix the model's shape: --init-from takes them from the checkpoint.
MODEL_KEYS = (*CELL_FLAG_DEFAULTS, "hidden_size", "num_layers", "embedding_dim", "dtype")
# Checkpoints written before the cell flags existed hold a plain LSTM.
_BEFORE_CELLS = CELL_FLAG_DEFAULTS

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def safe_exp(x: float) -> float:
    """exp(x), or inf where it would overflow (a diverged run's perplexity)."""
    return math.exp(x) if x < 700 else math.inf


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"5m"``, ``"1.5h"`` -> seconds (an argparse ``type``)."""
    import argparse

    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive duration such as 90s, 5m or 1.5h, got {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _count(n: int, noun: str) -> str:
    """``"1 step"``, ``"2,000 steps"``."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


# The default length of a run (--steps not given): DEFAULT_EPOCHS passes over the training text
# at --batch-size x --seq-length characters per update, clipped to DEFAULT_STEPS. Chosen by the
# settings sweep in the README: the built-in text (419K training characters) reaches its best
# validation loss at about 10 passes (2,000 updates; 2,200 or 4,000 shorter ones gave the same),
# Tiny Shakespeare (1.0M) passes 1.50 nats/char at about 7 (3,431 updates); 4,000 keeps a run
# on a large text to about 5 minutes.
DEFAULT_EPOCHS = 7
DEFAULT_STEPS = (2000, 4000)


def default_steps(n_train: int, batch_size: int, seq_length: int) -> int:
    """Updates of a run without --steps: DEFAULT_EPOCHS passes over ``n_train`` characters,
    within DEFAULT_STEPS."""
    lo, hi = DEFAULT_STEPS
    return min(hi, max(lo, round(DEFAULT_EPOCHS * n_train / (batch_size * seq_length))))


# ----------------------------------------------------------------------------- 1. arguments
def _is_default(args, key: str) -> bool:
    return getattr(args, key) == args.defaults.get(key)


def check_train_args(args) -> None:
    """Every value and path of ``lstm-bptt train``, checked before any work starts.

    Also settles where the run lives: ``--resume PATH`` continues in PATH's folder.

    Raises
    ------
    ValueError
        One line naming the flag, what was expected and what came.
    """
    if args.k2 is not None and args.k2 < args.seq_length:
        raise ValueError(f"--k2: expected >= --seq-length (k1) = {args.seq_length}, "
                         f"got {args.k2}")
    if not 0.0 <= args.dropout < 1.0:
        raise ValueError(f"--dropout: expected a probability in [0, 1), got {args.dropout}")
    if args.forget_bias is not None and not math.isfinite(args.forget_bias):
        raise ValueError(f"--forget-bias: expected a finite number, got {args.forget_bias}")
    cell_options_from_args(args)
    _check_warmup(args)
    if args.text is not None:
        text = Path(args.text)
        if not text.exists():
            raise ValueError(f"--text: file not found: {text}")
        if not text.is_file():
            raise ValueError(f"--text: expected a UTF-8 text file, got a directory or special "
                             f"file: {text}")
    if args.resume and args.init_from:
        raise ValueError("--init-from starts a new run from a checkpoint's weights and "
                         "--resume continues one: give only one of them")
    for flag, value in (("--resume", args.resume), ("--init-from", args.init_from)):
        if value and value != "auto":
            path = Path(value)
            if not path.is_file():
                what = "is a directory" if path.is_dir() else "not found"
                raise ValueError(f"{flag}: expected a checkpoint file, {what}: {path}")
    if args.resume and args.resume != "auto":
        folder = Path(args.resume).parent
        if not _is_default(args, "out_dir") and Path(args.out_dir).resolve() != folder.resolve():
            raise ValueError(
                f"--resume continues the run in the checkpoint's folder {folder}; --out-dir "
                f"{args.out_dir} differs (drop --out-dir, or use --init-from {args.resume} to "
                "start a new run in another folder from these weights)")
        args.out_dir = str(folder)
    if args.plot:
        from .plots import INSTALL_HINT, have_matplotlib

        if not have_matplotlib():
            raise ValueError(f"--plot: {INSTALL_HINT}")
    out_dir = Path(args.out_dir)
    _check_out_dir(out_dir)
    ckpt = out_dir / "checkpoint.npz"
    if args.resume == "auto" and not ckpt.is_file():
        raise ValueError(f"--resume: no checkpoint to continue in {out_dir} (expected "
                         f"{ckpt}); start a new run without --resume")
    if not args.resume and ckpt.exists() and not args.overwrite:
        raise ValueError(f"{ckpt} exists: continue it with --resume, start a new run with "
                         "--out-dir DIR, or replace it with --overwrite")


def _check_out_dir(out_dir: Path) -> None:
    """--out-dir is a directory, or can be created as one: its nearest existing ancestor is a
    directory we may write into."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out-dir: expected a directory, got a file: {out_dir}")
    base = out_dir.absolute()
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ValueError(f"--out-dir: cannot create {out_dir}: {base} is a file, not a "
                         "directory")
    mode = base.stat().st_mode
    read_only = bool(os.statvfs(base).f_flag & os.ST_RDONLY) if hasattr(os, "statvfs") else False
    # root passes os.access everywhere: a folder without any write bit (e.g. /proc) counts too
    if not os.access(base, os.W_OK | os.X_OK) or not mode & 0o222 or read_only:
        where = "" if base == out_dir.absolute() else f" (in {base})"
        raise ValueError(f"--out-dir: cannot write to {out_dir}{where}: permission denied")


def _check_warmup(args) -> None:
    if args.steps is not None and args.warmup > args.steps:
        raise ValueError(f"--warmup: expected at most --steps = {args.steps}, got {args.warmup}")


# ----------------------------------------------------------------------------- 2. corpus
def _resume_settings(args, saved: dict) -> None:
    """Take the run settings from the checkpoint; refuse flags that contradict it.

    A flag left at its default silently takes the checkpoint's value; a flag set to another
    value than the checkpoint's is an error (it would otherwise be ignored, or change the run
    so that the resumed run is no longer the interrupted one). ``--steps`` may grow when the
    learning rate is constant; with the cosine schedule its length is part of the schedule.
    """
    saved = {**_BEFORE_CELLS, **saved}
    conflicts = []
    for key in RUN_KEYS:
        if key not in saved:
            continue
        given, default, old = getattr(args, key), args.defaults.get(key), saved[key]
        if given == default or given == old:
            setattr(args, key, old)
        elif key == "steps" and saved.get("schedule") == "constant" and given > old:
            pass  # a constant learning rate can simply go on for longer
        else:
            conflicts.append(f"--{key.replace('_', '-')} {given} (checkpoint: {old})")
    if conflicts:
        hint = ""
        if any(c.startswith("--steps") for c in conflicts):
            hint = ("; the cosine schedule was fitted to the original --steps: train further "
                    "with --init-from CHECKPOINT (a new run from these weights, with its own "
                    "schedule), or use --schedule constant")
        raise ValueError("--resume: these settings differ from the checkpoint's run: "
                         + ", ".join(conflicts) + hint)


def _init_settings(args, saved: dict) -> None:
    """--init-from: the model's shape comes from the checkpoint; contradicting flags are refused.
    The optimisation settings (steps, lr, schedule, ...) are this run's own."""
    saved = {**_BEFORE_CELLS, **saved}
    conflicts = []
    for key in MODEL_KEYS:
        if key not in saved:
            continue
        given, default, old = getattr(args, key), args.defaults.get(key), saved[key]
        if given == default or given == old:
            setattr(args, key, old)
        else:
            conflicts.append(f"--{key.replace('_', '-')} {given} (checkpoint: {old})")
    if conflicts:
        raise ValueError("--init-from: the checkpoint's model has other settings: "
                         + ", ".join(conflicts))


# Bounds of a checkpoint's model config (the CLI's own flag limits; a forged config must not
# make us build an unbounded model)
CONFIG_LIMITS = {"vocab_size": 0x110000, "hidden_size": 4096, "num_layers": 16,
                 "embedding_dim": 4096}


def _check_config(config, where: str) -> None:
    if not isinstance(config, dict):
        raise ValueError(f"{where}: model/config: expected a dict, got {type(config).__name__}")
    for key, hi in CONFIG_LIMITS.items():
        v = config.get(key)
        if v is None and key == "embedding_dim":
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise ValueError(f"{where}: model/config/{key}: expected an integer in 1..{hi:,}, "
                             f"got {v!r}")


def _load_train_checkpoint(path, flag: str) -> dict:
    """A checkpoint of `lstm-bptt train`, read defensively: the skeleton first (class, config
    within the CLI's bounds, a vocabulary of vocab_size code points), then only members of the
    shapes that config implies (checked from their headers before any data is read).

    Raises
    ------
    ValueError
        One line naming ``flag``, the file and the member at fault.
    """
    from ..models import read_charlm_checkpoint

    return read_charlm_checkpoint(path, where=f"{flag}: {path}", check_config=_check_config)[0]


def load_corpus(args, ckpt_path: Path):
    """Read the text; fix the vocabulary; split 90/10.

    Returns
    -------
    corpus : dict with ``text``, ``name``, ``sha256``, ``vocab``, ``train_ids``, ``val_ids``
    tree : the checkpoint tree for ``--resume`` (else None)
    init : the checkpoint tree for ``--init-from`` (else None)
    """
    from ..data import CharVocab, load_pydoc_text, load_text, split_train_val

    if args.text is None:
        text, name = load_pydoc_text(), "Python documentation topics (pydoc_data.topics)"
    else:
        text, name = load_text(args.text), str(args.text)
    min_chars = 20 * (args.batch_size + 1)
    if len(text) < min_chars:
        raise ValueError(f"--text: {len(text)} characters is too short to split 90/10 into "
                         f"{args.batch_size} training streams (--batch-size); need >= "
                         f"{min_chars}")
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    tree = init = None
    if args.resume:
        path = ckpt_path if args.resume == "auto" else Path(args.resume)
        tree = _load_train_checkpoint(path, "--resume")
        extra = tree["extra"]
        if extra.get("text_sha256") not in (None, sha):
            raise ValueError(
                f"--resume: the checkpoint was trained on {extra.get('text')} and this text "
                f"({name}) differs from it; resume with the same --text, or start a new run "
                "on this text from its weights with --init-from")
        _resume_settings(args, extra.get("run", {}))
        vocab = CharVocab.from_array(extra["vocab"])
    elif args.init_from:
        init = _load_train_checkpoint(args.init_from, "--init-from")
        _init_settings(args, init["extra"].get("run", {}))
        vocab = CharVocab.from_array(init["extra"]["vocab"])
        unknown = sorted(set(text) - set(vocab.chars))
        if unknown:
            raise ValueError(f"--init-from: this text has characters the checkpoint's "
                             f"vocabulary of {len(vocab)} lacks: {unknown[:10]}")
    else:
        vocab = CharVocab.from_text(text)
    train_ids, val_ids = split_train_val(vocab.encode(text), 0.1)
    _check_window(args, len(train_ids))
    if args.steps is None:  # not given, and not taken from a resumed checkpoint
        args.steps = default_steps(len(train_ids), args.batch_size, args.seq_length)
        args.steps_note = (f" (default: {DEFAULT_EPOCHS} passes over the training text, "
                           f"within {DEFAULT_STEPS[0]:,}..{DEFAULT_STEPS[1]:,})")
        _check_warmup(args)
    corpus = {"text": text, "name": name, "sha256": sha, "vocab": vocab,
              "train_ids": train_ids, "val_ids": val_ids}
    return corpus, tree, init


def _check_window(args, n_train: int) -> None:
    """--seq-length (k1) and --k2 fit in one of the --batch-size training streams: a stream of
    n_train // batch_size characters has one step fewer (the last character is only a target)."""
    steps = n_train // args.batch_size - 1
    for flag, value in (("--seq-length", args.seq_length), ("--k2", args.k2)):
        if value is not None and value > steps:
            raise ValueError(
                f"{flag}: expected at most {steps:,}, the steps of one of the "
                f"{args.batch_size} training streams ({n_train:,} characters / --batch-size), "
                f"got {value:,}; lower {flag} or --batch-size")


def _saved_baselines(path: Path):
    """The baselines a run wrote to ``path`` ({name: nats}, {} for --no-baselines), or None if
    the file is missing or not such a table."""
    try:
        base = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(base, dict) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in base.values())
    return base if ok else None


def print_baselines(args, corpus, saved: Path | None = None) -> dict:
    """The n-gram baselines on the same split (unless ``--no-baselines``); with ``saved``
    (--resume), those the run wrote there if it did, rather than computed again."""
    from .ngram import format_baselines, ngram_baselines

    base = None if saved is None else _saved_baselines(saved)
    if base is not None:
        if base:
            print(f"\nn-gram baselines on the validation split (from {saved}):")
            print(format_baselines(base))
        return base
    if args.no_baselines:
        return {}
    t0 = time.perf_counter()
    base = ngram_baselines(corpus["train_ids"], corpus["val_ids"], len(corpus["vocab"]),
                           orders=(5,))
    print(f"\nn-gram baselines on the validation split ({time.perf_counter() - t0:.1f} s):")
    print(format_baselines(base))
    return base


# ----------------------------------------------------------------------------- 3. model
def build_run(args, vocab_size: int):
    """Model, optimizer and learning-rate schedule from the run settings."""
    from ..models import CharLM
    from ..optim import SGD, Adam, AdamW, RMSprop
    from ..schedules import CosineAnnealingLR, LinearWarmup

    dtype = np.float32 if args.dtype == "float32" else np.float64
    model = CharLM(vocab_size, args.hidden_size, args.num_layers,
                   embedding_dim=args.embedding_dim, dropout=args.dropout, dtype=dtype,
                   rng=args.seed, forget_bias=args.forget_bias, cell=args.cell,
                   cell_options=cell_options_from_args(args))
    opt_cls = {"adam": Adam, "adamw": AdamW, "sgd": SGD, "rmsprop": RMSprop}[args.optimizer]
    opt_kwargs = {"momentum": 0.9} if args.optimizer == "sgd" else {}
    optimizer = opt_cls(model.params, lr=args.lr, **opt_kwargs)
    scheduler = None
    if args.schedule == "cosine":
        after = CosineAnnealingLR(optimizer, T_max=max(1, args.steps - args.warmup),
                                  eta_min=args.lr * 0.1)
        scheduler = LinearWarmup(optimizer, args.warmup, after=after) if args.warmup else after
    elif args.warmup:
        scheduler = LinearWarmup(optimizer, args.warmup)
    return model, optimizer, scheduler


# ----------------------------------------------------------------------------- 4. trainer
def _write(msg: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(msg)


class _Sampler:
    """Prints a sample of generated text after each evaluation (as text, indented)."""

    def __init__(self, args, corpus):
        self.args, self.corpus = args, corpus

    def on_eval_end(self, trainer, metrics):
        n = self.args.sample_length
        if not n:
            return
        vocab, text = self.corpus["vocab"], self.corpus["text"]
        prime = vocab.encode(text[:1])
        rng = np.random.default_rng([self.args.seed, trainer.step])  # the same on resume
        sample = vocab.decode(prime) + vocab.decode(
            trainer.model.sample(n, prime, temperature=0.8, rng=rng))
        _write("  sample:\n" + "\n".join("    " + line for line in sample.splitlines()))


class _TimeBudget:
    """Stops training (after the update in progress) once ``seconds`` of this session passed."""

    def __init__(self, seconds: float):
        self.seconds, self.t0 = seconds, time.perf_counter()

    def on_step_end(self, trainer, info):
        if time.perf_counter() - self.t0 >= self.seconds:
            trainer.request_stop(f"time budget of {_format_duration(self.seconds)} reached")


def make_trainer(args, corpus, model, optimizer, scheduler, ckpt_path: Path, plot=None):
    """The Trainer of the job: validation every ``--eval-every`` steps, samples, checkpoints,
    one history row per step, the time budget, early stopping and (``plot``, a callback) the
    training curves redrawn at every evaluation."""
    from ..data import batchify
    from ..train import TBPTTStream, Trainer

    val_ids = corpus["val_ids"]

    def eval_fn(m):
        val = m.evaluate(val_ids, batch_size=min(32, max(1, (len(val_ids) - 1) // 2)), k1=256)
        return {"val_loss": val, "val_bpc": val / LN2, "val_ppl": safe_exp(val)}

    callbacks = [_Sampler(args, corpus)]
    if args.time_budget is not None:
        callbacks.append(_TimeBudget(args.time_budget))
    if plot is not None:
        callbacks.append(plot)
    source = TBPTTStream(batchify(corpus["train_ids"], args.batch_size), args.seq_length,
                         args.k2)
    return Trainer(
        model, optimizer, source, max_steps=args.steps, scheduler=scheduler,
        clip_norm=args.clip if args.clip > 0 else None, eval_fn=eval_fn,
        eval_every=args.eval_every, log_every=1, patience=args.patience,
        checkpoint_path=ckpt_path, callbacks=callbacks,
        on_divergence="raise" if args.on_divergence == "stop" else "rollback",
        max_rollbacks=3, lr_factor=0.1,
        progress=None if not args.quiet else False, perplexity=True,
        extra={"vocab": corpus["vocab"].to_array(), "text": corpus["name"],
               "text_sha256": corpus["sha256"],
               "run": {k: getattr(args, k) for k in RUN_KEYS}},
    )


# ----------------------------------------------------------------------------- 5. signals
def run_with_signals(trainer) -> int | None:
    """``trainer.fit()`` with Ctrl-C (SIGINT) and SIGTERM turned into a clean stop.

    The first signal asks the trainer to stop after the update in progress (no update is cut in
    half) without a final validation pass; the trainer then writes its checkpoint at that step.
    A second signal interrupts at once (KeyboardInterrupt). Returns the exit status for a
    signal (130 / 143), or None when training ran to its end (budget, time budget or early
    stopping).
    """
    received: list[int] = []

    def handler(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        trainer.request_stop(f"{signal.Signals(signum).name} received", evaluate=False)

    previous = {s: signal.signal(s, handler) for s in EXIT_SIGNAL}
    try:
        trainer.fit()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return EXIT_SIGNAL[received[0]] if received else None


# ----------------------------------------------------------------------------- 6. report
def report(args, trainer, base: dict, out_dir: Path, ckpt_path: Path, elapsed: float) -> None:
    """The final line(s) beside the baselines, and ``summary.json``."""
    hist_path = trainer.write_history(out_dir / "history.csv")
    evals = [r for r in trainer.history if "val_loss" in r]
    final = evals[-1]["val_loss"]
    if trainer.stop_reason:
        print(f"\nstopped at step {trainer.step} of {args.steps}: {trainer.stop_reason}")
    elif trainer.stopped_early:
        print(f"\nstopped early at step {trainer.step}: no improvement of the validation loss "
              f"in {args.patience} evaluations")
    print(f"\ndone in {elapsed:.0f} s: validation {final:.4f} nats/char, "
          f"{final / LN2:.4f} bits/char, perplexity {safe_exp(final):.2f}")
    if base:
        behind = [k for k, v in base.items() if v < final]
        print("beats " + ", ".join(k for k in base if k not in behind) if len(behind) < len(base)
              else "beats none of the n-gram baselines yet")
        if behind:
            print("still behind: " + ", ".join(f"{k} ({base[k]:.3f})" for k in behind))
    print(f"checkpoint: {ckpt_path}\nhistory: {hist_path}\nsummary: {out_dir / 'summary.json'}")
    summary = {"val_loss": final, "val_bpc": final / LN2, "seconds": elapsed,
               "seconds_total": trainer.elapsed_before, "steps": trainer.step,
               "baselines": base, "stop_reason": trainer.stop_reason}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))


# ----------------------------------------------------------------------------- the job
def _lock_out_dir(out_dir: Path):
    """Take an advisory lock on ``out_dir/.lock`` (fcntl.flock) and return the open file.

    The kernel drops the lock when the process ends, however it ends, so a lock file left by
    a dead run is not a lock: the next run simply takes it. A second live run into the same
    folder is refused at once, naming the holder's pid.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return None
    try:
        fh = open(out_dir / ".lock", "a+")
    except OSError as exc:
        raise OSError(f"--out-dir {out_dir}: cannot write there ({exc.strerror})") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise ValueError(f"--out-dir {out_dir} is in use by another run ({holder}); wait for "
                         "it to finish or choose another --out-dir") from None
    except OSError:  # a file system without flock: go on without the lock
        return fh
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}\n")
    fh.flush()
    return fh


def _check_room(out_dir: Path, model) -> None:
    """Refuse to start when ``out_dir`` cannot take a checkpoint: not writable, or less free
    space than about two checkpoints (parameters and optimizer moments, plus the temporary
    copy while one is written). Checked before training, not at the first checkpoint."""
    import shutil
    import tempfile

    need = 2 * 4 * sum(p.nbytes for p in model.params.values()) + (1 << 20)
    try:
        with tempfile.TemporaryFile(dir=out_dir) as fh:
            fh.write(b"\0" * 4096)
            fh.flush()
    except OSError as exc:
        raise OSError(f"--out-dir {out_dir}: cannot write a checkpoint there "
                      f"({exc.strerror})") from None
    free = shutil.disk_usage(out_dir).free
    if free < need:
        raise OSError(f"--out-dir {out_dir}: {free:,} bytes free, a checkpoint of this model "
                      f"needs about {need:,}; free some space or choose another --out-dir")


def cmd_train(args) -> int:
    """`lstm-bptt train`: character LM with truncated BPTT; returns the exit status."""
    from ..train import TrainingDivergedError

    check_train_args(args)
    out_dir = Path(args.out_dir)
    ckpt_path = out_dir / "checkpoint.npz"
    corpus, tree, init = load_corpus(args, ckpt_path)
    note = set_blas_threads(args.threads, args.argv)
    retain_freed_memory()  # no page faults for the per-step caches (see _runtime)
    V = len(corpus["vocab"])
    print(f"lstm-bptt {__version__} | text: {corpus['name']}")
    print(f"{len(corpus['text']):,} characters, {V} symbols | train "
          f"{len(corpus['train_ids']):,} (first 90%), validation {len(corpus['val_ids']):,} "
          "(last 10%)")
    if note:
        print(note)
    if tree is not None:
        try:
            done = int(tree["step"])
        except (KeyError, TypeError, ValueError):
            done = None  # Trainer.load names what is wrong with it
        if done is not None and done >= args.steps:  # before any baseline is computed
            print(f"checkpoint is at step {done} >= --steps {args.steps}; nothing to do "
                  f"(train further with --init-from {ckpt_path} --out-dir NEW_DIR)")
            return 0
    base = print_baselines(args, corpus, out_dir / "baselines.json" if tree is not None else None)
    model, optimizer, scheduler = build_run(args, V)
    if init is not None:
        model.load_params(init["params"])
        print(f"initialised from {args.init_from} (step {int(init['step'])} of its run)")
    out_dir.mkdir(parents=True, exist_ok=True)
    # one run per folder for the whole run (the kernel drops the lock when the process ends)
    args._lock = _lock_out_dir(out_dir)
    _check_room(out_dir, model)
    # now, not only in summary.json at the end: `plot` draws them while the run goes on
    (out_dir / "baselines.json").write_text(json.dumps(base, indent=1))
    plot = None
    if args.plot:
        from .plots import PlotCallback

        plot = PlotCallback(out_dir, base)
    trainer = make_trainer(args, corpus, model, optimizer, scheduler, ckpt_path, plot)
    if tree is not None:
        trainer.load(tree)
        print(f"resumed from step {trainer.step}")
    print(f"\nmodel: {model!r}, {args.dtype}; optimizer {args.optimizer} lr {args.lr}, "
          f"clip {args.clip}; {_count(args.batch_size, 'stream')} x "
          f"{_count(args.seq_length, 'step')} (k1)"
          + (f", k2 {args.k2}" if args.k2 else "") + f"; {_count(args.steps, 'step')}"
          + getattr(args, "steps_note", ""))
    t0 = time.perf_counter()
    try:
        code = run_with_signals(trainer)
    except TrainingDivergedError as exc:
        trainer.write_history(out_dir / "history.csv")
        if trainer.saved_step is not None:
            where = f"The last good checkpoint is {ckpt_path} (step {trainer.saved_step})"
        elif tree is not None:
            where = f"{ckpt_path} still holds the resumed step {int(tree['step'])}"
        else:
            where = "No checkpoint was written (none had passed the checks)"
        # the Trainer's advice names its parameters; the command line names its flags
        retry = (", --dtype float64 or --on-divergence rollback-and-lower-lr"
                 if args.on_divergence == "stop" else " or --dtype float64")
        print(f"lstm-bptt train: error: {exc.detail}. Try a lower --lr, a --clip norm (e.g. "
              f"1){retry}. {where}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second signal: no new checkpoint
        trainer.write_history(out_dir / "history.csv")
        last = (f"the last checkpoint (step {trainer.saved_step}) is in {ckpt_path}"
                if trainer.saved_step is not None else "no checkpoint was written")
        print(f"\ninterrupted at step {trainer.step}: {last}", file=sys.stderr)
        return 130
    if code is not None:
        trainer.write_history(out_dir / "history.csv")
        print(f"\n{trainer.stop_reason} at step {trainer.step}: checkpoint saved at that step "
              f"in {ckpt_path}; continue with --resume", file=sys.stderr)
        return code
    report(args, trainer, base, out_dir, ckpt_path, time.perf_counter() - t0)
    if plot is not None:
        plot.on_eval_end(trainer, {})
    return 0
