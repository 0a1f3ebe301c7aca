"""Planted-bug (mutation) check of the parts outside the math: model evaluation and sampling,
the CLI's defaults, the learning-rate schedules, the checkpoint writer and the trainer's
checkpoint bookkeeping.

    python scripts/mutation_check.py [--only NAME] [--jobs N] [--json OUT]

Each mutant is one realistic one-line slip (a wrong weighting, a dropped state, an off-by-one, a
changed default). It is applied to a fresh copy of the package, and the test files that cover
its module run against it (``pytest -x -m "not slow"``): the mutant is *killed* when a test
fails, *survives* when all pass. The score is killed / total; a survivor names a behaviour users
rely on that no test pins down.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# test files (and pytest options) that cover each module; the CLI's 2-minute gradient-check
# command tests and the training tests unrelated to checkpoints are left out to keep it quick
MODELS_TESTS = ["tests/test_models.py", "tests/test_train.py", "tests/test_tbptt.py"]
CLI_TESTS = ["tests/test_cli.py", "tests/test_cli_reliability.py", "-k", "not gradcheck"]
SCHED_TESTS = ["tests/test_schedules.py"]
CKPT_TESTS = ["tests/test_checkpoint.py", "tests/test_properties.py", "tests/test_train.py",
              "-k", "checkpoint or resume or nan or diverg"]

# (name, file, original text, mutated text, test files)
MUTANTS = [
    ("evaluate: weights each window by B only", "lstm_bptt/models.py",
     "total += loss * logits.shape[0] * batch_size", "total += loss * batch_size", MODELS_TESTS),
    ("evaluate: divides by one position too few", "lstm_bptt/models.py",
     "return total / (n * batch_size)", "return total / (n * batch_size - 1)", MODELS_TESTS),
    ("evaluate: state not carried across windows", "lstm_bptt/models.py",
     "logits, state, _ = self._forward(x[s : s + k1], state, False)",
     "logits, state, _ = self._forward(x[s : s + k1], None, False)", MODELS_TESTS),
    ("evaluate: dropout left on", "lstm_bptt/models.py",
     "logits, state, _ = self._forward(x[s : s + k1], state, False)",
     "logits, state, _ = self._forward(x[s : s + k1], state, True)", MODELS_TESTS),
    ("evaluate: targets are the inputs", "lstm_bptt/models.py",
     "y = ids[1 : n * batch_size + 1].reshape(batch_size, n).T",
     "y = ids[0 : n * batch_size].reshape(batch_size, n).T", MODELS_TESTS),
    ("sample: temperature ignored", "lstm_bptt/models.py",
     "p = softmax_probs(last.astype(np.float64), temperature)",
     "p = softmax_probs(last.astype(np.float64), 1.0)", MODELS_TESTS),
    ("sample: top-k keeps only the top 1", "lstm_bptt/models.py",
     "cut = np.partition(p, -top_k)[-top_k]", "cut = np.partition(p, -top_k)[-1]", MODELS_TESTS),
    ("sample: greedy takes the least likely", "lstm_bptt/models.py",
     "nxt = int(np.argmax(last))", "nxt = int(np.argmin(last))", MODELS_TESTS),
    ("sample: prime's first logits used", "lstm_bptt/models.py",
     "last = logits[-1, 0]", "last = logits[0, 0]", MODELS_TESTS),
    ("sample: state dropped between ids", "lstm_bptt/models.py",
     "logits, state, _ = self._forward(np.array([[nxt]]), state, False)",
     "logits, state, _ = self._forward(np.array([[nxt]]), None, False)", MODELS_TESTS),
    ("CLI default --lr 5e-3 -> 5e-2", "lstm_bptt/experiments/cli.py",
     'type=_positive_float, default=5e-3, help="learning rate"',
     'type=_positive_float, default=5e-2, help="learning rate"', CLI_TESTS),
    ("CLI default --dropout 0.2 -> 0", "lstm_bptt/experiments/cli.py",
     't.add_argument("--dropout", type=_nonneg_float, default=0.2,',
     't.add_argument("--dropout", type=_nonneg_float, default=0.0,', CLI_TESTS),
    ("CLI default --clip 5 -> 0", "lstm_bptt/experiments/cli.py",
     't.add_argument("--clip", type=_nonneg_float, default=5.0,',
     't.add_argument("--clip", type=_nonneg_float, default=0.0,', CLI_TESTS),
    ("CLI default --seq-length 64 -> 32", "lstm_bptt/experiments/cli.py",
     'dest="seq_length", type=_int_in(1, MAX_SEQ), default=64,',
     'dest="seq_length", type=_int_in(1, MAX_SEQ), default=32,', CLI_TESTS),
    ("CLI default --eval-every 500 -> 50", "lstm_bptt/experiments/cli.py",
     't.add_argument("--eval-every", type=_positive_int, default=500,',
     't.add_argument("--eval-every", type=_positive_int, default=50,', CLI_TESTS),
    ("CLI default sample --temperature 0.8 -> 1.0", "lstm_bptt/experiments/cli.py",
     's.add_argument("--temperature", default=0.8,', 's.add_argument("--temperature", default=1.0,',
     CLI_TESTS),
    ("CLI cosine floor lr/10 -> lr/100", "lstm_bptt/experiments/train_job.py",
     "eta_min=args.lr * 0.1)", "eta_min=args.lr * 0.01)", CLI_TESTS),
    ("cosine: rises instead of decaying", "lstm_bptt/schedules.py",
     "(self.base_lr - self.eta_min) * (1.0 + cos) / 2.0",
     "(self.base_lr - self.eta_min) * (1.0 - cos) / 2.0", SCHED_TESTS),
    ("StepLR: decays one step early", "lstm_bptt/schedules.py",
     "self.gamma ** (t // self.step_size)", "self.gamma ** ((t + 1) // self.step_size)",
     SCHED_TESTS),
    ("ExponentialLR: off by one", "lstm_bptt/schedules.py",
     "return self.base_lr * self.gamma**t", "return self.base_lr * self.gamma ** (t + 1)",
     SCHED_TESTS),
    ("warm-up: off by one", "lstm_bptt/schedules.py",
     "(1.0 - self.start_factor) * t / w)", "(1.0 - self.start_factor) * (t + 1) / w)",
     SCHED_TESTS),
    ("plateau: cuts one evaluation early", "lstm_bptt/schedules.py",
     "if self.num_bad_epochs > self.patience:", "if self.num_bad_epochs >= self.patience:",
     SCHED_TESTS),
    ("plateau: threshold sign", "lstm_bptt/schedules.py",
     "return a < self.best * (1.0 - self.threshold)",
     "return a < self.best * (1.0 + self.threshold)", SCHED_TESTS),
    ("checkpoint: private file mode", "lstm_bptt/checkpoint.py",
     "os.chmod(tmp, 0o666 & ~umask)", "os.chmod(tmp, 0o600)", CKPT_TESTS),
    ("checkpoint: temp file in the system temp dir", "lstm_bptt/checkpoint.py",
     "dir=path.parent)", "dir=None)", CKPT_TESTS),
    ("checkpoint: stale temp files never removed", "lstm_bptt/checkpoint.py",
     "    remove_stale_temp_files(path.parent)\n", "", CKPT_TESTS),
    ("checkpoint: live writers' temp files removed", "lstm_bptt/checkpoint.py",
     "if pid != os.getpid() and _pid_alive(pid):", "if False:", CKPT_TESTS),
    ("checkpoint: non-finite floats as plain JSON", "lstm_bptt/checkpoint.py",
     "        if isinstance(obj, float) and not np.isfinite(obj):\n"
     "            return {\"__float__\": repr(obj)}\n", "", CKPT_TESTS),
    ("trainer: pending checkpoint never written", "lstm_bptt/train.py",
     "            self._flush_pending()  # its state has now passed this loss check too\n",
     "            pass\n", CKPT_TESTS),
    ("trainer: carried state not saved", "lstm_bptt/train.py",
     '"state": None if self.state is None else [np.array(s) for s in self.state],',
     '"state": None,', CKPT_TESTS),
    ("trainer: checkpoint step off by one", "lstm_bptt/train.py",
     '            "step": self.step,\n', '            "step": self.step - 1,\n', CKPT_TESTS),
]


def run_mutant(mutant, workdir: Path, timeout: float = 900, first=None) -> dict:
    name, rel, old, new, tests = mutant
    if first:
        tests = [first, *tests]
    copy = workdir / "repo"
    if copy.exists():
        shutil.rmtree(copy)
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "runs", "benchmarks", "*.egg-info", ".pytest_cache"))
    path = copy / rel
    text = path.read_text()
    if text.count(old) != 1:
        return {"mutant": name, "status": "not applied",
                "detail": f"{old[:50]!r} found {text.count(old)} times in {rel}"}
    path.write_text(text.replace(old, new))
    env = dict(os.environ, PYTHONPATH=str(copy), OPENBLAS_NUM_THREADS="1")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p",
             "no:cacheprovider", *tests], cwd=copy, env=env, capture_output=True, text=True,
            timeout=timeout)
        status = "survived" if proc.returncode == 0 else "killed"
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAILED")]
        detail = lines[0][:160] if lines else proc.stdout.strip().splitlines()[-1][:160]
    except subprocess.TimeoutExpired:
        status, detail = "timeout", f"no verdict after {timeout:.0f} s"
    return {"mutant": name, "status": status, "detail": detail,
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run the mutants whose name contains this")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--jobs", type=int, default=1, help="mutants run at the same time")
    ap.add_argument("--first", help="a test file to run first (the tests added to kill "
                                    "survivors)")
    ap.add_argument("--skip", action="append", default=[],
                    help="skip the mutants whose name contains this (repeatable)")
    args = ap.parse_args(argv)
    todo = [m for m in MUTANTS if (not args.only or args.only in m[0])
            and not any(s in m[0] for s in args.skip)]
    from concurrent.futures import ThreadPoolExecutor

    with tempfile.TemporaryDirectory(prefix="mutants-") as d:
        def one(i_m):
            i, m = i_m
            r = run_mutant(m, Path(d) / str(i), first=args.first)
            print(f"[{r['status']:11}] {r['mutant']}: {r['detail']}", flush=True)
            return r

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(one, enumerate(todo)))
    killed = sum(r["status"] == "killed" for r in results)
    applied = sum(r["status"] in ("killed", "survived") for r in results)
    print(f"\nmutation score: {killed}/{applied} killed")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
