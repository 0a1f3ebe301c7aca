"""Training curves of a run folder: from ``history.csv`` (and the n-gram baselines in
``summary.json`` / ``baselines.json``) to PNG and SVG with matplotlib, or to inline SVG.

``lstm-bptt plot RUN_DIR`` and ``lstm-bptt train --plot`` call :func:`plot_run`;
``lstm-bptt task NAME --plot`` calls :func:`plot_task`. matplotlib is an optional extra
(``pip install "lstm-bptt[plot]"``); :func:`training_svg` needs nothing and feeds the HTML
report.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .svg import PALETTE, line_chart

INSTALL_HINT = ('matplotlib is not installed; install the plotting extra: '
                'pip install "lstm-bptt[plot]"')

__all__ = ["read_history", "read_baselines", "curves", "training_svg", "plot_run", "plot_task",
           "plot_comparison", "INSTALL_HINT"]


def read_history(path) -> list[dict]:
    """Rows of a ``history.csv`` written by :meth:`~lstm_bptt.train.Trainer.write_history`,
    numbers as floats (empty cells dropped)."""
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def read_baselines(run_dir) -> dict:
    """n-gram baselines (name -> nats/char) of a run folder: ``baselines.json`` (written by
    ``train`` before training starts) or the ``baselines`` of ``summary.json``; {} if none."""
    d = Path(run_dir)
    for name, key in (("baselines.json", None), ("summary.json", "baselines")):
        p = d / name
        if p.is_file():  # the first found wins, even if empty (a run without baselines)
            data = json.loads(p.read_text())
            data = data.get(key, {}) if key else data
            return {k: float(v) for k, v in data.items()}
    return {}


def curves(history) -> dict:
    """The series in a history: name -> (steps, values) arrays.

    Keys present when the history has them: ``"train"`` (training loss, mean over each log
    interval), ``"val"`` (validation loss), ``"lr"``, ``"grad_norm"``.
    """
    out = {}
    for name, key in (("train", "loss"), ("val", "val_loss"), ("lr", "lr"),
                      ("grad_norm", "grad_norm")):
        pts = [(r["step"], r[key]) for r in history if key in r and "step" in r]
        if pts:
            s, v = np.array(pts, float).T
            out[name] = (s, v)
    return out


def _baseline_lines(baselines, lo_hi=None):
    lines = []
    for k, (name, v) in enumerate(sorted(baselines.items(), key=lambda kv: -kv[1])):
        lines.append((float(v), name, PALETTE[(k + 3) % len(PALETTE)]))
    return lines


def training_svg(history, baselines=None, unit="nats/char") -> str:
    """The training curves as inline SVG (loss with baselines, learning rate, gradient norm).

    Baselines above three times the worst loss drawn are left out so they do not squash the
    curves (the unigram baseline often is).
    """
    c = curves(history)
    charts = []
    series = []
    if "train" in c:
        series.append({"label": "train", "x": c["train"][0], "y": c["train"][1]})
    if "val" in c:
        series.append({"label": "validation", "x": c["val"][0], "y": c["val"][1],
                       "color": PALETTE[1]})
    if series:
        top = max(float(np.nanmax(s["y"])) for s in series)
        lines = [ln for ln in _baseline_lines(baselines or {}) if ln[0] <= 3 * top]
        charts.append(line_chart(series, title=f"loss ({unit})", xlabel="step", ylabel=unit,
                                 hlines=lines, width=390, height=290))
    if "lr" in c:
        charts.append(line_chart([{"label": "learning rate", "x": c["lr"][0], "y": c["lr"][1],
                                   "color": PALETTE[2]}], title="learning rate",
                                 xlabel="step", ylabel="lr", width=310, height=290))
    if "grad_norm" in c:
        charts.append(line_chart([{"label": "gradient norm (before clipping)",
                                   "x": c["grad_norm"][0], "y": c["grad_norm"][1],
                                   "color": PALETTE[3]}], title="gradient norm",
                                 xlabel="step", ylabel="global L2 norm", log_y=True,
                                 width=310, height=290))
    return "\n".join(charts)


def _figure(ncols, width=4.2, height=3.2):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _save(fig, out_base: Path) -> list[Path]:
    paths = []
    for ext in ("png", "svg"):
        p = out_base.with_suffix("." + ext)
        tmp = p.with_name(p.name + ".tmp")
        fig.savefig(tmp, dpi=110, format=ext)
        tmp.replace(p)  # atomic: a browser or viewer never sees a half-written file
        paths.append(p)
    return paths


def plot_run(run_dir, history=None, baselines=None, name="training") -> list[Path]:
    """Draw a run's training curves to ``RUN_DIR/training.png`` and ``training.svg``.

    Three panels: training and validation loss in nats/char with the n-gram baselines as
    dashed reference lines; the learning rate; the gradient norm (log scale).

    Parameters
    ----------
    run_dir : path of a ``lstm-bptt train`` output folder
    history : list of dict, optional
        Default: read ``RUN_DIR/history.csv``.
    baselines : dict name -> nats, optional
        Default: :func:`read_baselines`.

    Returns
    -------
    list of Path (the PNG and the SVG)

    Raises
    ------
    ImportError
        matplotlib is missing (the message says how to install it).
    FileNotFoundError
        No ``history.csv`` in ``run_dir`` and no ``history`` given.
    ValueError
        The history has no loss to draw.
    """
    run_dir = Path(run_dir)
    if history is None:
        hist_path = run_dir / "history.csv"
        if not hist_path.is_file():
            raise FileNotFoundError(f"{hist_path} not found: pass the folder a `lstm-bptt "
                                    "train` run wrote (its --out-dir)")
        history = read_history(hist_path)
    if baselines is None:
        baselines = read_baselines(run_dir)
    c = curves(history)
    if "train" not in c and "val" not in c:
        raise ValueError(f"{run_dir}: the history has no loss values to plot")
    fig, (ax_loss, ax_lr, ax_g) = _figure(3)
    top = 0.0
    if "train" in c:
        s, v = c["train"]
        if len(v) > 200:  # one row per step: the raw curve faint, a moving average on top
            w = len(v) // 50
            ax_loss.plot(s, v, color=PALETTE[0], lw=0.6, alpha=0.35)
            avg = np.convolve(v, np.ones(w) / w, mode="valid")
            ax_loss.plot(s[w - 1:], avg, label=f"train (mean of {w} steps)", color=PALETTE[0],
                         lw=1.4)
        else:
            ax_loss.plot(s, v, label="train", color=PALETTE[0], lw=1.2)
        top = max(top, float(np.nanmax(v)))
    if "val" in c:
        ax_loss.plot(*c["val"], "o-", label="validation", color=PALETTE[1], lw=1.5, ms=3)
        top = max(top, float(np.nanmax(c["val"][1])))
    for v, label, color in _baseline_lines(baselines):
        if v <= 3 * top:
            ax_loss.axhline(v, ls="--", lw=1, color=color, label=f"{label} ({v:.3f})")
    ax_loss.set(xlabel="step", ylabel="nats/char", title="loss")
    ax_loss.legend(fontsize=7)
    if "lr" in c:
        ax_lr.plot(*c["lr"], color=PALETTE[2])
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate")
    if "grad_norm" in c:
        ax_g.plot(*c["grad_norm"], color=PALETTE[3])
        ax_g.set_yscale("log")
    ax_g.set(xlabel="step", ylabel="global L2 norm", title="gradient norm (before clipping)")
    for ax in (ax_loss, ax_lr, ax_g):
        ax.grid(alpha=0.3)
    return _save(fig, run_dir / name)


def plot_task(result: dict, out_dir) -> list[Path]:
    """Draw a ``run_task`` result's curves (training loss and each monitored metric by step)
    to ``OUT_DIR/<task>.png`` and ``.svg``.

    Raises
    ------
    ImportError
        matplotlib is missing.
    ValueError
        The result has no history.
    """
    hist = result.get("history") or []
    if not hist:
        raise ValueError(f"task {result.get('task')}: no history to plot")
    keys = [k for k in hist[0] if k not in ("step",) and all(
        isinstance(r.get(k), int | float) for r in hist)]
    fig, axes = _figure(len(keys), width=3.6)
    steps = [r["step"] for r in hist]
    for ax, k in zip(axes, keys, strict=True):
        vals = [float(r[k]) for r in hist]
        ax.plot(steps, vals, "o-", ms=2.5, lw=1.2, color=PALETTE[0])
        if k.endswith("loss") and all(v > 0 for v in vals) and max(vals) / min(vals) > 20:
            ax.set_yscale("log")
        ax.set(xlabel="step", title=k)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{result.get('task')} (seed {result.get('seed')}, "
                 f"{'solved' if result.get('solved') else 'not solved'})", fontsize=10)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _save(fig, out_dir / str(result.get("task", "task")))


def plot_comparison(results: dict, metric: str, out_base) -> list[Path]:
    """Several cell types (or settings) side by side: one panel per label, every seed's
    curve of ``metric`` by step (e.g. RNN, GRU and LSTM on one task over several seeds).

    Parameters
    ----------
    results : dict label -> list of ``run_task`` results (one per seed)
    metric : str, a key of the results' history rows (e.g. "train_loss")
    out_base : path without suffix; ``.png`` and ``.svg`` are written

    Raises
    ------
    ImportError
        matplotlib is missing.
    ValueError
        ``metric`` is in none of the histories.
    """
    fig, axes = _figure(len(results), width=3.6)
    found = False
    lo, hi = math.inf, -math.inf
    for ax, (label, runs) in zip(axes, results.items(), strict=True):
        for k, r in enumerate(runs):
            pts = [(h["step"], h[metric]) for h in r.get("history", []) if metric in h]
            if not pts:
                continue
            found = True
            s, v = np.array(pts, float).T
            lo, hi = min(lo, v.min()), max(hi, v.max())
            ax.plot(s, v, lw=1.1, color=PALETTE[k % len(PALETTE)],
                    label=f"seed {r.get('seed', k)}" + (" (solved)" if r.get("solved") else ""))
        ax.set(title=label, xlabel="step", ylabel=metric)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    if not found:
        raise ValueError(f"metric: {metric!r} is in none of the histories")
    for ax in axes:
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, out_base)


def have_matplotlib() -> bool:
    """True if matplotlib can be imported (the ``plot`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


class PlotCallback:
    """Trainer callback of ``lstm-bptt train --plot``: after every evaluation, write
    ``history.csv`` and redraw ``training.png`` / ``training.svg`` in the run folder."""

    def __init__(self, run_dir, baselines=None):
        self.run_dir = Path(run_dir)
        self.baselines = baselines or {}

    def on_eval_end(self, trainer, metrics):
        trainer.write_history(self.run_dir / "history.csv")
        plot_run(self.run_dir, history=trainer.history, baselines=self.baselines)


def cmd_plot(args) -> int:
    """`lstm-bptt plot RUN_DIR`: draw the training curves; returns the exit status."""
    if not have_matplotlib():
        print(f"lstm-bptt plot: error: {INSTALL_HINT} (the HTML report of `lstm-bptt inspect` "
              "needs no matplotlib: its charts are inline SVG)", file=__import__("sys").stderr)
        return 2
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"RUN_DIR {run_dir}: expected the folder a `lstm-bptt train` run wrote "
                         "(its --out-dir)")
    for p in plot_run(run_dir):
        print(p)
    return 0


def add_plot_parser(sub, fmt) -> None:
    """The ``plot`` subcommand (called by :func:`lstm_bptt.experiments.cli.build_parser`)."""
    p = sub.add_parser("plot", formatter_class=fmt,
                       help="draw a run's training curves to PNG and SVG (needs matplotlib)",
                       description="Draw the training curves of a `lstm-bptt train` run folder "
                                   "(history.csv; the n-gram baselines as reference lines) to "
                                   "RUN_DIR/training.png and training.svg.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the folder `train` wrote (--out-dir)")
    p.set_defaults(func=cmd_plot)


def read_trials(directory) -> list[dict]:
    """The per-trial results (``seed-*.json``) of a ``task --seeds`` folder, by seed."""
    rows = [json.loads(p.read_text()) for p in Path(directory).glob("seed-*.json")]
    return sorted(rows, key=lambda r: r.get("seed", 0))


def plot_trial_folders(folders: dict, metric: str, out_base) -> list[Path]:
    """:func:`plot_comparison` of ``task --seeds`` folders: label -> folder (e.g. one per cell
    type: RNN, GRU, LSTM side by side); folders without trials are left out.

    Raises
    ------
    ImportError
        matplotlib is missing.
    ValueError
        No folder holds a trial.
    """
    results = {label: read_trials(d) for label, d in folders.items()}
    results = {k: v for k, v in results.items() if v}
    if not results:
        raise ValueError(f"no trials (seed-*.json) in {', '.join(map(str, folders.values()))}")
    return plot_comparison(results, metric, out_base)
