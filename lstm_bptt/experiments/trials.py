"""Many independent trials of one task: the 1997 paper's table, over seeds, on any executor.

Hochreiter & Schmidhuber (1997) report each experiment as the fraction of trials that solved
the task within a budget and the number of training sequences until success. :func:`run_trials`
measures exactly that for a task of :mod:`lstm_bptt.experiments.presets` and a cell type: it
runs one trial per seed (:func:`run_trial`, the single-run :func:`~.presets.run_task`) and
summarises them (:func:`summarize`).

Where trials run
----------------
Trials are independent, so they are submitted to a :class:`concurrent.futures.Executor`:

* ``jobs=1`` (default): one after the other in this process;
* ``jobs=N``: a :class:`~concurrent.futures.ProcessPoolExecutor` of N local processes
  (started with "spawn", so a script calling :func:`run_trials` needs the usual
  ``if __name__ == "__main__":`` guard);
* ``executor=E``: any executor, e.g. a Dask cluster's ``Client(address).get_executor()``
  (:func:`dask_executor`), which runs the same trials on many machines with no other change.

A trial is a pure function of its specification (task, cell, seed, budget, ...): the seed fixes
data, initialisation and batches, and BLAS is limited to one thread inside the trial, so the
same seed gives the same numbers wherever it runs (tested across in-process, local-process and
Dask runs), given the same library version and fast path on every worker (each row records
both; a sweep whose rows differ in them says so).

Interruption and resumption
---------------------------
With ``out_dir``, every finished trial is written at once to ``out_dir/seed-<S>.json``
(temporary file + :func:`os.replace`, so a file is either complete or absent) beside
``out_dir/sweep.json``, the sweep's specification. Running the same sweep again skips the
seeds whose file exists and runs only the others; a folder holding another sweep's trials is
refused rather than mixed. ``summary.json`` is written when all trials are done.

References
----------
S. Hochreiter and J. Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8), 1997,
Section 5 (each experiment's "% successful trials" and "success after" columns).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import json
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .. import __version__, fast_path_enabled

__all__ = ["dask_executor", "format_report", "run_trial", "run_trials", "summarize",
           "sweep_slug"]

_SPEC_KEYS = ("task", "cell", "cell_options", "quick", "steps", "dtype", "overrides")
_INSTALL_DASK = 'pip install "lstm-bptt[cluster]"'


# --------------------------------------------------------------------------------------------
# One trial (runs in the worker: a top-level function of plain data, so it pickles by name)
# --------------------------------------------------------------------------------------------


def run_trial(spec: dict) -> dict:
    """Run one trial: :func:`~.presets.run_task` for ``spec``, silently, on one BLAS thread.

    Parameters
    ----------
    spec : dict
        ``task`` (str), ``seed`` (int), ``cell`` (str), ``cell_options`` (dict), ``quick``
        (bool), ``steps`` (int or None), ``dtype`` (str or None), ``overrides`` (dict or None).

    Returns
    -------
    dict
        The single-run result (``solved``, ``metrics``, ``steps``, ``examples``, ``seconds``,
        ...; see :func:`~.presets.run_task`) plus ``cell``, ``cell_options``, ``version``
        (of lstm_bptt) and ``fast_path`` (whether the compiled fast path was enabled).
    """
    from .presets import run_task

    overrides = dict(spec.get("overrides") or {})
    overrides["cell"] = spec.get("cell", "lstm")
    if spec.get("cell_options"):
        overrides["cell_options"] = dict(spec["cell_options"])
    result = run_task(spec["task"], seed=int(spec["seed"]), steps=spec.get("steps"),
                      quick=bool(spec.get("quick")), dtype=spec.get("dtype"),
                      overrides=overrides, progress=False, log=_silent, blas_threads=1)
    result["cell"] = overrides["cell"]
    result["cell_options"] = overrides.get("cell_options", {})
    # what a trial's numbers depend on besides its spec (see "Where trials run")
    result["version"] = __version__
    result["fast_path"] = fast_path_enabled()
    return result


def _silent(_line: str) -> None:
    pass


def _worker_init() -> None:
    """Local worker processes leave Ctrl-C to the parent, which stops them cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def _stats(values: list) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "mean": statistics.fmean(values)}


