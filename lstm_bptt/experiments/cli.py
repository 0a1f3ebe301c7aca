"""Command-line interface: ``lstm-bptt {train,sample,export,gradcheck,task}`` (or
``python -m lstm_bptt``).

``lstm-bptt train`` with no arguments trains a character-level LSTM language model on the Python
documentation topics that ship with CPython (``pydoc_data.topics``), so it needs no download.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import signal
import sys
from pathlib import Path

from .. import __version__
from ._runtime import retain_freed_memory, set_blas_threads

LN2 = math.log(2.0)


def _number(cast, what: str, ok):
    """An argparse ``type`` that parses with ``cast`` and accepts values for which ``ok`` holds;
    the error names what was expected and what came."""

    def parse(text: str):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return v

    return parse


_positive_int = _number(int, "a positive integer", lambda v: v > 0)


def _int_in(lo: int, hi: int):
    """An argparse type for an integer in [lo, hi] (sizes and counts are bounded so that a
    typo cannot ask for terabytes or hang the machine)."""
    return _number(int, f"an integer in {lo}..{hi:,}", lambda v: lo <= v <= hi)


def _embedding_dim(text):
    """--embedding-dim: 0 means one-hot input (None), else an integer in 1..MAX_EMBEDDING."""
    value = _int_in(0, MAX_EMBEDDING)(text)
    return None if value == 0 else value


# Limits of the sizes and counts the CLI accepts
MAX_HIDDEN = 4096  # H: 4 H (V + H) weights, 64 M at the limit
MAX_EMBEDDING = 4096
MAX_LAYERS = 16
MAX_SAMPLE = 1_000_000  # characters generated, one forward step each
MAX_THREADS = 256
MAX_BATCH = 4096
MAX_TRIALS = 100_000  # task --seeds
MAX_JOBS = 1024  # task --jobs: local worker processes
MAX_SEQ = 100_000  # steps of one truncated-BPTT window (the cache grows with it)
TEMPERATURE_RANGE = (0.01, 100.0)
SAMPLE_TEMPERATURE = 0.8  # `sample` without --temperature
DEFAULT_OUT_DIR = "runs/charlm"  # where `train` writes, and `sample` reads, by default
_nonneg_int = _number(int, "an integer >= 0", lambda v: v >= 0)
_positive_float = _number(float, "a positive number", lambda v: v > 0 and math.isfinite(v))
_nonneg_float = _number(float, "a number >= 0", lambda v: v >= 0 and math.isfinite(v))


from ._cell_args import add_cell_flags, cell_options_from_args  # noqa: E402
from .train_job import DEFAULT_STEPS, cmd_train, parse_duration  # noqa: E402  (the train job)

_set_threads = set_blas_threads


# --------------------------------------------------------------------------------- sample
def cmd_sample(args) -> int:
    """`lstm-bptt sample`: generate text from a `train` checkpoint; returns the exit status."""
    from ..data import CharVocab
    from ..models import build_model
    from .train_job import _load_train_checkpoint

    if args.greedy and (args.temperature is not None or args.top_k is not None):
        raise ValueError("--greedy: picks the most likely character; --temperature/--top-k do "
                         "not apply")
    temperature = SAMPLE_TEMPERATURE if args.temperature is None else args.temperature
    if Path(args.checkpoint).is_dir():
        raise ValueError(f"--checkpoint {args.checkpoint} is a directory; pass the file, e.g. "
                         f"{Path(args.checkpoint) / 'checkpoint.npz'}")
    tree = _load_train_checkpoint(args.checkpoint, "--checkpoint")
    model = build_model("CharLM", tree["model"]["config"], rng=args.seed)
    model.load_params(tree["params"])
    vocab = CharVocab.from_array(tree["extra"]["vocab"])
    if args.top_k is not None and args.top_k > len(vocab):
        raise ValueError(f"--top-k: expected 1..{len(vocab)} (the vocabulary size), "
                         f"got {args.top_k}")
    prime = None
    if args.prime:
        unknown = sorted(set(args.prime) - set(vocab.chars))
        if unknown:
            raise ValueError(f"--prime contains characters not in the model's vocabulary "
                             f"of {len(vocab)}: {unknown}")
        prime = vocab.encode(args.prime)
    elif "\n" in vocab.chars:  # start as at the beginning of a line, not from a random character
        prime = vocab.encode("\n")
    ids = model.sample(args.length, prime, temperature=temperature, top_k=args.top_k,
                       greedy=args.greedy, rng=args.seed)
    sys.stdout.write((args.prime or "") + vocab.decode(ids) + "\n")
    return 0


# --------------------------------------------------------------------------------- export
# The file extension of each --format: safetensors files, or an .npz of named arrays
EXPORT_SUFFIXES = {"safetensors": (".safetensors",), "keras": (".npz",), "flax": (".npz",),
                   "cs231n": (".npz",)}


def cmd_export(args) -> int:
    """`lstm-bptt export`: a checkpoint's weights as safetensors (PyTorch's names) or in the
    Keras / Flax / CS231n layout (.npz); refuses to replace a file without --overwrite."""
    import numpy as np

    from ..checkpoint import load_checkpoint
    from ..export import export_weights, save_npz, save_safetensors
    from ..models import MODELS, build_model

    if Path(args.checkpoint).is_dir():
        raise ValueError(f"--checkpoint {args.checkpoint} is a directory; pass the file, e.g. "
                         f"{Path(args.checkpoint) / 'checkpoint.npz'}")
    if Path(args.out).is_dir():
        raise ValueError(f"--out: expected a file name, got a directory: {args.out}")
    want = EXPORT_SUFFIXES[args.format]
    if Path(args.out).suffix.lower() not in want:
        got = Path(args.out).suffix or "no extension"
        raise ValueError(f"--out: expected a {' or '.join(want)} file for --format "
                         f"{args.format}, got {got}: {args.out}")
    parent = Path(args.out).parent
    if not parent.is_dir():
        what = "not a directory" if parent.exists() else "directory not found"
        raise ValueError(f"--out: {what}: {parent}")
    if Path(args.out).exists() and not args.overwrite:
        raise ValueError(f"--out {args.out} exists; choose another name, or replace it with "
                         "--overwrite")
    tree = load_checkpoint(args.checkpoint)
    cls = tree.get("model", {}).get("class") if isinstance(tree.get("model"), dict) else None
    if cls not in MODELS or "params" not in tree:
        raise ValueError(f"{args.checkpoint} is not a model checkpoint (written by `lstm-bptt "
                         f"train` or a Trainer); its model class is {cls!r}")
    model = build_model(cls, tree["model"]["config"])
    model.load_params(tree["params"])
    if args.format == "safetensors":
        meta = {}
        vocab = tree.get("extra", {}).get("vocab")
        if vocab is not None:  # the characters of the ids, so the model can be used elsewhere
            meta["lstm_bptt.vocab"] = json.dumps("".join(map(chr, np.asarray(vocab).tolist())))
        weights = model.state_dict()
        path = save_safetensors(args.out, model, meta, overwrite=args.overwrite)
    else:
        weights = export_weights(model, args.format)
        path = save_npz(args.out, weights, overwrite=args.overwrite)
    shapes = [f"{k} {tuple(v.shape)}" for k, v in weights.items()]
    more = f", ... ({len(shapes)} arrays)" if len(shapes) > 6 else ""
    print(f"wrote {path} ({args.format}: {', '.join(shapes[:6])}{more})")
    return 0


# --------------------------------------------------------------------------------- gradcheck
def cmd_gradcheck(args) -> int:
    """`lstm-bptt gradcheck`: the float64 gradient check of every component; 1 on failure."""
    from .gradcheck_suite import run_suite

    rows = run_suite(seed=args.seed, tol=args.tol, eps=args.eps)
    ok = all(r["passed"] for r in rows)
    if args.json:
        print(json.dumps({"passed": ok, "tol": args.tol, "eps": args.eps, "rows": rows},
                         indent=1))
    else:
        w = max(len(r["component"]) for r in rows)
        print(f"{'component':<{w}}  {'tensor':<20} {'shape':<12} {'max rel err':>11}  result")
        for r in rows:
            shape = str(tuple(r["shape"]))
            print(f"{r['component']:<{w}}  {r['tensor']:<20} {shape:<12} "
                  f"{r['max_rel_error']:>11.2e}  {'pass' if r['passed'] else 'FAIL'}")
        worst = max(r["max_rel_error"] for r in rows)
        print(f"\n{sum(r['passed'] for r in rows)}/{len(rows)} tensors pass "
              f"(float64, central differences eps={args.eps:g}, tolerance {args.tol:g}); "
              f"worst {worst:.2e}")
    return 0 if ok else 1


# --------------------------------------------------------------------------------- task
def cmd_task(args) -> int:
    """`lstm-bptt task NAME`: train a preset; 1 if its criterion is not met (0 with --quick)."""
    from .presets import run_task

    # With --json, stdout carries only the JSON document; the progress lines go to stderr.
    out = sys.stderr if args.json else sys.stdout
    if args.plot:
        from .plots import INSTALL_HINT, have_matplotlib

        if not have_matplotlib():
            raise ValueError(f"--plot: {INSTALL_HINT}")
    note = _set_threads(args.threads, args.argv)
    retain_freed_memory()
    if note:
        print(note, file=out)
    if args.save is not None:
        if args.seeds is not None:
            raise ValueError("--save keeps the model of one run: drop --seeds, or --save")
        _check_save_path(args.save)
    _task_overrides(args)  # refuse a bad knob before any work
    if args.seeds is not None:
        return cmd_trials(args, out)
    if args.jobs != 1 or args.scheduler is not None:
        raise ValueError("--jobs and --scheduler run several trials: add --seeds N")
    result = run_task(args.name, seed=args.seed, steps=args.steps, quick=args.quick,
                      progress=None if not args.quiet else False, cell=args.cell,
                      cell_options=cell_options_from_args(args),
                      overrides=_task_overrides(args), return_model=args.save is not None,
                      log=lambda *a, **k: print(*a, **k, file=out))
    if args.save is not None:
        _save_task_model(args, result.pop("model"), result)
        print(f"model: {args.save}", file=out)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    if args.plot:
        from .plots import plot_task

        for path in plot_task(result, args.plot):
            print(f"plot: {path}", file=out)
    if args.quick:
        if not result.get("solved", True):
            print("(--quick is a smoke test of the preset; its budget is not meant to solve "
                  "the task)", file=out)
        return 0
    return 0 if result.get("solved", True) else 1


def _task_overrides(args) -> dict:
    """The preset fields the task command's knobs replace (hidden size, lr, batch, length)."""
    from .presets import preset_of

    overrides = {k: getattr(args, k) for k in ("hidden_size", "lr", "batch_size")
                 if getattr(args, k) is not None}
    if args.seq_length is not None:
        options = preset_of(args.name).options
        key = "T" if "T" in options else "window" if "window" in options else None
        if key is None:
            raise ValueError(f"--seq-length: task {args.name} has a fixed sequence length "
                             "(set by its data)")
        overrides["options"] = {key: args.seq_length}
    return overrides


def _check_save_path(path) -> None:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--save: expected a file name, got a directory: {path}")
    if path.exists():
        raise ValueError(f"--save: {path} exists; choose another name (nothing is replaced)")


def _save_task_model(args, model, result) -> None:
    """The trained model as a checkpoint (model class and config, params, the task result)."""
    import numpy as np

    from ..checkpoint import save_checkpoint

    tree = {"model": {"class": type(model).__name__, "config": model.config()},
            "params": {k: np.array(v) for k, v in model.params.items()},
            "step": int(result["steps"]),
            "extra": {"task": args.name, "seed": int(args.seed),
                      "result": json.loads(json.dumps({k: v for k, v in result.items()
                                                       if k not in ("history", "preset")},
                                                      default=str))}}
    Path(args.save).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.save, tree)


def cmd_trials(args, out) -> int:
    """`lstm-bptt task NAME --seeds N`: N independent trials and the paper's summary.

    Returns 0 when every trial ran (whatever the solved fraction: that is the measurement), 1 if
    a trial raised an error, 130 when interrupted (finished trials stay saved in --out-dir).
    """
    from .trials import dask_executor, format_report, run_trials, sweep_slug

    spec = {"task": args.name, "cell": args.cell, "cell_options": cell_options_from_args(args),
            "quick": args.quick, "steps": args.steps, "dtype": None,
            "overrides": _task_overrides(args) or None}
    out_dir = Path(args.out_dir) if args.out_dir else Path("runs", "trials", sweep_slug(spec))
    executor = None
    if args.scheduler is not None:
        try:
            executor = dask_executor(args.scheduler, **({"n_workers": args.jobs}
                                                        if args.scheduler == "local" else {}))
        except ImportError as exc:
            print(f"lstm-bptt task: error: {exc}", file=sys.stderr)
            return 2
        print(f"trials on the Dask cluster at {args.scheduler} "
              f"(dashboard: {executor.client.dashboard_link})", file=out)

    def log(line):
        print(line, file=out, flush=True)

    received = []

    def on_term(signum, _frame):  # SIGTERM ends the sweep like Ctrl-C (finished trials kept)
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        report = run_trials(args.name, args.seeds, cell=args.cell,
                            cell_options=spec["cell_options"], quick=args.quick,
                            steps=args.steps, overrides=spec["overrides"],
                            first_seed=args.seed, jobs=args.jobs,
                            executor=executor, out_dir=out_dir,
                            progress=None if not args.quiet else False, log=log)
    except KeyboardInterrupt:
        done = len(list(out_dir.glob("seed-*.json")))
        print(f"\ninterrupted: {done} finished trials are saved in {out_dir}; run the same "
              "command again to run only the others", file=sys.stderr)
        return 143 if received else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if executor is not None:
            executor.client.close()
            cluster = getattr(executor.client, "_lstm_bptt_cluster", None)
            if cluster is not None:
                cluster.close()
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(format_report(report))
        print(f"per-trial results: {out_dir}")
    if args.plot:  # every seed's curve; the other cells' sweeps of this task side by side
        from .plots import plot_trial_folders

        folders = {c.upper(): out_dir.parent / sweep_slug({**spec, "cell": c})
                   for c in ("rnn", "gru", "lstm")}
        folders[args.cell.upper()] = out_dir
        base = Path(args.plot) / sweep_slug({**spec, "cell": "cells"})
        for path in plot_trial_folders(folders, "train_loss", base):
            print(f"plot: {path}", file=out)
    return 1 if report["failed"] else 0