def summarize(rows: list[dict]) -> dict:
    """The paper's columns over trials.

    Parameters
    ----------
    rows : list of dict
        Trial results (:func:`run_trial`).

    Returns
    -------
    dict
        ``trials`` (int), ``solved`` (int), ``diverged`` (int: stopped by a non-finite
        value, counted as not solved), ``solved_fraction`` (float in [0, 1]),
        ``sequences_to_success`` (median/min/max/mean of ``examples`` over the solved trials,
        None if none solved), ``metrics`` (per numeric metric of the task's test criterion:
        median/min/max/mean over all trials), ``seconds`` (per-trial wall time: median/min/max/
        mean, and ``sum``).
    """
    solved = [r for r in rows if r["solved"]]
    metric_names = [k for k, v in (rows[0]["metrics"] if rows else {}).items()
                    if isinstance(v, int | float) and not isinstance(v, bool)]
    metrics = {k: _stats([r["metrics"][k] for r in rows if k in r["metrics"]])
               for k in metric_names}
    secs = [float(r["seconds"]) for r in rows]
    seconds = _stats(secs)
    if seconds is not None:
        seconds["sum"] = sum(secs)
    return {
        "trials": len(rows), "solved": len(solved),
        "diverged": sum(1 for r in rows if r.get("diverged")),
        "solved_fraction": len(solved) / len(rows) if rows else 0.0,
        "sequences_to_success": _stats([int(r["examples"]) for r in solved]),
        "metrics": metrics, "seconds": seconds,
    }


def _g(v) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.4g}"
    return f"{int(v):,}"


def format_report(report: dict) -> str:
    """Human-readable table of a :func:`run_trials` report (several lines, no trailing newline)."""
    s, spec = report["summary"], report["spec"]
    seeds = [r["seed"] for r in report["trials"]]
    cell = spec["cell"] + "".join(f" {k}={v}" for k, v in (spec["cell_options"] or {}).items())
    lines = [f"{spec['task']} | cell {cell} | {s['trials']} trials"
             + (f" (seeds {min(seeds)}-{max(seeds)})" if seeds else "")
             + (" | quick" if spec["quick"] else "")]
    if s["trials"] == 0:
        return lines[0]
    budget = report["trials"][0]["preset"]
    steps = spec["steps"] or (budget["quick_steps"] if spec["quick"] else budget["steps"])
    lines.append(f"budget: {steps:,} updates x {budget['batch_size']} = "
                 f"{steps * budget['batch_size']:,} training sequences per trial")
    lines.append(f"solved: {s['solved']}/{s['trials']} ({100 * s['solved_fraction']:.0f} %)"
                 + (f"; {s['diverged']} diverged (not solved)" if s["diverged"] else ""))
    q = s["sequences_to_success"]
    if q:
        lines.append(f"training sequences until success (solved trials): median {_g(q['median'])}"
                     f", range {_g(q['min'])} - {_g(q['max'])}, mean {_g(q['mean'])}")
    lines.append(f"criterion: {report['trials'][0]['criterion']}")
    for k, m in s["metrics"].items():
        lines.append(f"  {k:<22} median {_g(m['median']):>10}   range {_g(m['min'])} - "
                     f"{_g(m['max'])}")
    lines.append(f"paper: {report['trials'][0]['reference']}")
    t = s["seconds"]
    lines.append(f"time: {report['seconds']:.1f} s wall for the sweep ({report['ran']} trials "
                 f"run now, {report['reused']} reused from {report['out_dir'] or '-'}); per trial "
                 f"median {t['median']:.1f} s, range {t['min']:.1f} - {t['max']:.1f} s")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Output folder: one atomic JSON file per trial