# --------------------------------------------------------------------------------- parser
class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except for None/False/empty ones, which say nothing useful."""

    def _get_help_string(self, action):
        d = action.default
        if d is None or d is False or d == "" or d == argparse.SUPPRESS or action.help is None:
            return action.help
        return super()._get_help_string(action)


class _TaskFormatter(_Formatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, and the epilog (the task list) kept as written."""


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of all subcommands (``train_parser`` attribute: the train one)."""
    fmt = _Formatter
    p = argparse.ArgumentParser(
        prog="lstm-bptt",
        description="LSTM sequence models in NumPy with hand-written backpropagation through "
                    "time.",
        formatter_class=fmt,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser(
        "train", formatter_class=fmt,
        help="train a character-level LSTM language model (default: Python docs text)",
        description="Train a character-level LSTM language model with truncated BPTT. With no "
                    "arguments it trains on the Python documentation topics that ship with "
                    "CPython (no download), 2.5 to 3 minutes on 2 cores.")
    t.add_argument("--text", metavar="FILE", help="UTF-8 text file to train on instead of the "
                   "Python documentation (e.g. Tiny Shakespeare)")
    t.add_argument("--hidden-size", type=_int_in(1, MAX_HIDDEN), default=256,
                   help=f"hidden units H of the recurrent cell (1..{MAX_HIDDEN})")
    t.add_argument("--num-layers", type=_int_in(1, MAX_LAYERS), default=1,
                   help=f"stacked recurrent layers (1..{MAX_LAYERS})")
    t.add_argument("--embedding-dim", type=_embedding_dim, default=128,
                   help="learned embedding size; 0 = one-hot input (D = V)")
    t.add_argument("--dropout", type=_nonneg_float, default=0.2,
                   help="dropout probability (between layers and before the output layer)")
    t.add_argument("--seq-length", "--k1", dest="seq_length", type=_int_in(1, MAX_SEQ), default=64,
                   help="truncated BPTT window k1 (steps per update)")
    t.add_argument("--k2", type=_int_in(1, MAX_SEQ), default=None,
                   help="backpropagate through k2 >= k1 steps (default: k2 = k1)")
    t.add_argument("--batch-size", type=_int_in(1, MAX_BATCH), default=32,
                   help="parallel streams B")
    t.add_argument("--steps", type=_positive_int, default=None,
                   help="optimizer updates (default: 7 passes over the training text, at "
                        f"least {DEFAULT_STEPS[0]:,} and at most {DEFAULT_STEPS[1]:,}: "
                        f"{DEFAULT_STEPS[0]:,} on the built-in text)")
    t.add_argument("--lr", type=_positive_float, default=1e-2, help="learning rate")
    t.add_argument("--optimizer", choices=["adam", "adamw", "sgd", "rmsprop"], default="adam",
                   help="optimizer (sgd uses momentum 0.9)")
    t.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                   help="learning-rate schedule (cosine decays to lr/10)")
    t.add_argument("--warmup", type=_nonneg_int, default=0, help="linear warm-up steps")
    t.add_argument("--clip", type=_nonneg_float, default=5.0,
                   help="clip gradients by global L2 norm (0 = off)")
    add_cell_flags(t)
    t.add_argument("--forget-bias", type=float, default=None,
                   help="initial forget-gate bias (default: PyTorch's uniform init)")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="floating-point precision of parameters and activations")
    t.add_argument("--seed", type=_nonneg_int, default=0,
                   help="seed of initialisation and sampling")
    t.add_argument("--eval-every", type=_positive_int, default=500,
                   help="steps between validation, sample and checkpoint")
    t.add_argument("--sample-length", type=_int_in(0, MAX_SAMPLE), default=200,
                   help="characters sampled at each evaluation (0 = none)")
    t.add_argument("--out-dir", default=DEFAULT_OUT_DIR,
                   help="where checkpoint.npz, history.csv and summary.json go")
    t.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="continue an interrupted run bit for bit, in the checkpoint's folder "
                        "(default: OUT_DIR/checkpoint.npz)")
    t.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start a new run (fresh optimizer and schedule, step 0) from the "
                        "weights and vocabulary of a checkpoint, e.g. to train a finished run "
                        "further")
    t.add_argument("--time-budget", type=parse_duration, default=None, metavar="DURATION",
                   help="stop after this much training time (e.g. 90s, 5m, 1.5h), then "
                        "evaluate and checkpoint")
    t.add_argument("--patience", type=_positive_int, default=None,
                   help="stop early after this many evaluations without a lower validation "
                        "loss")
    t.add_argument("--threads", type=_int_in(1, MAX_THREADS), default=1,
                   help="BLAS threads; 1 is fastest for these small matrices on a busy machine")
    t.add_argument("--on-divergence", choices=["stop", "rollback-and-lower-lr"], default="stop",
                   help="when training diverges (NaN/inf, or a loss above 10x the untrained "
                        "model's): stop with the step and the tensor, exit 1, keep the last "
                        "good checkpoint; or go back to the last good state with a 10x lower "
                        "learning rate (at most 3 times)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace an existing checkpoint in --out-dir instead of refusing")
    t.add_argument("--no-baselines", action="store_true", help="skip the n-gram baselines")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--plot", action="store_true", help="redraw OUT_DIR/training.png and .svg "
                   "at every evaluation (needs matplotlib)")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", formatter_class=fmt, help="generate text from a checkpoint",
                       description="Generate text from a checkpoint written by `train`.")
    s.add_argument("--checkpoint", default=f"{DEFAULT_OUT_DIR}/checkpoint.npz",
                   help="checkpoint.npz from `train`")
    s.add_argument("--length", type=_int_in(1, MAX_SAMPLE), default=500,
                   help="characters to generate")
    s.add_argument("--temperature", default=None,
                   type=_number(float, "a number in {:g}..{:g}".format(*TEMPERATURE_RANGE),
                                lambda v: TEMPERATURE_RANGE[0] <= v <= TEMPERATURE_RANGE[1]),
                   help="divide logits by this (< 1: more conservative; default "
                        f"{SAMPLE_TEMPERATURE:g})")
    s.add_argument("--top-k", type=_positive_int, default=None,
                   help="sample only among the k most likely characters")
    s.add_argument("--greedy", action="store_true", help="always take the most likely "
                   "character (not with --temperature or --top-k)")
    s.add_argument("--prime", default="", help="text to condition on (the output starts with "
                   "it); without it, generation starts as after a newline (not printed) if the "
                   "vocabulary has one, else from a uniformly random first character")
    s.add_argument("--seed", type=_nonneg_int, default=0, help="sampling seed")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser(
        "export", formatter_class=fmt,
        help="write a checkpoint's weights for PyTorch (safetensors), Keras, Flax or CS231n",
        description="Write a checkpoint's weights in another library's layout. safetensors: "
                    "PyTorch's names and shapes (lstm.weight_ih_l0, head.weight, ...; "
                    "safetensors.torch.load_file gives a state dict for an nn.Module with "
                    "attributes embedding, lstm (gru, rnn for those cells), head), config and "
                    "vocabulary in the header's metadata. keras / flax / cs231n: an .npz "
                    "with that library's names (lstm/l0/kernel, head/kernel, ...; see "
                    "lstm_bptt.export).")
    e.add_argument("--checkpoint", required=True,
                   help="checkpoint.npz (from `train` or `task --save`)")
    e.add_argument("--format", required=True, choices=list(EXPORT_SUFFIXES),
                   help="output layout")
    e.add_argument("--out", required=True, metavar="FILE",
                   help="output file (.safetensors, or .npz for keras/flax/cs231n)")
    e.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    e.set_defaults(func=cmd_export)

    g = sub.add_parser("gradcheck", formatter_class=fmt,
                       help="check every backward pass against central differences",
                       description="Numerical gradient check (float64, central differences) of "
                                   "every trainable component; exits 1 if any tensor fails.")
    g.add_argument("--tol", type=_positive_float, default=1e-7, help="max relative error")
    g.add_argument("--eps", type=_positive_float, default=1e-5, help="finite-difference step")
    g.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the random test values")
    g.add_argument("--json", action="store_true", help="machine-readable report")
    g.set_defaults(func=cmd_gradcheck)

    k = sub.add_parser("task", formatter_class=fmt,
                       help="train a built-in task (Reber grammar, adding problem, MNIST-1D, ...)",
                       description="Train one of the built-in tasks with its preset and report "
                                   "the task's own success criterion.")
    try:
        from .presets import TASKS
        names = list(TASKS)
        epilog = "\n".join(f"  {n:<16} {d}" for n, d in TASKS.items())
    except ImportError:  # pragma: no cover
        names, epilog = None, ""
    k.add_argument("name", choices=names, metavar="NAME",
                   help="task name: " + ", ".join(names or []))
    k.add_argument("--steps", type=_positive_int, default=None,
                   help="override the preset's step budget")
    k.add_argument("--quick", action="store_true",
                   help="a much smaller budget (smoke test; exits 0 even if not solved)")
    k.add_argument("--seed", type=_nonneg_int, default=0, help="seed of data and initialisation")
    k.add_argument("--threads", type=_int_in(1, MAX_THREADS), default=1, help="BLAS threads")
    k.add_argument("--hidden-size", type=_int_in(1, MAX_HIDDEN), default=None,
                   help="override the preset's hidden units H")
    k.add_argument("--lr", type=_positive_float, default=None,
                   help="override the preset's learning rate (Adam)")
    k.add_argument("--batch-size", type=_int_in(1, MAX_BATCH), default=None,
                   help="override the preset's sequences per update")
    k.add_argument("--seq-length", type=_int_in(1, MAX_SEQ), default=None,
                   help="override the task's sequence length T (or forecasting window)")
    k.add_argument("--save", default=None, metavar="FILE",
                   help="write the trained model to this checkpoint (.npz) for inspection")
    add_cell_flags(k)  # the preset's LSTM gate-bias initialisation applies to the LSTM only
    k.add_argument("--seeds", type=_int_in(1, MAX_TRIALS), default=None, metavar="N",
                   help="run N independent trials (seeds SEED .. SEED+N-1) and report the "
                        "solved fraction and the training sequences until success "
                        f"(1..{MAX_TRIALS})")
    k.add_argument("--jobs", type=_int_in(1, MAX_JOBS), default=1,
                   help=f"with --seeds: trials run at once in local processes (1..{MAX_JOBS})")
    k.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="with --seeds: run the trials on the Dask cluster whose scheduler is "
                        "at ADDRESS (tcp://host:8786), or 'local' for a LocalCluster of --jobs "
                        'workers; needs pip install "lstm-bptt[cluster]"')
    k.add_argument("--out-dir", default=None,
                   help="with --seeds: folder of the per-trial results; re-running skips the "
                        "finished trials (default: runs/trials/NAME-CELL[-quick...])")
    k.add_argument("--json", action="store_true", help="print the result as JSON")
    k.add_argument("--quiet", action="store_true", help="no progress bar")
    k.add_argument("--plot", nargs="?", const="runs/tasks", default=None, metavar="DIR",
                   help="draw the task's curves to DIR/NAME.png and .svg; with --seeds, every "
                        "seed's training loss, with the RNN/GRU/LSTM sweeps of the same task "
                        "side by side (needs matplotlib; DIR defaults to runs/tasks)")
    k.epilog = "tasks:\n" + epilog
    k.formatter_class = _TaskFormatter
    k.set_defaults(func=cmd_task)
    from .plots import add_plot_parser
    from .report import add_inspect_parser

    add_inspect_parser(sub, fmt, _positive_int, _nonneg_int)
    add_plot_parser(sub, fmt)
    p.train_parser = t
    return p


def _parse_args(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """``parser.parse_args`` whose unknown-option error comes from the subcommand, with its usage
    and a "did you mean" for each misspelt flag (argparse alone reports it with the top-level
    usage, which lists no option of the subcommand)."""
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = subparsers.choices[args.command]
    known = [s for a in sub._actions for s in a.option_strings if s.startswith("--")]
    hints = []
    for token in extra:
        flag = token.split("=", 1)[0]
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6) if flag[:1] == "-" else []
        if close:
            hints.append((flag, close[0]))
    # the arguments as given, then the suggestions (not wedged between a flag and its value)
    if len(hints) == 1:
        hint = f" (did you mean {hints[0][1]}?)"
    else:
        hint = "".join(f" ({bad}: did you mean {good}?)" for bad, good in hints)
    sub.error("unrecognized arguments: " + " ".join(extra) + hint)


def main(argv=None) -> int:
    """Entry point of the ``lstm-bptt`` console script. Returns the exit status."""
    parser = build_parser()
    args = _parse_args(parser, argv)
    # Re-executing to set BLAS threads is only safe when we own the process (console script or
    # python -m); a caller passing argv (a test, a notebook) keeps its process.
    args.argv = list(sys.argv[1:]) if argv is None else None
    args.defaults = {a.dest: a.default for a in parser.train_parser._actions}
    code = None
    try:
        code = args.func(args)
        return code
    except BrokenPipeError:  # e.g. `lstm-bptt gradcheck --json | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"lstm-bptt {args.command}: interrupted", file=sys.stderr)
        code = 130
        return code
    except (OSError, ValueError, TypeError) as exc:
        if os.environ.get("LSTM_BPTT_DEBUG"):
            raise
        print(f"lstm-bptt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        lock = getattr(args, "_lock", None)
        if lock is not None:
            lock.close()  # releases the --out-dir lock (the kernel would at exit anyway)
        if argv is None:
            # exiting now: a late Ctrl-C/SIGTERM during interpreter shutdown (e.g. while the
            # progress bar's thread is joined) must not turn the exit into a traceback
            import signal

            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if code in (130, 143):
                # Stopped by a signal, everything written and closed: leave now. A second
                # signal can leave a KeyboardInterrupt inside a library's exit hook (e.g. the
                # JIT's), which would make the interpreter end itself by SIGINT with a
                # traceback instead of exiting with this status.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