# --------------------------------------------------------------------------------------------


def sweep_slug(spec: dict) -> str:
    """A folder name for a sweep, e.g. ``adding-1997-gru`` or ``reber-lstm-peephole-quick``."""
    parts = [spec["task"], spec["cell"]]
    parts += [k if v is True else f"{k}{v}" for k, v in sorted((spec["cell_options"] or {}).items())
              if v not in (False, None, 0)]
    if spec["quick"]:
        parts.append("quick")
    if spec["steps"]:
        parts.append(f"steps{spec['steps']}")
    if spec["dtype"]:
        parts.append(str(spec["dtype"]))
    for k, v in sorted((spec.get("overrides") or {}).items()):  # the task command's knobs
        parts += ([f"{ok}{ov}" for ok, ov in sorted(v.items())] if isinstance(v, dict)
                  else [f"{k}{v}"])
    return "-".join(str(p).replace("_", "-") for p in parts)


def _write_json_atomic(path: Path, obj) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, default=_json_default)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _open_out_dir(out_dir: Path, spec: dict) -> dict[int, dict]:
    """Create or check ``out_dir``; return the finished trials found there, by seed."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir: expected a directory, got the file {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "sweep.json"
    if manifest.exists():
        try:
            saved = json.loads(manifest.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{manifest}: not a sweep specification ({exc}); choose another "
                             "output folder") from None
        diff = [f"{k} {spec[k]!r} (folder: {saved.get(k)!r})" for k in _SPEC_KEYS
                if _canon(saved.get(k)) != _canon(spec[k])]
        if diff:
            raise ValueError(f"{out_dir} holds the trials of another sweep: "
                             + ", ".join(diff) + "; choose another output folder")
    else:
        _write_json_atomic(manifest, spec)
    done = {}
    for path in sorted(out_dir.glob("seed-*.json")):
        try:
            row = json.loads(path.read_text())
            done[int(row["seed"])] = row
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: unreadable trial result ({exc}); move it away to run "
                             "that trial again") from None
    return done


def _canon(v):
    """JSON round trip, so a spec compares equal to the one read back from sweep.json."""
    return json.loads(json.dumps(v, default=_json_default, sort_keys=True))


# --------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------


def dask_executor(address: str | None = None, **cluster_options):
    """A :class:`concurrent.futures.Executor` running on a Dask distributed cluster.

    Parameters
    ----------
    address : str or None
        The scheduler's address (``"tcp://host:8786"``); ``None`` or ``"local"`` starts a
        :class:`dask.distributed.LocalCluster` on this machine with ``cluster_options``
        (default: 2 worker processes of one thread each).

    Returns
    -------
    executor : concurrent.futures.Executor
        ``client.get_executor()``; its ``client`` attribute is the Dask client (close it with
        ``executor.client.close()``, which also stops a LocalCluster started here).

    Raises
    ------
    ImportError
        dask[distributed] is not installed (the message says how to install it).

    Notes
    -----
    Every worker needs ``lstm_bptt`` importable (installed, same version): trials are sent by
    reference to :func:`run_trial`, not as code.
    """
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("running trials on a Dask cluster needs dask[distributed]: "
                          f"{_INSTALL_DASK}") from None
    if address in (None, "local"):
        opts = {"n_workers": 2, "threads_per_worker": 1, "processes": True,
                "dashboard_address": None, **cluster_options}
        cluster = LocalCluster(**opts)
        client = Client(cluster)
        client._lstm_bptt_cluster = cluster
    else:
        client = Client(address)
    executor = client.get_executor(pure=False)
    executor.client = client
    return executor


def _local_pool(jobs: int) -> cf.ProcessPoolExecutor:
    import multiprocessing

    return cf.ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init,
                                  mp_context=multiprocessing.get_context("spawn"))


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Cancel queued trials and end the running ones now (an interrupted sweep)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=10)


class _InlineExecutor(cf.Executor):
    """Runs each trial when it is submitted, in this process (``jobs=1``)."""

    def submit(self, fn, /, *args, **kwargs):
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # KeyboardInterrupt propagates to the caller
            if not isinstance(exc, Exception):
                raise
            future.set_exception(exc)
        return future


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------


def _seed_list(seeds, first_seed: int) -> list[int]:
    if isinstance(seeds, bool):
        raise TypeError(f"seeds: expected an int or a list of ints, got {seeds!r}")
    if isinstance(seeds, int | np.integer):
        if seeds < 1:
            raise ValueError(f"seeds: expected a positive number of trials, got {seeds}")
        return list(range(int(first_seed), int(first_seed) + int(seeds)))
    if not isinstance(seeds, Iterable) or isinstance(seeds, str):
        raise TypeError(f"seeds: expected an int or a list of ints, got {type(seeds).__name__}")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
            raise ValueError(f"seeds: expected non-negative ints, got {s!r}")
        out.append(int(s))
    if not out or len(set(out)) != len(out):
        raise ValueError(f"seeds: expected a non-empty list of distinct seeds, got {out}")
    return out


def run_trials(task: str, seeds=10, *, cell: str = "lstm", cell_options: dict | None = None,
               quick: bool = False, steps: int | None = None, dtype=None,
               overrides: dict | None = None, first_seed: int = 0, jobs: int = 1,
               executor: cf.Executor | None = None, out_dir=None, progress: bool | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Run independent trials of ``task`` with ``cell`` and summarise them as the 1997 paper does.

    Parameters
    ----------
    task : str
        A task of :data:`~.presets.TASKS`.
    seeds : int or list of int, default 10
        Number of trials (seeds ``first_seed, first_seed + 1, ...``) or the seeds themselves.
    cell : {"lstm", "gru", "rnn"}
        Recurrent cell of the preset's model.
    cell_options : dict, optional
        Cell options (e.g. ``{"nonlinearity": "relu"}`` for the RNN, LSTM variants).
    quick, steps, dtype, overrides
        As in :func:`~.presets.run_task` (the same for every trial).
    first_seed : int, default 0
        First seed when ``seeds`` is a number.
    jobs : int, default 1
        Local worker processes when no ``executor`` is given (1: run in this process).
    executor : concurrent.futures.Executor, optional
        Where to run the trials (e.g. :func:`dask_executor`); it is not shut down here.
    out_dir : str or Path, optional
        Folder for per-trial results (see the module docstring); re-running skips finished
        seeds. None keeps results in memory only.
    progress : bool or None
        tqdm bar of trials (None: only on a terminal).
    log : callable(str)
        One line per finished trial ("trials done, successes so far").

    Returns
    -------
    dict
        ``spec`` (the sweep), ``trials`` (per-trial rows sorted by seed, each the single-run
        result of :func:`~.presets.run_task` with ``solved`` and ``metrics``), ``summary``
        (:func:`summarize`), ``seconds`` (wall time of this call), ``ran`` and ``reused``
        (trials run now, found in ``out_dir``), ``failed`` (seed -> error text), ``out_dir``.

    Raises
    ------
    ValueError
        Unknown task or cell, bad seeds, jobs, steps or overrides, or an ``out_dir`` holding
        another sweep.
    KeyboardInterrupt
        Re-raised after stopping the local workers; finished trials are already saved.
    """
    from .presets import TASKS, check_cell, preset_of

    if task not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(sorted(TASKS))}, got {task!r}")
    check_cell(cell, cell_options)
    if isinstance(jobs, bool) or not isinstance(jobs, int | np.integer) or jobs < 1:
        raise ValueError(f"jobs: expected a positive int, got {jobs!r}")
    if executor is not None and not isinstance(executor, cf.Executor):
        raise TypeError("executor: expected a concurrent.futures.Executor, got "
                        f"{type(executor).__name__}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int | np.integer)
                              or steps < 1):
        raise ValueError(f"steps: expected a positive int or None, got {steps!r}")
    if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {np.dtype(dtype)}")
    if overrides:  # a bad preset field fails here, not once per trial
        unknown = set(overrides) - {f.name for f in dataclasses.fields(preset_of(task))}
        if unknown:
            raise ValueError(f"overrides: expected fields of the task's Preset, got "
                             f"{sorted(unknown)}")
    seed_list = _seed_list(seeds, first_seed)
    spec = {"task": task, "cell": cell, "cell_options": dict(cell_options or {}),
            "quick": bool(quick), "steps": None if steps is None else int(steps),
            "dtype": None if dtype is None else np.dtype(dtype).name,
            "overrides": dict(overrides or {})}
    out = None if out_dir is None else Path(out_dir)
    done = _open_out_dir(out, spec) if out is not None else {}
    rows = {s: done[s] for s in seed_list if s in done}
    todo = [s for s in seed_list if s not in rows]
    reused = len(rows)
    if reused:
        log(f"{reused} of {len(seed_list)} trials already done in {out} (not run again)")

    from tqdm.auto import tqdm

    bar = tqdm(total=len(seed_list), initial=reused, unit="trial",
               disable=None if progress is None else not progress)
    bar.set_postfix(solved=sum(r["solved"] for r in rows.values()))
    own = None
    if executor is None and jobs > 1 and len(todo) > 1:
        own = executor = _local_pool(min(jobs, len(todo)))
    elif executor is None:
        executor = _InlineExecutor()
    failed: dict[int, str] = {}
    t0 = time.perf_counter()

    def finish(seed, future):
        try:
            row = future.result()
        except Exception as exc:  # a trial's error is reported; the others go on
            failed[seed] = f"{type(exc).__name__}: {exc}"
            log(f"seed {seed}: FAILED: {failed[seed]}")
            return
        rows[seed] = row
        if out is not None:
            _write_json_atomic(out / f"seed-{seed}.json", row)
        n_solved = sum(r["solved"] for r in rows.values())
        bar.update(1)
        bar.set_postfix(solved=n_solved)
        verdict = (f"solved after {row['examples']:,} sequences" if row["solved"]
                   else f"not solved in {row['examples']:,} sequences"
                   + (" (diverged)" if row.get("diverged") else ""))
        line = (f"seed {seed}: {verdict} ({row['seconds']:.1f} s) | {len(rows)}/"
                f"{len(seed_list)} done, {n_solved} solved")
        if bar.disable:
            log(line)
        else:
            bar.write(line)

    try:
        if isinstance(executor, _InlineExecutor):
            for s in todo:
                finish(s, executor.submit(run_trial, {**spec, "seed": s}))
        else:
            futures = {executor.submit(run_trial, {**spec, "seed": s}): s for s in todo}
            try:
                for fut in cf.as_completed(futures):
                    finish(futures[fut], fut)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    except KeyboardInterrupt:
        if own is not None:
            _stop_pool(own)
            own = None
        bar.close()
        raise
    finally:
        if own is not None:
            own.shutdown(wait=True)
        bar.close()
    ordered = [rows[s] for s in seed_list if s in rows]
    setups = {(r.get("version"), r.get("fast_path")) for r in ordered}
    if len(setups) > 1:
        log("warning: the trials ran with different library versions or fast paths "
            f"{sorted(setups, key=str)}; float32 numbers may differ in the last bits")
    report = {"spec": spec, "trials": ordered, "summary": summarize(ordered),
              "seconds": round(time.perf_counter() - t0, 2), "ran": len(ordered) - reused,
              "reused": reused, "failed": failed, "out_dir": None if out is None else str(out)}
    if out is not None and not failed:
        _write_json_atomic(out / "summary.json", {k: v for k, v in report.items()
                                                  if k != "trials"})
    return report
